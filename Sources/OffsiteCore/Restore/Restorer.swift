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

    /// Creates a job.
    public init(target: any Target, database: String, selection: BackupSelection, keys: DecryptionKeys,
                check: IntegrityCheck = .quick) {
        self.target = target
        self.database = database
        self.selection = selection
        self.keys = keys
        self.check = check
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
}

/// Picks the backup `job` names from one listing of its target.
public func chooseBackup(for job: RestoreJob) throws -> RemoteBackup {
    let backups = try listBackups(on: job.target, database: job.database)
    return try selectBackup(from: backups, database: job.database, selection: job.selection, target: job.target.name)
}

/// Downloads, decrypts and decompresses `backup` into a new temporary file in `folder`, checks it is
/// a SQLite database that passes `check`, fsyncs it and returns its path. On any failure nothing
/// is left behind.
func fetchVerified(_ backup: RemoteBackup, job: RestoreJob, folder: String) throws -> String {
    let temporary = "\(folder)/.\(job.database).restore-\(UInt32.random(in: 0...UInt32.max)).tmp"
    do {
        let file = try FileSink(creating: temporary)
        // Download, decryption, decompression and writing each run on their own thread, joined by
        // bounded queues: constant memory, and the slowest stage sets the pace.
        let stages = try makeRestorePipeline(format: backup.format, keys: job.keys, into: file)
        do {
            try job.target.download(key: backup.key, into: stages.head)
            try stages.head.finish()
        } catch {
            // Stop every stage before the file goes: no thread may still be writing to it.
            for stage in stages.handOffs { stage.abandon() }
            file.discard()
            throw error
        }
        try verifyDatabaseFile(at: temporary, check: job.check)
        return temporary
    } catch {
        removeDatabaseFiles(temporary)
        throw error
    }
}

/// The restore stages as a chain of threads: what is written to `head` is decrypted (for the
/// encrypted format) on one thread, decompressed on another and written to `sink` on a third.
/// `handOffs` are the queues between them, from the head down, for abandoning on failure.
func makeRestorePipeline(format: PayloadFormat, keys: DecryptionKeys, into sink: any ByteSink)
    throws -> (head: any ByteSink, handOffs: [ThreadedSink]) {
    let toFile = ThreadedSink(next: sink, name: "offsite-restore-write")
    let toDecompressor = ThreadedSink(next: try GzipDecompressor(next: toFile), name: "offsite-restore-gunzip")
    switch format {
    case .plain:
        return (toDecompressor, [toDecompressor, toFile])
    case .encrypted:
        let decryptor: AgeDecryptor
        if let passphrase = keys.passphrase, keys.identities.isEmpty {
            decryptor = try AgeDecryptor(passphrase: passphrase, next: toDecompressor)
        } else {
            guard !keys.identities.isEmpty else { throw RestoreError.noKey }
            decryptor = try AgeDecryptor(identities: keys.identities, next: toDecompressor)
        }
        let toDecryptor = ThreadedSink(next: decryptor, name: "offsite-restore-decrypt")
        return (toDecryptor, [toDecryptor, toDecompressor, toFile])
    }
}

/// Checks that `path` is a SQLite database passing `check`; throws `RestoreError.verificationFailed`.
public func verifyDatabaseFile(at path: String, check: IntegrityCheck) throws {
    guard hasSQLiteHeader(path) else {
        throw RestoreError.verificationFailed(detail: "the payload is not a SQLite database")
    }
    let problems: [String]
    do {
        let database = try SQLiteDatabase(path: "file:\(path)?immutable=1", mode: .readOnly)
        problems = try database.column(check.pragma)
    } catch {
        throw RestoreError.verificationFailed(detail: "\(error)")
    }
    guard problems == ["ok"] else {
        throw RestoreError.verificationFailed(detail: problems.prefix(3).joined(separator: "; "))
    }
}

/// Whether the file at `path` starts with SQLite's 16-byte header.
public func hasSQLiteHeader(_ path: String) -> Bool {
    guard let handle = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? handle.close() }
    let header = (try? handle.read(upToCount: 16)) ?? Data()
    return header == Data("SQLite format 3\0".utf8)
}

/// Removes a database file and its `-wal`, `-shm` and `-journal` companions.
func removeDatabaseFiles(_ path: String) {
    for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
}

/// Restores into a new file at `output`; refuses to replace an existing file unless `overwrite`.
public func restore(_ job: RestoreJob, toNewFile output: String, overwrite: Bool) throws -> RestoreReport {
    if !overwrite && FileManager.default.fileExists(atPath: output) { throw RestoreError.outputExists(path: output) }
    let backup = try chooseBackup(for: job)
    let folder = (output as NSString).deletingLastPathComponent
    let temporary = try fetchVerified(backup, job: job, folder: folder.isEmpty ? "." : folder)
    if overwrite {
        for suffix in ["-wal", "-shm", "-journal"] { unlink(output + suffix) }
        guard rename(temporary, output) == 0 else {
            let error = FileIOError(operation: "rename", path: output, code: errno)
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
    fsyncFolder(folder.isEmpty ? "." : folder)
    return RestoreReport(backup: backup, path: output, size: (try? fileSize(at: output)) ?? 0, preRestore: nil)
}

/// Replaces the live database at `databasePath` with the chosen backup, safely: refuses while
/// another process holds the database open; takes `preRestore` first (a backup of the current
/// database) when the file exists; downloads into a temporary file beside it and verifies it; only
/// then removes stale `-wal`, `-shm` and `-journal` files and renames the new file into place, keeping
/// the replaced file's mode and owner.
public func restoreInPlace(_ job: RestoreJob, databasePath: String, preRestore: BackupJob?) throws -> RestoreReport {
    let holders = LockProbe.holders(ofDatabaseAt: databasePath)
    guard holders.isEmpty else {
        throw RestoreError.databaseInUse(path: databasePath, holders: holders.map(\.description).joined(separator: "; "))
    }
    let backup = try chooseBackup(for: job)
    let exists = FileManager.default.fileExists(atPath: databasePath)
    var preRestoreReport: BackupReport?
    if exists, let preRestore {
        let report = try runBackup(preRestore)
        if let failed = report.uploads.first(where: { $0.error != nil }), let error = failed.error {
            throw error
        }
        preRestoreReport = report
    }
    let folder = (databasePath as NSString).deletingLastPathComponent
    let temporary = try fetchVerified(backup, job: job, folder: folder.isEmpty ? "." : folder)
    do {
        var original = stat()
        if stat(databasePath, &original) == 0 {
            chmod(temporary, original.st_mode & 0o7777)
            _ = chown(temporary, original.st_uid, original.st_gid)
        }
        // Look again: the application may have started while the backup downloaded.
        let late = LockProbe.holders(ofDatabaseAt: databasePath)
        guard late.isEmpty else {
            throw RestoreError.databaseInUse(path: databasePath, holders: late.map(\.description).joined(separator: "; "))
        }
        for suffix in ["-wal", "-shm", "-journal"] {
            if unlink(databasePath + suffix) != 0 && errno != ENOENT {
                throw FileIOError(operation: "remove", path: databasePath + suffix, code: errno)
            }
        }
        guard rename(temporary, databasePath) == 0 else {
            throw FileIOError(operation: "rename", path: databasePath, code: errno)
        }
        fsyncFolder(folder.isEmpty ? "." : folder)
    } catch {
        removeDatabaseFiles(temporary)
        throw error
    }
    return RestoreReport(backup: backup, path: databasePath, size: (try? fileSize(at: databasePath)) ?? 0, preRestore: preRestoreReport)
}
