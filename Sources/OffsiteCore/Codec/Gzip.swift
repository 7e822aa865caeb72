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
        stream = try ZStream(direction: .deflate, level: level)
        self.next = next
        output = .allocate(byteCount: Self.outputBufferSize, alignment: 1)
    }

    /// Creates a compressor whose member header carries `extraField` as its FEXTRA field
    /// (RFC 1952 §2.3.1.1: subfields, at most 65535 bytes; `gunzip` skips it).
    public convenience init(level: Int = 6, extraField: [UInt8], next: any ByteSink) throws {
        try self.init(level: level, next: next)
        try stream.setHeader(extraField: extraField)
    }

    deinit {
        output.deallocate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !hasEnded else { throw GzipError.streamEnded }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let limit = stream.tuning?.blockInputLimit ?? ZStream.maximumInput
        var offset = 0
        while offset < bytes.count {
            // A full block is ended only when more input comes, so that `finish` ends it as the
            // last one: the same bytes as one member of `ParallelGzipCompressor`, whatever the writes.
            if stream.tuning != nil && blockInput == limit {
                try deflate(UnsafeRawBufferPointer(start: nil, count: 0), flush: .block)
                blockInput = 0
            }
            let count = min(bytes.count - offset, limit - (stream.tuning != nil ? blockInput : 0))
            try deflate(UnsafeRawBufferPointer(start: base + offset, count: count), flush: .none)
            blockInput += count
            offset += count
        }
    }

    public func finish() throws {
        guard !hasEnded else { throw GzipError.streamEnded }
        hasEnded = true
        try deflate(UnsafeRawBufferPointer(start: nil, count: 0), flush: .finish)
        try next.finish()
    }

    /// Deflates `input` as far as `flush` says, passing every full or final output buffer to the
    /// next sink; a failure ends the stream.
    private func deflate(_ input: UnsafeRawBufferPointer, flush: ZStream.Flush) throws {
        do {
            try stream.deflate(input, flush: flush, buffer: output) { try next.write($0) }
        } catch {
            hasEnded = true
            throw error
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
    /// The checksum of the bytes inflated so far by whole members (each member's CRC-32, which
    /// zlib has checked against its trailer, combined).
    public private(set) var plaintextChecksum = PlaintextChecksum()

    /// Creates a decompressor that writes the decompressed bytes to `next`.
    public convenience init(next: any ByteSink) throws {
        try self.init(next: next, afterMembers: 0)
    }

    /// Creates a decompressor that also keeps the first member's FEXTRA field (`extraField`).
    public convenience init(next: any ByteSink, keepingExtraField: Bool) throws {
        try self.init(next: next, afterMembers: 0)
        if keepingExtraField { try stream.keepHeader() }
    }

    /// Whether the first member's header has been read whole (always true once any byte was inflated).
    public var hasReadHeader: Bool { stream.isHeaderComplete ?? (completedMembers > 0) }

    /// The first member's FEXTRA field, once its header is read; nil when it has none (or it was not kept).
    public var extraField: [UInt8]? { stream.headerExtraField }

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
                let count = min(bytes.count - offset, ZStream.maximumInput)
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
        stream.setInput(input)
        defer { stream.clearInput() }
        while true {
            if case let .betweenMembers(seen) = state {
                // Only another gzip member may follow a complete one. Check its magic number
                // here, without consuming it: inflate reads the header itself.
                let pending = stream.pendingInput
                let checkable = min(pending.count, Self.magic.count - seen)
                for index in 0..<checkable where pending[index] != Self.magic[seen + index] {
                    throw completedMembers > 0 ? GzipError.trailingGarbage
                        : GzipError.corruptData("not in gzip format (bad magic number)")
                }
                let nowSeen = seen + checkable
                state = nowSeen == Self.magic.count ? .insideMember : .betweenMembers(magicBytesSeen: nowSeen)
                if pending.isEmpty { return }
            }
            let step = try stream.inflate(into: output)
            if step.produced > 0 {
                try next.write(UnsafeRawBufferPointer(rebasing: output[0..<step.produced]))
            }
            if let member = step.endedMember {
                completedMembers += 1
                plaintextChecksum.append(crc: member.crc, length: member.length)
                try stream.reset()
                state = .betweenMembers(magicBytesSeen: 0)
                continue
            }
            // Done with this input once it is all consumed and zlib has no more output waiting.
            if stream.pendingInput.isEmpty && step.produced < output.count { return }
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
        crc = Zlib.crc32Combine(crc, pieceCRC, secondLength: pieceLength)
        length += pieceLength
    }

    /// Adds `bytes` after the bytes so far.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        crc = Zlib.crc32(crc, bytes)
        length += Int64(bytes.count)
    }

    /// `crc32 0x… of N bytes`.
    public var description: String { "crc32 " + String(format: "%08x", crc) + " of \(length) bytes" }

    /// The checksum of the whole file at `path`, read in 1 MiB pieces. (Mapping it instead saves
    /// about 0.02 s per 200 MiB of copying, but counts the whole file in the process's resident
    /// memory while it is read.)
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
