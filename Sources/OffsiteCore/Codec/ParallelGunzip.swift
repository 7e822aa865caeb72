import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Decompresses gzip data on every core when it is made of `ParallelGzipCompressor`'s members,
/// and exactly like `GzipDecompressor` otherwise.
///
/// Deflate data cannot be split without decoding it, but the members a backup is made of can be
/// found: every member but the last holds `memberSize` bytes, so it ends with that size in its
/// trailer (ISIZE, little-endian), and the next member starts with the gzip magic number and the
/// deflate method byte. Each place where those seven bytes occur is a candidate cut. The stream is
/// cut there into segments, and each segment is inflated on a worker into its own buffer.
///
/// A candidate can be wrong (the bytes may occur inside compressed data), so a segment counts only
/// when it inflates as whole members that end exactly where it ends, each checked by zlib against
/// its CRC-32 and length. The first segment starts where the stream does; a segment that counts
/// ends where a member ends, so the next one starts where a member starts, and so on: every
/// segment that counts was decoded from a true member start. At the first segment that does not
/// count, or one that grows past `maximumSegment` without a candidate (a single-member file from
/// another tool), the rest of the stream, from that segment's start, goes through one sequential
/// `GzipDecompressor`, which decodes it or reports exactly what is wrong with it.
///
/// Memory is bounded: at most two segments per worker exist, each with an input buffer of
/// `maximumSegment` bytes and an output buffer of `maximumOutput` (only the part used is touched).
/// The segments go through a `WorkerPool` and come back in stream order. `next` is only called on
/// the thread that calls `write` and `finish`, in stream order.
public final class ParallelGzipDecompressor: ByteSink {
    /// The most compressed bytes a segment takes before the rest is decoded sequentially.
    public static let maximumSegment = 4 << 20
    /// The most bytes a segment may inflate to before it is decoded sequentially instead.
    public static let maximumOutput = 4 << 20

    /// The number of worker threads.
    public let workerCount: Int
    /// Segments inflated on the workers and written; for tests and figures.
    public private(set) var parallelSegments = 0
    /// Whether the stream (from some point on) went through the sequential decoder.
    public var isSequential: Bool { sequential != nil }
    /// The checksum of the bytes written to `next` so far, from the CRC-32 of every member (which
    /// zlib has checked against its trailer), combined; after `finish`, that of the whole output.
    public var plaintextChecksum: PlaintextChecksum {
        guard let sequential else { return parallelChecksum }
        var whole = parallelChecksum
        whole.append(crc: sequential.plaintextChecksum.crc, length: sequential.plaintextChecksum.length)
        return whole
    }
    /// The checksum of the segments inflated on the workers and written.
    private var parallelChecksum = PlaintextChecksum()

    private let next: any ByteSink
    private let marker: [UInt8]
    /// Inflates segments on the workers; they come back in stream order.
    private let pool: WorkerPool<InflateSegment, Void>
    private let maximumSegments: Int
    private var spare: [InflateSegment] = []
    private var allocated = 0
    /// The segment being filled, and where the search for the next marker resumes in it.
    private var current: InflateSegment?
    private var searchFrom = 0
    /// Once set, everything goes here.
    private var sequential: GzipDecompressor?
    private var hasEnded = false

    /// Creates a decompressor writing to `next`; members of `memberSize` bytes (the compressor's
    /// block size) are what it looks for, on `workerCount` threads (default: one per core).
    public init(memberSize: Int = ParallelGzipCompressor.defaultBlockSize,
                workerCount: Int = ProcessInfo.processInfo.activeProcessorCount, next: any ByteSink) throws {
        self.next = next
        self.workerCount = max(workerCount, 1)
        maximumSegments = 2 * self.workerCount
        let size = UInt32(truncatingIfNeeded: memberSize)
        marker = [UInt8(size & 0xff), UInt8((size >> 8) & 0xff), UInt8((size >> 16) & 0xff), UInt8(size >> 24),
                  0x1f, 0x8b, 0x08]
        var workers: [(InflateSegment) throws -> Void] = []
        for _ in 0..<self.workerCount {
            let stream = try ZStream(direction: .inflate)
            workers.append { segment in segment.inflate(with: stream) }
        }
        pool = WorkerPool(name: "offsite-gunzip", workers: workers)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !hasEnded else { throw GzipError.streamEnded }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        try ending {
            var offset = 0
            while offset < bytes.count {
                let piece = UnsafeRawBufferPointer(start: base + offset, count: bytes.count - offset)
                if let sequential { return try sequential.write(piece) }
                offset += try take(piece)
            }
        }
    }

    public func finish() throws {
        guard !hasEnded else { throw GzipError.streamEnded }
        try ending {
            if sequential == nil, let segment = current, segment.inputCount > 0 {
                current = nil
                try submit(segment)
            }
            while sequential == nil, try writeOldest(waiting: true) {}
            if sequential == nil && parallelSegments == 0 {
                // Nothing came at all: let the sequential decoder say what is wrong.
                sequential = try GzipDecompressor(next: next)
            }
            hasEnded = true
            pool.stop()
            if let sequential { try sequential.finish() } else { try next.finish() }
        }
    }

    /// Moves the start of `piece` into the current segment, up to the first cut in it (the cut
    /// segment goes to the workers) or until the segment is full; returns how many bytes it took.
    private func take(_ piece: UnsafeRawBufferPointer) throws -> Int {
        let segment = try currentSegment()
        if sequential != nil { return 0 }
        let held = segment.inputCount
        let limit = min(Self.maximumSegment - held, piece.count)
        // A member takes at least 18 bytes, so no true cut lies closer than that to the start.
        guard let position = findMarker(in: segment, piece: piece, limit: limit, from: max(searchFrom, 14)) else {
            (segment.input + held).copyMemory(from: piece.baseAddress!, byteCount: limit)
            segment.inputCount += limit
            searchFrom = max(segment.inputCount - (marker.count - 1), 0)
            if segment.inputCount == Self.maximumSegment {
                // No member boundary in sight: decode the rest in order.
                try switchToSequential()
            }
            return limit
        }
        let cut = position + 4
        var carried: [UInt8] = []
        if cut <= held {
            // The marker began in bytes held already: the few after the cut open the next segment.
            carried = Array(UnsafeRawBufferPointer(start: segment.input + cut, count: held - cut))
        } else {
            (segment.input + held).copyMemory(from: piece.baseAddress!, byteCount: cut - held)
        }
        segment.inputCount = cut
        current = nil
        try submit(segment)
        if !carried.isEmpty {
            let following = try currentSegment()
            try carried.withUnsafeBytes { bytes in
                if let sequential { return try sequential.write(bytes) }
                following.input.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                following.inputCount = bytes.count
            }
        }
        return max(cut - held, 0)
    }

    /// Where the first marker at or after `from` starts in the segment's bytes followed by the
    /// first `limit` bytes of `piece`, or nil.
    private func findMarker(in segment: InflateSegment, piece: UnsafeRawBufferPointer, limit: Int, from: Int) -> Int? {
        let held = segment.inputCount
        var start = from
        if start < held {
            // Markers that begin in the held bytes and may run into the piece: search a small
            // stitched copy (the search position trails the held end by less than a marker).
            var window = Array(UnsafeRawBufferPointer(start: segment.input + start, count: held - start))
            window += UnsafeRawBufferPointer(start: piece.baseAddress!, count: min(marker.count - 1, limit))
            if let index = window.withUnsafeBytes({ Self.search(marker, in: $0) }) { return start + index }
            start = held
        }
        let pieceFrom = start - held
        guard limit - pieceFrom >= marker.count else { return nil }
        if let index = Self.search(marker, in: UnsafeRawBufferPointer(start: piece.baseAddress! + pieceFrom,
                                                                       count: limit - pieceFrom)) {
            return held + pieceFrom + index
        }
        return nil
    }

    /// The first index of `needle` in `haystack`, or nil. `memchr` finds the candidates: the
    /// magic number's first byte (five bytes in) is rare in compressed data.
    private static func search(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer) -> Int? {
        let lead = 4
        guard haystack.count >= needle.count, let base = haystack.baseAddress else { return nil }
        var position = lead
        let last = haystack.count - (needle.count - lead)
        while position <= last {
            guard let hit = memchr(base + position, Int32(needle[lead]), last - position + 1) else { return nil }
            let at = base.distance(to: UnsafeRawPointer(hit))
            let start = at - lead
            var matches = true
            for index in 0..<needle.count where base.load(fromByteOffset: start + index, as: UInt8.self) != needle[index] {
                matches = false
                break
            }
            if matches { return start }
            position = at + 1
        }
        return nil
    }

    /// The first index of `needle` in `haystack`, or nil.
    private static func search(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for index in 0...(haystack.count - needle.count) where haystack[index..<index + needle.count].elementsEqual(needle) {
            return index
        }
        return nil
    }

    /// The segment being filled: a spare, a new one, or the oldest in flight once it is written.
    /// Switches to sequential decoding when that oldest one did not inflate cleanly.
    private func currentSegment() throws -> InflateSegment {
        if let current { return current }
        let segment: InflateSegment
        if let reused = spare.popLast() {
            segment = reused
        } else if allocated < maximumSegments {
            segment = InflateSegment()
            allocated += 1
        } else {
            try writeOldest(waiting: true)
            segment = spare.popLast()!
        }
        segment.inputCount = 0
        searchFrom = 0
        if sequential == nil { current = segment } else { spare.append(segment) }
        return segment
    }

    /// Queues `segment` for a worker, then writes whatever is ready, in order.
    private func submit(_ segment: InflateSegment) throws {
        pool.submit(segment)
        while sequential == nil, try writeOldest(waiting: false) {}
    }

    /// Writes the oldest segment's output when it is inflated (waiting for it when `waiting`);
    /// false when none was in flight or ready. A segment that did not inflate cleanly sends it
    /// and all after it to the sequential decoder.
    @discardableResult
    private func writeOldest(waiting: Bool) throws -> Bool {
        guard let (oldest, _) = pool.takeOldest(waiting: waiting) else { return false }
        guard let produced = oldest.outputCount else {
            try switchToSequential(from: oldest)
            return true
        }
        parallelSegments += 1
        parallelChecksum.append(crc: oldest.checksum.crc, length: oldest.checksum.length)
        try next.write(UnsafeRawBufferPointer(start: oldest.output, count: produced))
        spare.append(oldest)
        return true
    }

    /// From `first` (the oldest segment not written), or else the oldest in flight or the current
    /// one, on, decodes everything in order.
    private func switchToSequential(from first: InflateSegment? = nil) throws {
        // No worker may still read a segment's input once it is handed on.
        let inFlight = pool.stop()
        let decoder = try GzipDecompressor(next: next, afterMembers: parallelSegments)
        sequential = decoder
        for segment in (first.map { [$0] } ?? []) + inFlight + (current.map { [$0] } ?? []) {
            try decoder.write(UnsafeRawBufferPointer(start: segment.input, count: segment.inputCount))
            spare.append(segment)
        }
        current = nil
    }

    /// Runs `body`; if it throws, the stream has ended and the workers stop.
    private func ending(_ body: () throws -> Void) throws {
        do { try body() } catch {
            hasEnded = true
            pool.stop()
            throw error
        }
    }
}

/// A stretch of compressed input and what it inflated to. Owned by the decompressor while it is
/// filled or written out, by one worker while the pool has it; the pool hands it over under its
/// lock, hence `@unchecked Sendable`.
private final class InflateSegment: @unchecked Sendable {
    let input: UnsafeMutableRawPointer
    let output: UnsafeMutableRawPointer
    var inputCount = 0
    /// The bytes the input inflated to, when it inflated as whole members ending exactly at its end.
    var outputCount: Int?
    /// The checksum of the output, from its members' CRC-32s.
    var checksum = PlaintextChecksum()

    init() {
        input = .allocate(byteCount: ParallelGzipDecompressor.maximumSegment, alignment: 16)
        output = .allocate(byteCount: ParallelGzipDecompressor.maximumOutput, alignment: 16)
    }

    deinit {
        input.deallocate()
        output.deallocate()
    }

    /// Inflates the input into the output (on a worker); sets `outputCount` and `checksum` when it
    /// was whole.
    func inflate(with stream: ZStream) {
        let inflated = stream.inflateWholeMembers(
            from: UnsafeRawBufferPointer(start: input, count: inputCount),
            into: UnsafeMutableRawBufferPointer(start: output, count: ParallelGzipDecompressor.maximumOutput))
        outputCount = inflated?.count
        checksum = inflated?.checksum ?? PlaintextChecksum()
    }
}
