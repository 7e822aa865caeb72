import Foundation

/// One outcome or observation recorded in an `AgentState`, as a value: the planner applies it to
/// its own state, and the agent stages the same value in the `StateStore`, which replays it onto
/// the file as it is on disk (another process may have written it since) when it next writes.
public enum StateChange: Sendable, Equatable {
    /// An agent started as process `pid`.
    case started(at: Date, pid: Int32)
    /// An item is protected, with its file.
    case item(String, path: String, at: Date)
    /// A file set is protected, with its folder.
    case fileSet(String, path: String, at: Date)
    /// An item was seen to change (an observation: written with the next outcome).
    case changed(String, at: Date)
    /// A snapshot of an item was taken.
    case snapshot(String, SnapshotRecord)
    /// What a backup shipped to a target, for `verify` to compare with.
    case shipped(String, target: String, BackupRecord)
    /// A backup reached a target.
    case succeeded(String, target: String, at: Date, backupID: String, bytes: Int64, seconds: Double?)
    /// A backup to a target failed.
    case failed(String, target: String, at: Date, reason: String)
    /// A target's schedule fired.
    case scheduledRun(target: String, at: Date)
    /// When an item's next scheduled backup to a target is due.
    case nextRun(String, target: String, at: Date?, now: Date)
    /// What a listing of a target showed for an item.
    case listing(String, target: String, TargetListing)
    /// A restore drill's result.
    case verified(String, target: String, VerifyResult)
    /// A failure that is not one backup to one target.
    case problem(String, item: String?, target: String?, reason: String, at: Date)
    /// A file in a watched folder is not protected (with why), or is again (nil).
    case unprotected(path: String, reason: String?)
    /// Forget every unprotected file (a new start looks again).
    case clearUnprotected
    /// An item's chain of changes: its base and what was shipped in it so far.
    case chain(String, base: String, objects: Int, bytes: Int64)
    /// The commit time of the oldest change of an item not yet on a target (nil: it has them all).
    case replication(String, target: String, oldestWaiting: Date?)
    /// Whether an item's changes are shipped continuously, and if not, why (nil: they are).
    case continuity(String, note: String?)

    /// Whether the change is an outcome the state file must hold soon; an observation (a change
    /// seen) waits for the next outcome.
    public var isOutcome: Bool {
        switch self {
        case .changed: return false
        default: return true
        }
    }
}

extension AgentState {
    /// Records `change`.
    public mutating func apply(_ change: StateChange) {
        switch change {
        case let .started(date, pid): recordStart(at: date, pid: pid)
        case let .item(name, path, date): recordDatabase(name, path: path, at: date)
        case let .fileSet(name, path, date): recordDatabase(name, path: path, at: date, isFileSet: true)
        case let .changed(name, date): recordChange(of: name, at: date)
        case let .snapshot(name, record): recordSnapshot(of: name, record)
        case let .shipped(name, target, record): recordBackup(database: name, target: target, record)
        case let .succeeded(name, target, date, backupID, bytes, seconds):
            recordSuccess(database: name, target: target, at: date, backupID: backupID, bytes: bytes, seconds: seconds)
        case let .failed(name, target, date, reason): recordFailure(database: name, target: target, at: date, reason: reason)
        case let .scheduledRun(target, date): scheduledRuns = (scheduledRuns ?? [:]).merging([target: date]) { _, new in new }
        case let .nextRun(name, target, date, now): recordNextRun(database: name, target: target, at: date, now: now)
        case let .listing(name, target, listing): recordListing(database: name, target: target, listing)
        case let .verified(name, target, result): recordVerify(database: name, target: target, result)
        case let .problem(operation, item, target, reason, date):
            recordProblem(operation, database: item, target: target, reason: reason, at: date)
        case let .unprotected(path, reason): recordUnprotected(path, reason: reason)
        case .clearUnprotected: unprotected = nil
        case let .chain(name, base, objects, bytes):
            withDatabase(name, at: Date()) { $0.chain = ChainRecord(base: base, objects: objects, bytes: bytes) }
        case let .replication(name, target, oldest):
            withTarget(target, of: name, at: Date()) { $0.oldestUnshippedChange = oldest }
        case let .continuity(name, note):
            withDatabase(name, at: Date()) { $0.continuity = note }
        }
    }

    /// Records every change of `changes`, in order.
    public mutating func apply(_ changes: [StateChange]) {
        for change in changes { apply(change) }
    }
}
