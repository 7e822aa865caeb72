import Foundation
import Testing
@testable import OffsiteCore

/// Writes `data` to `sink` in pieces whose sizes cycle through `pattern` (shared by the codec tests).
func write(_ data: Data, to sink: any ByteSink, splitting pattern: [Int] = [1, 7, 4093, 65_539, 3, 300_001]) throws {
    var offset = 0
    var index = 0
    while offset < data.count {
        let size = min(pattern[index % pattern.count], data.count - offset)
        try sink.write(data.subdata(in: offset..<offset + size))
        offset += size
        index += 1
    }
}

private func compress(_ data: Data, level: Int = 6) throws -> Data {
    let sink = DataSink()
    let compressor = try GzipCompressor(level: level, next: sink)
    try write(data, to: compressor)
    try compressor.finish()
    #expect(sink.isFinished)
    return sink.data
}

private func decompress(_ data: Data, splitting pattern: [Int] = [1, 7, 4093, 65_539, 3, 300_001]) throws -> Data {
    let sink = DataSink()
    let decompressor = try GzipDecompressor(next: sink)
    try write(data, to: decompressor, splitting: pattern)
    try decompressor.finish()
    #expect(sink.isFinished)
    return sink.data
}

/// A sink that remembers the largest single write, to show the output is buffered in fixed chunks.
private final class LargestWriteSink: ByteSink {
    var largestWrite = 0
    var total = 0
    var isFinished = false
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        largestWrite = max(largestWrite, bytes.count)
        total += bytes.count
    }
    func finish() throws { isFinished = true }
}

@Suite struct GzipTests {
    @Test(arguments: [0, 1, 65_535, 65_536, 65_537, 3 * 1024 * 1024 + 17])
    func roundTrips(size: Int) throws {
        let input = mixedTestData(count: size)
        let compressed = try compress(input)
        #expect(compressed.prefix(2) == Data([0x1f, 0x8b]))
        #expect(try decompress(compressed) == input)
        #expect(try decompress(compressed, splitting: [compressed.count]) == input)
    }

    @Test func realGunzipReadsOurOutput() throws {
        let folder = try ScratchFolder("gzip")
        let input = mixedTestData(count: 2 * 1024 * 1024 + 5)
        try compress(input, level: 9).write(to: URL(fileURLWithPath: folder.file("ours.gz")))
        let status = try runTool(["gzip", "-dc", folder.file("ours.gz")], output: folder.file("plain"))
        #expect(status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.file("plain"))) == input)
    }

    @Test func weReadRealGzipOutput() throws {
        let folder = try ScratchFolder("gzip")
        let input = mixedTestData(count: 2 * 1024 * 1024 + 11, seed: 7)
        try input.write(to: URL(fileURLWithPath: folder.file("plain")))
        #expect(try runTool(["gzip", "-c", folder.file("plain")], output: folder.file("theirs.gz")) == 0)
        let compressed = try Data(contentsOf: URL(fileURLWithPath: folder.file("theirs.gz")))
        #expect(try decompress(compressed) == input)
    }

    @Test func concatenatedMembersDecompressToTheConcatenation() throws {
        let folder = try ScratchFolder("gzip")
        let first = mixedTestData(count: 300_000, seed: 1)
        let second = mixedTestData(count: 70_001, seed: 2)
        try first.write(to: URL(fileURLWithPath: folder.file("b")))
        #expect(try runTool(["gzip", "-c", folder.file("b")], output: folder.file("b.gz")) == 0)
        let ours = try compress(second)
        let theirs = try Data(contentsOf: URL(fileURLWithPath: folder.file("b.gz")))
        let joined = ours + theirs + ours
        // Split so that member boundaries fall inside writes and between single-byte writes.
        #expect(try decompress(joined) == second + first + second)
        #expect(try decompress(joined, splitting: [ours.count - 1, 1, 1, 5000]) == second + first + second)
        #expect(try decompress(try compress(Data()) + ours) == second)
        // And the real gunzip agrees on our concatenation.
        try joined.write(to: URL(fileURLWithPath: folder.file("joined.gz")))
        #expect(try runTool(["gzip", "-dc", folder.file("joined.gz")], output: folder.file("joined")) == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.file("joined"))) == second + first + second)
    }

    @Test func truncatedStreamFailsAndDoesNotFinishTheNextSink() throws {
        let compressed = try compress(mixedTestData(count: 200_000))
        for cut in [1, 2, 10, compressed.count / 2, compressed.count - 4, compressed.count - 1] {
            let sink = DataSink()
            let decompressor = try GzipDecompressor(next: sink)
            try decompressor.write(compressed.prefix(cut))
            let error = #expect(throws: GzipError.self) { try decompressor.finish() }
            #expect(error == .truncatedStream)
            #expect(!sink.isFinished)
        }
        let sink = DataSink()
        let empty = try GzipDecompressor(next: sink)
        #expect(throws: GzipError.truncatedStream) { try empty.finish() }
        #expect(!sink.isFinished)
    }

    @Test func corruptByteFailsWithZlibsMessage() throws {
        let input = mixedTestData(count: 200_000)
        let compressed = try compress(input)
        for position in [compressed.count / 3, compressed.count - 6] {
            var damaged = compressed
            damaged[position] ^= 0x55
            let sink = DataSink()
            let decompressor = try GzipDecompressor(next: sink)
            let error = #expect(throws: GzipError.self) {
                try decompressor.write(damaged)
                try decompressor.finish()
            }
            guard case let .corruptData(detail)? = error else {
                Issue.record("expected corruptData, got \(String(describing: error))")
                continue
            }
            #expect(!detail.isEmpty)
            #expect(!sink.isFinished)
            #expect(throws: GzipError.streamEnded) { try decompressor.finish() }
            #expect(!sink.isFinished)
        }
    }

    @Test func notGzipAtAllIsCorrupt() throws {
        let sink = DataSink()
        let decompressor = try GzipDecompressor(next: sink)
        let error = #expect(throws: GzipError.self) { try decompressor.write(Data("SQLite format 3\0".utf8)) }
        guard case .corruptData? = error else {
            Issue.record("expected corruptData, got \(String(describing: error))")
            return
        }
        #expect(!sink.isFinished)
    }

    @Test func trailingGarbageAfterAMemberFails() throws {
        let compressed = try compress(mixedTestData(count: 10_000))
        for garbage in [Data("hello".utf8), Data([0, 0, 0, 0]), Data([0x1f, 0x00])] {
            let sink = DataSink()
            let decompressor = try GzipDecompressor(next: sink)
            let error = #expect(throws: GzipError.self) {
                try write(compressed + garbage, to: decompressor, splitting: [compressed.count, 1])
                try decompressor.finish()
            }
            #expect(error == .trailingGarbage)
            #expect(!sink.isFinished)
        }
        // A lone first magic byte after a member is an unfinished member, not a complete stream.
        let sink = DataSink()
        let decompressor = try GzipDecompressor(next: sink)
        try decompressor.write(compressed + Data([0x1f]))
        #expect(throws: GzipError.truncatedStream) { try decompressor.finish() }
        #expect(!sink.isFinished)
    }

    @Test func levelIsValidatedAndChangesTheOutput() throws {
        for level in [-1, 10, 99] {
            #expect(throws: GzipError.invalidLevel(level)) { try GzipCompressor(level: level, next: DataSink()) }
        }
        let input = mixedTestData(count: 1_000_000, seed: 3)
        let fastest = try compress(input, level: 1)
        let smallest = try compress(input, level: 9)
        let stored = try compress(input, level: 0)
        #expect(smallest.count < fastest.count)
        #expect(stored.count > input.count)
        for compressed in [fastest, smallest, stored] {
            #expect(try decompress(compressed) == input)
        }
    }

    @Test func outputIsHandedOnInFixedSizeChunks() throws {
        // 16 MiB of zeros compresses to ~16 KiB; decompressing must not produce one huge write.
        let zeros = Data(count: 16 * 1024 * 1024)
        let compressedSink = LargestWriteSink()
        let compressor = try GzipCompressor(next: compressedSink)
        try compressor.write(zeros)
        try compressor.finish()
        #expect(compressedSink.largestWrite <= GzipCompressor.outputBufferSize)

        let sink = LargestWriteSink()
        let decompressor = try GzipDecompressor(next: sink)
        try decompressor.write(try compress(zeros))
        try decompressor.finish()
        #expect(sink.total == zeros.count)
        #expect(sink.largestWrite <= GzipDecompressor.outputBufferSize)
        #expect(sink.isFinished)
    }

    @Test func writingAfterFinishFails() throws {
        let compressor = try GzipCompressor(next: DataSink())
        try compressor.finish()
        #expect(throws: GzipError.streamEnded) { try compressor.write([1]) }
        #expect(throws: GzipError.streamEnded) { try compressor.finish() }
    }
}
