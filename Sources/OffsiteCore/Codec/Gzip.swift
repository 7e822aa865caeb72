import CZlib
import Foundation

/// A gzip stream that could not be produced or read.
public enum GzipError: UserFacingError, Equatable {
    /// The compression level is outside 0…9.
    case invalidLevel(Int)
    /// The compressed data is damaged; zlib's own description.
    case corruptData(String)
    /// The stream ended in the middle of a gzip member (or held no member at all).
    case truncatedStream
    /// Bytes after the last complete member are not the start of another gzip member.
    case trailingGarbage
    /// `write` or `finish` was called after the stream had ended or failed.
    case streamEnded
    /// zlib failed in a way that does not depend on the data (out of memory, version mismatch).
    case zlibFailure(operation: String, code: Int32, detail: String)
    /// A deferred first block (`ParallelGzipCompressor.deferFirstBlock`) was not a whole block.
    case deferredBlockSize(expected: Int, got: Int)

    public var message: String {
        switch self {
        case let .invalidLevel(level):
            return "gzip compression level \(level) is out of range 0…9"
        case let .corruptData(detail):
            return "gzip data is corrupt: \(detail)"
        case .truncatedStream:
            return "gzip data is truncated: the stream ends inside a member"
        case .trailingGarbage:
            return "gzip data is followed by bytes that are not a gzip member"
        case .streamEnded:
            return "gzip stream used after it ended"
        case let .zlibFailure(operation, code, detail):
            return "zlib \(operation) failed (\(code)): \(detail)"
        case let .deferredBlockSize(expected, got):
            return "the first block came with \(got) bytes instead of \(expected)"
        }
    }

    public var hint: String? {
        switch self {
        case .invalidLevel: return "use a level from 0 (store) to 9 (smallest); 6 is the default"
        case .corruptData, .truncatedStream, .trailingGarbage:
            return "the backup object is damaged or incomplete; try another backup"
        case .streamEnded, .zlibFailure, .deferredBlockSize: return nil
        }
    }
}

/// Window bits for deflate/inflate: a 32 KiB window (15) with a gzip header and trailer (+16).
let gzipWindowBits: Int32 = 15 + 16
/// Bytes handed to zlib per call: `avail_in` is a 32-bit count.
private let maximumChunk = 1 << 30

/// How offsite runs deflate at a compression level where zlib's own settings are not used.
///
/// Level 6 (the default) gives up on a match sooner than zlib's own level 6 (a chain of 64 steps
/// at most, a quarter of that once a match of 4 bytes is found) but looks further for a better one
/// before taking it (lazy matching up to 64 bytes). And it ends a deflate block after every 32 KiB
/// of input, so that each block's Huffman codes fit its own few database pages: zlib ends a block
/// only when 16 K symbols are buffered, where GNU gzip also ends one early when its statistics
/// say so, which is why even zlib's own level 6 is 0.7% larger than `gzip -6` on a database of many
/// small tables (PROJ's proj.db). Measured in 1 MiB members against `gzip -6` on the benchmark's
/// corpus (bench/corpus.py, 200 MiB each, and proj.db): the chain settings alone gave 1.0138× on
/// proj.db, 1.0069× on prose and 1.0060× on the CRM database; with the 32 KiB blocks 1.0010×,
/// 1.0073× and 1.0040×, at most 1.0021× on the others. On the CRM database that costs 2.7% more
/// instructions than the chain settings alone, still 4% fewer than zlib's level 6 (8% less CPU
/// time). Tried and left: memory level 7 (smaller blocks, but a smaller hash and more CPU) and 9
/// (larger); chains of 96 or a quarter chain from 6 or 8 bytes (smaller output, more CPU); blocks
/// of 16 KiB (prose 1.0090×), 48 or 64 KiB (proj.db 1.0047×, 1.0073×). The other levels are zlib's.
struct DeflateTuning: Equatable, Sendable {
    /// deflateTune's good_length: a match at least this long cuts the chain search to a quarter.
    let goodLength: Int32
    /// deflateTune's max_lazy: a match shorter than this is checked against the next position's.
    let maximumLazy: Int32
    /// deflateTune's nice_length: a match this long ends the search.
    let niceLength: Int32
    /// deflateTune's max_chain: the most hash chain entries searched for a match.
    let maximumChain: Int32
    /// Input bytes after which the current deflate block is ended (deflate with `Z_BLOCK`).
    let blockInputLimit: Int

    /// The tuning for `level`, or nil where zlib's own settings apply.
    static func forLevel(_ level: Int32) -> DeflateTuning? {
        guard level == 6 || level == Z_DEFAULT_COMPRESSION else { return nil }
        return DeflateTuning(goodLength: 4, maximumLazy: 64, niceLength: 128, maximumChain: 64, blockInputLimit: 32 * 1024)
    }
}

/// A `z_stream` on the heap (zlib keeps its address between calls), ended on deinit.
final class ZStream {
    enum Direction { case deflate, inflate }

    let pointer: UnsafeMutablePointer<z_stream>
    let direction: Direction
    let level: Int32
    /// The tuning applied to a deflate stream, or nil (zlib's own settings, and every inflate).
    let tuning: DeflateTuning?
    private var isInitialized = false

    init(direction: Direction, level: Int32 = Z_DEFAULT_COMPRESSION) throws {
        self.direction = direction
        self.level = level
        tuning = direction == .deflate ? DeflateTuning.forLevel(level) : nil
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: z_stream())
        let rc: Int32
        switch direction {
        case .deflate:
            rc = offsite_deflate_init2(pointer, level, Z_DEFLATED, gzipWindowBits, 8, Z_DEFAULT_STRATEGY)
        case .inflate:
            rc = offsite_inflate_init2(pointer, gzipWindowBits)
        }
        guard rc == Z_OK else {
            throw GzipError.zlibFailure(operation: direction == .deflate ? "deflateInit2" : "inflateInit2",
                                        code: rc, detail: describeZlibCode(rc))
        }
        isInitialized = true
        if direction == .deflate { tune() }
    }

    /// Applies `tuning` (see `DeflateTuning`). zlib resets it with the stream, so this runs again
    /// after every `deflateReset` (`reset()`).
    private func tune() {
        if let tuning {
            _ = deflateTune(pointer, tuning.goodLength, tuning.maximumLazy, tuning.niceLength, tuning.maximumChain)
        }
    }

    /// Resets a deflate stream for a new member, with the same level and tuning.
    func reset() -> Int32 {
        let rc = deflateReset(pointer)
        if rc == Z_OK { tune() }
        return rc
    }

    deinit {
        if isInitialized {
            switch direction {
            case .deflate: deflateEnd(pointer)
            case .inflate: inflateEnd(pointer)
            }
        }
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }

    /// zlib's message for the last error, or a description of `rc`.
    func detail(for rc: Int32) -> String {
        if let message = pointer.pointee.msg { return String(cString: message) }
        return describeZlibCode(rc)
    }
}

/// zlib's generic description of a return code.
func describeZlibCode(_ rc: Int32) -> String {
    guard let text = zError(rc) else { return "code \(rc)" }
    return String(cString: text)
}

/// Compresses everything written to it into one RFC 1952 gzip member and writes that to `next`.
/// Memory is fixed: one output buffer and zlib's own state.
public final class GzipCompressor: ByteSink {
    /// Size of the buffer zlib compresses into before it is handed to the next sink.
    public static let outputBufferSize = 256 * 1024

    private let stream: ZStream
    private let next: any ByteSink
    private let output: UnsafeMutableRawBufferPointer
    private var hasEnded = false
    /// Input bytes in the current deflate block, counted where the level's tuning limits them.
    private var blockInput = 0

    /// Creates a compressor at `level` (0 stores, 9 is smallest) that writes to `next`.
    public init(level: Int = 6, next: any ByteSink) throws {
        guard (0...9).contains(level) else { throw GzipError.invalidLevel(level) }
        stream = try ZStream(direction: .deflate, level: Int32(level))
        self.next = next
        output = .allocate(byteCount: Self.outputBufferSize, alignment: 1)
    }

    deinit {
        output.deallocate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !hasEnded else { throw GzipError.streamEnded }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let limit = stream.tuning?.blockInputLimit ?? maximumChunk
        var offset = 0
        while offset < bytes.count {
            // A full block is ended only when more input comes, so that `finish` ends it as the
            // last one: the same bytes as one member of `ParallelGzipCompressor`, whatever the writes.
            if stream.tuning != nil && blockInput == limit {
                try deflateChunk(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_BLOCK)
                blockInput = 0
            }
            let count = min(bytes.count - offset, limit - (stream.tuning != nil ? blockInput : 0))
            try deflateChunk(UnsafeRawBufferPointer(start: base + offset, count: count), flush: Z_NO_FLUSH)
            blockInput += count
            offset += count
        }
    }

    public func finish() throws {
        guard !hasEnded else { throw GzipError.streamEnded }
        hasEnded = true
        try deflateChunk(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH)
        try next.finish()
    }

    /// Runs deflate over `input` until it is consumed (and, for Z_FINISH, until the member ends),
    /// passing every full or final output buffer to the next sink.
    private func deflateChunk(_ input: UnsafeRawBufferPointer, flush: Int32) throws {
        let z = stream.pointer
        z.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        z.pointee.avail_in = uInt(input.count)
        defer {
            z.pointee.next_in = nil
            z.pointee.avail_in = 0
        }
        while true {
            z.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(output.count)
            let rc = deflate(z, flush)
            guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else {
                hasEnded = true
                throw GzipError.zlibFailure(operation: "deflate", code: rc, detail: stream.detail(for: rc))
            }
            let produced = output.count - Int(z.pointee.avail_out)
            if produced > 0 {
                try next.write(UnsafeRawBufferPointer(rebasing: output[0..<produced]))
            }
            if flush == Z_FINISH {
                if rc == Z_STREAM_END { return }
            } else if z.pointee.avail_in == 0 && z.pointee.avail_out != 0 {
                return
            }
        }
    }
}

/// Decompresses gzip data written to it and writes the result to `next`. Accepts several
/// gzip members one after another (as `gunzip` does) and yields their concatenation.
/// `next` is finished only when the whole stream was complete and intact.
public final class GzipDecompressor: ByteSink {
    /// Size of the buffer zlib inflates into before it is handed to the next sink.
    public static let outputBufferSize = 256 * 1024

    /// Where the decoder stands between calls.
    private enum State {
        /// Inside a member: inflate has seen part of it.
        case insideMember
        /// Between members, having checked `magicBytesSeen` bytes of the next gzip magic number.
        case betweenMembers(magicBytesSeen: Int)
        /// Finished, or failed with an error.
        case ended
    }

    private static let magic: [UInt8] = [0x1f, 0x8b]

    private let stream: ZStream
    private let next: any ByteSink
    private let output: UnsafeMutableRawBufferPointer
    private var state = State.betweenMembers(magicBytesSeen: 0)
    private var completedMembers = 0

    /// Creates a decompressor that writes the decompressed bytes to `next`.
    public convenience init(next: any ByteSink) throws {
        try self.init(next: next, afterMembers: 0)
    }

    /// Creates a decompressor for the rest of a stream of which `afterMembers` whole members were
    /// already decoded elsewhere (it then reports bytes that are not a member as trailing garbage).
    init(next: any ByteSink, afterMembers: Int) throws {
        stream = try ZStream(direction: .inflate)
        self.next = next
        completedMembers = afterMembers
        output = .allocate(byteCount: Self.outputBufferSize, alignment: 1)
    }

    deinit {
        output.deallocate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if case .ended = state { throw GzipError.streamEnded }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        do {
            var offset = 0
            while offset < bytes.count {
                let count = min(bytes.count - offset, maximumChunk)
                try inflateChunk(UnsafeRawBufferPointer(start: base + offset, count: count))
                offset += count
            }
        } catch {
            state = .ended
            throw error
        }
    }

    public func finish() throws {
        switch state {
        case .ended:
            throw GzipError.streamEnded
        case .insideMember:
            state = .ended
            throw GzipError.truncatedStream
        case let .betweenMembers(magicBytesSeen):
            state = .ended
            guard magicBytesSeen == 0, completedMembers > 0 else { throw GzipError.truncatedStream }
            try next.finish()
        }
    }

    private func inflateChunk(_ input: UnsafeRawBufferPointer) throws {
        let z = stream.pointer
        z.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        z.pointee.avail_in = uInt(input.count)
        defer {
            z.pointee.next_in = nil
            z.pointee.avail_in = 0
        }
        while true {
            if case let .betweenMembers(seen) = state {
                // Only another gzip member may follow a complete one. Check its magic number
                // here, without consuming it: inflate reads the header itself.
                let available = Int(z.pointee.avail_in)
                let checkable = min(available, Self.magic.count - seen)
                for index in 0..<checkable where z.pointee.next_in[index] != Self.magic[seen + index] {
                    throw completedMembers > 0 ? GzipError.trailingGarbage
                        : GzipError.corruptData("not in gzip format (bad magic number)")
                }
                let nowSeen = seen + checkable
                state = nowSeen == Self.magic.count ? .insideMember : .betweenMembers(magicBytesSeen: nowSeen)
                if available == 0 { return }
            }
            z.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(output.count)
            let rc = inflate(z, Z_NO_FLUSH)
            let produced = output.count - Int(z.pointee.avail_out)
            switch rc {
            case Z_OK, Z_STREAM_END, Z_BUF_ERROR:
                break
            case Z_DATA_ERROR, Z_NEED_DICT:
                throw GzipError.corruptData(stream.detail(for: rc))
            default:
                throw GzipError.zlibFailure(operation: "inflate", code: rc, detail: stream.detail(for: rc))
            }
            if produced > 0 {
                try next.write(UnsafeRawBufferPointer(rebasing: output[0..<produced]))
            }
            if rc == Z_STREAM_END {
                completedMembers += 1
                let resetCode = inflateReset(z)
                guard resetCode == Z_OK else {
                    throw GzipError.zlibFailure(operation: "inflateReset", code: resetCode, detail: describeZlibCode(resetCode))
                }
                state = .betweenMembers(magicBytesSeen: 0)
                continue
            }
            // Done with this input once it is all consumed and zlib has no more output waiting.
            if z.pointee.avail_in == 0 && z.pointee.avail_out != 0 { return }
            if rc == Z_BUF_ERROR && produced == 0 {
                throw GzipError.zlibFailure(operation: "inflate", code: rc, detail: "no progress with input left")
            }
        }
    }
}

/// The CRC-32 (zlib's, the one gzip trailers carry) of a byte sequence and its length, built from
/// the checksums of consecutive pieces (`crc32_combine`), so pieces checksummed out of order or on
/// other threads add up to the checksum of the whole.
public struct PlaintextChecksum: Sendable, Equatable, CustomStringConvertible {
    /// The CRC-32 of the bytes so far.
    public private(set) var crc: UInt32 = 0
    /// How many bytes so far.
    public private(set) var length: Int64 = 0

    /// The checksum of nothing.
    public init() {}

    /// The checksum of `bytes`.
    public init(of bytes: UnsafeRawBufferPointer) {
        append(bytes)
    }

    /// Adds a piece whose own checksum is `crc`, `length` bytes long, after the bytes so far.
    public mutating func append(crc pieceCRC: UInt32, length pieceLength: Int64) {
        crc = UInt32(offsite_crc32_combine(UInt(crc), UInt(pieceCRC), pieceLength))
        length += pieceLength
    }

    /// Adds `bytes` after the bytes so far.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let count = min(bytes.count - offset, Int(UInt32.max))
            crc = UInt32(crc32(uLong(crc), bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(count)))
            offset += count
        }
        length += Int64(bytes.count)
    }

    /// `crc32 0x… of N bytes`.
    public var description: String { "crc32 " + String(format: "%08x", crc) + " of \(length) bytes" }

    /// The checksum of the whole file at `path`, read in 1 MiB pieces.
    public static func of(fileAt path: String) throws -> PlaintextChecksum {
        final class Summing: ByteSink {
            var checksum = PlaintextChecksum()
            func write(_ bytes: UnsafeRawBufferPointer) throws { checksum.append(bytes) }
            func finish() throws {}
        }
        let sink = Summing()
        try readFile(at: path, into: sink)
        return sink.checksum
    }
}

/// How many bytes of input each deflate block of the gzip member `member` holds, in order (found by
/// inflating it one block at a time); for tests of `DeflateTuning.blockInputLimit`.
func deflateBlockInputCounts(ofMember member: [UInt8]) throws -> [Int] {
    let stream = try ZStream(direction: .inflate)
    let z = stream.pointer
    var counts: [Int] = []
    var current = 0
    let output = UnsafeMutablePointer<Bytef>.allocate(capacity: 64 * 1024)
    defer {
        output.deallocate()
        z.pointee.next_in = nil
        z.pointee.avail_in = 0
        z.pointee.next_out = nil
        z.pointee.avail_out = 0
    }
    try member.withUnsafeBufferPointer { input in
        z.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
        z.pointee.avail_in = uInt(input.count)
        while true {
            z.pointee.next_out = output
            z.pointee.avail_out = 64 * 1024
            let rc = inflate(z, Z_BLOCK)
            current += 64 * 1024 - Int(z.pointee.avail_out)
            if rc == Z_STREAM_END { break }
            guard rc == Z_OK else {
                throw GzipError.zlibFailure(operation: "inflate", code: rc, detail: stream.detail(for: rc))
            }
            // Bit 7 of data_type: inflate stopped right after a block's end (or after the header).
            if z.pointee.data_type & 128 != 0 && current > 0 {
                counts.append(current)
                current = 0
            }
        }
    }
    if current > 0 { counts.append(current) }
    return counts
}
