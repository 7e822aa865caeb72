import Foundation
import Testing
@testable import OffsiteCore

@Suite struct FileIOTests {
    @Test func fileSinkWritesBufferedAndLargeWritesInOrderWithMode0600() throws {
        let folder = try ScratchFolder("fileio")
        let path = folder.file("out.bin")
        let sink = try FileSink(creating: path, bufferSize: 1000)
        var expected = Data()
        for size in [10, 990, 1, 5000, 999, 1000, 3] {
            let chunk = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) })
            try sink.write(chunk)
            expected.append(chunk)
        }
        #expect(sink.byteCount == Int64(expected.count))
        try sink.finish()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == expected)
        #expect(try permissions(of: path) == 0o600)
        #expect(throws: FileIOError.self) { try sink.write([1, 2, 3]) }
    }

    @Test func fileSinkRefusesToOverwriteAnExistingFile() throws {
        let folder = try ScratchFolder("fileio")
        let path = folder.file("existing")
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: FileIOError.self) { try FileSink(creating: path) }
        #expect(error?.code == EEXIST)
        #expect(error?.message.contains(path) == true)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }

    @Test func discardRemovesTheUnfinishedFile() throws {
        let folder = try ScratchFolder("fileio")
        let path = folder.file("partial")
        let sink = try FileSink(creating: path)
        try sink.write([1, 2, 3])
        sink.discard()
        #expect(try folder.names().isEmpty)
    }

    @Test func readFileStreamsTheWholeFileInChunksWithoutFinishing() throws {
        let folder = try ScratchFolder("fileio")
        let path = folder.file("in.bin")
        let content = Data((0..<100_003).map { UInt8(truncatingIfNeeded: $0 * 7) })
        try content.write(to: URL(fileURLWithPath: path))
        let sink = DataSink()
        let count = try readFile(at: path, into: sink, bufferSize: 4096)
        #expect(count == Int64(content.count))
        #expect(sink.data == content)
        #expect(!sink.isFinished)
        let error = #expect(throws: FileIOError.self) { try readFile(at: folder.file("missing"), into: DataSink()) }
        #expect(error?.isNotFound == true)
        #expect(error?.message.contains(folder.file("missing")) == true)
    }

    @Test func makePrivateDirectoryCreatesParentsWithMode0700AndKeepsExistingOnes() throws {
        let folder = try ScratchFolder("fileio")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
        let nested = folder.file("a/b/c")
        try makePrivateDirectory(nested)
        #expect(try permissions(of: folder.file("a")) == 0o700)
        #expect(try permissions(of: folder.file("a/b")) == 0o700)
        #expect(try permissions(of: nested) == 0o700)
        #expect(try permissions(of: folder.path) == 0o755)
        try makePrivateDirectory(nested)
        try Data().write(to: URL(fileURLWithPath: folder.file("plain")))
        let error = #expect(throws: FileIOError.self) { try makePrivateDirectory(folder.file("plain")) }
        #expect(error?.code == ENOTDIR)
    }

    @Test func durableRenameReplacesTheDestination() throws {
        let folder = try ScratchFolder("fileio")
        let temporary = makeTemporaryPath(nextTo: folder.file("final.db"))
        #expect((temporary as NSString).lastPathComponent.hasPrefix(".final.db.tmp-"))
        #expect(parentDirectory(of: temporary) == folder.path)
        try Data("old".utf8).write(to: URL(fileURLWithPath: folder.file("final.db")))
        let sink = try FileSink(creating: temporary)
        try sink.write(Data("new".utf8))
        try sink.finish()
        try durableRename(from: temporary, to: folder.file("final.db"))
        #expect(try folder.names() == ["final.db"])
        #expect(try String(contentsOfFile: folder.file("final.db"), encoding: .utf8) == "new")
        #expect(throws: FileIOError.self) { try durableRename(from: temporary, to: folder.file("other")) }
        try fsyncDirectory(folder.path)
    }
}
