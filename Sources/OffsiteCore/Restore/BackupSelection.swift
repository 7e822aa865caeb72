import Foundation

/// Which backup a restore or verify wants.
public enum BackupSelection: Sendable, Equatable {
    /// The newest backup of the database.
    case latest
    /// The backup with this id.
    case id(BackupID)
    /// The newest backup taken at or before this time.
    case at(Date)

    /// Parses a `--backup` value: `latest` or an id, optionally with its object suffix.
    public static func parse(backup text: String) throws -> BackupSelection {
        if text == "latest" { return .latest }
        var stem = Substring(text)
        if let slash = stem.lastIndex(of: "/") { stem = stem[stem.index(after: slash)...] }
        for format in [PayloadFormat.encrypted, .plain] where stem.hasSuffix(format.suffix) {
            stem = stem.dropLast(format.suffix.count)
        }
        guard let id = BackupID(stem) else {
            throw RestoreError.invalidArgument("--backup \(text): expected `latest` or an id such as 20261122T031700Z-manual")
        }
        return .id(id)
    }

    /// Parses an `--at` value: RFC 3339 (`2026-11-22T03:17:00Z`, `…+01:00`, fractional seconds allowed)
    /// or `YYYY-MM-DD HH:MM[:SS]` in UTC.
    public static func parse(at text: String) throws -> BackupSelection {
        guard let date = parseTime(text) else {
            throw RestoreError.invalidArgument("--at \(text): expected RFC 3339 (2026-11-22T03:17:00Z) or YYYY-MM-DD HH:MM (UTC)")
        }
        return .at(date)
    }

    /// Parses RFC 3339 or `YYYY-MM-DD HH:MM[:SS]` (UTC); nil when neither matches.
    public static func parseTime(_ text: String) -> Date? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        if let date = plain.date(from: trimmed) ?? withFraction.date(from: trimmed) { return date }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        for format in ["yyyy-MM-dd HH:mm", "yyyy-MM-dd HH:mm:ss"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: trimmed) { return date }
        }
        return nil
    }
}

/// How far in the future a backup id may lie and still count as "latest": a clock that runs ahead
/// is forgiven a little; an id further ahead is someone's plant (or a clock gone wrong).
public let futureBackupTolerance: TimeInterval = 86_400

/// The backups in `backups` whose ids lie more than `futureBackupTolerance` after `now`.
public func futureBackups(_ backups: [RemoteBackup], now: Date) -> [RemoteBackup] {
    backups.filter { $0.id.date.timeIntervalSince(now) > futureBackupTolerance }
}

/// Picks the backup of `database` that `selection` names, from a target's listing. `latest` never
/// takes a backup more than a day in the future (see `futureBackups`: the caller warns of them).
public func selectBackup(from backups: [RemoteBackup], database: String, selection: BackupSelection,
                         target: String, now: Date = Date()) throws -> RemoteBackup {
    let candidates = backups.filter { $0.database == database }.sorted { $0.id < $1.id }
    guard !candidates.isEmpty else {
        throw RestoreError.noBackups(database: database, target: target)
    }
    switch selection {
    case .latest:
        let future = Set(futureBackups(candidates, now: now).map(\.id))
        guard let newest = candidates.last(where: { !future.contains($0.id) }) else {
            throw RestoreError.noBackups(database: database, target: target)
        }
        return newest
    case let .id(id):
        guard let match = candidates.last(where: { $0.id == id }) else {
            throw RestoreError.backupNotFound(database: database, target: target, id: id.description)
        }
        return match
    case let .at(date):
        let limit = Int64(date.timeIntervalSince1970.rounded(.down))
        guard let match = candidates.last(where: { $0.id.seconds <= limit }) else {
            throw RestoreError.nothingBefore(database: database, target: target, time: date, oldest: candidates[0].id)
        }
        return match
    }
}

/// Why a restore could not go ahead.
public enum RestoreError: UserFacingError, Equatable {
    case invalidArgument(String)
    case noBackups(database: String, target: String)
    case backupNotFound(database: String, target: String, id: String)
    case nothingBefore(database: String, target: String, time: Date, oldest: BackupID)
    case outputExists(path: String)
    case databaseInUse(path: String, holders: String)
    case notConfirmed(database: String)
    case verificationFailed(detail: String)
    case noKey
    case notSettled(path: String, detail: String, damaged: Bool)
    case payloadTooLarge(limit: Int64)
    case diskFull(folder: String, needed: Int64, free: Int64)

    public var message: String {
        switch self {
        case let .invalidArgument(text): return text
        case let .noBackups(database, target): return "no backups of \(database) on target \(target)"
        case let .backupNotFound(database, target, id): return "no backup \(id) of \(database) on target \(target)"
        case let .nothingBefore(database, target, time, oldest):
            return "no backup of \(database) on target \(target) at or before \(formatUTC(time)); the oldest is \(oldest)"
        case let .outputExists(path): return "\(path) already exists"
        case let .databaseInUse(path, holders): return "\(path) is open in another process (\(holders))"
        case let .notConfirmed(database): return "restore of \(database) not confirmed"
        case let .verificationFailed(detail): return "the restored database failed its check: \(detail)"
        case .noKey: return "no identity or passphrase to decrypt with"
        case let .notSettled(path, detail, _): return "\(path) cannot be replaced safely: \(detail)"
        case let .payloadTooLarge(limit):
            return "the backup inflates to more than the \(formatBytes(limit)) its database header gives: stopped, nothing was kept"
        case let .diskFull(folder, needed, free):
            return "restoring needs \(formatBytes(needed)) more in \(folder), which has \(formatBytes(free)) free "
                + "(\(formatBytes(restoreFreeSpaceMargin)) must stay free): stopped, nothing was kept"
        }
    }

    public var hint: String? {
        switch self {
        case .noBackups: return "run `offsite list` to see what the target holds"
        case .backupNotFound, .nothingBefore: return "run `offsite list --db NAME` to see the backups and their ids"
        case .outputExists: return "choose another --output, or add --force to replace it"
        case .databaseInUse: return "stop the application that uses the database, then restore"
        case .notConfirmed: return "type the database name to confirm, or pass --yes"
        case .noKey: return "give --identity FILE or --passphrase-file FILE, or set encryption.identityFile in the configuration"
        case .notSettled: return "stop every program that uses the database, then restore again; nothing was changed"
        case .payloadTooLarge: return "the object is damaged or was not written by offsite; restore another backup"
        case .diskFull: return "free space on that disk, or restore with --output to another disk"
        default: return nil
        }
    }
}

/// Formats a date as `2026-11-22 03:17:00 UTC`.
public func formatUTC(_ date: Date) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
    return formatter.string(from: date)
}

/// The numbered list a person picks a backup from: the newest `limit` backups of one database,
/// newest first, one line each (`  1  2026-11-22 03:17:00 UTC  scheduled    4.8 MiB`).
public func backupMenu(_ backups: [RemoteBackup], limit: Int = 20) -> (lines: [String], choices: [RemoteBackup]) {
    let choices = Array(backups.sorted { $0.id > $1.id }.prefix(limit))
    let width = String(choices.count).count
    let kindWidth = choices.map(\.id.kind.rawValue.count).max() ?? 0
    let lines = choices.enumerated().map { index, backup in
        let number = String(index + 1)
        let kind = backup.id.kind.rawValue
        return "  " + String(repeating: " ", count: width - number.count) + number + "  " + formatUTC(backup.id.date)
            + "  " + kind + String(repeating: " ", count: kindWidth - kind.count) + "  " + formatBytes(backup.size)
    }
    return (lines, choices)
}

/// The 0-based index a person's answer to the menu picks: empty means 1 (the newest); nil when the
/// answer is not a number from 1 to `count`.
public func menuChoice(_ answer: String, count: Int) -> Int? {
    let trimmed = answer.trimmingCharacters(in: .whitespaces)
    if trimmed.isEmpty { return count > 0 ? 0 : nil }
    guard let number = Int(trimmed), (1...max(count, 1)).contains(number), number <= count else { return nil }
    return number - 1
}
