import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Every backup on `target`, optionally of one database, oldest first. One listing, no reads.
public func listBackups(on target: any Target, database: String? = nil) throws -> [RemoteBackup] {
    let prefix = database.map { "\($0)/" } ?? ""
    return try target.list(prefix: prefix)
        .compactMap(RemoteBackup.init(object:))
        .filter { database == nil || $0.database == database }
        .sorted { ($0.database, $0.id) < ($1.database, $1.id) }
}

/// What to restore and how to read it.
public struct RestoreJob {
    /// Where the backups are.
    public var target: any Target
    /// The database's name (`crm`).
    public var database: String
    /// Which backup.
    public var selection: BackupSelection
    /// What decrypts it.
    public var keys: DecryptionKeys
    /// The check the restored file must pass before it is put in place.
    public var check: IntegrityCheck
    /// Shows the download's progress on a terminal; nil: silent.
    public var progress: ProgressMeter?
    /// Told what the restore passed over and why (one line each, no secrets).
    public var warn: (String) -> Void

    /// Creates a job.
    public init(target: any Target, database: String, selection: BackupSelection, keys: DecryptionKeys,
                check: IntegrityCheck = .quick, progress: ProgressMeter? = nil, warn: @escaping (String) -> Void = { _ in }) {
        self.target = target
        self.database = database
        self.selection = selection
        self.keys = keys
        self.check = check
        self.progress = progress
        self.warn = warn
    }
}

/// What a restore did.
public struct RestoreReport {
    /// The backup that was restored.
    public var backup: RemoteBackup
    /// The file written.
    public var path: String
    /// The restored database's size in bytes.
    public var size: Int64
    /// The pre-restore backup taken first, for an in-place restore of an existing database.
    public var preRestore: BackupReport?
    /// Why no pre-restore backup was shipped of an existing database (it failed its own check), or nil.
    public var preRestoreSkipped: String?
    /// Where the replaced database was kept (`DBNAME.replaced-TIMESTAMP.sqlite3`), or nil.
    public var replacedPath: String?
}

/// Picks the backup `job` names from one listing of its target; warns (`job.warn`) of the backups
/// that `latest` passed over because their ids lie more than a day in the future.
public func chooseBackup(for job: RestoreJob) throws -> RemoteBackup {
    let backups = try listBackups(on: job.target, database: job.database)
    let now = Date()
    if job.selection == .latest {
        for skipped in futureBackups(backups, now: now) {
            job.warn("\(skipped.key) on target \(job.target.name) is dated in the future (\(formatUTC(skipped.id.date))); "
                     + "it is not taken as the latest backup")
        }
    }
    return try selectBackup(from: backups, database: job.database, selection: job.selection, target: job.target.name, now: now)
}

/// A restored database waiting in its temporary file (`.DBNAME.restore-HEX.tmp`) to be put in place.
///
/// While this value lives, its process holds an `flock` on the file: a restore in progress is
/// never taken for the leftover of a crashed one, and `removeStaleRestoreTemporaries` removes a
/// temporary (a full-size plaintext copy) only when no process holds it.
public final class RestoredFile {
    /// The temporary file.
    public let path: String
    /// What the check found.
    public let info: DatabaseFileInfo
    private let marker: Int32

    init(path: String, info: DatabaseFileInfo, marker: Int32) {
        self.path = path
        self.info = info
        self.marker = marker
    }

    deinit { if marker >= 0 { close(marker) } }

    /// The temporary name for a restore of `database` in `folder`.
    static func temporaryPath(in folder: String, database: String) -> String {
        "\(folder)/.\(database).restore-\(String(UInt64.random(in: 0...UInt64.max), radix: 16)).tmp"
    }

    /// Whether `name` is a restore temporary's file name (or one of its SQLite companions).
    static func isTemporaryName(_ name: String) -> Bool {
        guard name.hasPrefix("."), let range = name.range(of: ".restore-") else { return false }
        var rest = name[range.upperBound...]
        for suffix in ["-wal", "-shm", "-journal"] where rest.hasSuffix(suffix) { rest = rest.dropLast(suffix.count) }
        guard rest.hasSuffix(".tmp") else { return false }
        let hex = rest.dropLast(4)
        return !hex.isEmpty && hex.allSatisfy(\.isHexDigit)
    }
}

/// Removes the restore temporaries in `folder` that no process holds (left by a restore that was
/// killed) and that are older than `age` seconds; returns the removed names.
@discardableResult
public func removeStaleRestoreTemporaries(in folder: String, olderThan age: TimeInterval = 60, now: Date = Date()) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    var removed: [String] = []
    for name in names.sorted() where RestoredFile.isTemporaryName(name) {
        let path = "\(folder)/\(name)"
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
              now.timeIntervalSince1970 - TimeInterval(info.st_mtim.tv_sec) >= age else { continue }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else { continue }
        let free = flock(descriptor, LOCK_EX | LOCK_NB) == 0
        if free && unlink(path) == 0 { removed.append(name) }
        close(descriptor)
    }
    if !removed.isEmpty { fsyncFolder(folder) }
    return removed
}

/// How much free space a restore leaves on the disk it writes to, at least.
public let restoreFreeSpaceMargin: Int64 = 64 << 20

/// Downloads, decrypts and decompresses `backup` from `target` into a new temporary file in
/// `folder`, checks it is a SQLite database that passes `check` while it is fsynced, and returns
/// it. The output is bounded: it must start as a SQLite database and may not grow past the size its
/// header gives (page size × page count), nor leave less than `restoreFreeSpaceMargin` free on the
/// disk (a small object that inflates without end, a gzip bomb, is stopped at once). `cancellation`
/// stops the download between chunks. On any failure nothing is left behind.
func fetchVerified(_ backup: RemoteBackup, from target: any Target, keys: DecryptionKeys, check: IntegrityCheck,
                   folder: String, progress: ProgressMeter?, cancellation: Cancellation? = nil) throws -> RestoredFile {
    let temporary = RestoredFile.temporaryPath(in: folder, database: backup.database)
    var marker: Int32 = -1
    do {
        let file = try FileSink(creating: temporary, syncsOnFinish: false)
        marker = open(temporary, O_RDONLY | O_CLOEXEC)
        if marker >= 0 { flock(marker, LOCK_EX | LOCK_NB) }
        // Download, decryption and decompression (with the writing) each run on their own thread,
        // joined by bounded queues: constant memory, and the slowest stage sets the pace.
        let stages = try makeRestorePipeline(format: backup.format, keys: keys,
                                             into: BoundedDatabaseSink(next: file, folder: folder))
        do {
            var head = stages.head
            if let progress {
                progress.total = backup.size
                head = ProgressSink(next: head, meter: progress)
            }
            if let cancellation { head = CancellableSink(next: head, cancellation: cancellation) }
            defer { progress?.end() }
            try target.download(key: backup.key, into: head)
            try head.finish()
        } catch {
            // Stop every stage before the file goes: no thread may still be writing to it.
            for stage in stages.handOffs { stage.abandon() }
            file.discard()
            throw error
        }
        // The check reads the file from the page cache; writing it to disk can go on meanwhile.
        let info = try whileSyncing(temporary) { try verifyDatabaseFile(at: temporary, check: check) }
        CrashPoint.reach("restore.fetched")
        return RestoredFile(path: temporary, info: info, marker: marker)
    } catch {
        removeDatabaseFiles(temporary)
        if marker >= 0 { close(marker) }
        throw error
    }
}

/// Passes a restored database on to `next` while checking that it is one and stays within bounds:
/// the first 100 bytes must be a SQLite header, the output may not exceed the size that header
/// gives, and the disk holding `folder` must keep `restoreFreeSpaceMargin` free.
final class BoundedDatabaseSink: ByteSink {
    private let next: any ByteSink
    private let folder: String
    private let freeSpace: (String) -> Int64?
    private var header: [UInt8] = []
    private var limit: Int64?
    private var written: Int64 = 0
    private var nextSpaceCheck: Int64 = 0

    /// A sink in front of `next` for a file in `folder`; `freeSpace` tells how much the disk still takes.
    init(next: any ByteSink, folder: String, freeSpace: @escaping (String) -> Int64? = OffsiteCore.freeSpace(of:)) {
        self.next = next
        self.folder = folder
        self.freeSpace = freeSpace
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if header.count < 100 {
            header += bytes.prefix(100 - header.count)
            if header.count >= 16 && Array(header.prefix(16)) != Array("SQLite format 3\0".utf8) {
                throw RestoreError.verificationFailed(detail: "the payload is not a SQLite database")
            }
            if header.count == 100 { limit = databaseSize(fromHeader: header) }
        }
        written += Int64(bytes.count)
        if let limit, written > limit {
            throw RestoreError.payloadTooLarge(limit: limit)
        }
        if header.count == 100 && written >= nextSpaceCheck {
            // As soon as the header tells the whole size, then every 8 MiB.
            let needed = max(limit ?? 0, written) - written
            if let free = freeSpace(folder), free - needed < restoreFreeSpaceMargin {
                throw RestoreError.diskFull(folder: folder, needed: needed, free: free)
            }
            nextSpaceCheck = written + (8 << 20)
        }
        try next.write(bytes)
    }

    func finish() throws {
        if header.count < 100 { throw RestoreError.verificationFailed(detail: "the payload is not a SQLite database") }
        try next.finish()
    }
}

/// The size in bytes a SQLite database header (its first 100 bytes) gives — page size × page count —
/// or nil when the header's page count is not valid (written by an old SQLite: not `version-valid-for`).
func databaseSize(fromHeader header: [UInt8]) -> Int64? {
    guard header.count >= 100 else { return nil }
    func big(_ offset: Int, _ count: Int) -> Int64 { header[offset..<offset + count].reduce(0) { $0 << 8 | Int64($1) } }
    let rawPageSize = big(16, 2)
    let pageSize = rawPageSize == 1 ? 65536 : rawPageSize
    let pageCount = big(28, 4)
    guard pageSize >= 512, pageCount > 0, big(24, 4) == big(92, 4) else { return nil }
    return pageSize * pageCount
}

/// The bytes an unprivileged process may still write on the file system holding `folder`.
func freeSpace(of folder: String) -> Int64? {
    var info = statvfs()
    guard statvfs(folder, &info) == 0 else { return nil }
    return Int64(info.f_bavail) * Int64(info.f_frsize)
}

/// Runs `body` while the file at `path` is fsynced on a thread of its own; returns what `body`
/// returns once both are done. `body`'s error comes first, then the sync's.
func whileSyncing<T>(_ path: String, _ body: () throws -> T) throws -> T {
    let outcome = SyncOutcome()
    let thread = Thread {
        do { try syncFile(at: path) } catch { outcome.error = error }
        outcome.done.signal()
    }
    thread.name = "offsite-restore-sync"
    thread.start()
    let result = Result { try body() }
    outcome.done.wait()
    let value = try result.get()
    if let error = outcome.error { throw error }
    return value
}

/// How the sync of `whileSyncing` ended.
private final class SyncOutcome: @unchecked Sendable {
    // @unchecked: `error` is written by the thread before `done` is signalled, read after.
    var error: Error?
    let done = DispatchSemaphore(value: 0)
}

/// The restore stages as a chain of threads: what is written to `head` is decrypted (for the
/// encrypted format) on one thread, and decompressed on another, which inflates whole members on
/// every core and writes them to `sink` in order (while the workers go on with the next ones).
/// `handOffs` are the queues between them, from the head down, for abandoning on failure.
func makeRestorePipeline(format: PayloadFormat, keys: DecryptionKeys, into sink: any ByteSink)
    throws -> (head: any ByteSink, handOffs: [ThreadedSink]) {
    let toDecompressor = ThreadedSink(next: try ParallelGzipDecompressor(next: sink), name: "offsite-restore-gunzip")
    switch format {
    case .plain:
        return (toDecompressor, [toDecompressor])
    case .encrypted:
        let toDecryptor = ThreadedSink(next: try makeAgeDecryptor(keys: keys, next: toDecompressor), name: "offsite-restore-decrypt")
        return (toDecryptor, [toDecryptor, toDecompressor])
    }
}

/// Downloads and checks `backup` for `job` into `folder`; see `fetchVerified(_:from:keys:check:folder:progress:cancellation:)`.
func fetchVerified(_ backup: RemoteBackup, job: RestoreJob, folder: String) throws -> RestoredFile {
    try fetchVerified(backup, from: job.target, keys: job.keys, check: job.check, folder: folder, progress: job.progress)
}

/// What the check of a database file found.
public struct DatabaseFileInfo: Sendable, Equatable {
    /// The file's size in bytes.
    public var bytes: Int64
    /// `PRAGMA page_count`.
    public var pageCount: Int64
    /// `PRAGMA page_size`.
    public var pageSize: Int
}

/// Checks that `path` is a SQLite database passing `check` (opened immutable: it must be a file
/// no one else uses); throws `RestoreError.verificationFailed`.
@discardableResult
public func verifyDatabaseFile(at path: String, check: IntegrityCheck) throws -> DatabaseFileInfo {
    guard hasSQLiteHeader(path) else {
        throw RestoreError.verificationFailed(detail: "the payload is not a SQLite database")
    }
    let problems: [String]
    let pageCount: Int64
    let pageSize: Int64
    do {
        let database = try SQLiteDatabase(path: sqliteURI(forPath: path, immutable: true), mode: .readOnly)
        problems = try database.column(check.pragma)
        pageCount = try database.scalarInt("PRAGMA page_count") ?? 0
        pageSize = try database.scalarInt("PRAGMA page_size") ?? 0
    } catch {
        throw RestoreError.verificationFailed(detail: "\(error)")
    }
    guard problems == ["ok"] else {
        throw RestoreError.verificationFailed(detail: problems.prefix(3).joined(separator: "; "))
    }
    return DatabaseFileInfo(bytes: (try? fileSize(at: path)) ?? 0, pageCount: pageCount, pageSize: Int(pageSize))
}

/// A `file:` URI for `path` that SQLite parses back to the same path, whatever characters it holds.
func sqliteURI(forPath path: String, immutable: Bool) -> String {
    var encoded = ""
    for character in path.unicodeScalars {
        switch character {
        case "%", "?", "#": encoded += String(format: "%%%02X", character.value)
        default: encoded.unicodeScalars.append(character)
        }
    }
    return "file:\(encoded)" + (immutable ? "?immutable=1" : "")
}

/// Whether the file at `path` starts with SQLite's 16-byte header.
public func hasSQLiteHeader(_ path: String) -> Bool {
    (try? readPrefix(of: path, count: 16)) == Array("SQLite format 3\0".utf8)
}

/// Removes a database file and its `-wal`, `-shm` and `-journal` companions.
func removeDatabaseFiles(_ path: String) {
    for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
}

/// Restores into a new file at `output`; refuses to replace an existing file unless `overwrite`.
public func restore(_ job: RestoreJob, toNewFile output: String, overwrite: Bool) throws -> RestoreReport {
    if !overwrite && FileManager.default.fileExists(atPath: output) { throw RestoreError.outputExists(path: output) }
    let backup = try chooseBackup(for: job)
    let folder = parentDirectory(of: output)
    let restored = try fetchVerified(backup, job: job, folder: folder)
    let temporary = restored.path
    if overwrite {
        do {
            try replaceDatabase(at: output, with: temporary, keepingOldAs: nil)
        } catch {
            removeDatabaseFiles(temporary)
            throw error
        }
    } else {
        // link() refuses to replace an existing file, so a file created meanwhile is never clobbered.
        guard link(temporary, output) == 0 else {
            let code = errno
            removeDatabaseFiles(temporary)
            if code == EEXIST { throw RestoreError.outputExists(path: output) }
            throw FileIOError(operation: "link", path: output, code: code)
        }
        unlink(temporary)
    }
    fsyncFolder(folder)
    return RestoreReport(backup: backup, path: output, size: (try? fileSize(at: output)) ?? 0, preRestore: nil)
}

/// Replaces the live database at `databasePath` with the chosen backup, safely:
/// 1. refuses while another process holds the database open;
/// 2. downloads the backup into a temporary file beside the database and verifies it (a wrong key,
///    a damaged object or a payload that is not a database stops here, with nothing changed);
/// 3. when the file exists, ships `preRestore` (a backup of the current database); a current
///    database that fails its own check is not shipped, and the restore goes on;
/// 4. looks at the locks again, keeps the current file (and its `-wal`/`-journal`) as
///    `DBNAME.replaced-TIMESTAMP.sqlite3` (0600) in `localFolder`, or beside the database without one,
///    removes the stale `-shm`, and renames the new file into place atomically.
/// A failure at any step leaves the live database as it was.
public func restoreInPlace(_ job: RestoreJob, databasePath: String, preRestore: BackupJob?,
                           localFolder: String? = nil, now: () -> Date = Date.init) throws -> RestoreReport {
    try refuseWhileOpen(databasePath)
    let backup = try chooseBackup(for: job)
    let folder = parentDirectory(of: databasePath)
    let restored = try fetchVerified(backup, job: job, folder: folder)
    let temporary = restored.path
    let exists = pathExists(databasePath)
    var preRestoreReport: BackupReport?
    var skipped: String?
    var kept: String?
    do {
        if exists, let preRestore {
            do {
                let report = try runBackup(preRestore, now: now)
                if let error = report.uploads.first(where: { $0.error != nil })?.error { throw error }
                preRestoreReport = report
            } catch let error as SnapshotError {
                switch error {
                case .notSQLite, .integrityCheckFailed: skipped = error.message
                default: throw error
                }
            } catch let error as SQLiteError where error.isCorruption {
                // SQLITE_CORRUPT or SQLITE_NOTADB while copying or checking: the current file is damaged.
                skipped = error.message
            }
        }
        var original = stat()
        if stat(databasePath, &original) == 0 {
            chmod(temporary, original.st_mode & 0o7777)
            _ = chown(temporary, original.st_uid, original.st_gid)
        }
        // Look again: the application may have started while the backup downloaded.
        try refuseWhileOpen(databasePath)
        if exists {
            let keepFolder = localFolder ?? folder
            try makePrivateDirectory(keepFolder)
            kept = uniqueAsidePath(database: job.database, reason: "replaced", folder: keepFolder, date: now())
        }
        try replaceDatabase(at: databasePath, with: temporary, keepingOldAs: kept)
    } catch {
        removeDatabaseFiles(temporary)
        throw error
    }
    return RestoreReport(backup: backup, path: databasePath, size: (try? fileSize(at: databasePath)) ?? 0,
                         preRestore: preRestoreReport, preRestoreSkipped: skipped, replacedPath: kept)
}

/// Throws `RestoreError.databaseInUse` when another process holds a lock on the database.
func refuseWhileOpen(_ databasePath: String) throws {
    let holders = LockProbe.holders(ofDatabaseAt: databasePath)
    guard holders.isEmpty else {
        throw RestoreError.databaseInUse(path: databasePath, holders: holders.map(\.description).joined(separator: "; "))
    }
}

/// `FOLDER/DBNAME.REASON-YYYYMMDDTHHMMSSZ.sqlite3`, with `-2`, `-3`, … added when that name is taken.
func uniqueAsidePath(database: String, reason: String, folder: String, date: Date) -> String {
    let stamp = BackupID.formatTimestamp(Int64(date.timeIntervalSince1970.rounded(.down)))
    var candidate = "\(folder)/\(database).\(reason)-\(stamp).sqlite3"
    var number = 2
    while pathExists(candidate) || pathExists(candidate + "-wal") || pathExists(candidate + "-journal") {
        candidate = "\(folder)/\(database).\(reason)-\(stamp)-\(number).sqlite3"
        number += 1
    }
    return candidate
}

/// Puts the verified file `replacement` (in the database's folder) in place of `databasePath`, so
/// that a crash or `kill -9` at any moment leaves the live path holding either the old database's
/// whole committed state or the new one:
/// 1. the live database is settled: its write-ahead log is checkpointed into the main file (and a
///    hot rollback journal rolled back), so the main file alone holds the whole state;
/// 2. with `keepingOldAs`, the old file set stays readable there (hard links, or durable copies on
///    another file system), main file and companions alike;
/// 3. the now empty `-wal`, the `-journal` and the `-shm` are removed;
/// 4. one atomic rename replaces the main file.
/// The folders are fsynced between the steps. A database that cannot be settled stops the
/// replacement with nothing changed (busy, a log that stays), unless it is damaged — it has no whole
/// state to lose then, and step 2 keeps it as it is — or `requireSettled` is false (a repair).
/// A failure before the rename removes what step 2 kept and leaves the live database as it was.
func replaceDatabase(at databasePath: String, with replacement: String, keepingOldAs kept: String?,
                     requireSettled: Bool = true) throws {
    let folder = parentDirectory(of: databasePath)
    if pathExists(databasePath) {
        do {
            try settleDatabase(at: databasePath)
        } catch RestoreError.notSettled(_, _, damaged: true) {
            // Damaged: replaced as it is.
        } catch _ where !requireSettled {
            // Repairing: replaced as it is.
        }
        fsyncFolder(folder)
    }
    CrashPoint.reach("replace.settled")
    var keptFiles: [String] = []
    do {
        if let kept, pathExists(databasePath) {
            for suffix in ["", "-wal", "-journal"] where pathExists(databasePath + suffix) {
                try preserveFile(databasePath + suffix, as: kept + suffix)
                keptFiles.append(kept + suffix)
                chmod(kept + suffix, 0o600)
            }
            fsyncFolder(parentDirectory(of: kept))
        }
        CrashPoint.reach("replace.kept")
        for suffix in ["-wal", "-journal", "-shm"] { try removeIfPresent(databasePath + suffix) }
        fsyncFolder(folder)
        CrashPoint.reach("replace.companions-removed")
        if rename(replacement, databasePath) != 0 {
            throw FileIOError(operation: "rename \(replacement) to", path: databasePath, code: errno)
        }
    } catch {
        for file in keptFiles { unlink(file) }
        throw error
    }
    fsyncFolder(folder)
    CrashPoint.reach("replace.renamed")
}

/// Makes the main file of the (idle) database at `path` hold its whole committed state: checkpoints
/// and truncates its write-ahead log, or rolls back a hot journal (SQLite does on the first read);
/// throws when that cannot be done or is not seen done.
func settleDatabase(at path: String) throws {
    do {
        let database = try SQLiteDatabase(path: sqliteURI(forPath: path, immutable: false), mode: .readWrite,
                                          busyTimeout: .milliseconds(500))
        _ = try database.scalarInt("SELECT count(*) FROM sqlite_schema")
        if try database.column("PRAGMA journal_mode").first?.lowercased() == "wal" {
            let result = try database.column("PRAGMA wal_checkpoint(TRUNCATE)")
            guard result.first == "0" else {
                throw RestoreError.notSettled(path: path, detail: "its write-ahead log could not be checkpointed (busy)", damaged: false)
            }
        }
    } catch let error as RestoreError {
        throw error
    } catch let error as SQLiteError {
        throw RestoreError.notSettled(path: path, detail: describe(error), damaged: error.isCorruption)
    } catch {
        throw RestoreError.notSettled(path: path, detail: describe(error), damaged: false)
    }
    // Closed: what is left beside the main file must hold nothing the main file lacks.
    if let size = try? fileSize(at: path + "-wal"), size > 0 {
        throw RestoreError.notSettled(path: path, detail: "its write-ahead log still holds \(size) bytes", damaged: false)
    }
    let journalMagic: [UInt8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]
    if pathExists(path + "-journal"), (try? readPrefix(of: path + "-journal", count: 8)) == journalMagic {
        throw RestoreError.notSettled(path: path, detail: "it has a rollback journal that may be hot", damaged: false)
    }
}

/// Removes `path`; a missing file is fine, any other failure throws.
private func removeIfPresent(_ path: String) throws {
    if unlink(path) != 0 && errno != ENOENT { throw FileIOError(operation: "remove", path: path, code: errno) }
}

/// Makes `destination` (which must not exist) hold the content of `source`, leaving `source` in
/// place: a hard link, or a durable copy when a link is not possible (another file system).
func preserveFile(_ source: String, as destination: String) throws {
    if link(source, destination) == 0 { return }
    if errno == EEXIST { throw FileIOError(operation: "link", path: destination, code: EEXIST) }
    try copyDurably(source, to: destination)
}

/// Moves `source` to `destination` (which must not exist): a rename on the same file system,
/// otherwise a copy with fsync, then the source is removed.
func moveFile(from source: String, to destination: String) throws {
    if pathExists(destination) { throw FileIOError(operation: "move \(source) to", path: destination, code: EEXIST) }
    if rename(source, destination) == 0 { return }
    guard errno == EXDEV else { throw FileIOError(operation: "move \(source) to", path: destination, code: errno) }
    try copyDurably(source, to: destination)
    try removeIfPresent(source)
}

/// Copies `source` into a new 0600 file `destination`, fsynced; nothing is left behind on failure.
private func copyDurably(_ source: String, to destination: String) throws {
    let sink = try FileSink(creating: destination, mode: 0o600)
    do {
        try readFile(at: source, into: sink)
        try sink.finish()
    } catch {
        sink.discard()
        throw error
    }
}
