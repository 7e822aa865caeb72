import Foundation

/// What the agent is asked to do.
public enum AgentAction: Sendable, Equatable {
    /// One snapshot of `item`, shipped to `targets` (none: the local rotation only), as `kind`.
    case backup(item: String, targets: [String], kind: BackupKind, reason: String? = nil)
    /// Apply `target`'s retention to `item`'s backups.
    case prune(item: String, target: String)
    /// Run the restore drills (`verify.every`).
    case drill
}

/// How one backup went, as the agent reports it to the planner.
public struct BackupOutcome: Sendable, Equatable {
    /// How one target's upload went.
    public struct Upload: Sendable, Equatable {
        /// The target's name.
        public var target: String
        /// Why it failed (one line, no secrets); nil when it succeeded.
        public var failure: String?
        /// Bytes stored on the target, when it succeeded.
        public var bytes: Int64
        /// What was shipped, for `verify` to compare with; nil when it failed.
        public var record: BackupRecord?

        /// Creates a result.
        public init(target: String, failure: String? = nil, bytes: Int64 = 0, record: BackupRecord? = nil) {
            self.target = target
            self.failure = failure
            self.bytes = bytes
            self.record = record
        }
    }

    /// The item backed up.
    public var item: String
    /// The kind asked for.
    public var kind: BackupKind
    /// The change generation the snapshot covers (`AgentPlanner.generation(of:)` when it began).
    public var generation: Int
    /// When the backup began.
    public var startedAt: Date
    /// When it ended.
    public var finishedAt: Date
    /// The snapshot taken, or nil when taking it failed (`snapshotFailure` says why).
    public var snapshot: SnapshotRecord?
    /// Why the snapshot failed.
    public var snapshotFailure: String?
    /// The backup's id, when one was chosen.
    public var backupID: String?
    /// One entry per target asked for.
    public var uploads: [Upload]
    /// Whether the agent was cancelled (stopping): failures then start no retry.
    public var wasCancelled: Bool

    /// Creates an outcome.
    public init(item: String, kind: BackupKind, generation: Int, startedAt: Date, finishedAt: Date,
                snapshot: SnapshotRecord?, snapshotFailure: String? = nil, backupID: String? = nil,
                uploads: [Upload], wasCancelled: Bool = false) {
        self.item = item
        self.kind = kind
        self.generation = generation
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.snapshot = snapshot
        self.snapshotFailure = snapshotFailure
        self.backupID = backupID
        self.uploads = uploads
        self.wasCancelled = wasCancelled
    }
}

/// How the planner is configured: the targets and their schedules, and the global triggers.
public struct PlannerSettings: Sendable, Equatable {
    /// One target.
    public struct Target: Sendable, Equatable {
        /// Its name.
        public var name: String
        /// When its scheduled backups fall due.
        public var schedule: TriggerSchedule
        /// Whether it also gets on-change backups (it has no cron schedule of its own).
        public var followsChanges: Bool
        /// Whether it has a retention policy to apply after each upload.
        public var prunes: Bool

        /// Creates a target.
        public init(name: String, schedule: TriggerSchedule, followsChanges: Bool, prunes: Bool = false) {
            self.name = name
            self.schedule = schedule
            self.followsChanges = followsChanges
            self.prunes = prunes
        }
    }

    /// The targets, in the configuration's order.
    public var targets: [Target]
    /// The least time between two backups caused by changes.
    public var minInterval: Duration
    /// Whether changes cause backups at all (`"onChange": false` turns them off).
    public var backsUpChanges: Bool
    /// How often the local rotation takes a snapshot of its own of an item that changed.
    public var localInterval: Duration
    /// The interval between restore drills, or nil.
    public var verifyEvery: Duration?
    /// Whether to back up every item at startup, and at shutdown.
    public var startup: Bool, shutdown: Bool

    /// Creates settings.
    public init(targets: [Target], minInterval: Duration = .seconds(300), backsUpChanges: Bool = true,
                localInterval: Duration = .seconds(3600), verifyEvery: Duration? = nil, startup: Bool = false,
                shutdown: Bool = false) {
        self.targets = targets
        self.minInterval = minInterval
        self.backsUpChanges = backsUpChanges
        self.localInterval = localInterval
        self.verifyEvery = verifyEvery
        self.startup = startup
        self.shutdown = shutdown
    }

    /// The settings `config` gives. Throws `CronError` for a malformed schedule (the parser has
    /// already rejected those).
    public init(config: OffsiteConfig) throws {
        self.init(targets: try config.targets.map { target in
                      Target(name: target.name, schedule: try TriggerSchedule(target: target, schedule: config.schedule),
                             followsChanges: target.schedule == nil,
                             prunes: !target.retention.isEmpty || (config.continuous != nil && target.schedule == nil))
                  },
                  minInterval: config.schedule.onChange?.minInterval ?? .seconds(300),
                  backsUpChanges: config.schedule.onChange != nil,
                  verifyEvery: config.verify?.every, startup: config.schedule.startup, shutdown: config.schedule.shutdown)
    }
}

/// The agent's decisions, as a value: fed events and the time, it answers with actions. No I/O, no
/// clock of its own (see docs/AGENT.md).
///
/// It holds the `AgentState` — the record `status` and `healthcheck` read — and derives every
/// decision that must survive a restart from it: a target's next scheduled run from its last one,
/// a retry from the last failure and how many came in a row, the on-change gate from the last
/// snapshot, the next drill from the last one. Only what cannot survive a restart is kept beside
/// it: the change generation each target holds, the first change not yet backed up, a failed
/// snapshot attempt. Every event that records something returns the `StateChange` values it
/// applied, for the agent to persist.
public struct AgentPlanner: Sendable {
    /// What is known of one item only while the agent runs.
    struct ItemRuntime: Sendable, Equatable {
        var path: String
        /// Counts the changes seen; a target is up to date when it holds the current generation.
        var generation = 0
        /// The generation each target last received; absent: unknown (shipped at the next chance).
        var shipped: [String: Int] = [:]
        /// The first change not yet covered by a backup, and the last one seen.
        var pendingChangeAt: Date?
        var lastChangeAt: Date?
        /// When a backup last began that took no snapshot (it failed): the on-change gate counts
        /// from it too, so a failing snapshot is not retried in a hot loop.
        var failedAttemptAt: Date?
        /// The generation the local rotation holds; nil until this run took a snapshot.
        var localGeneration: Int?
        /// Whether its changes are shipped continuously: no full backups on change then.
        var continuous = false
        /// Why a full backup is needed at once (a new base for its chain of changes), or nil.
        var baseNeeded: String?
        /// Whether a snapshot may go to the local rotation alone (a database); a file set's
        /// snapshots only exist on targets.
        var hasLocalRotation = true

        /// A snapshot taken at `time` covers the changes seen up to then; one seen later stays pending.
        mutating func coverChanges(upTo time: Date) {
            guard let pending = pendingChangeAt, pending <= time else { return }
            pendingChangeAt = lastChangeAt.flatMap { $0 > time ? $0 : nil }
        }
    }

    /// The settings.
    public let settings: PlannerSettings
    /// The record of outcomes: the one source of the planner's lasting facts.
    public private(set) var state: AgentState
    /// When the agent started: schedules that never ran count from here.
    public let startedAt: Date
    private var items: [String: ItemRuntime] = [:]
    /// Item names in the order they were found.
    public private(set) var itemNames: [String] = []
    /// When the last restore drill ran (this run or, from the state, before).
    private var lastDrillAt: Date?
    /// Whether a stop was asked for.
    public private(set) var isStopping = false

    /// Waits 30 s after a first failure, doubling up to 15 minutes.
    public static func retryDelay(afterFailures count: Int) -> TimeInterval {
        min(30 * pow(2, Double(min(max(count, 1), 10) - 1)), 900)
    }

    /// A planner for `settings`, continuing from `state` (the saved state; empty on a first start)
    /// at `now`.
    public init(settings: PlannerSettings, state: AgentState, now: Date) {
        self.settings = settings
        self.state = state
        self.startedAt = now
        let drills = state.databases.values.flatMap { $0.targets.values.compactMap(\.lastVerify?.time) }
        lastDrillAt = drills.max()
    }

    // MARK: Events

    /// The agent started as process `pid`: records it, and returns the startup backups of the items
    /// found so far (call after `found` for the items present at the start).
    public mutating func start(pid: Int32) -> (changes: [StateChange], actions: [AgentAction]) {
        let changes = [StateChange.started(at: startedAt, pid: pid), .clearUnprotected]
            + itemNames.flatMap { name in nextRunChanges(for: name, now: startedAt) }
        state.apply(changes)
        let actions = settings.startup
            ? itemNames.map { AgentAction.backup(item: $0, targets: settings.targets.map(\.name), kind: .startup) } : []
        return (changes, actions)
    }

    /// Item `name` (its file at `path`, or with `isFileSet` its folder) is protected from `now` on;
    /// one that appears while the agent runs (`isNew`) is backed up soon, as a change. A file set
    /// has no local rotation: its changes wait for a target that takes them.
    public mutating func found(_ name: String, path: String, at now: Date, isNew: Bool, isFileSet: Bool = false) -> [StateChange] {
        guard items[name] == nil else { return [] }
        var runtime = ItemRuntime(path: path)
        runtime.hasLocalRotation = !isFileSet
        if isNew {
            runtime.generation = 1
            runtime.pendingChangeAt = now
        }
        items[name] = runtime
        itemNames.append(name)
        let record = isFileSet ? StateChange.fileSet(name, path: path, at: now) : .item(name, path: path, at: now)
        let changes = [record] + (isNew ? nextRunChanges(for: name, now: now) : [])
        state.apply(changes)
        return changes
    }

    /// Item `name`'s committed changes are shipped continuously (or no longer are): changes then
    /// cause no full backups, only `baseNeeded` does.
    public mutating func setContinuous(_ name: String, _ on: Bool) {
        items[name]?.continuous = on
    }

    /// Item `name`'s chain of changes broke or grew long (`reason`): a full backup — the base of
    /// a new chain — to the targets that follow changes is due at once.
    public mutating func baseNeeded(_ name: String, reason: String) {
        guard items[name] != nil else { return }
        items[name]!.baseNeeded = items[name]!.baseNeeded ?? reason
    }

    /// Whether item `name` waits for a new base.
    public func needsBase(_ name: String) -> Bool {
        items[name]?.baseNeeded != nil
    }

    /// Item `name` changed at `now` (SQLite says so: another connection committed).
    public mutating func changed(_ name: String, at now: Date) -> [StateChange] {
        guard var runtime = items[name] else { return [] }
        runtime.generation += 1
        if runtime.pendingChangeAt.map({ now < $0 }) ?? true { runtime.pendingChangeAt = now }
        runtime.lastChangeAt = max(runtime.lastChangeAt ?? now, now)
        items[name] = runtime
        let changes = [StateChange.changed(name, at: now)]
        state.apply(changes)
        return changes
    }

    /// The change generation of `name`: a backup beginning now covers it.
    public func generation(of name: String) -> Int {
        items[name]?.generation ?? 0
    }

    /// A backup ended. Records the snapshot and each target's success or failure; returns what was
    /// recorded, the prunes that follow, and, per target that succeeded after failing, how many
    /// failures in a row the success ended.
    public mutating func finished(_ outcome: BackupOutcome)
        -> (changes: [StateChange], actions: [AgentAction], recoveredAfter: [String: Int]) {
        guard var runtime = items[outcome.item] else { return ([], [], [:]) }
        var changes: [StateChange] = []
        var actions: [AgentAction] = []
        var recovered: [String: Int] = [:]
        if let snapshot = outcome.snapshot {
            changes.append(.snapshot(outcome.item, snapshot))
            runtime.coverChanges(upTo: snapshot.time)
            if runtime.hasLocalRotation { runtime.localGeneration = outcome.generation }
            runtime.failedAttemptAt = nil
        } else {
            // Like a backup taken at its start: the change it was for is dropped from the gate (each
            // failing target retries with back-off), and the gate's interval counts from it.
            runtime.failedAttemptAt = outcome.startedAt
            runtime.coverChanges(upTo: outcome.startedAt)
        }
        for upload in outcome.uploads {
            if let failure = upload.failure ?? outcome.snapshotFailure {
                changes.append(.failed(outcome.item, target: upload.target, at: outcome.finishedAt, reason: failure))
                continue
            }
            guard let backupID = outcome.backupID else { continue }
            runtime.shipped[upload.target] = outcome.generation
            let streak = state.target(upload.target, of: outcome.item)?.consecutiveFailures ?? 0
            if streak > 0 { recovered[upload.target] = streak }
            if let record = upload.record { changes.append(.shipped(outcome.item, target: upload.target, record)) }
            changes.append(.succeeded(outcome.item, target: upload.target, at: outcome.finishedAt, backupID: backupID,
                                      bytes: upload.bytes, seconds: outcome.finishedAt.timeIntervalSince(outcome.startedAt)))
            if settings.targets.first(where: { $0.name == upload.target })?.prunes == true {
                actions.append(.prune(item: outcome.item, target: upload.target))
            }
            // A full backup that reached a target taking changes is a new base for the chain.
            if settings.targets.first(where: { $0.name == upload.target })?.followsChanges == true { runtime.baseNeeded = nil }
        }
        items[outcome.item] = runtime
        state.apply(changes)
        // A failure's retry moves its next-run display; so does a success that ends one.
        let moved = nextRunChanges(for: outcome.item, now: outcome.finishedAt)
        state.apply(moved)
        return (changes + moved, actions, recovered)
    }

    /// Records something else that happened (a prune's listing, a drill's result, a problem).
    public mutating func record(_ changes: [StateChange]) -> [StateChange] {
        state.apply(changes)
        return changes
    }

    /// The state another writer merged in (the file as written, with what `backup` or `prune` run by
    /// hand recorded): the planner's decisions derive from it from now on.
    public mutating func adopt(_ merged: AgentState) {
        state = merged
    }

    /// A stop was asked for: no more backups but the shutdown ones, which this returns.
    public mutating func stop() -> [AgentAction] {
        guard !isStopping else { return [] }
        isStopping = true
        guard settings.shutdown else { return [] }
        return itemNames.map { AgentAction.backup(item: $0, targets: settings.targets.map(\.name), kind: .shutdown) }
    }

    // MARK: Decisions

    /// When `target`'s schedule next fires: one period after its last run (from the state), or after
    /// the start when it never ran. In the past when runs were missed: due once, at once.
    public func nextScheduledRun(of target: PlannerSettings.Target) -> Date? {
        target.schedule.next(after: state.scheduledRuns?[target.name] ?? startedAt)
    }

    /// When a failed backup of `item` to `target` is retried, or nil when it is not failing.
    public func retryAt(_ item: String, target: String) -> Date? {
        guard let record = state.target(target, of: item), record.consecutiveFailures > 0,
              let failure = record.lastFailure else { return nil }
        return failure.time.addingTimeInterval(AgentPlanner.retryDelay(afterFailures: record.consecutiveFailures))
    }

    /// When the pending change of `item` may be backed up, or nil when nothing is pending (or its
    /// changes are shipped continuously, or changes cause no backups, or it is a file set and no
    /// target takes changes: its schedules take them).
    public func changeDueAt(_ item: String) -> Date? {
        guard settings.backsUpChanges, let runtime = items[item], !runtime.continuous,
              let pending = runtime.pendingChangeAt else { return nil }
        guard runtime.hasLocalRotation || settings.targets.contains(where: \.followsChanges) else { return nil }
        let lastBackup = [state.databases[item]?.lastSnapshot?.time, runtime.failedAttemptAt].compactMap { $0 }.max()
        return OnChangeGate(minInterval: settings.minInterval).earliestRun(changeAt: pending, lastBackupAt: lastBackup)
    }

    /// When the local rotation takes a snapshot of `item` of its own (it changed since the last one,
    /// and no target takes its changes), or nil.
    public func localSnapshotDueAt(_ item: String) -> Date? {
        guard let runtime = items[item], let local = runtime.localGeneration, runtime.generation > local else { return nil }
        return (state.databases[item]?.lastSnapshot?.time ?? startedAt).addingTimeInterval(settings.localInterval.timeInterval)
    }

    /// When the next restore drill is due, or nil without `verify.every`.
    public func nextDrill() -> Date? {
        settings.verifyEvery.map { (lastDrillAt ?? startedAt).addingTimeInterval($0.timeInterval) }
    }

    /// The next moment something may fall due (nil: nothing is planned; wait for events).
    public func nextDeadline() -> Date? {
        guard !isStopping else { return nil }
        if itemNames.contains(where: { items[$0]?.baseNeeded != nil }) { return startedAt }
        var candidates = settings.targets.compactMap { nextScheduledRun(of: $0) }
        if let drill = nextDrill() { candidates.append(drill) }
        for name in itemNames {
            if let due = changeDueAt(name) { candidates.append(due) }
            if let due = localSnapshotDueAt(name) { candidates.append(due) }
            for target in settings.targets where hasNews(name, for: target.name) {
                if let retry = retryAt(name, target: target.name) { candidates.append(retry) }
            }
        }
        return candidates.min()
    }

    /// Whether `target` may lack `item`'s latest changes.
    func hasNews(_ item: String, for target: String) -> Bool {
        guard let runtime = items[item], let shipped = runtime.shipped[target] else { return true }
        return runtime.generation > shipped
    }

    /// What is due at `now`: the restore drill, then per item one backup
    /// to every target that is due (its schedule fired, its retry came, or it follows changes and a
    /// change is due), as `scheduled` when a schedule fired for it, else `change`; an item whose
    /// change no target takes goes to the local rotation. Schedules that fired are recorded as run
    /// at `now`; the returned changes say so.
    public mutating func due(at now: Date) -> (changes: [StateChange], actions: [AgentAction]) {
        guard !isStopping else { return ([], []) }
        var actions: [AgentAction] = []
        if let drill = nextDrill(), drill <= now {
            actions.append(.drill)
            lastDrillAt = now
        }
        let fired = Set(settings.targets.filter { (nextScheduledRun(of: $0) ?? .distantFuture) <= now }.map(\.name))
        let followers = settings.targets.filter(\.followsChanges).map(\.name)
        for name in itemNames {
            if items[name]?.baseNeeded != nil {
                // A new base for the chain of changes, to every target that takes changes (and any
                // whose schedule fired too); the kind says why: changes.
                items[name]!.baseNeeded = nil
                let targets = settings.targets.map(\.name).filter { followers.contains($0) || fired.contains($0) }
                actions.append(.backup(item: name, targets: targets, kind: .change))
                continue
            }
            let changeDue = changeDueAt(name).map { $0 <= now } ?? false
            var targets: [String] = []
            var kind = BackupKind.change
            for target in settings.targets where hasNews(name, for: target.name) {
                let retry = retryAt(name, target: target.name).map { $0 <= now } ?? false
                if fired.contains(target.name) || retry || (changeDue && target.followsChanges) { targets.append(target.name) }
            }
            if targets.contains(where: fired.contains) || (!changeDue && !targets.isEmpty) { kind = .scheduled }
            if !targets.isEmpty {
                actions.append(.backup(item: name, targets: targets, kind: kind))
            } else if changeDue && items[name]?.hasLocalRotation == false {
                // Every target that takes changes has it already.
                items[name]!.pendingChangeAt = nil
            } else if changeDue {
                // Nothing to ship (every target has a schedule of its own): the change goes to the local rotation.
                actions.append(.backup(item: name, targets: [], kind: .change))
            } else if let local = localSnapshotDueAt(name), local <= now {
                actions.append(.backup(item: name, targets: [], kind: .scheduled))
            }
        }
        var changes = fired.sorted().map { StateChange.scheduledRun(target: $0, at: now) }
        state.apply(changes)
        if !fired.isEmpty {
            let moved = itemNames.flatMap { nextRunChanges(for: $0, now: now) }
            state.apply(moved)
            changes += moved
        }
        return (changes, actions)
    }

    /// The next-run records of `item` on every target (for `status`): its schedule or its retry.
    private func nextRunChanges(for item: String, now: Date) -> [StateChange] {
        settings.targets.map { target in
            let next = [nextScheduledRun(of: target), retryAt(item, target: target.name)].compactMap { $0 }.min()
            return .nextRun(item, target: target.name, at: next, now: now)
        }
    }
}
