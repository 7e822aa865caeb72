import Foundation

// The seam between the control endpoint and the agent: the endpoint asks for a snapshot of what
// the agent knows and for manual backups, and nothing else. The renderers and the router see only
// the types below.

/// What the agent knows at one moment: its state and the facts of its configuration that the
/// health check, the status page and the metrics need.
public struct ControlSnapshot: Sendable {
    /// The agent's state (as `offsite status` reads it).
    public var state: AgentState
    /// The databases to protect: configured and discovered, sorted by name.
    public var databases: [String]
    /// The configured targets, in configuration order.
    public var targets: [ControlTarget]
    /// The configured file sets (none until file sets exist).
    public var fileSets: [ControlFileSet]
    /// The oldest an off-site copy may be for `/healthz` (`health.maxAge`).
    public var maxAge: Duration
    /// When the snapshot was taken.
    public var now: Date
    /// The databases with a backup running or a manual backup waiting to start.
    public var busyDatabases: Set<String>
    /// The replication lag per database and target, once continuous protection ships changes;
    /// empty until then, and then the lag metric and the page's lag are left out.
    public var replicationLags: [ReplicationLag]
    /// Whether the agent is stopping (manual backups are refused).
    public var isStopping: Bool
    /// The agent's version.
    public var version: String

    /// Creates a snapshot.
    public init(state: AgentState, databases: [String], targets: [ControlTarget], fileSets: [ControlFileSet] = [],
                maxAge: Duration, now: Date, busyDatabases: Set<String> = [], replicationLags: [ReplicationLag] = [],
                isStopping: Bool = false, version: String = LibraryVersions.offsite) {
        self.state = state
        self.databases = databases
        self.targets = targets
        self.fileSets = fileSets
        self.maxAge = maxAge
        self.now = now
        self.busyDatabases = busyDatabases
        self.replicationLags = replicationLags
        self.isStopping = isStopping
        self.version = version
    }

    /// What `offsite healthcheck` would say now.
    public var health: HealthReport {
        // File sets need their off-site copies as much as the databases do.
        evaluateHealth(state: state, databases: databases + fileSets.map(\.name), targets: targets.map(\.name), maxAge: maxAge, now: now)
    }
}

/// A configured target as the control endpoint shows it: never its credentials.
public struct ControlTarget: Sendable, Equatable {
    /// Its name (`s3`).
    public var name: String
    /// What kind of store it is.
    public var kind: TargetKind

    /// Creates a target.
    public init(name: String, kind: TargetKind) {
        self.name = name
        self.kind = kind
    }
}

/// A configured file set as the control endpoint shows it (file sets are not backed up yet).
public struct ControlFileSet: Sendable, Equatable {
    /// Its name (`uploads`).
    public var name: String
    /// Its folder.
    public var path: String

    /// Creates a file set.
    public init(name: String, path: String) {
        self.name = name
        self.path = path
    }
}

/// How far one target trails one database's committed changes (continuous protection).
public struct ReplicationLag: Sendable, Equatable {
    /// The database's name.
    public var database: String
    /// The target's name.
    public var target: String
    /// The age of the newest committed change not yet on the target, in seconds (0: none).
    public var seconds: Double

    /// Creates a lag.
    public init(database: String, target: String, seconds: Double) {
        self.database = database
        self.target = target
        self.seconds = seconds
    }
}

/// The agent as the control endpoint sees it. Called from the endpoint's handler threads: every
/// method must be safe to call from any thread and return quickly.
public protocol ControlDelegate: AnyObject, Sendable {
    /// What the agent knows now.
    func controlSnapshot() -> ControlSnapshot

    /// Asks for a manual backup (kind `manual`, kept until deleted by hand) of `database` to
    /// `target` (nil: every target), for `reason` (one line, or nil).
    func requestBackup(database: String, target: String?, reason: String?) -> ManualBackupAnswer
}

/// The agent's answer to a manual backup request.
public enum ManualBackupAnswer: Sendable {
    /// Queued; the ticket says when it starts and under which id.
    case accepted(ManualBackupTicket)
    /// A backup of that database is running or waiting to start.
    case alreadyRunning
    /// No database of that name.
    case unknownDatabase
    /// No target of that name.
    case unknownTarget
    /// The agent is stopping.
    case stopping
}

/// One accepted manual backup request: the agent marks it started (with the backup's id) or
/// dropped; the endpoint waits for that for a while before it answers.
public final class ManualBackupTicket: @unchecked Sendable {
    /// Where the request stands.
    public enum Progress: Sendable, Equatable {
        /// Not started yet.
        case queued
        /// The snapshot has started under this id.
        case started(BackupID)
        /// It will not run, for this reason.
        case dropped(String)
    }

    /// The database to back up.
    public let database: String
    /// The one target to ship to, or nil for every target.
    public let target: String?
    /// Why it was asked for, or nil.
    public let reason: String?
    private let condition = NSCondition()
    private var current = Progress.queued

    /// Creates a queued ticket.
    public init(database: String, target: String?, reason: String?) {
        self.database = database
        self.target = target
        self.reason = reason
    }

    /// Where the request stands now.
    public var progress: Progress { condition.withLock { current } }

    /// Notes that the backup started under `id`.
    public func markStarted(_ id: BackupID) { settle(.started(id)) }

    /// Notes that the backup will not run, and why.
    public func drop(_ reason: String) { settle(.dropped(reason)) }

    /// Waits until the backup starts or is dropped, at most `timeout`; returns where it stands.
    public func waitUntilSettled(timeout: Duration) -> Progress {
        let deadline = Date().addingTimeInterval(timeout.timeInterval)
        condition.lock()
        defer { condition.unlock() }
        while current == .queued {
            if !condition.wait(until: deadline) { break }
        }
        return current
    }

    private func settle(_ progress: Progress) {
        condition.lock()
        if current == .queued { current = progress }
        condition.broadcast()
        condition.unlock()
    }
}
