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
/// The decisions are the planner's (`AgentPlanner`, see docs/AGENT.md): this class carries its
/// actions out — snapshots, uploads, prunes, drills — and reports how they went. One thread runs
/// the loop: it sleeps in `Watcher.wait` until a file event, a wake-up or the planner's next
/// deadline, asks SQLite whether a database really changed, and runs what the planner says is
/// due. Another thread calls `requestStop` on SIGTERM/SIGINT.
public final class Agent: @unchecked Sendable {
    /// One target.
    struct TargetRuntime {
        let config: TargetConfig
        let target: any Target
    }

    /// One database and its change detector.
    final class DatabaseRuntime {
        let ref: DatabaseRef
        let detector: ChangeDetector
        /// At most one change check a second however fast the application commits.
        var checks = ChangeCheckGate()

        init(ref: DatabaseRef) {
            self.ref = ref
            self.detector = ChangeDetector(path: ref.path)
        }
    }

    /// One file set, and its tree's fingerprint when last looked at.
    final class FileSetRuntime {
        let config: FileSetConfig
        var fingerprint: FileSetFingerprint?
        /// Whether the last look at its folder failed (reported once per streak).
        var scanFailing = false

        init(config: FileSetConfig) {
            self.config = config
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
    /// The decisions; set when `run` starts.
    private(set) var planner: AgentPlanner!
    var targets: [TargetRuntime] = []
    var databases: [DatabaseRuntime] = []
    var fileSets: [FileSetRuntime] = []
    /// When the file sets' folders are next looked at for changes.
    private var nextFileScan: Date?
    /// When the databases are looked at next (`pollDatabases`).
    private var nextDatabasePoll: Date?
    /// How often the databases are looked at for commits no file event tells of.
    static let databasePollInterval: TimeInterval = 1
    /// Manual backups asked for over HTTP, and the database being backed up (see AgentControl.swift).
    let manualRequests = ManualBackupRequests()
    private let stopLock = NSLock()
    private var stopRequestedAt: Date?
    private var lock: AgentLock?
    /// Files in the watched folder that are not backed up (another database has their name).
    private var unprotectedPaths: Set<String> = []
    /// When the state file was last written, whether an outcome waits to be written, and when.
    private var lastFlush = Date.distantPast
    private var outcomeStaged = false
    private var flushDue: Date?
    /// Whether the last write of the state file failed: a failure is reported once per streak.
    private var stateWriteFailing = false
    /// Continuous protection, per database whose changes are shipped as they are committed.
    private var protections: [String: ContinuousProtection] = [:]
    /// What continuous protection's threads reported and the loop has not handled yet.
    private let continuousEvents = Monitor<[ContinuousEvent]>([])

    /// The least time between two writes of the state file.
    static let flushInterval: TimeInterval = 1

    /// How often file sets are looked at for changes: as often as `minInterval` would let a change
    /// be backed up, but at most once a second and at least once a minute.
    var fileScanInterval: TimeInterval {
        min(max(planner.settings.minInterval.timeInterval, 1), 60)
    }

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
        let loaded = state.load()
        if let warning = loaded.warning { logger.warn("state.unreadable", ["detail": warning]) }
        planner = AgentPlanner(settings: try PlannerSettings(config: config), state: loaded.state, now: Date())

        let control = RequestControl(cancellation: cancellation) { [logger] in logger.log(.warn, "target.retry", fields: $0.logFields) }
        for targetConfig in config.targets {
            targets.append(TargetRuntime(config: targetConfig,
                                         target: try makeTarget(targetConfig, spoolFolder: URL(fileURLWithPath: localFolder), control: control)))
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
        addFileSets()
        try discoverDatabases()
        let start = planner.start(pid: getpid())
        stage(start.changes)
        persist(force: true)
        logger.info("agent.start", ["version": LibraryVersions.offsite, "pid": getpid(),
                                    "databases": databases.map(\.ref.name).joined(separator: ","),
                                    "files": fileSets.map(\.config.name).joined(separator: ","),
                                    "targets": planner.settings.targets.map { "\($0.name)(\($0.schedule))" }.joined(separator: ",")])
        execute(start.actions)
        while !isStopping {
            persist()
            let deadline = ([planner.nextDeadline(), flushDue, nextFileScan, nextDatabasePoll]
                            + databases.map(\.checks.dueAt)).compactMap { $0 }.min()
            let wakeup = watcher.wait(until: deadline)
            if isStopping { break }
            handle(events: wakeup.events)
            runDeferredChecks()
            pollDatabases()
            scanFileSets()
            handleContinuousEvents()
            runManualRequests()
            let due = planner.due(at: Date())
            stage(due.changes)
            execute(due.actions)
        }
        manualRequests.dropAll("the agent is stopping")
        // What was committed until now still leaves the host; then the chains end.
        for protection in protections.values { protection.stop() }
        handleContinuousEvents()

        let shutdown = planner.stop()
        if !shutdown.isEmpty && !cancellation.isCancelled {
            logger.info("agent.stopping", ["shutdownBackup": true])
            execute(shutdown)
        }
        persist(force: true)
        notifier?.drain(timeout: 5)
        notifier?.stop()
        logger.info("agent.stop", ["cancelled": cancellation.isCancelled])
    }

    /// Carries out `actions` in order; once stopping, only shutdown backups (until cancelled).
    func execute(_ actions: [AgentAction]) {
        for action in actions {
            if cancellation.isCancelled { return }
            switch action {
            case let .backup(item, names, kind, reason):
                if isStopping && kind != .shutdown { return }
                let chosen = targets.filter { names.contains($0.config.name) }
                if let set = fileSets.first(where: { $0.config.name == item }) {
                    perform(set, targets: chosen, kind: kind, reason: reason)
                    continue
                }
                guard let database = databases.first(where: { $0.ref.name == item }) else { continue }
                perform(database, targets: chosen, kind: kind, reason: reason)
            case let .prune(item, target):
                guard let target = targets.first(where: { $0.config.name == target }) else { continue }
                if fileSets.contains(where: { $0.config.name == item }) {
                    pruneFileSet(item, target: target)
                } else {
                    prune(item, target: target)
                }
            case .drill:
                if !isStopping { runRestoreDrills() }
            }
        }
    }

    // MARK: Recording

    /// Stages `changes` for the state file; an outcome among them is written within a second.
    private func stage(_ changes: [StateChange]) {
        guard !changes.isEmpty else { return }
        state.stage(changes)
        if changes.contains(where: \.isOutcome) { outcomeStaged = true }
    }

    /// Writes the staged outcomes when a second has passed since the last write (or at once with
    /// `force`), else makes that moment a deadline of the loop. A change seen in a database is
    /// written with the next outcome. A failed write is never silent: logged, counted in the state
    /// (written with the next write that works, with everything staged meanwhile) and sent, once
    /// per streak of failures; it is tried again every few seconds.
    private func persist(force: Bool = false) {
        guard outcomeStaged || (force && state.hasStagedChanges) else { return }
        let now = Date()
        if !force, now.timeIntervalSince(lastFlush) < Agent.flushInterval {
            flushDue = lastFlush.addingTimeInterval(Agent.flushInterval)
            return
        }
        lastFlush = now
        do {
            planner.adopt(try state.flush())
            outcomeStaged = false
            flushDue = nil
            if stateWriteFailing {
                stateWriteFailing = false
                logger.info("state.recovered", ["file": state.path])
            }
        } catch {
            flushDue = now.addingTimeInterval(5)
            guard !stateWriteFailing else { return }
            stateWriteFailing = true
            let reason = describe(error)
            state.stage(planner.record([.problem("state-write", item: nil, target: nil, reason: reason, at: now)]))
            logger.error("state.failed", ["file": state.path, "reason": reason])
            notifier?.send(Notification(event: "state.failed", database: "", reason: reason))
        }
    }

    /// A failure of work that is not one backup to one target: logged as an error, counted in the
    /// state, and sent.
    private func reportProblem(_ operation: String, database: String?, target: String? = nil, reason: String) {
        stage(planner.record([.problem(operation, item: database, target: target, reason: reason, at: Date())]))
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
                    if unprotectedPaths.remove(path) != nil { stage(planner.record([.unprotected(path: path, reason: nil)])) }
                    continue
                }
                found.append(DatabaseRef(path: path))
            }
        } else {
            // At the start, two files with one name are a configuration error: the agent refuses.
            found = try resolveDatabases(configured: config.databases, watch: config.watch)
        }
        for ref in found where !databases.contains(where: { $0.ref.path == ref.path }) {
            let clash = databases.first(where: { $0.ref.name == ref.name })?.ref.path
                ?? fileSets.first(where: { $0.config.name == ref.name })?.config.path
            if let clash {
                // A file that appeared while the agent runs and takes a known database's (or file
                // set's) name is not backed up: its backups would land in the other one's folder.
                guard unprotectedPaths.insert(ref.path).inserted else { continue }
                let conflict = DatabaseNameConflict(name: ref.name, first: clash, second: ref.path)
                stage(planner.record([.unprotected(path: ref.path, reason: conflict.message)]))
                reportProblem("name-conflict", database: ref.name, reason: conflict.message + "; \(ref.path) is not backed up")
                continue
            }
            databases.append(DatabaseRuntime(ref: ref))
            removeTargetLeftovers(of: ref.name)
            stage(planner.found(ref.name, path: ref.path, at: Date(), isNew: newNames != nil))
            startContinuousProtection(of: ref)
            if !config.databases.contains(where: { $0.path == ref.path }) {
                logger.info("database.found", ["db": ref.name, "path": ref.path])
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
            if touched && database.checks.event(at: now) { checkForChange(database, at: now) }
        }
    }

    /// Looks at every database once a `databasePollInterval`: a commit to a WAL-mode database
    /// writes only its `-wal`, which raises no event the agent watches for (`Watcher.watch`), so
    /// this is how such a change is seen, at most a second late. One `PRAGMA data_version` each.
    private func pollDatabases() {
        let now = Date()
        guard !databases.isEmpty else {
            nextDatabasePoll = nil
            return
        }
        if let due = nextDatabasePoll, now < due { return }
        nextDatabasePoll = now.addingTimeInterval(Agent.databasePollInterval)
        for database in databases {
            if database.checks.event(at: now) { checkForChange(database, at: now) }
        }
    }

    /// The change checks that file events deferred (`ChangeCheckGate`) and that are due now.
    private func runDeferredChecks() {
        let now = Date()
        for database in databases {
            if database.checks.due(at: now) { checkForChange(database, at: now) }
        }
    }

    /// Asks SQLite whether `database` changed since the last check and tells the planner if so.
    private func checkForChange(_ database: DatabaseRuntime, at now: Date) {
        guard database.detector.hasChanged() else { return }
        stage(planner.changed(database.ref.name, at: now))
        logger.debug("database.changed", ["db": database.ref.name])
    }

    // MARK: File sets

    /// The configured file sets join the planner as items; each folder's fingerprint is taken now,
    /// so a change from here on is seen.
    private func addFileSets() {
        let now = Date()
        for set in config.files where !fileSets.contains(where: { $0.config.name == set.name }) {
            let runtime = FileSetRuntime(config: set)
            fileSets.append(runtime)
            removeTargetLeftovers(of: set.name)
            stage(planner.found(set.name, path: set.path, at: now, isNew: false, isFileSet: true))
            runtime.fingerprint = fingerprint(of: runtime)
        }
        if !fileSets.isEmpty { nextFileScan = now.addingTimeInterval(fileScanInterval) }
    }

    /// What a file set's backup leaves out: the databases offsite protects, the local folder.
    private var fileSetLeftOut: [String] {
        fileSetLeftOutPaths(databases: databases.map(\.ref), localFolder: localFolder)
    }

    /// The fingerprint of `set`'s folder now, or nil when it cannot be read (logged and counted
    /// once per streak; the backup reports the same failure when it comes).
    private func fingerprint(of set: FileSetRuntime) -> FileSetFingerprint? {
        do {
            let fingerprint = try FileSetFingerprint(of: set.config, leftOut: fileSetLeftOut)
            set.scanFailing = false
            return fingerprint
        } catch {
            if !set.scanFailing {
                set.scanFailing = true
                reportProblem("files-scan", database: set.config.name, reason: describe(error))
            }
            return nil
        }
    }

    /// Looks at the file sets' folders when it is time: one whose fingerprint moved changed.
    private func scanFileSets() {
        guard let due = nextFileScan, Date() >= due else { return }
        for set in fileSets {
            let now = Date()
            let current = fingerprint(of: set)
            guard let current, current != set.fingerprint else { continue }
            let hadOne = set.fingerprint != nil
            set.fingerprint = current
            if hadOne {
                stage(planner.changed(set.config.name, at: now))
                logger.debug("files.changed", ["files": set.config.name, "entries": current.entries])
            }
        }
        nextFileScan = Date().addingTimeInterval(fileScanInterval)
    }

    /// One snapshot of file set `set`, shipped to `targets`: reported to the planner, logged and
    /// sent like a database's; what could not be read is counted and sent too.
    func perform(_ set: FileSetRuntime, targets due: [TargetRuntime], kind: BackupKind, reason: String? = nil) {
        let name = set.config.name
        let started = Date()
        // What the backup reads from now on is covered: a change after this look triggers the next.
        if let current = fingerprint(of: set) {
            if let previous = set.fingerprint, previous != current { stage(planner.changed(name, at: started)) }
            set.fingerprint = current
        }
        let generation = planner.generation(of: name)
        var outcome = BackupOutcome(item: name, kind: kind, generation: generation, startedAt: started, finishedAt: started,
                                    snapshot: nil, uploads: [])
        guard !due.isEmpty else {
            // A file set has no local rotation: nothing to do without a target.
            return
        }
        logger.info("backup.start", ["files": name, "kind": kind.rawValue,
                                     "targets": due.map(\.config.name).joined(separator: ","), "reason": reason as Any])
        let job = FileSetBackupJob(set: set.config, kind: kind, targets: due.map(\.target), encryption: encryption,
                                   compressionLevel: config.compression.level, cacheFolder: "\(localFolder)/.offsite-files",
                                   leftOut: fileSetLeftOut, cancellation: cancellation)
        var report: FileSetBackupReport?
        do {
            let taken = try runFileSetBackup(job)
            report = taken
            outcome.backupID = taken.id.description
            outcome.snapshot = SnapshotRecord(time: started, backupID: taken.id.description, bytes: taken.totalBytes,
                                              pageCount: 0, pageSize: 0)
            outcome.uploads = taken.uploads.map { upload in
                if let error = upload.error { return BackupOutcome.Upload(target: upload.target, failure: describe(error)) }
                return BackupOutcome.Upload(target: upload.target, bytes: upload.bytesShipped)
            }
        } catch {
            let failure = describe(error)
            logger.error("backup.failed", ["files": name, "kind": kind.rawValue, "stage": "snapshot", "reason": failure])
            outcome.snapshotFailure = failure
            outcome.uploads = due.map { BackupOutcome.Upload(target: $0.config.name, failure: failure) }
        }
        outcome.finishedAt = Date()
        outcome.wasCancelled = cancellation.isCancelled
        let result = planner.finished(outcome)
        stage(result.changes)
        for line in report?.recovered ?? [] { logger.info("leftovers.removed", ["files": name, "detail": line]) }
        announce(outcome, of: ("files", name), recoveredAfter: result.recoveredAfter) { upload in
            [("packs", report?.uploads.first { $0.target == upload.target }?.packsUploaded ?? 0),
             ("filesRead", report?.filesRead ?? 0)]
        }
        // Entries left out because they could not be read are failures of their own: counted and sent.
        let unreadable = (report?.skipped ?? []).filter { if case .unsupported = $0.reason { return false } else { return true } }
        if !unreadable.isEmpty {
            let shown = unreadable.prefix(5).map(\.description).joined(separator: "; ")
            reportProblem("files-read", database: name,
                          reason: "\(unreadable.count) left out: \(shown)\(unreadable.count > 5 ? "; …" : "")")
        }
        ProcessMemory.releaseFreedMemory()
        execute(result.actions)
    }

    /// Applies `target`'s retention to file set `set`'s snapshots and collects its unneeded packs.
    private func pruneFileSet(_ set: String, target: TargetRuntime) {
        do {
            let report = try OffsiteCore.pruneFileSet(named: set, on: target.target, policy: target.config.retention,
                                                      cacheFolder: "\(localFolder)/.offsite-files", dryRun: false,
                                                      timeZone: config.schedule.timeZone)
            for removed in report.plan.remove {
                logger.info("prune.removed", ["files": set, "target": target.config.name, "id": removed.id.description])
            }
            if !report.deletedPacks.isEmpty {
                logger.info("prune.done", ["files": set, "target": target.config.name, "removed": report.plan.remove.count,
                                           "packs": report.deletedPacks.count, "bytes": report.deletedPackBytes])
            }
            let listing = TargetListing(time: Date(), objectCount: report.plan.keep.count, storedBytes: report.keptPackBytes)
            stage(planner.record([.listing(set, target: target.config.name, listing)]))
            for problem in report.problems {
                reportProblem("prune", database: set, target: target.config.name, reason: problem)
            }
        } catch {
            reportProblem("prune", database: set, target: target.config.name, reason: describe(error))
        }
    }

    // MARK: Continuous protection

    /// Starts shipping `database`'s committed changes as they come, when continuous protection is
    /// configured and some target takes changes; a database that is not in WAL mode gets full
    /// backups only, and the state and log say why.
    private func startContinuousProtection(of database: DatabaseRef) {
        guard let settings = config.continuous, protections[database.name] == nil else { return }
        let followers = targets.filter { $0.config.schedule == nil }
        guard !followers.isEmpty else {
            logger.warn("changes.off", ["db": database.name, "reason": "every target has a schedule of its own: none takes changes"])
            return
        }
        let events = continuousEvents
        let protection = ContinuousProtection(
            database: database,
            settings: .init(interval: settings.interval, maxChain: settings.maxChain, compressionLevel: config.compression.level,
                            encryption: encryption, folder: "\(localFolder)/\(database.name)"),
            targets: followers.map { (name: $0.config.name, target: $0.target) }, cancellation: cancellation,
            report: { [weak self] event in
                events.update { $0.append(event) }
                self?.watcher.wake()
            })
        do {
            try protection.start()
        } catch {
            let reason = (error as? CaptureGap)?.reason ?? describe(error)
            logger.warn("changes.off", ["db": database.name, "reason": reason])
            stage(planner.record([.continuity(database.name, note: reason)]))
            return
        }
        protections[database.name] = protection
        planner.setContinuous(database.name, true)
        planner.baseNeeded(database.name, reason: "the chain of changes starts")
        stage(planner.record([.continuity(database.name, note: nil)]))
        logger.info("changes.on", ["db": database.name, "interval": settings.interval.configText,
                                   "targets": followers.map(\.config.name).joined(separator: ",")])
    }

    /// Carries out what continuous protection's threads reported.
    private func handleContinuousEvents() {
        let taken = continuousEvents.update { events in
            defer { events = [] }
            return events
        }
        for event in taken {
            switch event {
            case let .baseNeeded(database, reason):
                logger.info("changes.base", ["db": database, "reason": reason])
                planner.baseNeeded(database, reason: reason)
            case let .record(changes):
                stage(planner.record(changes))
            case let .log(level, name, fields):
                logger.log(level, name, fields: fields.map { ($0.0, $0.1 as Any) })
            }
        }
    }

    // MARK: Taking a backup

    /// One snapshot of `database`, shipped to `targets`; reports the outcome to the planner, logs
    /// and notifies it, and carries out the prunes that follow. `reason` and `onStart` come with
    /// manual backups asked for over HTTP.
    func perform(_ database: DatabaseRuntime, targets due: [TargetRuntime], kind: BackupKind, reason: String? = nil,
                 onStart: (@Sendable (BackupID) -> Void)? = nil) {
        let name = database.ref.name
        manualRequests.begin(name)
        defer { manualRequests.end(name) }
        let started = Date()
        guard FileManager.default.fileExists(atPath: database.ref.path) else {
            logger.warn("backup.skipped", ["db": name, "reason": "\(database.ref.path) does not exist"])
            stage(planner.finished(BackupOutcome(item: name, kind: kind, generation: planner.generation(of: name),
                                                 startedAt: started, finishedAt: started, snapshot: nil, uploads: [])).changes)
            return
        }
        // Catch up with SQLite's view first, so writes made before this snapshot are not
        // mistaken for new ones when their file events arrive later.
        if database.detector.hasChanged() { stage(planner.changed(name, at: started)) }
        let generation = planner.generation(of: name)
        var job = BackupJob(database: database.ref, kind: kind, targets: due.map(\.target), encryption: encryption,
                            compressionLevel: config.compression.level, check: config.integrityCheck,
                            localFolder: localFolder, localKeep: config.local?.keep, cancellation: cancellation)
        job.onRetake = { [logger] reason in logger.warn("backup.retaken", ["db": name, "reason": reason]) }
        job.onIDChosen = onStart
        // A full backup to a target that takes changes is the base of the next chain of changes.
        let protection = protections[name]
        let followers = Set(planner.settings.targets.filter(\.followsChanges).map(\.name))
        let ticket = due.contains(where: { followers.contains($0.config.name) }) ? protection?.prepareBase() : nil
        job.readMark = ticket
        logger.info("backup.start", ["db": name, "kind": kind.rawValue,
                                     "targets": due.map(\.config.name).joined(separator: ","), "reason": reason as Any])
        var outcome = BackupOutcome(item: name, kind: kind, generation: generation, startedAt: started, finishedAt: started,
                                    snapshot: nil, uploads: [])
        var report: BackupReport?
        do {
            let taken = try runBackup(job)
            report = taken
            outcome.backupID = taken.id.description
            outcome.snapshot = SnapshotRecord(time: taken.snapshot.readStartedAt, backupID: taken.id.description,
                                              bytes: taken.snapshot.byteCount, pageCount: Int64(taken.snapshot.pageCount),
                                              pageSize: taken.snapshot.pageSize)
            outcome.uploads = taken.uploads.map { upload in
                guard upload.error == nil else {
                    return BackupOutcome.Upload(target: upload.target, failure: describe(upload.error!))
                }
                let bytes = upload.size ?? 0
                return BackupOutcome.Upload(target: upload.target, bytes: bytes, record: BackupRecord(
                    backupID: taken.id.description, time: Date(), snapshotBytes: taken.snapshot.byteCount,
                    pageCount: Int64(taken.snapshot.pageCount), pageSize: taken.snapshot.pageSize, objectBytes: bytes,
                    reason: reason.map(oneLine)))
            }
        } catch {
            let failure = describe(error)
            logger.error("backup.failed", ["db": name, "kind": kind.rawValue, "stage": "snapshot", "reason": failure])
            outcome.snapshotFailure = failure
            outcome.uploads = due.map { BackupOutcome.Upload(target: $0.config.name, failure: failure) }
        }
        outcome.finishedAt = Date()
        outcome.wasCancelled = cancellation.isCancelled
        if let protection, let ticket {
            let based = outcome.uploads.first { $0.failure == nil && followers.contains($0.target) }
            if let report, let checksum = report.shippedChecksum, let based {
                protection.confirmBase(ticket, id: report.id, checksum: checksum, bytes: based.bytes)
                logger.info("changes.chain", ["db": name, "base": report.id.description])
            } else {
                protection.abandonBase(ticket)
            }
        }
        let result = planner.finished(outcome)
        stage(result.changes)
        announce(outcome, of: ("db", name), recoveredAfter: result.recoveredAfter)
        for path in report?.prunedLocal ?? [] {
            logger.info("local.pruned", ["db": name, "file": (path as NSString).lastPathComponent])
        }
        for reason in report?.localPruneFailures ?? [] {
            reportProblem("local-rotation", database: name, reason: reason)
        }
        // The pipeline's buffers are freed: hand them back rather than keep them for the next backup.
        ProcessMemory.releaseFreedMemory()
        execute(result.actions)
    }

    /// Logs and sends how each target's upload of a finished backup of `item` (its log field and
    /// name: `db` or `files`) went: a failure with how many came in a row; a success with
    /// `details`, then its recovery or, with notify.onSuccess, the success.
    private func announce(_ outcome: BackupOutcome, of item: (field: String, name: String), recoveredAfter: [String: Int],
                          details: (BackupOutcome.Upload) -> [(String, Any)] = { _ in [] }) {
        let name = item.name
        for upload in outcome.uploads {
            if let failure = upload.failure {
                let count = planner.state.target(upload.target, of: name)?.consecutiveFailures ?? 1
                logger.log(.error, "backup.failed", fields: [(item.field, name), ("target", upload.target), ("reason", failure),
                                                             ("failures", count)])
                notifier?.send(Notification(event: "backup.failed", database: name, target: upload.target,
                                            backupID: outcome.backupID, reason: failure))
                continue
            }
            let id = outcome.backupID ?? ""
            logger.log(.info, "backup.done", fields: [(item.field, name), ("target", upload.target), ("id", id), ("bytes", upload.bytes)]
                + details(upload)
                + [("seconds", String(format: "%.2f", outcome.finishedAt.timeIntervalSince(outcome.startedAt)))])
            if let ended = recoveredAfter[upload.target] {
                notifier?.send(Notification(event: "backup.recovered", database: name, target: upload.target,
                                            backupID: id, reason: "succeeded after \(ended) failure(s)"))
            } else if config.notify?.onSuccess == true {
                notifier?.send(Notification(event: "backup.succeeded", database: name, target: upload.target, backupID: id))
            }
        }
    }

    /// Applies `target`'s retention to one database's backups and change objects (after a
    /// successful upload): change objects first, each chain from its newest back, then full backups.
    private func prune(_ database: String, target: TargetRuntime) {
        do {
            let found = try listBackupsAndChanges(on: target.target, database: database)
            let backups = found.backups
            let continuous = planContinuousRetention(found, database: database, policy: target.config.retention,
                                                     keep: config.continuous?.keep ?? defaultChangeKeep, now: Date())
            let plan = continuous.backups
            var removed = 0
            for decision in continuous.removeChanges {
                try target.target.delete(key: decision.object.key)
                removed += 1
                logger.info("prune.removed", ["db": database, "target": target.config.name, "object": decision.object.name.fileName,
                                              "reason": decision.reason])
            }
            for item in plan.remove {
                try target.target.delete(key: item.key)
                removed += 1
                logger.info("prune.removed", ["db": database, "target": target.config.name, "id": item.id.description])
            }
            let kept = backups.filter { backup in !plan.remove.contains { $0.key == backup.key } }
            let listing = TargetListing(time: Date(), objectCount: kept.count, storedBytes: kept.reduce(0) { $0 + $1.size })
            stage(planner.record([.listing(database, target: target.config.name, listing)]))
            if removed > 0 { logger.info("prune.done", ["db": database, "target": target.config.name, "removed": removed]) }
        } catch {
            reportProblem("prune", database: database, target: target.config.name, reason: describe(error))
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
        let snapshot = planner.state
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
                    stage(planner.record([.verified(database.ref.name, target: target.config.name, outcome.result(at: Date()))]))
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
