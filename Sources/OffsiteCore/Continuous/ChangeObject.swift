import Foundation

// Change objects and compacted objects (docs/CONTINUOUS.md §2): their names, their metadata (JSON
// in the gzip header's FEXTRA subfield `OF`), the links between them, and the streams that write
// and read them. Decrypted and decompressed, every object is a valid SQLite WAL file.

// MARK: Names

/// What a change object covers: one numbered object of a chain, or a compaction of a run of them.
public enum ChangeObjectKind: Sendable, Hashable {
    /// Change object `sequence` (from 1).
    case change(sequence: Int)
    /// The newest version of every page of change objects `from` through `to`, as one transaction.
    case compacted(from: Int, to: Int)

    /// The sequence numbers covered.
    public var sequences: ClosedRange<Int> {
        switch self {
        case let .change(sequence): return sequence...sequence
        case let .compacted(from, to): return from...to
        }
    }
}

/// The name of a change object (`BASEID.c00000042.FIRST.LAST.wal.gz.age`) or of a compacted
/// object (`BASEID.k00000001-00000600.FIRST.LAST.wal.gz.age`): its base, what it covers, the
/// commit times of its first and last transaction (UTC, milliseconds) and its format. Change
/// object 1 may also name the moment its base stands for (`….FIRST.LAST.sSINCE.wal.gz.age`).
public struct ChangeObjectName: Sendable, Hashable, CustomStringConvertible {
    /// The backup id of the chain's base.
    public var base: BackupID
    /// What it covers.
    public var kind: ChangeObjectKind
    /// The commit time of its first transaction (compacted: of object `from`'s first), in milliseconds since 1970.
    public var firstCommit: Int64
    /// The commit time of its last transaction, in milliseconds since 1970.
    public var lastCommit: Int64
    /// Change object 1 only, when the agent knew it: the moment from which the base is the
    /// database's state (the commit time of the last transaction the base holds, or when the
    /// base's read began if none was seen since capture started). Every moment from it until
    /// `firstCommit` restores to the base as it is, and the previous chain, when it reaches this
    /// moment, ends exactly where the base begins.
    public var since: Int64?
    /// Encrypted or not.
    public var format: PayloadFormat

    /// The suffix of an encrypted object.
    public static let encryptedSuffix = ".wal.gz.age"
    /// The suffix of an object stored without encryption (`"encryption": "none"`).
    public static let plainSuffix = ".wal.gz"
    /// The most a sequence number can be: eight digits.
    public static let maximumSequence = 99_999_999

    /// Creates a name.
    public init(base: BackupID, kind: ChangeObjectKind, firstCommit: Int64, lastCommit: Int64, since: Int64? = nil,
                format: PayloadFormat) {
        self.base = base
        self.kind = kind
        self.firstCommit = firstCommit
        self.lastCommit = lastCommit
        self.since = since
        self.format = format
    }

    /// Parses a file name; nil unless it has exactly the shape of a change or compacted object's name.
    public init?(fileName: some StringProtocol) {
        let text = String(fileName)
        let format: PayloadFormat
        let stem: Substring
        if text.hasSuffix(Self.encryptedSuffix) {
            format = .encrypted
            stem = text.dropLast(Self.encryptedSuffix.count)
        } else if text.hasSuffix(Self.plainSuffix) {
            format = .plain
            stem = text.dropLast(Self.plainSuffix.count)
        } else {
            return nil
        }
        // BASEID . c00000042 . YYYYMMDDTHHMMSS . mmmZ . YYYYMMDDTHHMMSS . mmmZ [. sYYYYMMDDTHHMMSS . mmmZ]
        let parts = stem.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 6 || parts.count == 8, let base = BackupID(parts[0]),
              let kind = Self.parseKind(parts[1]),
              let first = Self.parseCommitTime("\(parts[2]).\(parts[3])"),
              let last = Self.parseCommitTime("\(parts[4]).\(parts[5])"),
              first <= last else { return nil }
        var since: Int64?
        if parts.count == 8 {
            guard kind == .change(sequence: 1), parts[6].first == "s",
                  let moment = Self.parseCommitTime("\(parts[6].dropFirst()).\(parts[7])"), moment <= first else { return nil }
            since = moment
        }
        self.init(base: base, kind: kind, firstCommit: first, lastCommit: last, since: since, format: format)
    }

    /// The file name.
    public var fileName: String {
        let covered: String
        switch kind {
        case let .change(sequence): covered = "c" + Self.eightDigits(sequence)
        case let .compacted(from, to): covered = "k" + Self.eightDigits(from) + "-" + Self.eightDigits(to)
        }
        return "\(base).\(covered).\(Self.formatCommitTime(firstCommit)).\(Self.formatCommitTime(lastCommit))"
            + (since.map { ".s" + Self.formatCommitTime($0) } ?? "")
            + (format == .encrypted ? Self.encryptedSuffix : Self.plainSuffix)
    }

    public var description: String { fileName }

    /// A short label for messages: `change object 42 of 20261203T120000Z-scheduled`.
    public var label: String {
        switch kind {
        case let .change(sequence): return "change object \(sequence) of \(base)"
        case let .compacted(from, to): return "compacted object \(from)–\(to) of \(base)"
        }
    }

    /// `YYYYMMDDTHHMMSS.mmmZ` (UTC) for milliseconds since 1970.
    public static func formatCommitTime(_ milliseconds: Int64) -> String {
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        let fraction = milliseconds - seconds * 1000
        return String(BackupID.formatTimestamp(seconds).dropLast()) + "." + String(format: "%03d", Int(fraction)) + "Z"
    }

    /// Parses `YYYYMMDDTHHMMSS.mmmZ` into milliseconds since 1970; nil unless it has exactly that shape.
    public static func parseCommitTime(_ text: some StringProtocol) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count == 20, bytes[15] == UInt8(ascii: "."), bytes[19] == UInt8(ascii: "Z"),
              let seconds = BackupID.parseTimestamp(String(decoding: bytes[0..<15], as: UTF8.self) + "Z"),
              let fraction = digits(bytes[16..<19]) else { return nil }
        return seconds * 1000 + Int64(fraction)
    }

    private static func parseKind(_ text: Substring) -> ChangeObjectKind? {
        let bytes = Array(text.utf8)
        if bytes.count == 9, bytes[0] == UInt8(ascii: "c"), let sequence = digits(bytes[1...]), sequence >= 1 {
            return .change(sequence: sequence)
        }
        if bytes.count == 18, bytes[0] == UInt8(ascii: "k"), bytes[9] == UInt8(ascii: "-"),
           let from = digits(bytes[1..<9]), let to = digits(bytes[10...]), from >= 1, from <= to {
            return .compacted(from: from, to: to)
        }
        return nil
    }

    private static func digits(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    private static func eightDigits(_ value: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(8 - text.count, 0)) + text
    }
}

/// A change or compacted object as found on a target.
public struct RemoteChangeObject: Sendable, Hashable {
    /// The database name (`crm`).
    public var database: String
    /// What its name says.
    public var name: ChangeObjectName
    /// The object's size in bytes.
    public var size: Int64
    /// The object's key on the target.
    public var key: String

    /// The key of `name` for `database`: `DBNAME/NAME`.
    public static func key(database: String, name: ChangeObjectName) -> String {
        "\(database)/\(name.fileName)"
    }

    /// Creates an entry.
    public init(database: String, name: ChangeObjectName, size: Int64) {
        self.database = database
        self.name = name
        self.size = size
        self.key = Self.key(database: database, name: name)
    }

    /// Recognises a change or compacted object in a listing entry: `DBNAME/NAME` directly under the
    /// target's root, nothing deeper; nil for anything else.
    public init?(object: RemoteObject) {
        let parts = object.key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let name = ChangeObjectName(fileName: parts[1]) else { return nil }
        database = String(parts[0])
        self.name = name
        size = object.size
        key = object.key
    }
}

// MARK: Links

/// A SHA-256 digest of an object's WAL bytes (its plaintext: the bucket never shows it).
public struct ChainDigest: Sendable, Hashable, CustomStringConvertible {
    /// The 32 bytes.
    public let bytes: [UInt8]

    /// Wraps 32 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    /// Parses 64 lowercase hexadecimal digits.
    public init?(hex: some StringProtocol) {
        let text = Array(hex.utf8)
        guard text.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        var index = 0
        while index < 64 {
            guard let high = hexValue(text[index]), let low = hexValue(text[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        self.bytes = bytes
    }

    /// The digest in lowercase hexadecimal.
    public var hex: String { bytes.map { String(format: "%02x", $0) }.joined() }

    public var description: String { hex }
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    default: return nil
    }
}

/// What an object's `prev` names: the base's uncompressed file (object 1, or a compaction from 1)
/// or the WAL bytes of the object before it.
public enum ChainLink: Sendable, Hashable, CustomStringConvertible {
    /// `crc32:XXXXXXXX:LENGTH`: the CRC-32 and length of the base's uncompressed database file.
    case base(crc: UInt32, length: Int64)
    /// The SHA-256 of the previous object's WAL bytes.
    case object(ChainDigest)

    /// The link to a base whose uncompressed file has `checksum`.
    public init(base checksum: PlaintextChecksum) {
        self = .base(crc: checksum.crc, length: checksum.length)
    }

    /// Parses `crc32:xxxxxxxx:LENGTH` or 64 hexadecimal digits.
    public init?(text: some StringProtocol) {
        let value = String(text)
        if value.hasPrefix("crc32:") {
            let parts = value.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[1].count == 8, parts[1].utf8.allSatisfy({ hexValue($0) != nil }),
                  let crc = UInt32(parts[1], radix: 16), !parts[2].isEmpty, parts[2].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  let length = Int64(parts[2]) else { return nil }
            self = .base(crc: crc, length: length)
        } else if let digest = ChainDigest(hex: value) {
            self = .object(digest)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case let .base(crc, length): return "crc32:" + String(format: "%08x", crc) + ":\(length)"
        case let .object(digest): return digest.hex
        }
    }
}

// MARK: Metadata

/// One transaction of an object: the number of its last (commit) frame in the object's WAL, from 1,
/// and its commit time in milliseconds since 1970.
public struct ChangeTransaction: Sendable, Hashable {
    /// The 1-based number of the transaction's commit frame.
    public var lastFrame: Int
    /// When it was committed (as the agent saw it), in milliseconds since 1970.
    public var commitTime: Int64

    /// Creates an entry.
    public init(lastFrame: Int, commitTime: Int64) {
        self.lastFrame = lastFrame
        self.commitTime = commitTime
    }

    /// The entries for transactions of `frameCounts[i].frames` frames each, in commit order.
    public static func list(_ transactions: [(frames: Int, commitTime: Int64)]) -> [ChangeTransaction] {
        var last = 0
        return transactions.map { transaction in
            last += transaction.frames
            return ChangeTransaction(lastFrame: last, commitTime: transaction.commitTime)
        }
    }
}

/// A change or compacted object that is not what it should be.
public enum ChangeObjectError: UserFacingError, Equatable {
    /// The metadata is missing, malformed, or inconsistent.
    case invalidMetadata(String)
    /// The metadata does not fit the gzip header's extra field.
    case metadataTooLarge(bytes: Int)
    /// The frames written or read do not match the metadata's transactions.
    case framesDisagree(String)

    public var message: String {
        switch self {
        case let .invalidMetadata(detail): return "change object metadata: \(detail)"
        case let .metadataTooLarge(bytes):
            return "change object metadata of \(bytes) bytes does not fit the gzip header (at most \(ChangeObjectMetadata.maximumEncodedSize))"
        case let .framesDisagree(detail): return "change object frames do not match its metadata: \(detail)"
        }
    }

    public var hint: String? {
        switch self {
        case .metadataTooLarge: return "put fewer transactions in one object"
        case .invalidMetadata, .framesDisagree: return "the object is damaged or was not written by offsite; restore an earlier point"
        }
    }
}

/// The metadata every object carries in its gzip header (FEXTRA subfield `OF`), as compact JSON:
/// `{"v":1,"db":"crm","base":"…","seq":42,"prev":"…","page":4096,"tx":[[3,1764763513125],…]}`;
/// a compacted object has `"from"` and `"to"` instead of `"seq"`, `"last"` (the digest of object
/// `to`'s WAL bytes) and one transaction.
public struct ChangeObjectMetadata: Sendable, Equatable {
    /// The format version written and understood.
    public static let version = 1
    /// The gzip subfield id: `OF`.
    public static let subfieldID: [UInt8] = Array("OF".utf8)
    /// The most bytes the JSON may take: the extra field's 65535 less the subfield's 4-byte header.
    public static let maximumEncodedSize = 65535 - 4

    /// The database name.
    public var database: String
    /// The chain's base.
    public var base: BackupID
    /// What the object covers.
    public var kind: ChangeObjectKind
    /// What comes before it in the chain.
    public var previous: ChainLink
    /// For a compacted object, the digest of the WAL bytes of the last change object it covers.
    public var last: ChainDigest?
    /// The database page size.
    public var pageSize: Int
    /// Its transactions, in commit order (one for a compacted object).
    public var transactions: [ChangeTransaction]
    /// Change object 1 only: the moment from which the base is the database's state
    /// (`ChangeObjectName.since`).
    public var since: Int64?

    /// The metadata of change object `sequence`.
    public static func change(database: String, base: BackupID, sequence: Int, previous: ChainLink, pageSize: Int,
                              transactions: [ChangeTransaction], since: Int64? = nil) -> ChangeObjectMetadata {
        ChangeObjectMetadata(database: database, base: base, kind: .change(sequence: sequence), previous: previous,
                             last: nil, pageSize: pageSize, transactions: transactions, since: since)
    }

    /// The metadata of a compaction of change objects `from` through `to`: `previous` is object
    /// `from`'s, `last` the digest of object `to`, one transaction of `frames` frames committed at
    /// `commitTime` (object `to`'s last commit).
    public static func compacted(database: String, base: BackupID, from: Int, to: Int, previous: ChainLink,
                                 last: ChainDigest, pageSize: Int, frames: Int, commitTime: Int64) -> ChangeObjectMetadata {
        ChangeObjectMetadata(database: database, base: base, kind: .compacted(from: from, to: to), previous: previous,
                             last: last, pageSize: pageSize,
                             transactions: [ChangeTransaction(lastFrame: frames, commitTime: commitTime)])
    }

    /// The number of frames in the object's WAL.
    public var frameCount: Int { transactions.last?.lastFrame ?? 0 }

    /// The object's name in `format`; a compacted object's first commit (object `from`'s) is `firstCommit`.
    public func objectName(format: PayloadFormat, firstCommit: Int64? = nil) -> ChangeObjectName {
        ChangeObjectName(base: base, kind: kind, firstCommit: firstCommit ?? transactions.first?.commitTime ?? 0,
                         lastCommit: transactions.last?.commitTime ?? 0, since: since, format: format)
    }

    /// Throws unless the metadata is consistent: a database name, a page size, transactions with
    /// increasing frame numbers from 1 on, and for a compacted object `from` ≤ `to`, one transaction
    /// and a `last` digest.
    public func validate() throws {
        func fail(_ detail: String) -> ChangeObjectError { .invalidMetadata(detail) }
        guard !database.isEmpty else { throw fail("no database name") }
        guard WALHeader.isValidPageSize(pageSize) else { throw fail("page size \(pageSize) is not a SQLite page size") }
        guard !transactions.isEmpty else { throw fail("no transactions") }
        var previousFrame = 0
        for transaction in transactions {
            guard transaction.lastFrame > previousFrame else { throw fail("transaction frame numbers do not increase") }
            guard transaction.commitTime >= 0 else { throw fail("a commit time is negative") }
            previousFrame = transaction.lastFrame
        }
        switch kind {
        case let .change(sequence):
            guard (1...ChangeObjectName.maximumSequence).contains(sequence) else { throw fail("sequence \(sequence) out of range") }
            guard last == nil else { throw fail("a change object has no \"last\"") }
            if let since {
                guard sequence == 1 else { throw fail("only change object 1 names the moment its base stands for") }
                guard since >= 0, since <= transactions[0].commitTime else { throw fail("\"since\" comes after the first commit") }
            }
        case let .compacted(from, to):
            guard from >= 1, from <= to, to <= ChangeObjectName.maximumSequence else { throw fail("range \(from)–\(to) out of order") }
            guard transactions.count == 1 else { throw fail("a compacted object holds one transaction") }
            guard last != nil else { throw fail("a compacted object names the digest of its last object") }
            guard since == nil else { throw fail("only change object 1 names the moment its base stands for") }
        }
    }

    /// The compact JSON text.
    public func encodedJSON() -> [UInt8] {
        var text = "{\"v\":\(Self.version),\"db\":\(jsonString(database)),\"base\":\"\(base)\","
        switch kind {
        case let .change(sequence): text += "\"seq\":\(sequence),"
        case let .compacted(from, to): text += "\"from\":\(from),\"to\":\(to),"
        }
        text += "\"prev\":\"\(previous)\","
        if let last { text += "\"last\":\"\(last.hex)\"," }
        if let since { text += "\"since\":\(since)," }
        text += "\"page\":\(pageSize),\"tx\":["
        text += transactions.map { "[\($0.lastFrame),\($0.commitTime)]" }.joined(separator: ",")
        text += "]}"
        return Array(text.utf8)
    }

    /// The gzip FEXTRA field holding the JSON as subfield `OF`; throws when it does not fit.
    public func extraField() throws -> [UInt8] {
        try validate()
        let json = encodedJSON()
        guard json.count <= Self.maximumEncodedSize else { throw ChangeObjectError.metadataTooLarge(bytes: json.count) }
        return Self.subfieldID + [UInt8(json.count & 0xff), UInt8(json.count >> 8)] + json
    }

    /// Parses the JSON text and validates it.
    public init(json: [UInt8]) throws {
        struct Wire: Decodable {
            var v: Int
            var db: String
            var base: String
            var seq: Int?
            var from: Int?
            var to: Int?
            var prev: String
            var last: String?
            var since: Int64?
            var page: Int
            var tx: [[Int64]]
        }
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(json))
        } catch {
            throw ChangeObjectError.invalidMetadata("not the expected JSON (\(describeDecodingError(error)))")
        }
        guard wire.v == Self.version else { throw ChangeObjectError.invalidMetadata("version \(wire.v), this offsite reads version \(Self.version)") }
        guard let base = BackupID(wire.base) else { throw ChangeObjectError.invalidMetadata("base \(wire.base) is not a backup id") }
        guard let previous = ChainLink(text: wire.prev) else { throw ChangeObjectError.invalidMetadata("prev \(wire.prev) is not a link") }
        let kind: ChangeObjectKind
        switch (wire.seq, wire.from, wire.to) {
        case let (sequence?, nil, nil): kind = .change(sequence: sequence)
        case let (nil, from?, to?): kind = .compacted(from: from, to: to)
        default: throw ChangeObjectError.invalidMetadata("needs either \"seq\" or \"from\" and \"to\"")
        }
        var last: ChainDigest?
        if let text = wire.last {
            guard let digest = ChainDigest(hex: text) else { throw ChangeObjectError.invalidMetadata("last \(text) is not a digest") }
            last = digest
        }
        var transactions: [ChangeTransaction] = []
        for entry in wire.tx {
            guard entry.count == 2, entry[0] >= 1, entry[0] <= Int64(Int32.max) else {
                throw ChangeObjectError.invalidMetadata("a transaction is not [last frame, commit time]")
            }
            transactions.append(ChangeTransaction(lastFrame: Int(entry[0]), commitTime: entry[1]))
        }
        self.init(database: wire.db, base: base, kind: kind, previous: previous, last: last, pageSize: wire.page,
                  transactions: transactions, since: wire.since)
        try validate()
    }

    /// Finds subfield `OF` in a gzip FEXTRA field and parses it.
    public init(extraField: [UInt8]) throws {
        var offset = 0
        while offset + 4 <= extraField.count {
            let length = Int(extraField[offset + 2]) | Int(extraField[offset + 3]) << 8
            let start = offset + 4
            guard start + length <= extraField.count else { break }
            if Array(extraField[offset..<offset + 2]) == Self.subfieldID {
                try self.init(json: Array(extraField[start..<start + length]))
                return
            }
            offset = start + length
        }
        throw ChangeObjectError.invalidMetadata("the gzip header has no OF field")
    }

    private init(database: String, base: BackupID, kind: ChangeObjectKind, previous: ChainLink, last: ChainDigest?,
                 pageSize: Int, transactions: [ChangeTransaction], since: Int64? = nil) {
        self.database = database
        self.base = base
        self.kind = kind
        self.previous = previous
        self.last = last
        self.pageSize = pageSize
        self.transactions = transactions
        self.since = since
    }
}

/// A decoding error in a few words, without the input.
private func describeDecodingError(_ error: Error) -> String {
    switch error {
    case let DecodingError.keyNotFound(key, _): return "no \"\(key.stringValue)\""
    case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
        let path = context.codingPath.map(\.stringValue).joined(separator: ".")
        return "wrong type at \(path.isEmpty ? "top level" : path)"
    case DecodingError.dataCorrupted: return "not JSON"
    default: return "not JSON"
    }
}

// MARK: Writing

/// Passes bytes on to `next` while hashing them with SHA-256.
final class HashingSink: ByteSink {
    private let hasher = SHA256Hasher()
    private let next: any ByteSink
    /// The digest of everything written, once finished.
    private(set) var digest: [UInt8]?

    init(next: any ByteSink) {
        self.next = next
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        hasher.update(bytes)
        try next.write(bytes)
    }

    func finish() throws {
        digest = hasher.finalize()
        try next.finish()
    }
}

/// Writes one change or compacted object as a stream: the metadata goes into the gzip header first,
/// then the frames are appended one by one (page number, commit size or 0, page) into a fresh WAL
/// (random salts, checksums computed afresh), compressed at the given level, encrypted as
/// `encryption` says (or not, for `.none`) and written to `sink`. `finish` returns the SHA-256 of
/// the WAL bytes — the next object's `prev`. The frames must match the metadata's transactions:
/// a commit frame exactly at each transaction's last frame, nothing after the last one.
/// Memory is fixed (zlib's state and a 256 KiB buffer), whatever the object's size.
public final class ChangeObjectWriter {
    /// What the object says about itself.
    public let metadata: ChangeObjectMetadata
    /// Bytes of WAL written so far (before compression).
    public var walByteCount: Int64 { wal.byteCount }

    private let wal: WALWriter
    private let hashing: HashingSink
    private var transactionIndex = 0

    /// Starts an object with `metadata` into `sink`.
    public init(metadata: ChangeObjectMetadata, compressionLevel: Int = 6, encryption: PayloadEncryption,
                into sink: any ByteSink) throws {
        let extraField = try metadata.extraField()
        self.metadata = metadata
        let compressor = try GzipCompressor(level: compressionLevel, extraField: extraField,
                                            next: try makeEncryptor(encryption: encryption, into: sink))
        hashing = HashingSink(next: compressor)
        wal = try WALWriter(pageSize: metadata.pageSize, into: hashing)
    }

    /// Appends the next frame: `page` (one page) as page `pageNumber`, `commitSize` the database's
    /// size in pages when the frame ends a transaction, else 0.
    public func append(pageNumber: UInt32, commitSize: UInt32, page: UnsafeRawBufferPointer) throws {
        let number = wal.frameCount + 1
        guard transactionIndex < metadata.transactions.count else {
            throw ChangeObjectError.framesDisagree("frame \(number) comes after the last transaction's commit frame")
        }
        let expected = metadata.transactions[transactionIndex].lastFrame
        if commitSize != 0 {
            guard number == expected else {
                throw ChangeObjectError.framesDisagree("frame \(number) commits, but transaction \(transactionIndex + 1) ends at frame \(expected)")
            }
            transactionIndex += 1
        } else if number >= expected {
            throw ChangeObjectError.framesDisagree("frame \(number) does not commit, but transaction \(transactionIndex + 1) ends there")
        }
        try wal.append(pageNumber: pageNumber, commitSize: commitSize, page: page)
    }

    /// Ends the object (gzip trailer, encryption's last chunk, the sink finished) and returns the
    /// SHA-256 of its WAL bytes.
    public func finish() throws -> ChainDigest {
        guard transactionIndex == metadata.transactions.count else {
            throw ChangeObjectError.framesDisagree("\(metadata.transactions.count - transactionIndex) transactions of the metadata were not written")
        }
        try wal.finish()
        return ChainDigest(bytes: hashing.digest!)!
    }
}

// MARK: Reading

/// Reads one change or compacted object written to it (the stored bytes: encrypted unless the
/// format is plain): decrypts, inflates, parses the metadata from the gzip header, checks every
/// frame's salts and checksum and that the commit frames are exactly the metadata's transactions,
/// and hashes the WAL bytes of a change object. `onMetadata` sees the metadata before any frame and answers how many
/// frames to hand to `onFrame` (the rest are still read and checked). Memory is fixed.
///
/// `pipelined`: decryption and decompression run on the writing thread, hashing, checking and
/// `onMetadata`/`onFrame` on a thread of their own (behind a 2 MiB queue), so the two halves use
/// two cores; `finish` returns once everything is done, and errors come back from either side.
public final class ChangeObjectReader: ByteSink {
    /// The metadata, once the gzip header is read (after `finish` when pipelined).
    public var metadata: ChangeObjectMetadata? { payload.metadata }
    /// The SHA-256 of the WAL bytes of a change object, after `finish` (nil for a compacted
    /// object: nothing links to its bytes).
    public var digest: ChainDigest? { payload.digest }

    private let head: any ByteSink
    private let payload: ObjectPayloadSink
    private let handOff: ThreadedSink?

    /// Creates a reader of an object in `format`, decrypting with `keys`.
    public init(format: PayloadFormat, keys: DecryptionKeys, pipelined: Bool = false,
                onMetadata: @escaping (ChangeObjectMetadata) throws -> Int = { $0.frameCount },
                onFrame: @escaping (WALFrame, UnsafeRawBufferPointer) throws -> Void) throws {
        payload = ObjectPayloadSink(onMetadata: onMetadata, onFrame: onFrame)
        let capture = ExtraFieldCapture(next: payload)
        payload.capture = capture
        let decompressor: GzipDecompressor
        if pipelined {
            let handOff = ThreadedSink(next: capture.next, name: "offsite-restore-apply")
            capture.next = handOff
            self.handOff = handOff
        } else {
            handOff = nil
        }
        decompressor = try GzipDecompressor(next: capture, keepingExtraField: true)
        capture.decompressor = decompressor
        switch format {
        case .plain: head = decompressor
        case .encrypted: head = try makeAgeDecryptor(keys: keys, next: decompressor)
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try head.write(bytes)
    }

    public func finish() throws {
        try head.finish()
    }

    /// Stops the checking thread of a pipelined reader that failed or is given up; waits for it.
    public func abandon() {
        handOff?.abandon()
    }

    deinit {
        handOff?.abandon()
    }
}

/// Takes the gzip header's extra field from the decompressor on the first bytes it inflates, on
/// the decompressing thread, before passing them on (the payload reads it from here, possibly on
/// another thread: the hand-off between them orders the two).
private final class ExtraFieldCapture: ByteSink {
    weak var decompressor: GzipDecompressor?
    var next: any ByteSink
    private(set) var hasReadHeader = false
    private(set) var extraField: [UInt8]?
    private var captured = false

    init(next: any ByteSink) {
        self.next = next
    }

    private func capture() {
        guard !captured else { return }
        captured = true
        hasReadHeader = decompressor?.hasReadHeader ?? false
        extraField = decompressor?.extraField
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        capture()
        try next.write(bytes)
    }

    func finish() throws {
        capture()
        try next.finish()
    }
}

/// The WAL bytes of an object, with the metadata from the gzip header that carries them.
private final class ObjectPayloadSink: ByteSink {
    /// Where the gzip header's extra field is found (it passes the bytes on to this sink).
    weak var capture: ExtraFieldCapture?
    private(set) var metadata: ChangeObjectMetadata?
    private(set) var digest: ChainDigest?
    private let onMetadata: (ChangeObjectMetadata) throws -> Int
    private let onFrame: (WALFrame, UnsafeRawBufferPointer) throws -> Void
    private let hasher = SHA256Hasher()
    private var reader: WALReader!
    private var deliverUpTo = 0
    private var transactionIndex = 0
    /// Whether the WAL bytes are hashed: only a change object's digest is a link (the object
    /// after a compacted one links to the `last` its metadata names), and hashing is the
    /// costliest part of reading one.
    private var hashes = true

    init(onMetadata: @escaping (ChangeObjectMetadata) throws -> Int,
         onFrame: @escaping (WALFrame, UnsafeRawBufferPointer) throws -> Void) {
        self.onMetadata = onMetadata
        self.onFrame = onFrame
        reader = WALReader(strictness: .strict, onHeader: { [unowned self] header in
            guard let metadata = self.metadata, header.pageSize == metadata.pageSize else {
                throw ChangeObjectError.framesDisagree("the WAL's page size \(header.pageSize) is not the metadata's")
            }
        }, onFrame: { [unowned self] frame, page in try self.check(frame, page) })
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if metadata == nil { try readMetadata() }
        if hashes { hasher.update(bytes) }
        try reader.write(bytes)
    }

    func finish() throws {
        if metadata == nil { try readMetadata() }
        try reader.finish()
        guard let metadata, transactionIndex == metadata.transactions.count, reader.frameCount == metadata.frameCount else {
            throw ChangeObjectError.framesDisagree("the WAL holds \(reader.frameCount) frames, the metadata lists \(metadata?.frameCount ?? 0)")
        }
        if hashes { digest = ChainDigest(bytes: hasher.finalize()) }
    }

    private func readMetadata() throws {
        guard let capture, capture.hasReadHeader else {
            throw ChangeObjectError.invalidMetadata("the gzip header was not read")
        }
        guard let field = capture.extraField else { throw ChangeObjectError.invalidMetadata("the gzip header has no extra field") }
        let parsed = try ChangeObjectMetadata(extraField: field)
        metadata = parsed
        if case .compacted = parsed.kind { hashes = false }
        deliverUpTo = try onMetadata(parsed)
    }

    private func check(_ frame: WALFrame, _ page: UnsafeRawBufferPointer) throws {
        guard let metadata, transactionIndex < metadata.transactions.count else {
            throw ChangeObjectError.framesDisagree("frame \(frame.number) comes after the last transaction")
        }
        let expected = metadata.transactions[transactionIndex].lastFrame
        if frame.isCommit {
            guard frame.number == expected else {
                throw ChangeObjectError.framesDisagree("frame \(frame.number) commits, but transaction \(transactionIndex + 1) ends at frame \(expected)")
            }
            transactionIndex += 1
        } else if frame.number >= expected {
            throw ChangeObjectError.framesDisagree("frame \(frame.number) does not commit, but transaction \(transactionIndex + 1) ends there")
        }
        if frame.number <= deliverUpTo { try onFrame(frame, page) }
    }
}

// MARK: Compaction

/// Builds a compacted object: the frames of a run of change objects are appended in order, the
/// newest version of each page is kept in a scratch file (one slot per page, so the file never
/// exceeds the pages touched) and only a page-number → slot index stays in memory; `write` then
/// emits one transaction holding each page once, in page order, with the commit frame carrying the
/// database size after the last transaction (pages beyond it are left out, as a checkpoint would).
public final class ChangeCompactor {
    /// The page size.
    public let pageSize: Int
    /// Frames appended so far.
    public private(set) var frameCount = 0
    /// Transactions appended so far.
    public private(set) var transactionCount = 0
    /// The database size in pages after the last transaction appended.
    public private(set) var databaseSize: UInt32 = 0

    private let descriptor: Int32
    private let scratchPath: String
    private var slots: [UInt32: Int32] = [:]
    private var hasPendingFrames = false

    /// Creates a compactor keeping its scratch file (unlinked at once) in `scratchFolder`.
    public init(pageSize: Int, scratchFolder: String) throws {
        guard WALHeader.isValidPageSize(pageSize) else { throw WALFormatError.badPageSize(pageSize) }
        self.pageSize = pageSize
        scratchPath = scratchFolder
        descriptor = try openUnlinkedTemporaryFile(in: scratchFolder)
    }

    deinit {
        close(descriptor)
    }

    /// The number of distinct pages kept so far.
    public var pageCount: Int { slots.count }

    /// Appends the next frame of the run (in commit order).
    public func append(pageNumber: UInt32, commitSize: UInt32, page: UnsafeRawBufferPointer) throws {
        guard page.count == pageSize else { throw WALFormatError.pageLength(expected: pageSize, got: page.count) }
        guard pageNumber != 0 else { throw WALFormatError.pageNumberZero(frame: frameCount + 1) }
        let slot: Int32
        if let existing = slots[pageNumber] {
            slot = existing
        } else {
            slot = Int32(slots.count)
            slots[pageNumber] = slot
        }
        let offset = Int64(slot) * Int64(pageSize)
        var written = 0
        while written < pageSize {
            let result = pwrite(descriptor, page.baseAddress! + written, pageSize - written, off_t(offset + Int64(written)))
            if result < 0 {
                if errno == EINTR { continue }
                throw FileIOError(operation: "write", path: "a compaction scratch file in \(scratchPath)", code: errno)
            }
            written += result
        }
        frameCount += 1
        hasPendingFrames = commitSize == 0
        if commitSize != 0 {
            transactionCount += 1
            databaseSize = commitSize
        }
    }

    /// The number of frames the compacted object holds: the pages kept that lie within the
    /// database's final size.
    public var compactedFrameCount: Int { slots.keys.reduce(0) { $0 + ($1 <= databaseSize ? 1 : 0) } }

    /// The metadata of the compacted object of change objects `from`…`to` (see
    /// `ChangeObjectMetadata.compacted`), with the frame count this compactor will write.
    public func metadata(database: String, base: BackupID, from: Int, to: Int, previous: ChainLink, last: ChainDigest,
                         commitTime: Int64) -> ChangeObjectMetadata {
        .compacted(database: database, base: base, from: from, to: to, previous: previous, last: last,
                   pageSize: pageSize, frames: compactedFrameCount, commitTime: commitTime)
    }

    /// Writes the compacted object with `metadata` (from `metadata(…)`) to `sink`; returns the
    /// SHA-256 of its WAL bytes.
    public func write(metadata: ChangeObjectMetadata, compressionLevel: Int = 6, encryption: PayloadEncryption,
                      into sink: any ByteSink) throws -> ChainDigest {
        guard !hasPendingFrames, transactionCount > 0 else {
            throw ChangeObjectError.framesDisagree("the frames compacted do not end with a commit frame")
        }
        let pages = slots.filter { $0.key <= databaseSize }.sorted { $0.key < $1.key }
        guard !pages.isEmpty, metadata.frameCount == pages.count, metadata.pageSize == pageSize else {
            throw ChangeObjectError.framesDisagree("the compacted object holds \(pages.count) pages, the metadata lists \(metadata.frameCount)")
        }
        let writer = try ChangeObjectWriter(metadata: metadata, compressionLevel: compressionLevel, encryption: encryption, into: sink)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        defer { buffer.deallocate() }
        for (index, entry) in pages.enumerated() {
            let offset = Int64(entry.value) * Int64(pageSize)
            var read = 0
            while read < pageSize {
                let result = pread(descriptor, buffer.baseAddress! + read, pageSize - read, off_t(offset + Int64(read)))
                if result < 0 && errno == EINTR { continue }
                guard result > 0 else {
                    throw FileIOError(operation: "read", path: "a compaction scratch file in \(scratchPath)", code: result < 0 ? errno : EIO)
                }
                read += result
            }
            let isLast = index == pages.count - 1
            try writer.append(pageNumber: entry.key, commitSize: isLast ? databaseSize : 0, page: UnsafeRawBufferPointer(buffer))
        }
        return try writer.finish()
    }
}
