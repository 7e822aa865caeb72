import Foundation
#if canImport(Glibc)
import Glibc
#endif

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
    /// A copy that was being read while it was made had to start over, so what was read is stale.
    case changedWhileStreaming(path: String)
    /// This process may not read and write the database, its companions or its folder.
    case accessDenied(path: String, detail: String)
    /// What was compressed while the copy was made differs from the copy that passed its check.
    case shippedDiffers(shipped: PlaintextChecksum, copy: PlaintextChecksum)

    /// Whether the backup is taken again, reading the copy only once it is whole.
    public var isRetakenWithoutOverlap: Bool {
        switch self {
        case .changedWhileStreaming, .shippedDiffers: return true
        default: return false
        }
    }

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
        case let .changedWhileStreaming(path):
            return "the copy of \(path) started over while it was being compressed"
        case let .accessDenied(path, detail):
            return "cannot open database \(path): permission denied: \(detail)"
        case let .shippedDiffers(shipped, copy):
            return "the bytes compressed while the copy was made (\(shipped)) differ from the checked copy (\(copy))"
        }
    }

    public var hint: String? {
        switch self {
        case .sourceMissing: return "check the database path in the configuration"
        case .accessDenied:
            return "run offsite as the application's user (compose: user: \"UID:GID\"; docker run --user UID:GID), "
                + "or let its user read and write the database, its -wal and -shm files and its folder "
                + "(a WAL database needs write access to its -shm file and folder even to be read)"
        case .notSQLite: return "only SQLite database files can be backed up; check the path and the watch patterns"
        case .busy:
            return "a writer holds long transactions; try again, or switch the database to WAL mode (PRAGMA journal_mode=WAL)"
        case .integrityCheckFailed:
            return "the source database may be damaged; run PRAGMA integrity_check on it and restore from an earlier backup"
        case .incompleteCopy, .changedWhileStreaming, .shippedDiffers: return nil
        case .destinationIsSource: return "write snapshots to a separate backup folder"
        }
    }
}

/// A snapshot copied into a temporary file beside its final path: not yet checked, not yet in
/// place. `Snapshotter.check(_:using:)` checks it (it may run while the copy is being read, for
/// example compressed), `install(_:checked:)` makes it durable under its final path, and
/// `discard(_:)` removes it.
public struct SnapshotCopy: Sendable, Equatable {
    /// The live database it was copied from.
    public var sourcePath: String
    /// The temporary file holding the copy.
    public var temporaryPath: String
    /// Where `install` puts it.
    public var finalPath: String
    /// The number of pages copied.
    public var pageCount: Int
    /// When the read transaction the copy was taken in began.
    public var readStartedAt: Date
    /// How long the copy (and so the read transaction on the source) took.
    public var copyDuration: Duration
    /// How many steps the copy took (1 for a single-step copy).
    public var stepCount: Int
    /// How often the copy had to start over because the source changed under it (0 as designed).
    public var restartCount: Int
}

/// What the integrity check of a copy found out, when it passed.
public struct SnapshotCheckResult: Sendable, Equatable {
    /// The database page size in bytes.
    public var pageSize: Int
    /// How long the check took.
    public var duration: Duration
}

/// Told when the read transaction of a WAL-mode snapshot begins: continuous protection uses it to
/// learn exactly which commits a base holds (docs/CONTINUOUS.md §2, "Where a chain ends").
public protocol SnapshotReadMark: Sendable {
    /// Runs `beginRead` (exactly once), which begins the snapshot's read transaction, and answers whether the
    /// moment it began could be told exactly; on false the snapshotter ends that read transaction
    /// and begins again (a few times at most, then it goes on with the last one).
    func beginningRead(_ beginRead: () throws -> Void) throws -> Bool
}

/// Takes consistent online snapshots of SQLite databases into local files.
///
/// In WAL mode the copy runs inside one read transaction held open on the source connection, in
/// steps of `stepBytes`: writers carry on meanwhile (they never wait for a WAL reader, and their
/// commits cannot restart the copy because it keeps reading the snapshot its transaction began
/// with), and after every step the copied bytes are flushed to disk (`fdatasync`), so the copy
/// never builds up a burst of dirty pages that the application's own `fsync` would have to wait
/// behind. In rollback-journal mode the copy is one `sqlite3_backup_step(-1)`: it holds a SHARED
/// lock that makes a writer's commit wait (on its busy timeout), so pacing would only lengthen that.
///
/// A snapshot that is only a scratch copy (`durable` false: shipped and deleted, no local
/// rotation) is never flushed: nothing needs it after a crash, and its pages, deleted seconds
/// later, normally never reach the disk at all, so the application's disk is left alone.
public struct Snapshotter: Sendable {
    /// How long to keep retrying while other connections hold the source locked.
    public var busyRetryLimit: Duration
    /// Bytes copied (and then flushed to disk) per step in WAL mode; 0 copies in one step.
    public var stepBytes: Int
    /// Whether the snapshot must survive a crash once installed (flushed while it is copied,
    /// synced when installed); false for a scratch copy.
    public var durable = true

    /// Told when the read transaction of a WAL-mode copy begins; nil: nobody asks.
    public var readMark: (any SnapshotReadMark)?

    /// Called after every step of a paced copy with the pages copied and the total; for tests
    /// that slow the copy down to let a writer commit in the middle of it.
    var afterStep: (@Sendable (_ copied: Int, _ total: Int) -> Void)?

    /// The default step: 8 MiB.
    public static let defaultStepBytes = 8 << 20

    /// Creates a snapshotter that retries a locked source for up to `busyRetryLimit` and copies
    /// WAL databases in flushed steps of `stepBytes`.
    public init(busyRetryLimit: Duration = .seconds(5), stepBytes: Int = Snapshotter.defaultStepBytes) {
        self.busyRetryLimit = busyRetryLimit
        self.stepBytes = stepBytes
    }

    /// Copies the database at `databasePath` to `finalPath` (replacing any file there), checks the
    /// copy with `check`, and makes it durable: a single self-contained file with mode 0600.
    /// On failure nothing is left behind and `finalPath` is untouched.
    public func takeSnapshot(of databasePath: String, to finalPath: String,
                             check: IntegrityCheck = .quick) throws -> SnapshotInfo {
        let copy = try self.copy(of: databasePath, to: finalPath)
        do {
            let checked = try self.check(copy, using: check)
            return try install(copy, checked: checked)
        } catch {
            discard(copy)
            throw error
        }
    }

    /// Copies the database at `databasePath` into a new temporary file next to `finalPath`
    /// (mode 0600), without checking it. On failure nothing is left behind.
    ///
    /// With `progress`, the copy can be read while it is being made: `progress` learns the
    /// temporary file and its final size as soon as the read transaction has begun, and after
    /// every step how many leading bytes of the file are final (`SnapshotProgress`). The caller
    /// still gets the copy (or the error) from this method's return, and must call
    /// `progress.finish(_:)` itself.
    public func copy(of databasePath: String, to finalPath: String,
                     progress: SnapshotProgress? = nil) throws -> SnapshotCopy {
        try verifyIsSQLite(databasePath)
        if isSameFile(databasePath, finalPath) { throw SnapshotError.destinationIsSource(path: databasePath) }
        let temporaryPath = makeTemporaryPath(nextTo: finalPath)
        // Created here, exclusively and 0600; SQLite gives its journal files the same mode.
        try FileSink(creating: temporaryPath, mode: 0o600, bufferSize: 1).finish()
        do {
            let copied = try copyDatabase(from: databasePath, to: temporaryPath, progress: progress)
            return SnapshotCopy(sourcePath: databasePath, temporaryPath: temporaryPath, finalPath: finalPath,
                                pageCount: copied.pageCount, readStartedAt: copied.startedAt,
                                copyDuration: copied.duration, stepCount: copied.steps, restartCount: copied.restarts)
        } catch {
            removeCopyFiles(temporaryPath)
            throw error
        }
    }

    /// Runs `check` on the copy with its own read-only connection, which changes nothing in the
    /// file, so it can run on another thread while the copy is being read. Throws
    /// `SnapshotError.integrityCheckFailed` when the check reports a problem.
    public func check(_ copy: SnapshotCopy, using check: IntegrityCheck) throws -> SnapshotCheckResult {
        let clock = ContinuousClock()
        let start = clock.now
        // immutable=1: no locks, no -wal or -shm created; nothing else writes the copy.
        let database = try SQLiteDatabase(path: "file:\(uriEscaped(copy.temporaryPath))?immutable=1", mode: .readOnly)
        // The check visits every page about once; a large cache would only hold memory.
        try database.execute("PRAGMA cache_size = -512")
        let report = try database.column(check.pragma)
        guard report == ["ok"] else {
            throw SnapshotError.integrityCheckFailed(path: copy.sourcePath, check: check, report: Array(report.prefix(5)))
        }
        let pageSize = Int(try database.scalarInt("PRAGMA page_size") ?? 0)
        if pathExists(copy.temporaryPath + "-wal"), try fileSize(at: copy.temporaryPath + "-wal") > 0 {
            throw SnapshotError.incompleteCopy(path: copy.sourcePath)
        }
        return SnapshotCheckResult(pageSize: pageSize, duration: clock.now - start)
    }

    /// Makes a checked copy durable under its final path (fsync, rename, fsync the folder).
    public func install(_ copy: SnapshotCopy, checked: SnapshotCheckResult) throws -> SnapshotInfo {
        removeFileIfPresent(copy.temporaryPath + "-wal")
        removeFileIfPresent(copy.temporaryPath + "-shm")
        if durable {
            try AtomicFile.putInPlace(copy.temporaryPath, as: copy.finalPath)
        } else if rename(copy.temporaryPath, copy.finalPath) != 0 {
            throw FileIOError(operation: "rename \(copy.temporaryPath) to", path: copy.finalPath, code: errno)
        }
        return SnapshotInfo(path: copy.finalPath, byteCount: try fileSize(at: copy.finalPath),
                            pageSize: checked.pageSize, pageCount: copy.pageCount,
                            readStartedAt: copy.readStartedAt, copyDuration: copy.copyDuration,
                            checkDuration: checked.duration)
    }

    /// Removes a copy that will not be installed (and any companion files); never throws.
    public func discard(_ copy: SnapshotCopy) {
        removeCopyFiles(copy.temporaryPath)
    }

    private func removeCopyFiles(_ temporaryPath: String) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            removeFileIfPresent(temporaryPath + suffix)
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

    /// Copies the source into the (empty) file at `destinationPath`, retrying with a bounded
    /// backoff while the source is locked.
    private func copyDatabase(from sourcePath: String, to destinationPath: String, progress: SnapshotProgress?)
        throws -> (pageCount: Int, startedAt: Date, duration: Duration, steps: Int, restarts: Int) {
        // Read/write without creating: in WAL mode a reader must be able to create the -shm.
        // SQLite falls back to read-only by itself when the file is write-protected.
        let source: SQLiteDatabase
        do {
            source = try SQLiteDatabase(path: sourcePath, mode: .readWrite, busyTimeout: .milliseconds(50))
            try source.execute("PRAGMA query_only = ON")
        } catch let error as SQLiteError where error.isCannotOpen {
            // "unable to open database file" says nothing of why; most often the sidecar runs as
            // another user than the application.
            if let problem = accessProblem(ofDatabaseAt: sourcePath) { throw SnapshotError.accessDenied(path: sourcePath, detail: problem) }
            throw error
        }
        let clock = ContinuousClock()
        let deadline = clock.now + busyRetryLimit
        var delay = Duration.milliseconds(5)
        while true {
            let startedAt = Date()
            let attemptStart = clock.now
            do {
                let isWAL = try source.scalarText("PRAGMA journal_mode") == "wal"
                // The copy reads every page once: a page cache would only hold memory (the backup
                // API reads through it), so it is kept small on both connections.
                try source.execute("PRAGMA cache_size = -256")
                // A fresh destination connection per attempt: a failed backup rolls it back.
                let destination = try SQLiteDatabase(path: destinationPath, mode: .readWrite, busyTimeout: .zero)
                // The temporary file is thrown away on any failure: no journal, no syncs by SQLite.
                try destination.execute("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -256")
                if isWAL && stepBytes > 0 {
                    let result = try pacedCopy(from: source, to: destination, progress: progress)
                    return (result.pageCount, startedAt, clock.now - attemptStart, result.steps, result.restarts)
                }
                progress?.begin(path: destinationPath, expectedBytes: try fileSize(at: sourcePath), unstableBytes: 0)
                let pageCount = try source.copyWholeDatabase(into: destination)
                return (pageCount, startedAt, clock.now - attemptStart, 1, 0)
            } catch let error as SQLiteError where error.isNotADatabase {
                throw SnapshotError.notSQLite(path: sourcePath, isEmpty: false)
            } catch let error as SQLiteError where error.isBusy {
                if source.isInTransaction { try? source.execute("ROLLBACK") }
                // Bytes of this attempt may have been read already: they would not be the copy's.
                if progress?.hasAdvanced == true { throw SnapshotError.changedWhileStreaming(path: sourcePath) }
                if clock.now + delay > deadline {
                    throw SnapshotError.busy(path: sourcePath, waited: busyRetryLimit)
                }
                Thread.sleep(forTimeInterval: delay.seconds)
                delay = min(delay * 2, .milliseconds(200))
            }
        }
    }

    /// The WAL-mode copy: one read transaction on `source` for the whole copy, steps of
    /// `stepBytes`, the destination flushed to disk after each step.
    ///
    /// With `progress`, every step also writes the destination's cached pages to the file
    /// (`sqlite3_db_cacheflush`) before the flush, so that the first `copied × pageSize` bytes of
    /// the file are final and can be read by another thread while the copy goes on. The one
    /// exception is the first page, which SQLite keeps in memory until the copy ends and then
    /// writes with a few header fields changed (change counter, schema cookie): a reader takes it
    /// only from the finished file (`SnapshotProgress.finalPrefix`).
    private func pacedCopy(from source: SQLiteDatabase, to destination: SQLiteDatabase, progress: SnapshotProgress?)
        throws -> (pageCount: Int, steps: Int, restarts: Int) {
        defer { if source.isInTransaction { try? source.execute("COMMIT") } }
        func beginRead() throws {
            try source.execute("BEGIN")
            // The first read starts the read transaction: from here on the source is one snapshot.
            _ = try source.scalarInt("SELECT count(*) FROM sqlite_schema")
        }
        if let readMark {
            for attempt in 1... {
                if try readMark.beginningRead(beginRead) || attempt == 20 { break }
                try source.execute("COMMIT")
            }
        } else {
            try beginRead()
        }
        let pageSize = max(Int(try source.scalarInt("PRAGMA page_size") ?? 4096), 512)
        let pageTotal = Int(try source.scalarInt("PRAGMA page_count") ?? 0)
        progress?.begin(path: destination.path, expectedBytes: Int64(pageTotal) * Int64(pageSize),
                        unstableBytes: Int64(pageSize))
        let flusher = try DataFlusher(path: destination.path)
        var steps = 1
        let result = try source.copyDatabase(into: destination, pagesPerStep: max(stepBytes / pageSize, 1)) { copied, total in
            steps += 1
            if let progress { try destination.flushCache() }
            if durable { try flusher.flush() }
            progress?.advance(to: Int64(copied) * Int64(pageSize))
            afterStep?(copied, total)
        }
        try source.execute("COMMIT")
        if result.restarts > 0, progress != nil {
            // What was read of the earlier attempt may differ from the final copy.
            throw SnapshotError.changedWhileStreaming(path: source.path)
        }
        return (result.pageCount, steps, result.restarts)
    }
}

/// Flushes what others (SQLite) wrote to a file, through a descriptor of its own.
private final class DataFlusher {
    private let descriptor: Int32
    private let path: String

    init(path: String) throws {
        self.path = path
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileIOError(operation: "open", path: path, code: errno) }
    }

    deinit { close(descriptor) }

    /// Writes the file's dirty pages to disk and waits for them.
    func flush() throws {
        while fdatasync(descriptor) != 0 {
            if errno == EINTR { continue }
            throw FileIOError(operation: "fdatasync", path: path, code: errno)
        }
    }
}

/// `path` with the characters a SQLite URI gives meaning to (`%`, `?`, `#`) percent-encoded.
private func uriEscaped(_ path: String) -> String {
    path.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "?", with: "%3f")
        .replacingOccurrences(of: "#", with: "%23")
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

/// Why this process may not use the database at `path` (read and write it, its `-wal` and `-shm`
/// files, and create them in its folder), naming owners, modes and the user offsite runs as; nil
/// when nothing is wrong with the permissions.
func accessProblem(ofDatabaseAt path: String) -> String? {
    let runningAs = "offsite runs as uid \(getuid()) gid \(getgid())"
    func describe(_ file: String) -> String {
        var info = stat()
        guard stat(file, &info) == 0 else { return file }
        return "\(file) belongs to uid \(info.st_uid) gid \(info.st_gid) (mode " + String(format: "%04o", UInt32(info.st_mode & 0o7777)) + ")"
    }
    var problems: [String] = []
    if access(path, R_OK | W_OK) != 0 && errno == EACCES { problems.append(describe(path)) }
    for suffix in ["-wal", "-shm"] where pathExists(path + suffix) && access(path + suffix, R_OK | W_OK) != 0 && errno == EACCES {
        problems.append(describe(path + suffix))
    }
    let folder = parentDirectory(of: path)
    if !pathExists(path + "-shm") && access(folder, W_OK | X_OK) != 0 && errno == EACCES {
        problems.append("its folder " + describe(folder) + " does not let it create the -shm file")
    }
    return problems.isEmpty ? nil : problems.joined(separator: "; ") + "; " + runningAs
}
