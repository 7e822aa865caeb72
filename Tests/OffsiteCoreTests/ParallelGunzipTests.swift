import Foundation
import Testing
@testable import OffsiteCore

/// Text-like bytes that compress about as well as a database does, different for every seed.
private func sampleText(count: Int, seed: UInt64) -> Data {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var bytes = [UInt8]()
    bytes.reserveCapacity(count + 64)
    let words = ["lead", "client", "comment", "status", "open", "closed", "Berlin", "invoice", "call", "42", "\n"]
    while bytes.count < count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        bytes += Array(words[Int(state % UInt64(words.count))].utf8)
        bytes += Array(String(state % 1000).utf8)
        bytes.append(0x20)
    }
    return Data(bytes.prefix(count))
}

/// Bytes that do not compress at all.
private func randomBytes(count: Int, seed: UInt64) -> Data {
    var generator = SeededGenerator(seed: seed)
    return Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
}

private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

@Suite struct ParallelGunzipTests {
    static let memberSize = 64 * 1024

    private func compressInMembers(_ data: Data, level: Int = 6) throws -> Data {
        let sink = DataSink()
        let compressor = try ParallelGzipCompressor(level: level, blockSize: Self.memberSize, workerCount: 2, next: sink)
        try compressor.write(data)
        try compressor.finish()
        return sink.data
    }

    private func compressWhole(_ data: Data, level: Int = 6) throws -> Data {
        let sink = DataSink()
        let compressor = try GzipCompressor(level: level, next: sink)
        try compressor.write(data)
        try compressor.finish()
        return sink.data
    }

    /// Decodes `gzip` written in `pattern`-sized pieces; returns the output and the decoder.
    private func decode(_ gzip: Data, pattern: [Int] = [100_000], workers: Int = 3) throws
        -> (data: Data, decoder: ParallelGzipDecompressor, finished: Bool) {
        let sink = DataSink()
        let decoder = try ParallelGzipDecompressor(memberSize: Self.memberSize, workerCount: workers, next: sink)
        try write(gzip, to: decoder, splitting: pattern)
        try decoder.finish()
        return (sink.data, decoder, sink.isFinished)
    }

    @Test(arguments: [[1_000_000], [1, 7, 13, 5_000], [65_557], [3_000_000]])
    func membersAreInflatedOnTheWorkers(pattern: [Int]) throws {
        let original = sampleText(count: 1_500_000, seed: 7)
        let gzip = try compressInMembers(original)
        let result = try decode(gzip, pattern: pattern)
        #expect(result.data == original)
        #expect(result.finished)
        #expect(!result.decoder.isSequential)
        // 23 members of 64 KiB: every cut was found, so each went to a worker on its own.
        #expect(result.decoder.parallelSegments == (original.count + Self.memberSize - 1) / Self.memberSize)
    }

    @Test func exactMultipleOfTheMemberSizeAndTinyInputs() throws {
        for count in [0, 1, Self.memberSize - 1, Self.memberSize, 3 * Self.memberSize, 3 * Self.memberSize + 1] {
            let original = sampleText(count: count, seed: UInt64(count) + 1)
            let result = try decode(try compressInMembers(original), pattern: [4_096])
            #expect(result.data == original, "count \(count)")
            #expect(!result.decoder.isSequential, "count \(count)")
        }
    }

    @Test func aSingleSmallMemberFromAnotherToolIsOneSegment() throws {
        let original = sampleText(count: 300_000, seed: 3)
        let result = try decode(try compressWhole(original))
        #expect(result.data == original)
        #expect(!result.decoder.isSequential)
        #expect(result.decoder.parallelSegments == 1)
    }

    @Test func aMemberLargerThanASegmentIsDecodedInOrder() throws {
        let original = randomBytes(count: ParallelGzipDecompressor.maximumSegment + 500_000, seed: 11)
        let result = try decode(try compressWhole(original, level: 1), pattern: [1 << 20])
        #expect(result.data == original)
        #expect(result.decoder.isSequential)
        #expect(result.finished)
    }

    @Test func concatenatedFilesFromAnotherToolDecodeWhole() throws {
        let first = sampleText(count: 200_000, seed: 5)
        let second = sampleText(count: 90_000, seed: 6)
        let gzip = try compressWhole(first) + compressWhole(second)
        let result = try decode(gzip, pattern: [8_192])
        #expect(result.data == first + second)
    }

    /// Stored (level 0) members carry the input as it is, so an input full of the marker puts
    /// false cuts inside members: those segments fail and the rest is decoded in order.
    @Test func falseCutsInsideMembersFallBackToOrderedDecoding() throws {
        let marker: [UInt8] = [0x00, 0x00, 0x01, 0x00, 0x1f, 0x8b, 0x08]
        var original = sampleText(count: 400_000, seed: 9)
        for _ in 0..<20_000 { original.append(contentsOf: marker) }
        original += sampleText(count: 300_000, seed: 10)
        for level in [0, 6] {
            let result = try decode(try compressInMembers(original, level: level), pattern: [50_000])
            #expect(result.data == original, "level \(level)")
            #expect(result.finished)
            if level == 0 {
                #expect(result.decoder.isSequential)
                // The members before the first false cut were still inflated on the workers.
                #expect(result.decoder.parallelSegments >= 6)
            }
        }
    }

    /// The checksum of what was inflated equals that of the original, whichever way it was decoded:
    /// all on the workers, all in order, or workers first and then in order.
    @Test func theChecksumOfTheOutputComesFromTheMembers() throws {
        let marker: [UInt8] = [0x00, 0x00, 0x01, 0x00, 0x1f, 0x8b, 0x08]
        var falseCuts = sampleText(count: 400_000, seed: 9)
        for _ in 0..<5_000 { falseCuts.append(contentsOf: marker) }
        let large = randomBytes(count: ParallelGzipDecompressor.maximumSegment + 100_000, seed: 13)
        let cases: [(Data, Data, Bool?)] = [
            (sampleText(count: 1_500_000, seed: 7), try compressInMembers(sampleText(count: 1_500_000, seed: 7)), false),
            (large, try compressWhole(large, level: 1), true),
            (falseCuts, try compressInMembers(falseCuts, level: 0), true),
            (sampleText(count: 9, seed: 1) + sampleText(count: 70_000, seed: 2),
             try compressWhole(sampleText(count: 9, seed: 1)) + compressWhole(sampleText(count: 70_000, seed: 2)), nil),
        ]
        for (index, (original, gzip, sequential)) in cases.enumerated() {
            let result = try decode(gzip, pattern: [77_777])
            #expect(result.data == original, "case \(index)")
            if let sequential { #expect(result.decoder.isSequential == sequential, "case \(index)") }
            let expected = original.withUnsafeBytes { PlaintextChecksum(of: $0) }
            #expect(result.decoder.plaintextChecksum == expected, "case \(index)")
            // The sequential decoder on its own says the same.
            let sink = DataSink()
            let plain = try GzipDecompressor(next: sink)
            try plain.write(gzip)
            try plain.finish()
            #expect(plain.plaintextChecksum == expected, "case \(index)")
        }
    }

    @Test func aDamagedMemberIsReportedAsCorrupt() throws {
        let original = sampleText(count: 1_000_000, seed: 12)
        var gzip = [UInt8](try compressInMembers(original))
        let middle = gzip.count / 2
        for index in middle..<middle + 64 { gzip[index] ^= 0x5a }
        let sink = DataSink()
        let decoder = try ParallelGzipDecompressor(memberSize: Self.memberSize, workerCount: 2, next: sink)
        #expect(throws: GzipError.self) {
            try write(Data(gzip), to: decoder, splitting: [30_000])
            try decoder.finish()
        }
        #expect(!sink.isFinished)
        #expect(sink.data.count < original.count)
        #expect(sink.data == original.prefix(sink.data.count))
    }

    @Test func truncatedAndTrailingBytesAreReportedLikeTheSequentialDecoder() throws {
        let original = sampleText(count: 700_000, seed: 13)
        let gzip = try compressInMembers(original)
        let cases: [(Data, GzipError)] = [
            (gzip.prefix(gzip.count - 5), .truncatedStream),
            (gzip + Data("not gzip".utf8), .trailingGarbage),
            (Data(), .truncatedStream),
        ]
        for (input, expected) in cases {
            let sink = DataSink()
            let decoder = try ParallelGzipDecompressor(memberSize: Self.memberSize, workerCount: 2, next: sink)
            #expect(throws: expected) {
                try write(input, to: decoder, splitting: [40_000])
                try decoder.finish()
            }
            #expect(!sink.isFinished)
        }
    }

    @Test func gunzipOfTheDefaultMemberSizeUsesTheWorkers() throws {
        let original = sampleText(count: 5 << 20, seed: 14)
        let sink = DataSink()
        let compressor = try ParallelGzipCompressor(level: 6, workerCount: 2, next: sink)
        try compressor.write(original)
        try compressor.finish()
        let output = DataSink()
        let decoder = try ParallelGzipDecompressor(next: output)
        try write(sink.data, to: decoder, splitting: [2 << 20])
        try decoder.finish()
        #expect(output.data == original)
        #expect(decoder.parallelSegments == 5)
        #expect(!decoder.isSequential)
    }
}
