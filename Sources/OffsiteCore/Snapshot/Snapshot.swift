import Foundation

/// How thoroughly a snapshot is checked before it is accepted.
public enum IntegrityCheck: String, Sendable, Equatable, CaseIterable {
    /// `PRAGMA quick_check`: structure and pages, without cross-checking indexes; fast.
    case quick
    /// `PRAGMA integrity_check`: everything, including that every index matches its table.
    case full

    /// The statement that runs the check.
    var pragma: String {
        switch self {
        case .quick: return "PRAGMA quick_check"
        case .full: return "PRAGMA integrity_check"
        }
    }
}

/// What a snapshot produced.
public struct SnapshotInfo: Sendable, Equatable {
    /// The snapshot file.
    public var path: String
    /// Its size in bytes.
    public var byteCount: Int64
    /// The database page size in bytes.
    public var pageSize: Int
    /// The number of pages copied.
    public var pageCount: Int
    /// When the read transaction the copy was taken in began: the snapshot holds every
    /// transaction committed before this moment and none committed after the copy ended.
    public var readStartedAt: Date
    /// How long the copy (and so the read transaction on the source) took.
    public var copyDuration: Duration
    /// How long the integrity check took.
    public var checkDuration: Duration
}

/// A snapshot that could not be taken. Nothing is left at the final path when it is thrown.
public enum SnapshotError: UserFacingError, Equatable {
    /// The database file does not exist.
    case sourceMissing(path: String)
    /// The file is not a SQLite database (it lacks the 16-byte "SQLite format 3" header).
    case notSQLite(path: String, isEmpty: Bool)
    /// Other connections kept the database locked for longer than the retry limit.
    case busy(path: String, waited: Duration)
    /// The copy failed its integrity check; the first lines of the check's report.
    case integrityCheckFailed(path: String, check: IntegrityCheck, report: [String])
    /// The copy left a non-empty write-ahead log next to it, so the file alone is not complete.
    case incompleteCopy(path: String)
    /// The final path is the database itself (or a link to it); replacing it would lose the database.
    case destinationIsSource(path: String)

    public var message: String {
        switch self {
        case let .sourceMissing(path):
            return "database \(path) does not exist"
        case let .notSQLite(path, isEmpty):
            return isEmpty ? "\(path) is empty, not a SQLite database"
                : "\(path) is not a SQLite database (no \"SQLite format 3\" header)"
        case let .busy(path, waited):
            return "database \(path) stayed locked by other connections for \(waited.formattedSeconds); snapshot abandoned"
        case let .integrityCheckFailed(path, check, report):
            return "snapshot of \(path) failed \(check.pragma): \(report.joined(separator: "; "))"
        case let .incompleteCopy(path):
            return "snapshot of \(path) left a write-ahead log behind; the copy is incomplete"
        case let .destinationIsSource(path):
            return "snapshot destination is the database \(path) itself"
        }
    }

    public var hint: String? {
        switch self {
        case .sourceMissing: return "check the database path in the configuration"
        case .notSQLite: return "only SQLite database files can be backed up; check the path and the watch patterns"
        case .busy:
            return "a writer holds long transactions; try again, or switch the database to WAL mode (PRAGMA journal_mode=WAL)"
        case .integrityCheckFailed:
            return "the source database may be damaged; run PRAGMA integrity_check on it and restore from an earlier backup"
        case .incompleteCopy: return nil
        case .destinationIsSource: return "write snapshots to a separate backup folder"
        }
    }
}

/// Takes consistent online snapshots of SQLite databases into local files.
///
/// The copy is one `sqlite3_backup_step(-1)`, so it happens inside one read transaction on the
/// source: in WAL mode writers carry on meanwhile; in rollback-journal mode a writer's commit
/// waits (on its busy timeout) until the copy ends, because the copy holds a SHARED lock.
public struct Snapshotter: Sendable {
    /// How long to keep retrying while other connections hold the source locked.
    public var busyRetryLimit: Duration

    /// Creates a snapshotter that retries a locked source for up to `busyRetryLimit`.
    public init(busyRetryLimit: Duration = .seconds(5)) {
        self.busyRetryLimit = busyRetryLimit
    }

    /// Copies the database at `databasePath` to `finalPath` (replacing any file there), checks the
    /// copy with `check`, and makes it durable: a single self-contained file with mode 0600.
    /// On failure nothing is left behind and `finalPath` is untouched.
    public func takeSnapshot(of databasePath: String, to finalPath: String,
                             check: IntegrityCheck = .quick) throws -> SnapshotInfo {
        try verifyIsSQLite(databasePath)
        if isSameFile(databasePath, finalPath) { throw SnapshotError.destinationIsSource(path: databasePath) }
        let temporaryPath = makeTemporaryPath(nextTo: finalPath)
        // Created here, exclusively and 0600; SQLite gives its journal files the same mode.
        try FileSink(creating: temporaryPath, mode: 0o600, bufferSize: 1).finish()
        do {
            let copy = try copyDatabase(from: databasePath, to: temporaryPath)
            let verification = try verifyCopy(at: temporaryPath, source: databasePath, check: check)
            try fsyncFile(temporaryPath)
            try durableRename(from: temporaryPath, to: finalPath)
            return SnapshotInfo(path: finalPath, byteCount: try fileSize(at: finalPath),
                                pageSize: verification.pageSize, pageCount: copy.pageCount,
                                readStartedAt: copy.startedAt, copyDuration: copy.duration,
                                checkDuration: verification.duration)
        } catch {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                removeFileIfPresent(temporaryPath + suffix)
            }
            throw error
        }
    }

    /// Throws unless `path` is an existing, non-empty file; that it is SQLite is checked by SQLite
    /// itself when the copy starts (`copyDatabase` maps SQLITE_NOTADB). The header is not read
    /// with a plain open/close: closing any descriptor of a database file drops every POSIX lock
    /// this process holds on it, SQLite's included (sqlite.org/howtocorrupt.html, 2.2), and the
    /// agent keeps a connection to each live database open to detect changes.
    private func verifyIsSQLite(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { throw SnapshotError.sourceMissing(path: path) }
            throw FileIOError(operation: "stat", path: path, code: errno)
        }
        if info.st_size == 0 { throw SnapshotError.notSQLite(path: path, isEmpty: true) }
    }

    /// Copies the source into the (empty) file at `destinationPath` in one backup step,
    /// retrying with a bounded backoff while the source is locked.
    private func copyDatabase(from sourcePath: String, to destinationPath: String)
        throws -> (pageCount: Int, startedAt: Date, duration: Duration) {
        // Read/write without creating: in WAL mode a reader must be able to create the -shm.
        // SQLite falls back to read-only by itself when the file is write-protected.
        let source = try SQLiteDatabase(path: sourcePath, mode: .readWrite, busyTimeout: .milliseconds(50))
        try source.execute("PRAGMA query_only = ON")
        let destination = try SQLiteDatabase(path: destinationPath, mode: .readWrite, busyTimeout: .zero)
        // The temporary file is thrown away on any failure: no journal, no syncs until the end.
        try destination.execute("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")

        let clock = ContinuousClock()
        let deadline = clock.now + busyRetryLimit
        var delay = Duration.milliseconds(5)
        while true {
            let startedAt = Date()
            let attemptStart = clock.now
            do {
                let pageCount = try source.copyWholeDatabase(into: destination)
                return (pageCount, startedAt, clock.now - attemptStart)
            } catch let error as SQLiteError where error.code & 0xff == 26 {  // SQLITE_NOTADB
                throw SnapshotError.notSQLite(path: sourcePath, isEmpty: false)
            } catch let error as SQLiteError where error.isBusy {
                if clock.now + delay > deadline {
                    throw SnapshotError.busy(path: sourcePath, waited: busyRetryLimit)
                }
                Thread.sleep(forTimeInterval: delay.seconds)
                delay = min(delay * 2, .milliseconds(200))
            }
        }
    }

    /// Runs the integrity check on the copy with a fresh connection, and makes sure the file
    /// alone holds the whole database (a WAL-mode copy is checkpointed, its -wal/-shm removed).
    private func verifyCopy(at path: String, source: String, check: IntegrityCheck)
        throws -> (pageSize: Int, duration: Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        let pageSize: Int
        do {
            let database = try SQLiteDatabase(path: path, mode: .readWrite)
            let report = try database.column(check.pragma)
            guard report == ["ok"] else {
                throw SnapshotError.integrityCheckFailed(path: source, check: check, report: Array(report.prefix(5)))
            }
            pageSize = Int(try database.scalarInt("PRAGMA page_size") ?? 0)
            if try database.scalarText("PRAGMA journal_mode") == "wal" {
                try database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            }
        }
        let duration = clock.now - start
        // The last connection closing removes the -wal and -shm; make sure nothing is left.
        if pathExists(path + "-wal") {
            guard try fileSize(at: path + "-wal") == 0 else { throw SnapshotError.incompleteCopy(path: source) }
            removeFileIfPresent(path + "-wal")
        }
        removeFileIfPresent(path + "-shm")
        return (pageSize, duration)
    }
}

/// Takes a consistent snapshot of `databasePath` into `finalPath` with the default retry limit.
public func takeSnapshot(of databasePath: String, to finalPath: String,
                         check: IntegrityCheck = .quick) throws -> SnapshotInfo {
    try Snapshotter().takeSnapshot(of: databasePath, to: finalPath, check: check)
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// "1.25 s".
    fileprivate var formattedSeconds: String {
        String(format: "%.2f s", seconds)
    }
}
