import Foundation

// The SQLite write-ahead log format (sqlite.org/fileformat2.html §4, walformat.html): a 32-byte
// header, then frames of a 24-byte header and one page. Every integer is stored big-endian; the
// checksums are Fibonacci-weighted sums of 32-bit words read in the byte order the magic number
// names, cumulative from the header through every frame, so a frame is valid only if every frame
// before it is. A frame whose "database size" field is not 0 ends a transaction (a commit frame);
// SQLite applies a WAL up to its last valid commit frame and ignores what follows.

/// A WAL file that is not in the format, or not intact.
public enum WALFormatError: UserFacingError, Equatable {
    /// The first four bytes are not 0x377f0682 or 0x377f0683.
    case badMagic(UInt32)
    /// The format version is not 3007000.
    case unsupportedVersion(UInt32)
    /// The page size is not a power of two from 512 to 65536.
    case badPageSize(Int)
    /// The header's checksum does not match its bytes.
    case headerChecksum
    /// A frame's salts are not the header's (1-based frame number).
    case frameSalt(frame: Int)
    /// A frame's cumulative checksum does not match.
    case frameChecksum(frame: Int)
    /// A frame names page 0.
    case pageNumberZero(frame: Int)
    /// The file ends inside the header or a frame.
    case truncated(frame: Int)
    /// A page handed to the writer is not one page long.
    case pageLength(expected: Int, got: Int)
    /// The writer was used after `finish`.
    case finished

    public var message: String {
        switch self {
        case let .badMagic(magic): return "not a SQLite WAL file (magic number " + String(format: "0x%08x", magic) + ")"
        case let .unsupportedVersion(version): return "unsupported WAL format version \(version) (3007000 expected)"
        case let .badPageSize(size): return "WAL page size \(size) is not a power of two from 512 to 65536"
        case .headerChecksum: return "the WAL header's checksum does not match"
        case let .frameSalt(frame): return "WAL frame \(frame) does not carry the header's salts"
        case let .frameChecksum(frame): return "WAL frame \(frame) fails its checksum"
        case let .pageNumberZero(frame): return "WAL frame \(frame) names page 0"
        case let .truncated(frame): return "the WAL ends inside frame \(frame)"
        case let .pageLength(expected, got): return "a WAL frame's page holds \(got) bytes instead of \(expected)"
        case .finished: return "WAL writer used after it finished"
        }
    }

    public var hint: String? {
        switch self {
        case .pageLength, .finished: return nil
        default: return "the change object is damaged or was not written by offsite; restore an earlier point"
        }
    }
}

/// The two 32-bit running sums of a WAL checksum.
public struct WALChecksum: Sendable, Hashable {
    /// The first sum (s0).
    public var first: UInt32
    /// The second sum (s1).
    public var second: UInt32

    /// Creates a checksum from its two sums.
    public init(_ first: UInt32, _ second: UInt32) {
        self.first = first
        self.second = second
    }

    /// The sums after adding `bytes` (a multiple of 8 bytes), read as 32-bit words in big-endian
    /// order when `bigEndian`, else little-endian.
    public func adding(_ bytes: UnsafeRawBufferPointer, bigEndian: Bool) -> WALChecksum {
        precondition(bytes.count % 8 == 0, "WAL checksums cover multiples of 8 bytes")
        guard let base = bytes.baseAddress else { return self }
        var s0 = first
        var s1 = second
        var offset = 0
        let count = bytes.count
        if bigEndian {
            while offset < count {
                s0 = s0 &+ UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) &+ s1
                s1 = s1 &+ UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)) &+ s0
                offset += 8
            }
        } else {
            while offset < count {
                s0 = s0 &+ UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) &+ s1
                s1 = s1 &+ UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)) &+ s0
                offset += 8
            }
        }
        return WALChecksum(s0, s1)
    }
}

/// Reads a big-endian 32-bit integer at `offset`.
@inline(__always)
func loadBigEndian32(_ bytes: UnsafeRawPointer, _ offset: Int) -> UInt32 {
    UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}

/// Stores `value` big-endian at `offset`.
@inline(__always)
func storeBigEndian32(_ value: UInt32, _ bytes: UnsafeMutableRawPointer, _ offset: Int) {
    bytes.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
}

/// The 32-byte header of a WAL file.
public struct WALHeader: Sendable, Equatable {
    /// Bytes in the header.
    public static let size = 32
    /// The magic number of a WAL whose checksums read little-endian words.
    public static let littleEndianMagic: UInt32 = 0x377f_0682
    /// The magic number of a WAL whose checksums read big-endian words.
    public static let bigEndianMagic: UInt32 = 0x377f_0683
    /// The only format version.
    public static let formatVersion: UInt32 = 3_007_000

    /// Whether checksums read big-endian words (magic 0x377f0683).
    public var bigEndianChecksums: Bool
    /// The database page size in bytes.
    public var pageSize: Int
    /// The checkpoint sequence number.
    public var checkpointSequence: UInt32
    /// Salt-1, copied into every frame.
    public var salt1: UInt32
    /// Salt-2, copied into every frame.
    public var salt2: UInt32
    /// The checksum of the header's first 24 bytes; it seeds the first frame's.
    public var checksum: WALChecksum

    /// A header for pages of `pageSize` bytes with the given salts (fresh random ones by default),
    /// checkpoint sequence 0 and little-endian checksums (magic 0x377f0682), its checksum computed.
    public init(pageSize: Int, salt1: UInt32 = .random(in: .min ... .max), salt2: UInt32 = .random(in: .min ... .max),
                checkpointSequence: UInt32 = 0, bigEndianChecksums: Bool = false) throws {
        guard Self.isValidPageSize(pageSize) else { throw WALFormatError.badPageSize(pageSize) }
        self.bigEndianChecksums = bigEndianChecksums
        self.pageSize = pageSize
        self.checkpointSequence = checkpointSequence
        self.salt1 = salt1
        self.salt2 = salt2
        checksum = WALChecksum(0, 0)
        let bytes = encoded()
        checksum = bytes.withUnsafeBytes {
            WALChecksum(0, 0).adding(UnsafeRawBufferPointer(rebasing: $0[0..<24]), bigEndian: bigEndianChecksums)
        }
    }

    /// Parses and checks the first 32 bytes of a WAL file.
    public init(parsing bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count >= Self.size, let base = bytes.baseAddress else { throw WALFormatError.truncated(frame: 0) }
        let magic = loadBigEndian32(base, 0)
        guard magic == Self.littleEndianMagic || magic == Self.bigEndianMagic else { throw WALFormatError.badMagic(magic) }
        let version = loadBigEndian32(base, 4)
        guard version == Self.formatVersion else { throw WALFormatError.unsupportedVersion(version) }
        let pageSize = Int(loadBigEndian32(base, 8))
        guard Self.isValidPageSize(pageSize) else { throw WALFormatError.badPageSize(pageSize) }
        bigEndianChecksums = magic == Self.bigEndianMagic
        self.pageSize = pageSize
        checkpointSequence = loadBigEndian32(base, 12)
        salt1 = loadBigEndian32(base, 16)
        salt2 = loadBigEndian32(base, 20)
        checksum = WALChecksum(loadBigEndian32(base, 24), loadBigEndian32(base, 28))
        let computed = WALChecksum(0, 0).adding(UnsafeRawBufferPointer(start: base, count: 24), bigEndian: bigEndianChecksums)
        guard computed == checksum else { throw WALFormatError.headerChecksum }
    }

    /// The header's 32 bytes.
    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress!
            storeBigEndian32(bigEndianChecksums ? Self.bigEndianMagic : Self.littleEndianMagic, base, 0)
            storeBigEndian32(Self.formatVersion, base, 4)
            storeBigEndian32(UInt32(pageSize), base, 8)
            storeBigEndian32(checkpointSequence, base, 12)
            storeBigEndian32(salt1, base, 16)
            storeBigEndian32(salt2, base, 20)
            storeBigEndian32(checksum.first, base, 24)
            storeBigEndian32(checksum.second, base, 28)
        }
        return bytes
    }

    /// Whether `size` is a SQLite page size: a power of two from 512 to 65536.
    public static func isValidPageSize(_ size: Int) -> Bool {
        size >= 512 && size <= 65536 && size & (size - 1) == 0
    }

    /// Bytes in one frame: its 24-byte header and one page.
    public var frameSize: Int { WALFrame.headerSize + pageSize }

    /// Where frame `number` (1-based) starts in the file.
    public func offset(ofFrame number: Int) -> Int64 {
        Int64(Self.size) + Int64(number - 1) * Int64(frameSize)
    }
}

/// One frame of a WAL file, without its page.
public struct WALFrame: Sendable, Equatable {
    /// Bytes in a frame header.
    public static let headerSize = 24

    /// The frame's position in the file, from 1.
    public var number: Int
    /// The database page the frame holds, from 1.
    public var pageNumber: UInt32
    /// On a commit frame, the database's size in pages after the transaction; 0 on other frames.
    public var commitSize: UInt32

    /// Creates a frame description.
    public init(number: Int, pageNumber: UInt32, commitSize: UInt32) {
        self.number = number
        self.pageNumber = pageNumber
        self.commitSize = commitSize
    }

    /// Whether the frame ends a transaction.
    public var isCommit: Bool { commitSize != 0 }
}

/// Writes a WAL file frame by frame to a sink: the header first (fresh random salts unless given,
/// checkpoint sequence 0), then each frame with the header's salts and a cumulative checksum
/// computed afresh. Memory is one frame header.
public final class WALWriter {
    /// The header written first.
    public let header: WALHeader
    /// Frames written so far.
    public private(set) var frameCount = 0
    /// The number of the last commit frame written (0: none yet).
    public private(set) var lastCommitFrame = 0
    /// Bytes written so far, header included.
    public private(set) var byteCount: Int64 = 0

    private let sink: any ByteSink
    private var checksum: WALChecksum
    private var frameHeader = [UInt8](repeating: 0, count: WALFrame.headerSize)
    private var hasFinished = false

    /// Starts a WAL of `pageSize`-byte pages into `sink`, writing its header at once.
    public init(header: WALHeader, into sink: any ByteSink) throws {
        self.header = header
        self.sink = sink
        checksum = header.checksum
        try sink.write(header.encoded())
        byteCount = Int64(WALHeader.size)
    }

    /// Starts a WAL of `pageSize`-byte pages with fresh random salts into `sink`.
    public convenience init(pageSize: Int, into sink: any ByteSink) throws {
        try self.init(header: try WALHeader(pageSize: pageSize), into: sink)
    }

    /// Appends a frame holding `page` (exactly one page) as page `pageNumber`; `commitSize` is the
    /// database's size in pages when this frame ends a transaction, else 0.
    public func append(pageNumber: UInt32, commitSize: UInt32, page: UnsafeRawBufferPointer) throws {
        guard !hasFinished else { throw WALFormatError.finished }
        guard page.count == header.pageSize else { throw WALFormatError.pageLength(expected: header.pageSize, got: page.count) }
        guard pageNumber != 0 else { throw WALFormatError.pageNumberZero(frame: frameCount + 1) }
        frameHeader.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress!
            storeBigEndian32(pageNumber, base, 0)
            storeBigEndian32(commitSize, base, 4)
            storeBigEndian32(header.salt1, base, 8)
            storeBigEndian32(header.salt2, base, 12)
            checksum = checksum.adding(UnsafeRawBufferPointer(rebasing: buffer[0..<8]), bigEndian: header.bigEndianChecksums)
                .adding(page, bigEndian: header.bigEndianChecksums)
            storeBigEndian32(checksum.first, base, 16)
            storeBigEndian32(checksum.second, base, 20)
        }
        try sink.write(frameHeader)
        try sink.write(page)
        frameCount += 1
        if commitSize != 0 { lastCommitFrame = frameCount }
        byteCount += Int64(header.frameSize)
    }

    /// Finishes the sink.
    public func finish() throws {
        guard !hasFinished else { throw WALFormatError.finished }
        hasFinished = true
        try sink.finish()
    }
}

/// Reads a WAL file written to it, checking the header, every frame's salts and cumulative
/// checksum, and hands each valid frame with its page to `onFrame` (the page is valid during the
/// call only). Memory is one frame.
///
/// `.strict` (the change objects offsite writes): every frame must be valid and the file must end
/// on a frame boundary. `.likeSQLite` (a WAL SQLite wrote): reading stops quietly at the first
/// frame that is not valid, as SQLite's recovery does — a WAL may hold stale frames of an earlier
/// generation after the live ones; frames after the last commit frame are delivered too, and
/// `lastCommitFrame` says where the committed ones end.
public final class WALReader: ByteSink {
    /// How invalid frames are treated.
    public enum Strictness: Sendable {
        /// Any invalid frame or trailing partial frame is an error.
        case strict
        /// Reading ends at the first invalid frame, as SQLite's recovery does.
        case likeSQLite
    }

    /// The header, once read.
    public private(set) var header: WALHeader?
    /// Valid frames read so far.
    public private(set) var frameCount = 0
    /// The number of the last valid commit frame (0: none).
    public private(set) var lastCommitFrame = 0
    /// Whether (`.likeSQLite`) reading stopped at a frame that was not valid.
    public private(set) var stoppedAtInvalidFrame = false
    /// The cumulative checksum of the last valid frame (of the header before any frame): what the
    /// wal-index header's `aFrameCksum` holds when the last frame read is `mxFrame`.
    public private(set) var checksum = WALChecksum(0, 0)

    private let strictness: Strictness
    private let onHeader: (WALHeader) throws -> Void
    private let onFrame: (WALFrame, UnsafeRawBufferPointer) throws -> Void
    private var buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var hasFinished = false

    /// Creates a reader; `onHeader` sees the header once it is checked, `onFrame` every valid frame.
    public init(strictness: Strictness = .strict, onHeader: @escaping (WALHeader) throws -> Void = { _ in },
                onFrame: @escaping (WALFrame, UnsafeRawBufferPointer) throws -> Void) {
        self.strictness = strictness
        self.onHeader = onHeader
        self.onFrame = onFrame
        buffer = .allocate(byteCount: WALHeader.size, alignment: 8)
    }

    /// Creates a reader of the frames after frame `frame` of a WAL whose header is `header` and whose
    /// frame `frame` has cumulative checksum `checksum` (the header's own when `frame` is 0): the
    /// bytes written to it start at frame `frame + 1` (`header.offset(ofFrame: frame + 1)` in the
    /// file), and frames are numbered on from there. For reading a growing WAL from a cursor.
    public init(continuingAfter frame: Int, header: WALHeader, checksum: WALChecksum, strictness: Strictness = .strict,
                onFrame: @escaping (WALFrame, UnsafeRawBufferPointer) throws -> Void) {
        self.strictness = strictness
        onHeader = { _ in }
        self.onFrame = onFrame
        self.header = header
        self.checksum = checksum
        frameCount = frame
        buffer = .allocate(byteCount: header.frameSize, alignment: 8)
    }

    deinit {
        buffer.deallocate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !hasFinished else { throw WALFormatError.finished }
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            if stoppedAtInvalidFrame { return }
            let wanted = buffer.count - buffered
            let count = min(wanted, bytes.count - offset)
            (buffer.baseAddress! + buffered).copyMemory(from: base + offset, byteCount: count)
            buffered += count
            offset += count
            if buffered == buffer.count {
                try consumeBuffer()
                buffered = 0
            }
        }
    }

    public func finish() throws {
        guard !hasFinished else { throw WALFormatError.finished }
        hasFinished = true
        if header == nil { throw WALFormatError.truncated(frame: 0) }
        if buffered > 0 && strictness == .strict && !stoppedAtInvalidFrame {
            throw WALFormatError.truncated(frame: frameCount + 1)
        }
    }

    /// Handles a full buffer: the header, or one frame.
    private func consumeBuffer() throws {
        guard let header else {
            let parsed = try WALHeader(parsing: UnsafeRawBufferPointer(buffer))
            self.header = parsed
            checksum = parsed.checksum
            try onHeader(parsed)
            buffer.deallocate()
            buffer = .allocate(byteCount: parsed.frameSize, alignment: 8)
            return
        }
        let base = UnsafeRawPointer(buffer.baseAddress!)
        let number = frameCount + 1
        let pageNumber = loadBigEndian32(base, 0)
        let commitSize = loadBigEndian32(base, 4)
        guard loadBigEndian32(base, 8) == header.salt1, loadBigEndian32(base, 12) == header.salt2 else {
            return try invalid(.frameSalt(frame: number))
        }
        let page = UnsafeRawBufferPointer(start: base + WALFrame.headerSize, count: header.pageSize)
        let computed = checksum.adding(UnsafeRawBufferPointer(start: base, count: 8), bigEndian: header.bigEndianChecksums)
            .adding(page, bigEndian: header.bigEndianChecksums)
        guard computed == WALChecksum(loadBigEndian32(base, 16), loadBigEndian32(base, 20)) else {
            return try invalid(.frameChecksum(frame: number))
        }
        guard pageNumber != 0 else { return try invalid(.pageNumberZero(frame: number)) }
        checksum = computed
        frameCount = number
        if commitSize != 0 { lastCommitFrame = number }
        try onFrame(WALFrame(number: number, pageNumber: pageNumber, commitSize: commitSize), page)
    }

    private func invalid(_ error: WALFormatError) throws {
        if strictness == .strict { throw error }
        stoppedAtInvalidFrame = true
    }
}
