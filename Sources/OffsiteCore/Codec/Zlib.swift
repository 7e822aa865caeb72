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

/// A zlib stream for gzip members (RFC 1952), deflating or inflating, on the heap (zlib keeps its
/// address between calls); ended on deinit. One thread uses it at a time.
final class ZStream {
    /// Which way the stream goes.
    enum Direction { case deflate, inflate }

    /// How far one `deflate` call goes.
    enum Flush {
        /// Takes the input; output comes as zlib has it.
        case none
        /// Takes the input and ends the deflate block (`Z_BLOCK`).
        case block
        /// Takes the input and ends the member (`Z_FINISH`).
        case finish
    }

    /// What one `inflate` call did.
    struct InflateStep {
        /// Bytes written to the output.
        var produced: Int
        /// When a member ended (the stream wants `reset` before the next one): its CRC-32, which
        /// zlib checked against the trailer, and its length.
        var endedMember: PlaintextChecksum?
    }

    /// The most input bytes one call takes (zlib counts them in 32 bits).
    static let maximumInput = 1 << 30

    private let pointer: UnsafeMutablePointer<z_stream>
    /// Which way the stream goes.
    let direction: Direction
    /// The compression level (deflate), -1 for zlib's default.
    let level: Int32
    /// The tuning applied to a deflate stream, or nil (zlib's own settings, and every inflate).
    let tuning: DeflateTuning?
    /// The header a deflate stream writes or an inflate stream reads, while zlib may touch it.
    private var header: GzipHeaderFields?
    private var isInitialized = false

    /// A stream with a 32 KiB window and a gzip header and trailer; `level` 0…9 (deflate).
    init(direction: Direction, level: Int = -1) throws {
        self.direction = direction
        self.level = Int32(level)
        tuning = direction == .deflate ? DeflateTuning.forLevel(Int32(level)) : nil
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

    /// Applies `tuning` (see `DeflateTuning`). zlib resets it with the stream, so this runs again
    /// after every `deflateReset` (`reset()`).
    private func tune() {
        if let tuning {
            _ = deflateTune(pointer, tuning.goodLength, tuning.maximumLazy, tuning.niceLength, tuning.maximumChain)
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

    /// Deflates the whole input, going as far as `flush` says, handing every piece of output to
    /// `emit` as `buffer` fills; the input is cleared after.
    func deflate(_ input: UnsafeRawBufferPointer, flush: Flush, buffer: UnsafeMutableRawBufferPointer,
                 emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        setInput(input)
        defer { clearInput() }
        let mode = switch flush {
        case .none: Z_NO_FLUSH
        case .block: Z_BLOCK
        case .finish: Z_FINISH
        }
        while true {
            pointer.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            pointer.pointee.avail_out = uInt(buffer.count)
            let rc = CZlib.deflate(pointer, mode)
            guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else {
                throw GzipError.zlibFailure(operation: "deflate", code: rc, detail: detail(for: rc))
            }
            let produced = buffer.count - Int(pointer.pointee.avail_out)
            if produced > 0 { try emit(UnsafeRawBufferPointer(rebasing: buffer[0..<produced])) }
            if flush == .finish {
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
        return InflateStep(produced: produced, endedMember: rc == Z_STREAM_END ? memberChecksum : nil)
    }

    /// After a whole member: `adler` holds its CRC-32 and `total_out` its length.
    private var memberChecksum: PlaintextChecksum {
        var checksum = PlaintextChecksum()
        checksum.append(crc: UInt32(truncatingIfNeeded: pointer.pointee.adler), length: Int64(pointer.pointee.total_out))
        return checksum
    }

    // MARK: Whole members

    /// Deflates all of `input` into one gzip member in `output`, which must hold the worst case
    /// (`ParallelGzipCompressor.outputBound`), ending a deflate block after every
    /// `blockInputLimit` bytes of input where the tuning says so; returns the member's size and the
    /// input's CRC-32.
    func deflateMember(from input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> (count: Int, crc: UInt32) {
        try reset()
        defer { clearInput() }
        pointer.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        pointer.pointee.avail_out = uInt(output.count)
        let step = tuning?.blockInputLimit ?? max(input.count, 1)
        var offset = 0
        repeat {
            let count = min(step, input.count - offset)
            let isLast = offset + count == input.count
            setInput(count > 0 ? UnsafeRawBufferPointer(rebasing: input[offset..<(offset + count)]) : UnsafeRawBufferPointer(start: nil, count: 0))
            let rc = CZlib.deflate(pointer, isLast ? Z_FINISH : Z_BLOCK)
            // The output buffer holds the worst case (a stored block per step costs less than the
            // margin), so every call takes all its input and the last one ends the member.
            guard isLast ? rc == Z_STREAM_END : (rc == Z_OK && pointer.pointee.avail_in == 0) else {
                throw GzipError.zlibFailure(operation: "deflate", code: rc, detail: detail(for: rc))
            }
            offset += count
        } while offset < input.count
        // For a gzip stream zlib keeps the input's CRC-32 in `adler`.
        return (output.count - Int(pointer.pointee.avail_out), UInt32(truncatingIfNeeded: pointer.pointee.adler))
    }

    /// Inflates `input` into `output` when it is one or more complete, intact gzip members (each
    /// checked against its CRC-32 and length) that end exactly where it ends and fit; returns the
    /// bytes produced and their checksum, or nil: the input or the output ran out inside a member,
    /// or the data is damaged.
    func inflateWholeMembers(from input: UnsafeRawBufferPointer,
                             into output: UnsafeMutableRawBufferPointer) -> (count: Int, checksum: PlaintextChecksum)? {
        guard input.count > 0, (try? reset()) != nil else { return nil }
        setInput(input)
        defer { clearInput() }
        pointer.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        pointer.pointee.avail_out = uInt(output.count)
        var checksum = PlaintextChecksum()
        while true {
            guard CZlib.inflate(pointer, Z_NO_FLUSH) == Z_STREAM_END else { return nil }
            checksum.append(crc: memberChecksum.crc, length: memberChecksum.length)
            if pointer.pointee.avail_in == 0 { return (output.count - Int(pointer.pointee.avail_out), checksum) }
            // Another member follows in the same input: it must start with the magic number.
            guard pointer.pointee.avail_in >= 2, pointer.pointee.next_in[0] == 0x1f, pointer.pointee.next_in[1] == 0x8b,
                  inflateReset(pointer) == Z_OK else { return nil }
        }
    }

    // MARK: Headers

    /// Makes the member this deflate stream writes carry `extraField` as its FEXTRA field
    /// (RFC 1952 §2.3.1.1: subfields, at most 65535 bytes; `gunzip` skips it).
    func setHeader(extraField: [UInt8]) throws {
        let fields = try GzipHeaderFields(writing: extraField)
        let rc = deflateSetHeader(pointer, fields.header)
        guard rc == Z_OK else { throw GzipError.zlibFailure(operation: "deflateSetHeader", code: rc, detail: Self.describe(rc)) }
        header = fields
    }

    /// Has this inflate stream keep the first member's header, with its whole FEXTRA field.
    func keepHeader() throws {
        let fields = GzipHeaderFields(readingUpTo: GzipHeaderFields.maximumExtraLength)
        let rc = inflateGetHeader(pointer, fields.header)
        guard rc == Z_OK else { throw GzipError.zlibFailure(operation: "inflateGetHeader", code: rc, detail: Self.describe(rc)) }
        header = fields
    }

    /// Whether the kept header has been read whole; nil when none is kept.
    var isHeaderComplete: Bool? { header?.isComplete }

    /// The kept header's FEXTRA field, once it is read whole; nil when it has none.
    var headerExtraField: [UInt8]? { header?.extraField }

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

/// A `gz_header` on the heap, with the FEXTRA bytes it points to: zlib writes them into the next
/// member's header (deflate) or fills them from the first member's header (inflate) while the
/// stream lives, so they must stay put until then.
private final class GzipHeaderFields {
    /// The most bytes an FEXTRA field holds (its length is 16 bits).
    static let maximumExtraLength = 65535

    let header: UnsafeMutablePointer<gz_header>
    private let extra: UnsafeMutablePointer<Bytef>

    /// A header for deflate carrying `extraField`.
    init(writing extraField: [UInt8]) throws {
        guard extraField.count <= Self.maximumExtraLength else {
            throw GzipError.zlibFailure(operation: "deflateSetHeader", code: Z_BUF_ERROR,
                                        detail: "the extra field holds \(extraField.count) bytes, more than 65535")
        }
        header = .allocate(capacity: 1)
        header.initialize(to: gz_header())
        extra = .allocate(capacity: max(extraField.count, 1))
        extraField.withUnsafeBufferPointer { extra.update(from: $0.baseAddress!, count: extraField.count) }
        header.pointee.os = 3  // Unix, as zlib writes without a header of ours
        header.pointee.extra = extra
        header.pointee.extra_len = uInt(extraField.count)
    }

    /// A header for inflate to fill, keeping up to `capacity` bytes of the extra field.
    init(readingUpTo capacity: Int) {
        header = .allocate(capacity: 1)
        header.initialize(to: gz_header())
        extra = .allocate(capacity: capacity)
        header.pointee.extra = extra
        header.pointee.extra_max = uInt(capacity)
    }

    deinit {
        header.deinitialize(count: 1)
        header.deallocate()
        extra.deallocate()
    }

    /// Whether inflate has read the whole header.
    var isComplete: Bool { header.pointee.done == 1 }

    /// The extra field inflate read, once the header is complete; nil when the header has none.
    var extraField: [UInt8]? {
        guard isComplete, let pointer = header.pointee.extra else { return nil }
        let count = min(Int(header.pointee.extra_len), Int(header.pointee.extra_max))
        return Array(UnsafeBufferPointer(start: pointer, count: count))
    }
}

/// How many bytes of input each deflate block of the gzip member `member` holds, in order (found by
/// inflating it one block at a time); for tests of `DeflateTuning.blockInputLimit`.
func deflateBlockInputCounts(ofMember member: [UInt8]) throws -> [Int] {
    let stream = try ZStream(direction: .inflate)
    return try stream.blockInputCounts(ofMember: member)
}

extension ZStream {
    /// See `deflateBlockInputCounts(ofMember:)`; the stream must be a fresh inflate stream.
    fileprivate func blockInputCounts(ofMember member: [UInt8]) throws -> [Int] {
        var counts: [Int] = []
        var current = 0
        let output = UnsafeMutablePointer<Bytef>.allocate(capacity: 64 * 1024)
        defer {
            output.deallocate()
            clearInput()
        }
        try member.withUnsafeBytes { input in
            setInput(input)
            while true {
                pointer.pointee.next_out = output
                pointer.pointee.avail_out = 64 * 1024
                let rc = CZlib.inflate(pointer, Z_BLOCK)
                current += 64 * 1024 - Int(pointer.pointee.avail_out)
                if rc == Z_STREAM_END { break }
                guard rc == Z_OK else {
                    throw GzipError.zlibFailure(operation: "inflate", code: rc, detail: detail(for: rc))
                }
                // Bit 7 of data_type: inflate stopped right after a block's end (or after the header).
                if pointer.pointee.data_type & 128 != 0 && current > 0 {
                    counts.append(current)
                    current = 0
                }
            }
        }
        if current > 0 { counts.append(current) }
        return counts
    }
}
