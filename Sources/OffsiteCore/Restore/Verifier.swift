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
    try backupsToVerify(try listBackups(on: target, database: database), target: target, database: database, scope: scope)
}

/// The backups of `database` among `backups` (one listing of `target`) that `scope` names, oldest first.
func backupsToVerify(_ backups: [RemoteBackup], target: any Target, database: String, scope: VerifyScope) throws -> [RemoteBackup] {
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

/// Runs the drill for every backup `scope` names on `target` (see `verifyBackup`), oldest first;
/// a backup that is the base of change objects gets the drill of its chain instead (see
/// `verifyChain`). `records` is what was noted at backup time, by backup id. Throws only when the
/// listing fails or names nothing.
public func verifyBackups(of database: String, on target: any Target, scope: VerifyScope, keys: DecryptionKeys,
                          records: [String: BackupRecord] = [:], temporaryFolder: String? = nil,
                          progress: (RemoteBackup) -> ProgressMeter? = { _ in nil },
                          cancellation: Cancellation? = nil) throws -> [VerifyOutcome] {
    let listing = try listBackupsAndChanges(on: target, database: database)
    var chains: [BackupID: Chain] = [:]
    for chain in findChains(in: listing, database: database) { chains[chain.baseID] = chain }
    return try backupsToVerify(listing.backups, target: target, database: database, scope: scope).map { backup in
        if let chain = chains[backup.id], chain.hasChanges {
            return verifyChain(chain, on: target, keys: keys, recorded: records[backup.id.description],
                               temporaryFolder: temporaryFolder, progress: progress(backup), cancellation: cancellation)
        }
        return verifyBackup(backup, on: target, keys: keys, recorded: records[backup.id.description],
                            temporaryFolder: temporaryFolder, progress: progress(backup), cancellation: cancellation)
    }
}

/// The restore drill of a chain: downloads its base and every change object it reaches, checks
/// every link (the base's CRC-32 and length, each object's digest of the one before), applies them
/// into a temporary file in `temporaryFolder` (the system's when nil), runs `integrity_check` and
/// removes the file. A missing link is a failure even when what comes before it restores. Never
/// throws: every problem is a `.failed` outcome naming it.
public func verifyChain(_ chain: Chain, on target: any Target, keys: DecryptionKeys, recorded: BackupRecord?,
                        temporaryFolder: String? = nil, progress: ProgressMeter? = nil,
                        cancellation: Cancellation? = nil) -> VerifyOutcome {
    var outcome = VerifyOutcome(database: chain.database, target: target.name, backupID: chain.baseID.description,
                                status: .failed, detail: "")
    let window = chain.window
    let objectCount = chain.changes.count + chain.compacted.count
    let gapText = window.missingLink.map { gap -> String in
        let what = gap.reason == .ambiguous ? "more than one change object is numbered \(gap.sequence)"
            : "change object \(gap.sequence) is missing"
        return "\(what): no moment after \(gap.pointBefore.map(formatInstant) ?? "the base") can be restored"
    }
    guard let base = chain.base, let plan = chain.planToEnd() else {
        outcome.detail = "the full backup is not on the target; its \(objectCount) change objects cannot be restored"
        return outcome
    }
    if plan.steps.isEmpty {
        var alone = verifyBackup(base, on: target, keys: keys, recorded: recorded, temporaryFolder: temporaryFolder,
                                 progress: progress, cancellation: cancellation)
        if let gapText, alone.status != .failed {
            alone.status = .failed
            alone.detail = gapText + "; the full backup alone: " + alone.detail
        }
        return alone
    }
    if base.format == .encrypted && keys.isEmpty {
        outcome.status = .notDecrypted
        outcome.detail = "could not decrypt (no identity or passphrase); the full backup (\(base.size) bytes) and "
            + "\(objectCount) change objects exist"
        return outcome
    }
    let folder = temporaryFolder ?? FileManager.default.temporaryDirectory.path
    let fetched: (file: RestoredFile, application: ChainApplication)
    do {
        try makePrivateDirectory(folder)
        fetched = try fetchChainVerified(plan, from: target, keys: keys, check: .full, folder: folder, progress: progress,
                                         cancellation: cancellation)
    } catch {
        outcome.detail = oneLine((error as? UserFacingError)?.message ?? "\(error)")
        return outcome
    }
    removeDatabaseFiles(fetched.file.path)
    let info = fetched.file.info
    let applied = fetched.application
    let summary = "integrity_check ok, \(info.pageCount) pages (\(formatBytes(info.bytes))) with \(applied.objects) change "
        + "object\(applied.objects == 1 ? "" : "s") (\(applied.transactions) transactions) applied, every link checked, "
        + "to \(formatInstant(applied.point))"
    if let gapText {
        outcome.detail = gapText + "; up to there: " + summary
        return outcome
    }
    outcome.status = .ok
    outcome.detail = summary
    return outcome
}
