import Foundation

/// Whether a live database file is sound.
public enum DatabaseHealth: Sendable, Equatable {
    /// It passed its check.
    case healthy
    /// There is no file.
    case missing
    /// It is not a SQLite database, or failed its check; why, in one line.
    case corrupt(String)
    /// The check could not run (locked, unreadable); why. Nothing should be done about it.
    case unknown(String)
}

/// Checks the live database at `path` with `check` (`PRAGMA quick_check` by default), reading its
/// write-ahead log too. An empty file or one without the SQLite header is corrupt; a check that
/// could not run (busy, I/O error) is `unknown`, never `corrupt`.
public func checkDatabaseHealth(at path: String, check: IntegrityCheck = .quick) -> DatabaseHealth {
    guard pathExists(path) else { return .missing }
    guard hasSQLiteHeader(path) else {
        let size = (try? fileSize(at: path)) ?? 0
        return .corrupt(size == 0 ? "the file is empty" : "the file is not a SQLite database")
    }
    do {
        let database = try SQLiteDatabase(path: sqliteURI(forPath: path, immutable: false), mode: .readWrite)
        try database.execute("PRAGMA query_only = ON")
        let report = try database.column(check.pragma)
        return report == ["ok"] ? .healthy : .corrupt("\(check.pragma): " + report.prefix(3).joined(separator: "; "))
    } catch let error as SQLiteError {
        if error.isCorruption { return .corrupt(error.message) }
        return .unknown(error.message)
    } catch {
        return .unknown("\(error)")
    }
}

/// What `repairIfCorrupt` did.
public enum RepairOutcome: Sendable, Equatable {
    /// The database passed its check; nothing was done.
    case healthy
    /// There is no database file; nothing was done.
    case missing
    /// The check could not run; nothing was done.
    case unchecked(reason: String)
    /// The database is corrupt but another process holds it open; nothing was done.
    case inUse(problem: String, holders: String)
    /// The corrupt database was moved aside and a backup put in its place.
    case repaired(RepairReport)
    /// The database is corrupt and no backup could replace it; it was left where it is.
    case failed(problem: String, reason: String)

    /// One line for the log.
    public var summary: String {
        switch self {
        case .healthy: return "the database passed its check"
        case .missing: return "there is no database file"
        case let .unchecked(reason): return "the database could not be checked: \(reason)"
        case let .inUse(problem, holders): return "the database is corrupt (\(problem)) but open in another process (\(holders)); left alone"
        case let .repaired(report):
            return "the database was corrupt (\(report.problem)); moved aside to \(report.movedAside) and restored \(report.backup.id) from \(report.target)"
                + (report.rejected.isEmpty ? "" : " after rejecting \(report.rejected.count) newer backup(s)")
        case let .failed(problem, reason): return "the database is corrupt (\(problem)) and could not be restored: \(reason)"
        }
    }
}

/// How a corrupt database was repaired.
public struct RepairReport: Sendable, Equatable {
    /// What was wrong with the database.
    public var problem: String
    /// Where the corrupt file (and its `-wal`/`-journal`) now is.
    public var movedAside: String
    /// The backup restored.
    public var backup: RemoteBackup
    /// The target it came from.
    public var target: String
    /// Newer backups that failed their check, each naming the backup and why.
    public var rejected: [String]
}

/// For `restoreIfCorrupt` at agent startup: when `database` fails `check` (or is not a SQLite
/// file), restores the newest backup on any of `targets` that downloads, decrypts and passes the
/// check (trying older ones, at most `maximumAttempts`), keeping the corrupt file as
/// `DBNAME.corrupt-TIMESTAMP.sqlite3` in `localFolder` (beside the database without one). A healthy
/// or missing database, one that could not be checked, or one another process holds open is left
/// alone; so is a corrupt one when no backup is good. Never throws.
public func repairIfCorrupt(database: DatabaseRef, targets: [any Target], keys: DecryptionKeys, localFolder: String?,
                            check: IntegrityCheck = .quick, maximumAttempts: Int = 5,
                            now: () -> Date = Date.init) -> RepairOutcome {
    let problem: String
    switch checkDatabaseHealth(at: database.path, check: check) {
    case .healthy: return .healthy
    case .missing: return .missing
    case let .unknown(reason): return .unchecked(reason: reason)
    case let .corrupt(reason): problem = reason
    }
    let holders = LockProbe.holders(ofDatabaseAt: database.path)
    guard holders.isEmpty else {
        return .inUse(problem: problem, holders: holders.map(\.description).joined(separator: "; "))
    }
    var candidates: [(backup: RemoteBackup, target: any Target)] = []
    var rejected: [String] = []
    for target in targets {
        do {
            candidates += try listBackups(on: target, database: database.name).map { ($0, target) }
        } catch {
            rejected.append("target \(target.name): \((error as? UserFacingError)?.message ?? "\(error)")")
        }
    }
    // A backup dated more than a day ahead is no "newest good backup".
    let ahead = Set(futureBackups(candidates.map(\.backup), now: now()).map(\.key))
    for (backup, target) in candidates where ahead.contains(backup.key) {
        rejected.append("\(backup.id) on \(target.name): dated in the future, passed over")
    }
    candidates.removeAll { ahead.contains($0.backup.key) }
    // Newest first; on the same id, the targets' order.
    let order = Dictionary(targets.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { first, _ in first })
    candidates.sort { ($0.backup.id, -(order[$0.target.name] ?? 0)) > ($1.backup.id, -(order[$1.target.name] ?? 0)) }
    guard !candidates.isEmpty else {
        return .failed(problem: problem, reason: rejected.isEmpty ? "there is no backup of \(database.name)" : rejected.joined(separator: "; "))
    }
    let folder = parentDirectory(of: database.path)
    for (backup, target) in candidates.prefix(maximumAttempts) {
        let restored: RestoredFile
        do {
            restored = try fetchVerified(backup, from: target, keys: keys, check: check, folder: folder, progress: nil)
        } catch {
            rejected.append("\(backup.id) on \(target.name): \(oneLine((error as? UserFacingError)?.message ?? "\(error)"))")
            continue
        }
        let temporary = restored.path
        do {
            var original = stat()
            if stat(database.path, &original) == 0 {
                chmod(temporary, original.st_mode & 0o7777)
                _ = chown(temporary, original.st_uid, original.st_gid)
            }
            try refuseWhileOpen(database.path)
            let asideFolder = localFolder ?? folder
            try makePrivateDirectory(asideFolder)
            let aside = uniqueAsidePath(database: database.name, reason: "corrupt", folder: asideFolder, date: now())
            try replaceDatabase(at: database.path, with: temporary, keepingOldAs: aside, requireSettled: false)
            return .repaired(RepairReport(problem: problem, movedAside: aside, backup: backup, target: target.name, rejected: rejected))
        } catch {
            removeDatabaseFiles(temporary)
            return .failed(problem: problem, reason: (error as? UserFacingError)?.message ?? "\(error)")
        }
    }
    return .failed(problem: problem, reason: "no backup passed its check: " + rejected.joined(separator: "; "))
}
