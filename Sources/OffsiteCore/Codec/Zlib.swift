import CZlib
import Foundation

// The only file that talks to zlib: the gzip codecs (Gzip.swift, ParallelGzip.swift,
// ParallelGunzip.swift) see the Swift types below. Every zlib return code is turned into a
// `GzipError` here.

/// zlib itself: its version and its CRC-32.
enum Zlib {
    /// The linked zlib's version (`1.2.13`).
    static var version: String { String(cString: zlibVersion()) }

    /// The CRC-32 (the one gzip trailers carry) of `bytes` following bytes whose CRC-32 was `crc`.
    static func crc32(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = crc
        var offset = 0
        while offset < bytes.count {
            let count = min(bytes.count - offset, Int(UInt32.max))
            crc = UInt32(CZlib.crc32(uLong(crc), bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self),
                                     uInt(count)))
            offset += count
        }
        return crc
    }

    /// The CRC-32 of two pieces one after the other, from the first's CRC-32 and the second's
    /// CRC-32 and length.
    static func crc32Combine(_ first: UInt32, _ second: UInt32, secondLength: Int64) -> UInt32 {
        UInt32(offsite_crc32_combine(UInt(first), UInt(second), secondLength))
    }
}

/// A zlib stream for gzip members (RFC 1952), deflating or inflating, on the heap (zlib keeps its
/// address between calls); ended on deinit. One thread uses it at a time.
final class ZStream {
    /// Which way the stream goes.
    enum Direction { case deflate, inflate }

    /// What one `inflate` call did.
    struct InflateStep {
        /// Bytes written to the output.
        var produced: Int
        /// Whether a member ended (the stream wants `reset` before the next one).
        var endedMember: Bool
    }

    /// The most input bytes one call takes (zlib counts them in 32 bits).
    static let maximumInput = 1 << 30

    private let pointer: UnsafeMutablePointer<z_stream>
    /// Which way the stream goes.
    let direction: Direction
    /// The compression level (deflate), -1 for zlib's default.
    let level: Int32
    private var isInitialized = false

    /// A stream with a 32 KiB window and a gzip header and trailer; `level` 0…9 (deflate).
    init(direction: Direction, level: Int = -1) throws {
        self.direction = direction
        self.level = Int32(level)
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: z_stream())
        let windowBits: Int32 = 15 + 16  // 32 KiB, with a gzip header and trailer
        let rc: Int32
        switch direction {
        case .deflate:
            rc = offsite_deflate_init2(pointer, self.level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY)
        case .inflate:
            rc = offsite_inflate_init2(pointer, windowBits)
        }
        guard rc == Z_OK else {
            throw GzipError.zlibFailure(operation: direction == .deflate ? "deflateInit2" : "inflateInit2",
                                        code: rc, detail: Self.describe(rc))
        }
        isInitialized = true
        if direction == .deflate { tune() }
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

    /// Level 6 (the default) gives up on a match sooner than zlib's own level 6 (a shorter chain
    /// once a match of 4 bytes is found, 64 steps at most) but looks further for a better one
    /// before taking it (lazy matching up to 64 bytes): in 1 MiB members of the CRM database that
    /// is 14% less CPU for an output 0.1% smaller (0.6% larger than `gzip -6`'s); on a tar of
    /// text 8% less CPU for 0.05% more bytes, on an executable 33% less for 0.25% more. The other
    /// levels are zlib's. zlib resets these with the stream, so this runs again after every
    /// `deflateReset` (`reset()`).
    private func tune() {
        if level == 6 || level == Z_DEFAULT_COMPRESSION {
            _ = deflateTune(pointer, 4, 64, 128, 64)
        }
    }

    /// Readies the stream for a new member (deflate: with the same level and tuning).
    func reset() throws {
        switch direction {
        case .deflate:
            let rc = deflateReset(pointer)
            guard rc == Z_OK else { throw GzipError.zlibFailure(operation: "deflateReset", code: rc, detail: detail(for: rc)) }
            tune()
        case .inflate:
            let rc = inflateReset(pointer)
            guard rc == Z_OK else { throw GzipError.zlibFailure(operation: "inflateReset", code: rc, detail: Self.describe(rc)) }
        }
    }

    // MARK: Streaming

    /// Makes `bytes` (at most `maximumInput`) the input the next calls read; they must stay valid
    /// until `clearInput`.
    func setInput(_ bytes: UnsafeRawBufferPointer) {
        pointer.pointee.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: Bytef.self))
        pointer.pointee.avail_in = uInt(bytes.count)
    }

    /// The part of the input zlib has not read yet.
    var pendingInput: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: pointer.pointee.next_in, count: Int(pointer.pointee.avail_in))
    }

    /// Forgets the input and output buffers, so the stream keeps no pointer into them.
    func clearInput() {
        pointer.pointee.next_in = nil
        pointer.pointee.avail_in = 0
        pointer.pointee.next_out = nil
        pointer.pointee.avail_out = 0
    }

    /// Deflates the whole input (with `finishing`, and ends the member), handing every piece of
    /// output to `emit` as `buffer` fills; the input is cleared after.
    func deflate(_ input: UnsafeRawBufferPointer, finishing: Bool, buffer: UnsafeMutableRawBufferPointer,
                 emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        setInput(input)
        defer { clearInput() }
        let flush = finishing ? Z_FINISH : Z_NO_FLUSH
        while true {
            pointer.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            pointer.pointee.avail_out = uInt(buffer.count)
            let rc = CZlib.deflate(pointer, flush)
            guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else {
                throw GzipError.zlibFailure(operation: "deflate", code: rc, detail: detail(for: rc))
            }
            let produced = buffer.count - Int(pointer.pointee.avail_out)
            if produced > 0 { try emit(UnsafeRawBufferPointer(rebasing: buffer[0..<produced])) }
            if finishing {
                if rc == Z_STREAM_END { return }
            } else if pointer.pointee.avail_in == 0 && pointer.pointee.avail_out != 0 {
                return
            }
        }
    }

    /// One inflate call from the input set with `setInput` into `output`. Damaged data throws
    /// `GzipError.corruptData`; a call that can make no progress with input left throws too.
    func inflate(into output: UnsafeMutableRawBufferPointer) throws -> InflateStep {
        pointer.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        pointer.pointee.avail_out = uInt(output.count)
        let rc = CZlib.inflate(pointer, Z_NO_FLUSH)
        let produced = output.count - Int(pointer.pointee.avail_out)
        switch rc {
        case Z_OK, Z_STREAM_END, Z_BUF_ERROR:
            break
        case Z_DATA_ERROR, Z_NEED_DICT:
            throw GzipError.corruptData(detail(for: rc))
        default:
            throw GzipError.zlibFailure(operation: "inflate", code: rc, detail: detail(for: rc))
        }
        if rc == Z_BUF_ERROR && produced == 0 && pointer.pointee.avail_in > 0 {
            throw GzipError.zlibFailure(operation: "inflate", code: rc, detail: "no progress with input left")
        }
        return InflateStep(produced: produced, endedMember: rc == Z_STREAM_END)
    }

    // MARK: Whole members

    /// Deflates all of `input` into one gzip member in `output`, which must hold the worst case
    /// (`ParallelGzipCompressor.outputBound`); returns the member's size and the input's CRC-32.
    func deflateMember(from input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> (count: Int, crc: UInt32) {
        try reset()
        setInput(input.count > 0 ? input : UnsafeRawBufferPointer(start: nil, count: 0))
        defer { clearInput() }
        pointer.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        pointer.pointee.avail_out = uInt(output.count)
        let rc = CZlib.deflate(pointer, Z_FINISH)
        // The output buffer holds the worst case, so one call must end the member.
        guard rc == Z_STREAM_END else {
            throw GzipError.zlibFailure(operation: "deflate", code: rc, detail: detail(for: rc))
        }
        // For a gzip stream zlib keeps the input's CRC-32 in `adler`.
        return (output.count - Int(pointer.pointee.avail_out), UInt32(truncatingIfNeeded: pointer.pointee.adler))
    }

    /// Inflates `input` into `output` when it is one or more complete, intact gzip members (each
    /// checked against its CRC-32 and length) that end exactly where it ends and fit; returns the
    /// bytes produced, or nil: the input or the output ran out inside a member, or the data is
    /// damaged.
    func inflateWholeMembers(from input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        guard input.count > 0, (try? reset()) != nil else { return nil }
        setInput(input)
        defer { clearInput() }
        pointer.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        pointer.pointee.avail_out = uInt(output.count)
        while true {
            guard CZlib.inflate(pointer, Z_NO_FLUSH) == Z_STREAM_END else { return nil }
            if pointer.pointee.avail_in == 0 { return output.count - Int(pointer.pointee.avail_out) }
            // Another member follows in the same input: it must start with the magic number.
            guard pointer.pointee.avail_in >= 2, pointer.pointee.next_in[0] == 0x1f, pointer.pointee.next_in[1] == 0x8b,
                  inflateReset(pointer) == Z_OK else { return nil }
        }
    }

    // MARK: Messages

    /// zlib's message for the last error, or a description of `rc`.
    private func detail(for rc: Int32) -> String {
        if let message = pointer.pointee.msg { return String(cString: message) }
        return Self.describe(rc)
    }

    /// zlib's generic description of a return code.
    private static func describe(_ rc: Int32) -> String {
        guard let text = zError(rc) else { return "code \(rc)" }
        return String(cString: text)
    }
}
