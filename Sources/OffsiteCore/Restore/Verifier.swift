import Foundation

/// Which backups a restore drill checks.
public enum VerifyScope: Sendable, Equatable {
    /// The newest backup of the database.
    case latest
    /// The backup with this id.
    case id(BackupID)
    /// Every backup of the database.
    case all

    /// Parses a `--backup` value: `latest`, `all` or an id.
    public static func parse(_ text: String) throws -> VerifyScope {
        if text == "all" { return .all }
        switch try BackupSelection.parse(backup: text) {
        case let .id(id): return .id(id)
        default: return .latest
        }
    }
}

/// The result of one restore drill.
public struct VerifyOutcome: Sendable, Equatable {
    /// How it went.
    public enum Status: String, Sendable, Equatable {
        /// Restored, passed `integrity_check` and matched what was recorded at backup time.
        case ok
        /// Something is wrong with the backup (or the keys cannot read it).
        case failed
        /// There was no identity or passphrase: only the object and its size were checked.
        case notDecrypted = "not decrypted"
    }

    /// The database's name.
    public var database: String
    /// The target's name.
    public var target: String
    /// The backup id.
    public var backupID: String
    /// How it went.
    public var status: Status
    /// What was checked, or what failed; one line without secrets.
    public var detail: String

    /// Whether the drill found a problem.
    public var isFailure: Bool { status == .failed }

    /// The record the agent keeps of this drill (`TargetState.lastVerify`).
    public func result(at date: Date) -> VerifyResult {
        VerifyResult(time: date, backupID: backupID, ok: status == .ok, reason: status == .ok ? nil : detail)
    }
}

/// The backups of `database` on `target` that `scope` names, oldest first; throws when the
/// listing fails or names nothing.
public func backupsToVerify(on target: any Target, database: String, scope: VerifyScope) throws -> [RemoteBackup] {
    let backups = try listBackups(on: target, database: database)
    switch scope {
    case .all:
        guard !backups.isEmpty else { throw RestoreError.noBackups(database: database, target: target.name) }
        return backups
    case .latest:
        return [try selectBackup(from: backups, database: database, selection: .latest, target: target.name)]
    case let .id(id):
        return [try selectBackup(from: backups, database: database, selection: .id(id), target: target.name)]
    }
}

/// The restore drill for one backup, without touching the live database: downloads, decrypts
/// and decompresses it into a temporary file in `temporaryFolder` (the system's when nil), runs
/// `PRAGMA integrity_check`, compares size and page count with `recorded` (what was noted at
/// backup time, when known) and removes the file. Without keys it checks what it can — the
/// object's size against the recorded upload — and says it could not decrypt. Never throws:
/// every problem is a `.failed` outcome naming it.
public func verifyBackup(_ backup: RemoteBackup, on target: any Target, keys: DecryptionKeys, recorded: BackupRecord?,
                         temporaryFolder: String? = nil, progress: ProgressMeter? = nil,
                         cancellation: Cancellation? = nil) -> VerifyOutcome {
    var outcome = VerifyOutcome(database: backup.database, target: target.name, backupID: backup.id.description,
                                status: .failed, detail: "")
    if let recorded, recorded.objectBytes != backup.size {
        outcome.detail = "the object holds \(backup.size) bytes, but \(recorded.objectBytes) were uploaded"
        return outcome
    }
    if backup.format == .encrypted && keys.isEmpty {
        outcome.status = .notDecrypted
        outcome.detail = recorded == nil
            ? "could not decrypt (no identity or passphrase); the object exists (\(backup.size) bytes), nothing was recorded to compare its size with"
            : "could not decrypt (no identity or passphrase); the object exists and its size matches the upload (\(backup.size) bytes)"
        return outcome
    }
    let folder = temporaryFolder ?? FileManager.default.temporaryDirectory.path
    let fetched: RestoredFile
    do {
        try makePrivateDirectory(folder)
        fetched = try fetchVerified(backup, from: target, keys: keys, check: .full, folder: folder, progress: progress,
                                    cancellation: cancellation)
    } catch {
        outcome.detail = oneLine((error as? UserFacingError)?.message ?? "\(error)")
        return outcome
    }
    removeDatabaseFiles(fetched.path)
    let info = fetched.info
    let summary = "integrity_check ok, \(info.pageCount) pages (\(formatBytes(info.bytes)))"
    guard let recorded else {
        outcome.status = .ok
        outcome.detail = summary + "; nothing was recorded at backup time to compare with"
        return outcome
    }
    var mismatches: [String] = []
    if info.bytes != recorded.snapshotBytes {
        mismatches.append("restored \(info.bytes) bytes, the snapshot had \(recorded.snapshotBytes)")
    }
    if info.pageCount != recorded.pageCount {
        mismatches.append("restored \(info.pageCount) pages, the snapshot had \(recorded.pageCount)")
    }
    guard mismatches.isEmpty else {
        outcome.detail = mismatches.joined(separator: "; ")
        return outcome
    }
    outcome.status = .ok
    outcome.detail = summary + ", size and page count as recorded at backup time"
    return outcome
}

/// Runs the drill for every backup `scope` names on `target` (see `verifyBackup`), oldest first.
/// `records` is what was noted at backup time, by backup id. Throws only when the listing fails
/// or names nothing.
public func verifyBackups(of database: String, on target: any Target, scope: VerifyScope, keys: DecryptionKeys,
                          records: [String: BackupRecord] = [:], temporaryFolder: String? = nil,
                          progress: (RemoteBackup) -> ProgressMeter? = { _ in nil },
                          cancellation: Cancellation? = nil) throws -> [VerifyOutcome] {
    try backupsToVerify(on: target, database: database, scope: scope).map { backup in
        verifyBackup(backup, on: target, keys: keys, recorded: records[backup.id.description],
                     temporaryFolder: temporaryFolder, progress: progress(backup), cancellation: cancellation)
    }
}
