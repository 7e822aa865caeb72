import Foundation

/// Why a backup was taken; part of its id and its object name.
public enum BackupKind: String, Sendable, CaseIterable, Codable {
    case scheduled, change, startup, shutdown, manual
    case preRestore = "pre-restore"

    /// Kinds retention never removes: they are kept until deleted by hand.
    public var isPinned: Bool { self == .manual || self == .preRestore }
}

/// A backup's identity: `YYYYMMDDTHHMMSSZ-KIND`, the UTC second it was taken and its kind.
public struct BackupID: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The UTC second of the snapshot, as seconds since 1970.
    public var seconds: Int64
    /// Why it was taken.
    public var kind: BackupKind

    /// Creates an id for `date` (truncated to the second) and `kind`.
    public init(date: Date, kind: BackupKind) {
        self.seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        self.kind = kind
    }

    /// Creates an id from whole seconds since 1970.
    public init(seconds: Int64, kind: BackupKind) {
        self.seconds = seconds
        self.kind = kind
    }

    /// Parses `20261122T031700Z-manual`; nil when the text is not an id.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let kind = BackupKind(rawValue: String(parts[1])),
              let seconds = BackupID.parseTimestamp(parts[0]) else { return nil }
        self.seconds = seconds
        self.kind = kind
    }

    /// The time of the snapshot.
    public var date: Date { Date(timeIntervalSince1970: TimeInterval(seconds)) }

    /// `YYYYMMDDTHHMMSSZ`.
    public var timestamp: String { BackupID.formatTimestamp(seconds) }

    /// `YYYYMMDDTHHMMSSZ-KIND`.
    public var description: String { "\(timestamp)-\(kind.rawValue)" }

    /// Orders by time, then by kind name, so ids sort as their text does.
    public static func < (lhs: BackupID, rhs: BackupID) -> Bool {
        (lhs.seconds, lhs.kind.rawValue) < (rhs.seconds, rhs.kind.rawValue)
    }

    /// Formats seconds since 1970 as `YYYYMMDDTHHMMSSZ` (UTC).
    public static func formatTimestamp(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    /// Parses `YYYYMMDDTHHMMSSZ` into seconds since 1970; nil when malformed.
    public static func parseTimestamp(_ text: some StringProtocol) -> Int64? {
        let chars = Array(text.utf8)
        guard chars.count == 16, chars[8] == UInt8(ascii: "T"), chars[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for c in chars[range] {
                guard c >= 48 && c <= 57 else { return nil }
                value = value * 10 + Int(c - 48)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = Int64(timegm(&parts))
        // Reject dates timegm normalised (Feb 30 → Mar 2).
        guard BackupID.formatTimestamp(seconds) == String(text) else { return nil }
        return seconds
    }
}

/// How a backup's payload is stored on a target: gzip, then age unless encryption is off.
public enum PayloadFormat: Sendable, Equatable {
    /// `….sqlite3.gz.age`
    case encrypted
    /// `….sqlite3.gz`, only when the configuration says `"encryption": "none"`.
    case plain

    /// The object name's suffix.
    public var suffix: String {
        switch self {
        case .encrypted: return ".sqlite3.gz.age"
        case .plain: return ".sqlite3.gz"
        }
    }
}

/// A backup as found on a target: its database, id, format and size.
public struct RemoteBackup: Sendable, Hashable {
    /// The database name (`crm`).
    public var database: String
    /// The backup id.
    public var id: BackupID
    /// Encrypted or not, from the object name.
    public var format: PayloadFormat
    /// The object's size in bytes.
    public var size: Int64
    /// The object's key on the target.
    public var key: String

    /// The object key for `id` of `database` in `format`: `DBNAME/ID.sqlite3.gz.age`.
    public static func key(database: String, id: BackupID, format: PayloadFormat) -> String {
        "\(database)/\(id)\(format.suffix)"
    }

    /// Recognises a backup object in a listing entry: `DBNAME/ID.sqlite3.gz[.age]` directly under
    /// the target's root, nothing deeper (another host may keep its backups at `PREFIX/site-b/`, and
    /// they are not this configuration's); nil for anything else (temporaries, strays).
    public init?(object: RemoteObject) {
        let parts = object.key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let fileName = parts[1]
        let database = parts[0]
        let format: PayloadFormat
        let stem: Substring
        if fileName.hasSuffix(PayloadFormat.encrypted.suffix) {
            format = .encrypted
            stem = fileName.dropLast(PayloadFormat.encrypted.suffix.count)
        } else if fileName.hasSuffix(PayloadFormat.plain.suffix) {
            format = .plain
            stem = fileName.dropLast(PayloadFormat.plain.suffix.count)
        } else {
            return nil
        }
        guard !database.isEmpty, let id = BackupID(stem) else { return nil }
        self.database = String(database)
        self.id = id
        self.format = format
        self.size = object.size
        self.key = object.key
    }
}
