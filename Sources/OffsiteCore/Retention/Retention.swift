import Foundation

/// How many backups a target (or the local rotation) keeps, in the manner of `restic forget`:
/// the `last` N, the newest in each of the last N hours, days, ISO weeks, months and years that
/// have a backup, and everything `within` a span of the newest backup. Rules are OR-ed.
///
/// A policy with no rule (every count absent or zero, no `within`) keeps everything: removing
/// backups is only ever done because a rule says so.
public struct RetentionPolicy: Sendable, Equatable {
    /// Keep the N newest backups.
    public var last: Int?
    /// Keep the newest backup of each of the N newest hours that have one.
    public var hourly: Int?
    /// Keep the newest backup of each of the N newest days that have one.
    public var daily: Int?
    /// Keep the newest backup of each of the N newest ISO weeks (Monday to Sunday) that have one.
    public var weekly: Int?
    /// Keep the newest backup of each of the N newest months that have one.
    public var monthly: Int?
    /// Keep the newest backup of each of the N newest years that have one.
    public var yearly: Int?
    /// Keep every backup taken at or after `newest - within` (the newest backup's time, not now).
    public var within: Duration?

    /// Creates a policy; every rule left out is off.
    public init(last: Int? = nil, hourly: Int? = nil, daily: Int? = nil, weekly: Int? = nil,
                monthly: Int? = nil, yearly: Int? = nil, within: Duration? = nil) {
        self.last = last
        self.hourly = hourly
        self.daily = daily
        self.weekly = weekly
        self.monthly = monthly
        self.yearly = yearly
        self.within = within
    }

    /// The policy with no rules, which keeps everything.
    public static let keepEverything = RetentionPolicy()

    /// Whether no rule is set, so the policy keeps everything.
    public var isEmpty: Bool {
        [last, hourly, daily, weekly, monthly, yearly].allSatisfy { ($0 ?? 0) <= 0 }
            && (within ?? .zero) <= .zero
    }

    /// The rules in words, for `prune` output: `last 3, daily 7, within 7d`, or `keep everything`.
    public var summary: String {
        guard !isEmpty else { return "keep everything" }
        var parts: [String] = []
        for (name, count) in [("last", last), ("hourly", hourly), ("daily", daily), ("weekly", weekly),
                              ("monthly", monthly), ("yearly", yearly)] {
            if let count, count > 0 { parts.append("\(name) \(count)") }
        }
        if let within, within > .zero { parts.append("within \(within.configText)") }
        return parts.joined(separator: ", ")
    }
}

/// One backup of one database as retention sees it: its id and a key the caller uses to find
/// it again (an object key or a file name).
public struct RetainedBackup: Sendable, Hashable {
    /// The backup's id, which carries its time and kind.
    public var id: BackupID
    /// The caller's handle for it; defaults to the id's text.
    public var key: String

    /// Creates an entry; `key` defaults to the id's text.
    public init(id: BackupID, key: String? = nil) {
        self.id = id
        self.key = key ?? id.description
    }
}

/// What a retention policy decides for one database's backups: what to keep and why, and what
/// to remove. Both lists are newest first; together they hold every input entry exactly once.
public struct RetentionPlan: Sendable, Equatable {
    /// A kept backup with every reason it is kept (`newest`, `manual`, `last 3`,
    /// `daily 2026-11-20`, `weekly 2026-W47`, `within 7d`, …).
    public struct Kept: Sendable, Equatable {
        /// The backup.
        public var backup: RetainedBackup
        /// Why it is kept; never empty.
        public var reasons: [String]
    }

    /// The backups to keep, newest first.
    public var keep: [Kept]
    /// The backups to remove, newest first.
    public var remove: [RetainedBackup]
}

/// Decides which of one database's backups `policy` keeps.
///
/// Semantics (those of `restic forget`): backups are taken newest first; `last N` keeps the N
/// newest; each bucket rule (hourly, daily, weekly by ISO week, monthly, yearly, in `timeZone`)
/// keeps the newest backup of each distinct bucket until it has N buckets, and buckets with no
/// backup do not count; `within D` keeps everything at or after `newest - D`, measured back from
/// the newest backup (restic's `--keep-within`), so backups that stopped for longer than D are not
/// all expired by the next prune; the rules are OR-ed. Nothing depends on the current time.
/// Beyond the policy: the newest backup is always kept (`newest`); `manual` and `pre-restore`
/// backups are always kept (reason `manual` / `pre-restore`) and are left out of the counting
/// rules, so they never take a slot from a scheduled backup; an empty policy keeps everything
/// (reason `no policy`). Entries sharing an id share a fate.
public func planRetention(backups: [RetainedBackup], policy: RetentionPolicy,
                          timeZone: TimeZone = TimeZone(identifier: "UTC")!) -> RetentionPlan {
    let ordered = backups.sorted { ($0.id, $1.key) > ($1.id, $0.key) }
    let ids = orderedUniqueIDs(ordered)
    var reasons: [BackupID: [String]] = [:]
    func add(_ reason: String, to id: BackupID) { reasons[id, default: []].append(reason) }

    if let newest = ids.first { add("newest", to: newest) }
    for id in ids where id.kind.isPinned { add(id.kind.rawValue, to: id) }

    if policy.isEmpty {
        for id in ids { add("no policy", to: id) }
    } else {
        let counted = ids.filter { !$0.kind.isPinned }
        if let last = policy.last, last > 0 {
            for id in counted.prefix(last) { add("last \(last)", to: id) }
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let rules: [(String, Int?, (RetentionDateParts) -> String)] = [
            ("hourly", policy.hourly, { $0.hourLabel }),
            ("daily", policy.daily, { $0.dayLabel }),
            ("weekly", policy.weekly, { $0.isoWeekLabel }),
            ("monthly", policy.monthly, { $0.monthLabel }),
            ("yearly", policy.yearly, { $0.yearLabel }),
        ]
        let parts = counted.map { RetentionDateParts(date: $0.date, calendar: calendar) }
        for (name, count, bucket) in rules {
            guard let count, count > 0 else { continue }
            var taken = 0
            var lastBucket: String?
            for (id, dateParts) in zip(counted, parts) where taken < count {
                let label = bucket(dateParts)
                guard label != lastBucket else { continue }
                lastBucket = label
                taken += 1
                add("\(name) \(label)", to: id)
            }
        }
        if let within = policy.within, within > .zero, let newest = ids.first {
            let cutoff = newest.date.addingTimeInterval(-within.timeInterval)
            for id in counted where id.date >= cutoff { add("within \(within.configText)", to: id) }
        }
    }

    var plan = RetentionPlan(keep: [], remove: [])
    for backup in ordered {
        if let why = reasons[backup.id] {
            plan.keep.append(.init(backup: backup, reasons: why))
        } else {
            plan.remove.append(backup)
        }
    }
    return plan
}

private func orderedUniqueIDs(_ ordered: [RetainedBackup]) -> [BackupID] {
    var seen = Set<BackupID>()
    return ordered.compactMap { seen.insert($0.id).inserted ? $0.id : nil }
}

/// A backup time's calendar fields in the policy's time zone, and its bucket labels.
struct RetentionDateParts {
    var year: Int, month: Int, day: Int, hour: Int

    init(date: Date, calendar: Calendar) {
        let fields = calendar.dateComponents([.year, .month, .day, .hour], from: date)
        year = fields.year ?? 1970
        month = fields.month ?? 1
        day = fields.day ?? 1
        hour = fields.hour ?? 0
    }

    init(year: Int, month: Int, day: Int, hour: Int = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
    }

    var yearLabel: String { String(format: "%04d", year) }
    var monthLabel: String { String(format: "%04d-%02d", year, month) }
    var dayLabel: String { String(format: "%04d-%02d-%02d", year, month, day) }
    var hourLabel: String { String(format: "%04d-%02d-%02dT%02d", year, month, day, hour) }
    var isoWeekLabel: String {
        let (weekYear, week) = isoWeek
        return String(format: "%04d-W%02d", weekYear, week)
    }

    /// The ISO 8601 week-numbering year and week (weeks start on Monday; week 1 holds the
    /// year's first Thursday).
    var isoWeek: (year: Int, week: Int) {
        let days = daysSinceEpoch(year: year, month: month, day: day)
        let weekday = isoWeekday(daysSinceEpoch: days)
        let ordinal = days - daysSinceEpoch(year: year, month: 1, day: 1) + 1
        let week = (ordinal - weekday + 10) / 7
        if week < 1 { return (year - 1, isoWeeksInYear(year - 1)) }
        if week > isoWeeksInYear(year) { return (year + 1, 1) }
        return (year, week)
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days-from-civil).
private func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
}

/// Monday 1 … Sunday 7; 1970-01-01 was a Thursday.
private func isoWeekday(daysSinceEpoch days: Int) -> Int {
    ((days % 7 + 7) % 7 + 3) % 7 + 1
}

/// 53 when the year starts on a Thursday, or is a leap year starting on a Wednesday; else 52.
private func isoWeeksInYear(_ year: Int) -> Int {
    let jan1 = isoWeekday(daysSinceEpoch: daysSinceEpoch(year: year, month: 1, day: 1))
    let isLeap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
    return jan1 == 4 || (isLeap && jan1 == 3) ? 53 : 52
}
