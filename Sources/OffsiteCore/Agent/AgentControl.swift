import Foundation

// The agent behind the control endpoint: a small adapter, kept apart so the planner can take it
// over. Snapshots come from the state store (safe from any thread); manual backup requests wait
// in `ManualBackupRequests` until the agent's loop, woken by `watcher.wake()`, runs them.

/// Manual backups asked for over HTTP and not started yet, and the database the agent is
/// backing up; shared between the endpoint's threads and the agent's loop.
final class ManualBackupRequests: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [ManualBackupTicket] = []
    private var running: String?

    /// The databases with a backup running or a manual backup waiting.
    var busyDatabases: Set<String> {
        lock.withLock { Set(pending.map(\.database) + (running.map { [$0] } ?? [])) }
    }

    /// Queues `ticket`; false when its database is busy.
    func enqueue(_ ticket: ManualBackupTicket) -> Bool {
        lock.withLock {
            guard running != ticket.database, !pending.contains(where: { $0.database == ticket.database }) else { return false }
            pending.append(ticket)
            return true
        }
    }

    /// The oldest waiting ticket, its database marked running at once (so no second request for
    /// it slips in between).
    func takeNext() -> ManualBackupTicket? {
        lock.withLock {
            guard !pending.isEmpty else { return nil }
            let ticket = pending.removeFirst()
            running = ticket.database
            return ticket
        }
    }

    /// Notes that a backup of `database` starts.
    func begin(_ database: String) { lock.withLock { running = database } }

    /// Notes that the backup of `database` ended.
    func end(_ database: String) { lock.withLock { if running == database { running = nil } } }

    /// Drops every waiting ticket with `reason`.
    func dropAll(_ reason: String) {
        let dropped: [ManualBackupTicket] = lock.withLock {
            defer { pending = [] }
            return pending
        }
        for ticket in dropped { ticket.drop(reason) }
    }
}

extension Agent: ControlDelegate {
    /// The state as recorded, the configured and discovered databases, the configured targets.
    public func controlSnapshot() -> ControlSnapshot {
        let current = state.current
        let now = Date()
        return ControlSnapshot(state: current, databases: knownDatabases(current),
                               targets: config.targets.map { ControlTarget(name: $0.name, kind: $0.kind) },
                               fileSets: config.files.map { ControlFileSet(name: $0.name, path: $0.path) },
                               maxAge: config.health.maxAge, now: now, busyDatabases: manualRequests.busyDatabases,
                               replicationLags: replicationLags(current, now: now), isStopping: isStopping)
    }

    /// Queues a manual backup for the loop and wakes it; refused while that database is backed up.
    public func requestBackup(database: String, target: String?, reason: String?) -> ManualBackupAnswer {
        if isStopping { return .stopping }
        guard knownDatabases(state.current).contains(database) else { return .unknownDatabase }
        if let target, config.target(named: target) == nil { return .unknownTarget }
        let ticket = ManualBackupTicket(database: database, target: target, reason: reason)
        guard manualRequests.enqueue(ticket) else { return .alreadyRunning }
        logger.info("backup.requested", ["db": database, "target": target ?? "all", "reason": reason as Any])
        watcher.wake()
        return .accepted(ticket)
    }

    /// Runs the manual backups asked for since the last turn of the loop, on the loop's thread.
    func runManualRequests() {
        while !isStopping, let ticket = manualRequests.takeNext() {
            defer { manualRequests.end(ticket.database) }
            guard let database = databases.first(where: { $0.ref.name == ticket.database }) else {
                ticket.drop("\(ticket.database) is not among the databases this agent watches now")
                continue
            }
            let chosen = targets.filter { ticket.target == nil || $0.config.name == ticket.target }
            perform(database, targets: chosen, kind: .manual, reason: ticket.reason, onStart: { ticket.markStarted($0) })
            // A backup that never began (its file is gone) answers the waiting request.
            ticket.drop("the backup did not start; see the agent's log")
        }
    }

    /// Per database with a chain of changes and target, how far the target trails it.
    private func replicationLags(_ current: AgentState, now: Date) -> [ReplicationLag] {
        current.databases.values.filter { $0.chain != nil }.flatMap { database in
            database.targets.map { name, target in
                ReplicationLag(database: database.name, target: name,
                               seconds: target.oldestUnshippedChange.map { max(0, now.timeIntervalSince($0)) } ?? 0)
            }
        }
    }

    private func knownDatabases(_ current: AgentState) -> [String] {
        Set(current.databases.filter { !$0.value.isFileSet }.keys).union(config.databases.map(\.name)).sorted()
    }
}
