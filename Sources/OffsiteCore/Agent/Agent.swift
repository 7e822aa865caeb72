import Foundation

/// Targets that can find and remove what a crash left behind: temporary files, open multipart
/// uploads. The agent calls this, holding its lock, for each database it backs up: only that
/// database's folder on the target is its own, so another agent sharing the target's prefix with
/// other databases keeps its uploads in progress.
public protocol LeftoverCleaning {
    /// Removes the leftovers under `database`'s folder older than `age` seconds; returns how many.
    func removeLeftovers(of database: String, olderThan age: TimeInterval) throws -> Int
}

extension FileTarget: LeftoverCleaning {
    /// Removes the hidden temporary upload files (`.*.offsite-tmp`) a crash left behind.
    public func removeLeftovers(of database: String, olderThan age: TimeInterval) throws -> Int {
        removeStaleTemporaries(olderThan: age, inFolder: database)
    }
}

extension WebDAVTarget: LeftoverCleaning {
    /// Deletes the temporary upload names (`offsite-upload-…`) an interrupted upload left behind.
    public func removeLeftovers(of database: String, olderThan age: TimeInterval) throws -> Int {
        try removeStaleTemporaries(olderThan: .milliseconds(Int64((age * 1000).rounded())), inFolder: database)
    }
}

extension S3Target: LeftoverCleaning {
    /// Aborts the multipart uploads that a crash left open.
    public func removeLeftovers(of database: String, olderThan age: TimeInterval) throws -> Int {
        try abortStaleUploads(olderThan: .milliseconds(Int64((age * 1000).rounded())), inFolder: database)
    }
}

/// `offsite run`: keeps every database protected until it is asked to stop.
///
/// One thread runs the loop: it sleeps in `Watcher.wait` until a file event, a wake-up or the next
/// deadline (a schedule, a pending change, a retry), asks SQLite whether a database really
/// changed, and takes backups when they are due — one snapshot per run, shipped to every due
/// target. Another thread calls `requestStop` on SIGTERM/SIGINT.
public final class Agent: @unchecked Sendable {
    /// One target and when it is due.
    final class TargetRuntime {
        let config: TargetConfig
        let target: any Target
        let schedule: TriggerSchedule
        /// Targets without a schedule of their own follow the global one and on-change backups.
        let followsChanges: Bool
        var nextRun: Date?

        init(config: TargetConfig, target: any Target, schedule: TriggerSchedule, now: Date) {
            self.config = config
            self.target = target
            self.schedule = schedule
            self.followsChanges = config.schedule == nil
            self.nextRun = schedule.nextRun(lastRun: nil, now: now)
        }
    }

    /// One database and what has been shipped of it.
    final class DatabaseRuntime {
        let ref: DatabaseRef
        let detector: ChangeDetector
        var gate: OnChangeGate
        /// Counts the changes seen; a target is up to date when it holds the current generation.
        var generation = 0
        /// The generation each target last received; absent: unknown (ship at the next chance).
        var shipped: [String: Int] = [:]
        var retryAt: [String: Date] = [:]
        var failures: [String: Int] = [:]
        var localGeneration: Int?
        var lastLocalSnapshot: Date?

        init(ref: DatabaseRef, minInterval: Duration) {
            self.ref = ref
            self.detector = ChangeDetector(path: ref.path)
            self.gate = OnChangeGate(minInterval: minInterval)
        }
    }

    let config: OffsiteConfig
    let logger: Logger
    let localFolder: String
    let watcher: Watcher
    let state: StateStore
    let notifier: WebhookNotifier?
    let cancellation = Cancellation()
    let encryption: PayloadEncryption
    /// What decrypts backups for restore drills and repairs; empty when the host holds no identity.
    let keys: DecryptionKeys
    /// When the next restore drill is due (`verify.every`).
    private var nextVerify: Date?
    var targets: [TargetRuntime] = []
    var databases: [DatabaseRuntime] = []
    /// Manual backups asked for over HTTP, and the database being backed up (see AgentControl.swift).
    let manualRequests = ManualBackupRequests()
    private let stopLock = NSLock()
    private var stopRequestedAt: Date?
    private var lock: AgentLock?

    /// How often the local rotation takes a snapshot on its own when a database changed.
    static let localInterval: TimeInterval = 3600

    /// Prepares an agent for `config`; `run()` starts it.
    public init(config: OffsiteConfig, encryption: PayloadEncryption, keys: DecryptionKeys = DecryptionKeys(),
                logger: Logger) throws {
        guard let local = config.local else {
            throw AgentError.noLocalFolder
        }
        self.config = config
        self.logger = logger
        self.encryption = encryption
        self.keys = keys
        self.localFolder = local.dir
        self.watcher = try Watcher()
        self.state = StateStore(folder: local.dir)
        if let notify = config.notify {
            let log = logger
            notifier = WebhookNotifier(url: notify.webhookURL.value) { notification, reason in
                log.warn("notify.failed", ["event": notification.event, "db": notification.database, "reason": reason])
            }
        } else {
            notifier = nil
        }
    }

    /// Asks the agent to stop: in-flight work may finish until `shutdownTimeout`, then it is
    /// cancelled; the shutdown backup follows when configured. Returns false when a stop had
    /// already been requested (the caller then exits at once).
    @discardableResult
    public func requestStop() -> Bool {
        let first: Bool = stopLock.withLock {
            guard stopRequestedAt == nil else { return false }
            stopRequestedAt = Date()
            return true
        }
        guard first else { return false }
        let timeout = config.shutdownTimeout
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout.timeInterval) { [cancellation, logger] in
            if !cancellation.isCancelled {
                logger.warn("agent.deadline", ["shutdownTimeout": timeout.configText,
                                               "action": "cancelling the work in progress"])
                cancellation.cancel()
            }
        }
        watcher.wake()
        return true
    }

    var isStopping: Bool { stopLock.withLock { stopRequestedAt != nil } }

    /// Runs until `requestStop()`; returns after the shutdown backup. `whenLocked` runs once the
    /// agent holds its lock (the control endpoint starts there, so a second agent is refused by
    /// the lock, naming the first, before it could fail on the port).
    public func run(whenLocked: () throws -> Void = {}) throws {
        try makePrivateDirectory(localFolder)
        lock = try AgentLock.acquire(folder: localFolder)
        defer { lock = nil }
        try whenLocked()
        state.removeStaleTemporaryFiles()
        let now = Date()
        record { $0.recordStart(at: now, pid: getpid()) }

        let control = RequestControl(cancellation: cancellation) { [logger] in logger.log(.warn, "target.retry", fields: $0.logFields) }
        for targetConfig in config.targets {
            let target = try makeTarget(targetConfig, spoolFolder: URL(fileURLWithPath: localFolder), control: control)
            let schedule = try TriggerSchedule(target: targetConfig, schedule: config.schedule)
            targets.append(TargetRuntime(config: targetConfig, target: target, schedule: schedule, now: now))
        }
        removeLocalLeftovers()
        removeRestoreLeftovers()
        // Two files with one name are a configuration error, found before anything is repaired.
        _ = try resolveDatabases(configured: config.databases, watch: config.watch)
        if config.restoreIfCorrupt { repairCorruptDatabases() }
        for folder in Set(watchedFolders()) {
            do { try watcher.watch(folder: folder) } catch {
                logger.error("watch.failed", ["folder": folder, "reason": describe(error)])
            }
        }
        record { $0.unprotected = nil }
        try discoverDatabases()
        recordNextRuns(now: now)
        logger.info("agent.start", ["version": LibraryVersions.offsite, "pid": getpid(),
                                    "databases": databases.map(\.ref.name).joined(separator: ","),
                                    "targets": targets.map { "\($0.config.name)(\($0.schedule))" }.joined(separator: ",")])

        if let every = config.verify?.every { nextVerify = now.addingTimeInterval(every.timeInterval) }
        if config.schedule.startup {
            for database in databases where !isStopping {
                perform(database, targets: targets, kind: .startup)
            }
        }
        while !isStopping {
            let wakeup = watcher.wait(until: nextDeadline())
            if isStopping { break }
            handle(events: wakeup.events)
            runManualRequests()
            runDueWork(now: Date())
        }
        manualRequests.dropAll("the agent is stopping")

        if config.schedule.shutdown && !cancellation.isCancelled {
            logger.info("agent.stopping", ["shutdownBackup": true])
            for database in databases where !cancellation.isCancelled {
                perform(database, targets: targets, kind: .shutdown)
            }
        }
        notifier?.drain(timeout: 5)
        notifier?.stop()
        logger.info("agent.stop", ["cancelled": cancellation.isCancelled])
    }

    // MARK: Recording

    /// Files in the watched folder that are not backed up (another database has their name).
    private var unprotectedPaths: Set<String> = []

    /// Whether the last write of the state file failed: a failure is reported once per streak.
    private var stateWriteFailing = false

    /// Applies `body` to the state and writes it; returns what `body` returns, or nil when the write
    /// failed. A failed write is never silent: it is logged, counted in the state (written with the
    /// next write that works: the change itself is kept too) and sent, once per streak of failures.
    @discardableResult
    func record<Result>(_ body: @escaping (inout AgentState) -> Result) -> Result? {
        do {
            let result = try state.update(body)
            if stateWriteFailing {
                stateWriteFailing = false
                logger.info("state.recovered", ["file": state.path])
            }
            return result
        } catch {
            let reason = describe(error)
            let now = Date()
            _ = try? state.update { $0.recordProblem("state-write", reason: reason, at: now) }
            if !stateWriteFailing {
                stateWriteFailing = true
                logger.error("state.failed", ["file": state.path, "reason": reason])
                notifier?.send(Notification(event: "state.failed", database: "", reason: reason))
            }
            return nil
        }
    }

    /// A failure of work that is not one backup to one target: logged as an error, counted in the
    /// state, and sent.
    private func reportProblem(_ operation: String, database: String?, target: String? = nil, reason: String) {
        let now = Date()
        record { $0.recordProblem(operation, database: database, target: target, reason: reason, at: now) }
        var fields: [(String, Any)] = []
        if let database { fields.append(("db", database)) }
        if let target { fields.append(("target", target)) }
        fields.append(("reason", reason))
        logger.log(.error, "\(operation).failed", fields: fields)
        notifier?.send(Notification(event: "\(operation).failed", database: database ?? "", target: target, reason: reason))
    }

    // MARK: Databases and events

    private func watchedFolders() -> [String] {
        var folders = config.databases.map { ($0.path as NSString).deletingLastPathComponent }
        if let watch = config.watch { folders.append(watch.dir) }
        return folders
    }

    /// Adds the configured databases and the SQLite databases in `watch.dir` that are not known
    /// yet. At the start the whole folder is read; while running only `newNames` (from file
    /// events) are looked at, and those found are new: backed up soon. A known database's file is
    /// never opened outside SQLite: closing any descriptor of it would drop the POSIX locks SQLite
    /// holds on it (sqlite.org/howtocorrupt.html, 2.2), and the change detector's connection
    /// would stop seeing commits once the application's last connection deleted the WAL.
    private func discoverDatabases(newNames: [String]? = nil) throws {
        var found: [DatabaseRef] = []
        if let newNames {
            guard let watch = config.watch else { return }
            for name in newNames where !name.hasPrefix(".") && !name.hasSuffix("-wal") && !name.hasSuffix("-shm")
                && !name.hasSuffix("-journal") && watch.include.contains(where: { fnmatch($0, name, 0) == 0 }) {
                let path = "\(watch.dir)/\(name)"
                var info = stat()
                guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, hasSQLiteHeader(path) else {
                    if unprotectedPaths.remove(path) != nil { record { $0.recordUnprotected(path, reason: nil) } }
                    continue
                }
                found.append(DatabaseRef(path: path))
            }
        } else {
            // At the start, two files with one name are a configuration error: the agent refuses.
            found = try resolveDatabases(configured: config.databases, watch: config.watch)
        }
        for ref in found where !databases.contains(where: { $0.ref.path == ref.path }) {
            if let clash = databases.first(where: { $0.ref.name == ref.name }) {
                // A file that appeared while the agent runs and takes a known database's name is not
                // backed up: its backups would land in the other database's folder.
                guard unprotectedPaths.insert(ref.path).inserted else { continue }
                let conflict = DatabaseNameConflict(name: ref.name, first: clash.ref.path, second: ref.path)
                record { $0.recordUnprotected(ref.path, reason: conflict.message) }
                reportProblem("name-conflict", database: ref.name, reason: conflict.message + "; \(ref.path) is not backed up")
                continue
            }
            let runtime = DatabaseRuntime(ref: ref, minInterval: config.schedule.onChange?.minInterval ?? .seconds(300))
            databases.append(runtime)
            removeTargetLeftovers(of: ref.name)
            let now = Date()
            record { $0.recordDatabase(ref.name, path: ref.path, at: now) }
            if !config.databases.contains(where: { $0.path == ref.path }) {
                logger.info("database.found", ["db": ref.name, "path": ref.path])
            }
            if newNames != nil {
                // A database that appears while the agent runs is new: back it up soon.
                runtime.generation = 1
                runtime.gate.recordChange(at: now)
            }
        }
    }

    private func handle(events: [Watcher.Event]) {
        guard !events.isEmpty else { return }
        if let watch = config.watch {
            let known = Set(databases.map(\.ref.path))
            let newNames = Set(events.filter { $0.folder == watch.dir && !known.contains("\($0.folder)/\($0.name)") }.map(\.name))
            if !newNames.isEmpty { try? discoverDatabases(newNames: newNames.sorted()) }
        }
        let now = Date()
        for database in databases {
            let fileName = (database.ref.path as NSString).lastPathComponent
            let folder = (database.ref.path as NSString).deletingLastPathComponent
            let touched = events.contains { $0.folder == folder && ($0.name == fileName || $0.name.hasPrefix(fileName + "-")) }
            guard touched, database.detector.hasChanged() else { continue }
            database.generation += 1
            database.gate.recordChange(at: now)
            record { $0.recordChange(of: database.ref.name, at: now) }
            logger.debug("database.changed", ["db": database.ref.name])
        }
    }

    // MARK: Deciding what is due

    private func hasNews(_ database: DatabaseRuntime, for target: TargetRuntime) -> Bool {
        guard let shipped = database.shipped[target.config.name] else { return true }
        return database.generation > shipped
    }

    /// The next moment something may fall due.
    private func nextDeadline() -> Date? {
        var candidates: [Date] = targets.compactMap(\.nextRun)
        if let nextVerify { candidates.append(nextVerify) }
        for database in databases {
            if let due = database.gate.dueAt { candidates.append(due) }
            candidates += database.retryAt.values
            if database.localGeneration.map({ database.generation > $0 }) ?? false {
                candidates.append((database.lastLocalSnapshot ?? Date()).addingTimeInterval(Agent.localInterval))
            }
        }
        return candidates.min()
    }

    private func runDueWork(now: Date) {
        if let due = nextVerify, due <= now, let every = config.verify?.every {
            runRestoreDrills()
            nextVerify = Date().addingTimeInterval(every.timeInterval)
        }
        let scheduled = targets.filter { ($0.nextRun ?? .distantFuture) <= now }
        for database in databases {
            if isStopping { return }
            let changeDue = database.gate.isDue(at: now)
            var due: [TargetRuntime] = []
            var kind = BackupKind.scheduled
            for target in targets where hasNews(database, for: target) {
                let retry = database.retryAt[target.config.name].map { $0 <= now } ?? false
                if scheduled.contains(where: { $0 === target }) || retry {
                    due.append(target)
                } else if changeDue && target.followsChanges {
                    due.append(target)
                    kind = .change
                }
            }
            if due.contains(where: { target in scheduled.contains { $0 === target } }) { kind = .scheduled }
            if !due.isEmpty {
                perform(database, targets: due, kind: kind)
            } else if changeDue {
                // Nothing to ship (every target has its own schedule): the change goes to the local rotation.
                perform(database, targets: [], kind: .change)
            } else if let local = database.localGeneration, database.generation > local,
                      (database.lastLocalSnapshot ?? .distantPast).addingTimeInterval(Agent.localInterval) <= now {
                perform(database, targets: [], kind: .scheduled)
            }
        }
        for target in scheduled {
            target.nextRun = target.schedule.nextRun(lastRun: now, now: now)
        }
        if !scheduled.isEmpty { recordNextRuns(now: now) }
    }

    /// Writes every target's next scheduled run into the state, in one update.
    private func recordNextRuns(now: Date) {
        let plan = targets.flatMap { target in databases.map { (database: $0.ref.name, target: target.config.name, next: target.nextRun) } }
        record { state in
            for entry in plan { state.recordNextRun(database: entry.database, target: entry.target, at: entry.next, now: now) }
        }
    }

    // MARK: Taking a backup

    /// One snapshot of `database`, shipped to `targets`; records, logs and notifies the outcome.
    /// `reason` and `onStart` come with manual backups asked for over HTTP.
    func perform(_ database: DatabaseRuntime, targets due: [TargetRuntime], kind: BackupKind, reason: String? = nil,
                 onStart: (@Sendable (BackupID) -> Void)? = nil) {
        manualRequests.begin(database.ref.name)
        defer { manualRequests.end(database.ref.name) }
        guard FileManager.default.fileExists(atPath: database.ref.path) else {
            logger.warn("backup.skipped", ["db": database.ref.name, "reason": "\(database.ref.path) does not exist"])
            database.gate.recordBackup(at: Date())
            return
        }
        // Catch up with SQLite's view first, so writes made before this snapshot are not
        // mistaken for new ones when their file events arrive later.
        if database.detector.hasChanged() { database.generation += 1 }
        let generation = database.generation
        var job = BackupJob(database: database.ref, kind: kind, targets: due.map(\.target), encryption: encryption,
                            compressionLevel: config.compression.level, check: config.integrityCheck,
                            localFolder: localFolder, localKeep: config.local?.keep, cancellation: cancellation)
        job.onRetake = { [logger] reason in logger.warn("backup.retaken", ["db": database.ref.name, "reason": reason]) }
        job.onIDChosen = onStart
        let started = Date()
        logger.info("backup.start", ["db": database.ref.name, "kind": kind.rawValue,
                                     "targets": due.map(\.config.name).joined(separator: ","), "reason": reason as Any])
        let report: BackupReport
        do {
            report = try runBackup(job)
        } catch {
            let reason = describe(error)
            logger.error("backup.failed", ["db": database.ref.name, "kind": kind.rawValue, "stage": "snapshot", "reason": reason])
            database.gate.recordBackup(at: started)
            for target in due { recordFailure(database, target: target, reason: reason, backupID: nil) }
            return
        }
        database.gate.recordBackup(at: report.snapshot.readStartedAt)
        database.localGeneration = generation
        database.lastLocalSnapshot = Date()
        let snapshot = SnapshotRecord(time: report.snapshot.readStartedAt, backupID: report.id.description,
                                      bytes: report.snapshot.byteCount, pageCount: Int64(report.snapshot.pageCount),
                                      pageSize: report.snapshot.pageSize)
        record {
            $0.recordSnapshot(of: database.ref.name, snapshot)
            $0.recordBackup(report, database: database.ref.name, reason: reason)
        }
        for (target, upload) in zip(due, report.uploads) {
            if let error = upload.error {
                recordFailure(database, target: target, reason: describe(error), backupID: report.id.description)
                continue
            }
            database.shipped[target.config.name] = generation
            database.retryAt[target.config.name] = nil
            database.failures[target.config.name] = nil
            let bytes = upload.size ?? 0
            let ended = record {
                $0.recordSuccess(database: database.ref.name, target: target.config.name, at: Date(),
                                 backupID: report.id.description, bytes: bytes, seconds: Date().timeIntervalSince(started))
            } ?? 0
            logger.info("backup.done", ["db": database.ref.name, "target": target.config.name, "id": report.id.description,
                                        "bytes": bytes, "seconds": String(format: "%.2f", Date().timeIntervalSince(started))])
            if ended > 0 {
                notifier?.send(Notification(event: "backup.recovered", database: database.ref.name, target: target.config.name,
                                            backupID: report.id.description, reason: "succeeded after \(ended) failure(s)"))
            } else if config.notify?.onSuccess == true {
                notifier?.send(Notification(event: "backup.succeeded", database: database.ref.name,
                                            target: target.config.name, backupID: report.id.description))
            }
            prune(database, target: target)
        }
        for path in report.prunedLocal {
            logger.info("local.pruned", ["db": database.ref.name, "file": (path as NSString).lastPathComponent])
        }
        for reason in report.localPruneFailures {
            reportProblem("local-rotation", database: database.ref.name, reason: reason)
        }
    }

    private func recordFailure(_ database: DatabaseRuntime, target: TargetRuntime, reason: String, backupID: String?) {
        let count = (database.failures[target.config.name] ?? 0) + 1
        database.failures[target.config.name] = count
        if !cancellation.isCancelled {
            database.retryAt[target.config.name] = Date().addingTimeInterval(Agent.retryDelay(afterFailures: count))
        }
        record {
            $0.recordFailure(database: database.ref.name, target: target.config.name, at: Date(), reason: reason)
        }
        logger.error("backup.failed", ["db": database.ref.name, "target": target.config.name, "reason": reason,
                                       "failures": count])
        notifier?.send(Notification(event: "backup.failed", database: database.ref.name, target: target.config.name,
                                    backupID: backupID, reason: reason))
    }

    /// Waits 30 s after a first failure, doubling up to 15 minutes.
    static func retryDelay(afterFailures count: Int) -> TimeInterval {
        min(30 * pow(2, Double(min(count, 10) - 1)), 900)
    }

    /// Applies the target's retention to one database's backups after a successful upload.
    private func prune(_ database: DatabaseRuntime, target: TargetRuntime) {
        do {
            let backups = try listBackups(on: target.target, database: database.ref.name)
            let plan = planRetention(backups: backups.map { RetainedBackup(id: $0.id, key: $0.key) },
                                     policy: target.config.retention)
            var removed = 0
            for item in plan.remove {
                try target.target.delete(key: item.key)
                removed += 1
                logger.info("prune.removed", ["db": database.ref.name, "target": target.config.name, "id": item.id.description])
            }
            let kept = backups.filter { backup in !plan.remove.contains { $0.key == backup.key } }
            let listing = TargetListing(time: Date(), objectCount: kept.count, storedBytes: kept.reduce(0) { $0 + $1.size })
            record { $0.recordListing(database: database.ref.name, target: target.config.name, listing) }
            if removed > 0 { logger.info("prune.done", ["db": database.ref.name, "target": target.config.name, "removed": removed]) }
        } catch {
            reportProblem("prune", database: database.ref.name, target: target.config.name, reason: describe(error))
        }
    }

    /// `restoreIfCorrupt`: before any backup could overwrite good copies with bad data, every
    /// database that fails its check is moved aside and restored from the newest good backup.
    /// Runs before the change detectors open their connections.
    private func repairCorruptDatabases() {
        let candidates = (try? resolveDatabases(configured: config.databases, watch: config.watch)) ?? []
        for database in candidates {
            let outcome = repairIfCorrupt(database: database, targets: targets.map(\.target), keys: keys,
                                          localFolder: localFolder, check: config.integrityCheck)
            switch outcome {
            case .healthy, .missing:
                logger.debug("repair.checked", ["db": database.name, "result": outcome.summary])
            case .repaired:
                logger.warn("repair.done", ["db": database.name, "result": outcome.summary])
                notifier?.send(Notification(event: "database.repaired", database: database.name, reason: outcome.summary))
            case .unchecked, .inUse, .failed:
                logger.error("repair.failed", ["db": database.name, "reason": outcome.summary])
                notifier?.send(Notification(event: "repair.failed", database: database.name, reason: outcome.summary))
            }
        }
    }

    /// `verify.every`: the restore drill of each database's newest backup on every target —
    /// download, decrypt, decompress, integrity_check, compare with what was recorded. Without
    /// an identity only the object's presence and size can be checked, and the log says so.
    private func runRestoreDrills() {
        let snapshot = state.current
        for database in databases {
            for target in targets where !isStopping {
                let records = snapshot.backupRecords(database: database.ref.name, target: target.config.name)
                logger.debug("verify.start", ["db": database.ref.name, "target": target.config.name])
                let outcomes: [VerifyOutcome]
                do {
                    outcomes = try verifyBackups(of: database.ref.name, on: target.target, scope: .latest, keys: keys,
                                                 records: records, temporaryFolder: localFolder, cancellation: cancellation)
                } catch {
                    logger.error("verify.failed", ["db": database.ref.name, "target": target.config.name, "reason": describe(error)])
                    continue
                }
                for outcome in outcomes {
                    record { $0.recordVerify(database: database.ref.name, target: target.config.name, outcome.result(at: Date())) }
                    switch outcome.status {
                    case .ok:
                        logger.info("verify.done", ["db": database.ref.name, "target": target.config.name, "id": outcome.backupID])
                    case .notDecrypted:
                        logger.warn("verify.partial", ["db": database.ref.name, "target": target.config.name, "id": outcome.backupID,
                                                       "detail": outcome.detail])
                    case .failed:
                        logger.error("verify.failed", ["db": database.ref.name, "target": target.config.name, "id": outcome.backupID,
                                                       "reason": outcome.detail])
                        notifier?.send(Notification(event: "verify.failed", database: database.ref.name, target: target.config.name,
                                                    backupID: outcome.backupID, reason: outcome.detail))
                    }
                }
            }
        }
    }

    /// Removes what a crash left on the targets in `database`'s folder: temporaries, open
    /// multipart uploads. Nothing of this agent's is in progress there yet.
    private func removeTargetLeftovers(of database: String) {
        for target in targets {
            guard let cleaner = target.target as? LeftoverCleaning else { continue }
            do {
                let count = try cleaner.removeLeftovers(of: database, olderThan: 0)
                if count > 0 { logger.info("leftovers.removed", ["target": target.config.name, "db": database, "count": count]) }
            } catch {
                logger.warn("leftovers.failed", ["target": target.config.name, "db": database, "reason": describe(error)])
            }
        }
    }

    /// Removes the restore temporaries (full-size plaintext copies) that a killed restore or drill
    /// left beside the databases and in the local folder, when no process holds them any more.
    private func removeRestoreLeftovers() {
        var folders = Set(config.databases.map { parentDirectory(of: $0.path) } + [localFolder])
        if let watch = config.watch { folders.insert(watch.dir) }
        for folder in folders.sorted() {
            for name in removeStaleRestoreTemporaries(in: folder, olderThan: 0) {
                logger.info("leftovers.removed", ["file": "\(folder)/\(name)"])
            }
        }
    }

    /// Removes the unfinished snapshots a crash left in the local folder (the agent's own).
    private func removeLocalLeftovers() {
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: localFolder)) ?? []
        for folder in folders where !folder.hasPrefix(".") {
            let path = "\(localFolder)/\(folder)"
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] where name.hasPrefix(".") && name.contains(".tmp") {
                if unlink("\(path)/\(name)") == 0 { logger.info("leftovers.removed", ["file": "\(folder)/\(name)"]) }
            }
        }
    }
}

/// Why the agent cannot start.
public enum AgentError: UserFacingError {
    case noLocalFolder

    public var message: String {
        switch self {
        case .noLocalFolder: return "offsite run needs a local folder (local.dir): its lock, state and local rotation live there"
        }
    }

    public var hint: String? { "add \"local\": { \"dir\": \"/backups\" } to the configuration, or set OFFSITE_LOCAL_DIR" }
}

/// A one-line description of an error for logs and state: the user-facing message, never a secret.
public func describe(_ error: Error) -> String {
    if let error = error as? UserFacingError { return error.message }
    return "\(error)"
}
