import Foundation
import Testing
@testable import OffsiteCore

/// Counts how many gzip members a stream holds by decoding it member by member.
private func memberCount(_ gzip: Data) throws -> Int {
    final class Counter: ByteSink {
        func write(_ bytes: UnsafeRawBufferPointer) throws {}
        func finish() throws {}
    }
    var count = 0
    // Each member starts with the magic 1f 8b 08; count the starts the decoder accepts by
    // decoding prefixes ending just before each candidate.
    let bytes = [UInt8](gzip)
    var starts: [Int] = []
    for index in 0..<max(bytes.count - 2, 0) where bytes[index] == 0x1f && bytes[index + 1] == 0x8b && bytes[index + 2] == 8 {
        starts.append(index)
    }
    for start in starts where start > 0 {
        let decoder = try GzipDecompressor(next: Counter())
        if (try? decoder.write(Data(bytes[0..<start]))) != nil, (try? decoder.finish()) != nil { count += 1 }
    }
    return count + 1
}

@Suite struct ParallelGzipTests {
    static let blockSize = 64 * 1024

    private func compress(_ data: Data, level: Int = 6, workers: Int = 3, pattern: [Int] = [100_000]) throws -> Data {
        let sink = DataSink()
        let compressor = try ParallelGzipCompressor(level: level, blockSize: Self.blockSize, workerCount: workers, next: sink)
        try write(data, to: compressor, splitting: pattern)
        try compressor.finish()
        #expect(sink.isFinished)
        return sink.data
    }

    private func gunzip(_ gzip: Data, in folder: ScratchFolder) throws -> Data {
        let input = folder.file("in-\(UUID().uuidString).gz")
        let output = folder.file("out-\(UUID().uuidString)")
        try gzip.write(to: URL(fileURLWithPath: input))
        #expect(try runTool(["gunzip", "-c", input], output: output) == 0)
        return try Data(contentsOf: URL(fileURLWithPath: output))
    }

    private func decompress(_ gzip: Data) throws -> Data {
        let sink = DataSink()
        let decoder = try GzipDecompressor(next: sink)
        try write(gzip, to: decoder, splitting: [4096, 1, 77_777])
        try decoder.finish()
        return sink.data
    }

    @Test(arguments: [0, 1, blockSize - 1, blockSize, blockSize + 1, 5 * blockSize + 12_345])
    func roundTripsThroughGunzipAndOurDecoder(size: Int) throws {
        let folder = try ScratchFolder("pgzip")
        let data = mixedTestData(count: size)
        let gzip = try compress(data)
        #expect(try gunzip(gzip, in: folder) == data)
        #expect(try decompress(gzip) == data)
    }

    @Test func oddWriteSizesAndEveryLevelGiveTheSameBytes() throws {
        let data = mixedTestData(count: 3 * Self.blockSize + 999)
        for level in [0, 1, 6, 9] {
            let whole = try compress(data, level: level, workers: 2, pattern: [data.count])
            let odd = try compress(data, level: level, workers: 4, pattern: [1, 7, 4093, 65_539, 3, 131_101])
            #expect(whole == odd, "level \(level): the output depends only on the input, not the write sizes")
            #expect(try decompress(odd) == data)
        }
        #expect(throws: GzipError.invalidLevel(10)) { try ParallelGzipCompressor(level: 10, next: DataSink()) }
    }

    @Test(arguments: [
        (Int32(6), DeflateTuning(goodLength: 4, maximumLazy: 64, niceLength: 128, maximumChain: 64, blockInputLimit: 32 * 1024)),
        (Int32(-1), DeflateTuning(goodLength: 4, maximumLazy: 64, niceLength: 128, maximumChain: 64, blockInputLimit: 32 * 1024)),
        (Int32(0), nil), (Int32(1), nil), (Int32(5), nil), (Int32(7), nil), (Int32(9), nil),
    ] as [(Int32, DeflateTuning?)])
    func onlyTheDefaultLevelIsTuned(level: Int32, expected: DeflateTuning?) {
        // -1 is zlib's Z_DEFAULT_COMPRESSION, which means level 6.
        #expect(DeflateTuning.forLevel(level) == expected)
    }

    /// Level 6 ends a deflate block after every 32 KiB of input (so blocks follow the statistics of
    /// a few database pages each); zlib's own levels put far more of this input in one block.
    @Test func level6EndsADeflateBlockAfterEvery32KiBOfInput() throws {
        let data = mixedTestData(count: 1 << 20)
        for (level, limit) in [(6, 32 * 1024), (9, nil)] as [(Int, Int?)] {
            let sink = DataSink()
            let compressor = try ParallelGzipCompressor(level: level, blockSize: 1 << 20, workerCount: 1, next: sink)
            try write(data, to: compressor, splitting: [100_000])
            try compressor.finish()
            let counts = try deflateBlockInputCounts(ofMember: [UInt8](sink.data))
            #expect(counts.reduce(0, +) == data.count, "level \(level): the blocks hold the whole input")
            if let limit {
                #expect(counts.max()! <= limit, "level \(level): a block holds \(counts.max()!) bytes of input")
                #expect(counts.count >= data.count / limit)
            } else {
                #expect(counts.max()! > 32 * 1024, "level \(level): zlib's own blocks are longer on this input")
            }
            #expect(try decompress(sink.data) == data)
        }
    }

    /// The single-stream compressor ends its deflate blocks at the same places, whatever the write
    /// sizes: for one member's worth of input its bytes are the parallel compressor's.
    @Test func theSingleStreamCompressorEndsBlocksAlike() throws {
        let data = mixedTestData(count: 1 << 20)
        let parallel = DataSink()
        let compressor = try ParallelGzipCompressor(level: 6, blockSize: 1 << 20, workerCount: 1, next: parallel)
        try write(data, to: compressor, splitting: [data.count])
        try compressor.finish()
        for pattern in [[data.count], [1, 7, 4093, 65_539, 3, 32_768, 300_001]] {
            let single = DataSink()
            let gzip = try GzipCompressor(level: 6, next: single)
            try write(data, to: gzip, splitting: pattern)
            try gzip.finish()
            #expect(single.data == parallel.data, "writes of \(pattern)")
            #expect(try deflateBlockInputCounts(ofMember: [UInt8](single.data)).max()! <= 32 * 1024)
        }
    }

    @Test func writesOneMemberPerBlockInOrder() throws {
        let data = mixedTestData(count: 4 * Self.blockSize + 1)
        let gzip = try compress(data, workers: 4)
        #expect(try memberCount(gzip) == 5)
        #expect(gzip.count < data.count)
    }

    @Test func aWorkersFailureReachesTheWriter() throws {
        let sink = DataSink()
        let compressor = try ParallelGzipCompressor(level: 6, blockSize: 1024, workerCount: 2, failingBlock: 3, next: sink)
        let data = mixedTestData(count: 64 * 1024)
        #expect(throws: GzipError.self) {
            try write(data, to: compressor, splitting: [1000])
            try compressor.finish()
        }
        #expect(!sink.isFinished)
        #expect(sink.data.count < 4 * 1024, "nothing after the failed block is written")
        #expect(throws: GzipError.streamEnded) { try compressor.write(Data([1])) }
    }

    @Test func theNextSinksFailureEndsTheStream() throws {
        final class Failing: ByteSink {
            struct Broken: Error {}
            func write(_ bytes: UnsafeRawBufferPointer) throws { throw Broken() }
            func finish() throws {}
        }
        let compressor = try ParallelGzipCompressor(level: 1, blockSize: 1024, workerCount: 2, next: Failing())
        #expect(throws: Failing.Broken.self) {
            try write(mixedTestData(count: 100_000), to: compressor, splitting: [5000])
            try compressor.finish()
        }
        #expect(throws: GzipError.streamEnded) { try compressor.finish() }
    }

    @Test func keepsAtMostTwoBlocksPerWorkerInFlight() throws {
        final class Gate: ByteSink {
            var bytes = 0
            func write(_ bytes: UnsafeRawBufferPointer) throws { self.bytes += bytes.count }
            func finish() throws {}
        }
        // 100 blocks through 2 workers: never more than 4 blocks (input and output buffers) exist.
        let gate = Gate()
        let compressor = try ParallelGzipCompressor(level: 1, blockSize: 1024, workerCount: 2, next: gate)
        try write(mixedTestData(count: 100 * 1024), to: compressor, splitting: [10_000])
        try compressor.finish()
        #expect(compressor.allocatedBlockCount <= 4)
        #expect(gate.bytes > 0)
    }

    /// Compresses `data` with its first block handed over last, through `deferFirstBlock`.
    private func compressDeferringFirst(_ data: Data, level: Int = 6, holdLimit: Int, ready: @escaping () -> Bool,
                                        folder: ScratchFolder) throws -> (gzip: Data, held: Int, asked: Int) {
        final class Asked: @unchecked Sendable { var count = 0 }
        let asked = Asked()
        let sink = DataSink()
        let compressor = try ParallelGzipCompressor(level: level, blockSize: Self.blockSize, workerCount: 3, next: sink)
        let first = [UInt8](data.prefix(Self.blockSize))
        compressor.deferFirstBlock(spillFolder: folder.path, holdLimit: holdLimit, isReady: ready) {
            asked.count += 1
            return first
        }
        try write(Data(data.dropFirst(Self.blockSize)), to: compressor, splitting: [10_000, 65_537])
        try compressor.finish()
        #expect(sink.isFinished)
        return (sink.data, compressor.peakHeldBytes, asked.count)
    }

    @Test func aFirstBlockThatComesLastGivesTheSameBytes() throws {
        let folder = try ScratchFolder("pgzip-defer")
        let data = mixedTestData(count: 9 * Self.blockSize + 4321)
        let inOrder = try compress(data, workers: 3)
        // Never ready before the end: every later member waits in the spill file.
        let late = try compressDeferringFirst(data, holdLimit: 1 << 30, ready: { false }, folder: folder)
        #expect(late.gzip == inOrder, "deferring the first block changes no byte of the output")
        #expect(late.held > 0 && late.asked == 1)
        #expect(try gunzip(late.gzip, in: folder) == data)
        // A small limit makes the compressor fetch the first block early, and hold less.
        let early = try compressDeferringFirst(data, holdLimit: 2 * Self.blockSize / 10, ready: { false }, folder: folder)
        #expect(early.gzip == inOrder)
        #expect(early.held <= 2 * Self.blockSize / 10)
        // Ready at once: nothing is held at all.
        let ready = try compressDeferringFirst(data, holdLimit: 1 << 30, ready: { true }, folder: folder)
        #expect(ready.gzip == inOrder && ready.held == 0)
        // Nothing after the first block: the output is that one member.
        let single = try compressDeferringFirst(Data(data.prefix(Self.blockSize)), holdLimit: 1 << 30, ready: { false }, folder: folder)
        #expect(single.gzip == (try compress(Data(data.prefix(Self.blockSize)), workers: 1)))
        #expect(try memberCount(single.gzip) == 1)
        // The spill file has no name: nothing is left in the folder.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.contains("spill") } == [])
    }

    @Test func aFirstBlockOfTheWrongSizeIsAnError() throws {
        let folder = try ScratchFolder("pgzip-defer")
        let compressor = try ParallelGzipCompressor(level: 1, blockSize: Self.blockSize, workerCount: 2, next: DataSink())
        compressor.deferFirstBlock(spillFolder: folder.path, isReady: { true }) { [UInt8](repeating: 1, count: 10) }
        #expect(throws: GzipError.deferredBlockSize(expected: Self.blockSize, got: 10)) {
            try compressor.write(mixedTestData(count: 3 * Self.blockSize))
            try compressor.finish()
        }
    }
}

