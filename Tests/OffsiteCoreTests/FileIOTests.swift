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

    @Test func anAtomicFileReplacesTheDestinationWhole() throws {
        let folder = try ScratchFolder("fileio")
        try Data("old".utf8).write(to: URL(fileURLWithPath: folder.file("final.db")))
        let file = try AtomicFile(beside: folder.file("final.db"))
        #expect((file.temporaryPath as NSString).lastPathComponent.hasPrefix(".final.db.tmp-"))
        #expect(parentDirectory(of: file.temporaryPath) == folder.path)
        try file.write(Data("new".utf8))
        #expect(try String(contentsOfFile: folder.file("final.db"), encoding: .utf8) == "old", "nothing changes before commit")
        try file.commit(as: folder.file("final.db"))
        #expect(try folder.names() == ["final.db"])
        #expect(try String(contentsOfFile: folder.file("final.db"), encoding: .utf8) == "new")
        #expect(throws: FileIOError.self) { try file.commit(as: folder.file("other")) }
    }

    @Test func anAtomicFileThatMayNotReplaceLeavesAnExistingFileAlone() throws {
        let folder = try ScratchFolder("fileio")
        try Data("theirs".utf8).write(to: URL(fileURLWithPath: folder.file("taken.db")))
        let file = try AtomicFile(temporaryPath: folder.file(".taken.db.restore-1.tmp"), syncsOnFinish: false)
        try file.write(Data("ours".utf8))
        try file.finish()
        let sync = JoinableThread(name: "test-sync") { try file.sync() }
        try sync.join().get()
        let error = #expect(throws: FileIOError.self) { try file.commit(as: folder.file("taken.db"), replacing: false) }
        #expect(error?.code == EEXIST)
        #expect(try String(contentsOfFile: folder.file("taken.db"), encoding: .utf8) == "theirs")
        try file.commit(as: folder.file("free.db"), replacing: false)
        #expect(try folder.names() == ["free.db", "taken.db"], "the temporary name is gone")
        #expect(try String(contentsOfFile: folder.file("free.db"), encoding: .utf8) == "ours")
    }

    @Test func aDiscardedOrUnnamedAtomicFileLeavesNothing() throws {
        let folder = try ScratchFolder("fileio")
        let discarded = try AtomicFile(beside: folder.file("x.db"))
        try discarded.write(Data("partial".utf8))
        discarded.discard()
        #expect(try folder.names().isEmpty)
        #expect(throws: FileIOError.self) { try discarded.write(Data("more".utf8)) }

        let spool = try AtomicFile(unnamedIn: folder.path)
        try spool.write(Data("spooled".utf8))
        try spool.finish()
        #expect(try folder.names().isEmpty, "an unnamed temporary never shows in its folder")
        #expect(try String(contentsOfFile: spool.temporaryPath, encoding: .utf8) == "spooled", "it is read back by its path")
        #expect(spool.byteCount == 7)
        spool.discard()
    }
}
