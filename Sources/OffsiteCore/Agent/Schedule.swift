import Foundation

/// When a target's scheduled backups fall due: a fixed interval, or a cron expression read in a
/// time zone.
public enum TriggerSchedule: Sendable, Equatable, CustomStringConvertible {
    /// Every interval, counted from the previous run.
    case every(Duration)
    /// Whenever the cron expression matches, on the local clock of the zone.
    case cron(CronExpression, TimeZone)

    /// The schedule of `target`: its own cron expression in `schedule.timeZone` when it has one,
    /// otherwise `schedule.every`. Throws `CronError` for a malformed expression (the
    /// configuration parser has already rejected those).
    public init(target: TargetConfig, schedule: ScheduleConfig) throws {
        if let text = target.schedule {
            self = .cron(try CronExpression(parsing: text), schedule.timeZone)
        } else {
            self = .every(schedule.every)
        }
    }

    /// The first time after `reference` the schedule fires: `reference + interval`, or the next
    /// matching minute strictly after it. Nil only for a cron expression that never matches again.
    public func next(after reference: Date) -> Date? {
        switch self {
        case .every(let interval):
            return reference.addingTimeInterval(interval.timeInterval)
        case .cron(let expression, let zone):
            return expression.next(after: reference, in: zone)
        }
    }

    /// When the next scheduled run is due, given the last run's time (nil: never ran).
    ///
    /// - Never ran: the first run comes one period from `now` (`now + interval`, or the next cron
    ///   match after `now`). Backing up at once is the job of the startup backup, which is
    ///   configured on its own.
    /// - Ran before: `next(after: lastRun)`. This may lie in the past when the agent was stopped
    ///   over a due time; the caller then runs once now, and the following run is computed from
    ///   that run, so missed runs are made up once, never replayed one by one.
    public func nextRun(lastRun: Date?, now: Date) -> Date? {
        next(after: lastRun ?? now)
    }

    /// `every 1h` or `cron "0 2 * * *" (Europe/Berlin)`.
    public var description: String {
        switch self {
        case .every(let interval): return "every \(interval.configText)"
        case .cron(let expression, let zone): return "cron \"\(expression)\" (\(zone.identifier))"
        }
    }
}

/// Decides when an on-change backup may run, so that a burst of writes gives at most two
/// backups and the last one holds the whole burst.
///
/// The first change after a backup is backed up at once when `minInterval` has passed since that
/// backup; otherwise it waits until `lastBackup + minInterval`. Changes arriving while one is
/// already pending join it. A change seen after a snapshot started stays pending, so the write
/// that raced the snapshot is not lost.
///
/// Feed it `recordChange(at:)` on every change notification and `recordBackup(at:)` with the
/// snapshot time of every backup of the database (any kind: a scheduled backup covers pending
/// changes too); ask `dueAt` when to wake.
public struct OnChangeGate: Sendable, Equatable {
    /// The least time between two backups caused by changes.
    public var minInterval: Duration
    /// The snapshot time of the last backup, or nil when none was taken yet.
    public private(set) var lastBackupAt: Date?
    /// The first change not yet covered by a backup, or nil when everything is backed up.
    public private(set) var pendingChangeAt: Date?

    /// Creates a gate; `lastBackupAt` from the state file keeps the interval across restarts.
    public init(minInterval: Duration, lastBackupAt: Date? = nil) {
        self.minInterval = minInterval
        self.lastBackupAt = lastBackupAt
    }

    /// When a backup for a change seen at `changeAt` may run, the last backup having been taken
    /// at `lastBackupAt` (nil: never): at once when `minInterval` has passed, otherwise at
    /// `lastBackupAt + minInterval`.
    public func earliestRun(changeAt: Date, lastBackupAt: Date?) -> Date {
        guard let lastBackupAt else { return changeAt }
        return max(changeAt, lastBackupAt.addingTimeInterval(minInterval.timeInterval))
    }

    /// When the pending change may be backed up, or nil when nothing is pending.
    public var dueAt: Date? {
        pendingChangeAt.map { earliestRun(changeAt: $0, lastBackupAt: lastBackupAt) }
    }

    /// Whether a change backup should run at `now`.
    public func isDue(at now: Date) -> Bool {
        dueAt.map { $0 <= now } ?? false
    }

    /// Notes a change seen at `date`; returns when its backup may run.
    @discardableResult
    public mutating func recordChange(at date: Date) -> Date {
        if pendingChangeAt == nil || date < pendingChangeAt! { pendingChangeAt = date }
        return dueAt!
    }

    /// Notes a backup whose snapshot was taken at `snapshotAt`: it covers every change seen up to
    /// then; a change seen later stays pending.
    public mutating func recordBackup(at snapshotAt: Date) {
        if lastBackupAt == nil || snapshotAt > lastBackupAt! { lastBackupAt = snapshotAt }
        if let pending = pendingChangeAt, pending <= snapshotAt { pendingChangeAt = nil }
    }
}

/// Spaces out the agent's checks of whether a database changed (a read transaction each, on a
/// connection beside the application's): an application that commits 50 times a second makes 50
/// file events a second, and one check a second tells the planner as much. An event within
/// `spacing` of the last check is not checked at once; one check covers all such events at the
/// end of the spacing, so no change is missed and a change is seen at most `spacing` late.
public struct ChangeCheckGate: Sendable, Equatable {
    /// The least time between two checks, in seconds.
    public var spacing: TimeInterval
    /// When the last check ran, or nil before the first.
    public private(set) var lastCheckAt: Date?
    /// The first file event not checked yet, or nil.
    public private(set) var pendingEventAt: Date?

    /// Creates a gate; no check has run yet.
    public init(spacing: TimeInterval = 1) {
        self.spacing = spacing
    }

    /// A file event at `now`: true when the check runs now; otherwise it waits until `dueAt`.
    public mutating func event(at now: Date) -> Bool {
        if let last = lastCheckAt, now < last.addingTimeInterval(spacing) {
            pendingEventAt = pendingEventAt ?? now
            return false
        }
        lastCheckAt = now
        pendingEventAt = nil
        return true
    }

    /// When the check of the events not checked yet is due, or nil when there are none.
    public var dueAt: Date? {
        guard pendingEventAt != nil, let last = lastCheckAt else { return nil }
        return last.addingTimeInterval(spacing)
    }

    /// Whether the deferred check runs at `now`. A change it finds is dated `now`, not at the first
    /// event it covers: it may also cover commits after a snapshot that began in between, and the
    /// planner must not count those as backed up.
    public mutating func due(at now: Date) -> Bool {
        guard let dueAt, dueAt <= now else { return false }
        lastCheckAt = now
        pendingEventAt = nil
        return true
    }
}
