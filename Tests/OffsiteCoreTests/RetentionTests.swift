import Foundation
import Testing
@testable import OffsiteCore

/// `yyyy-MM-dd HH:mm` in UTC as a backup of `kind`.
private func backup(_ text: String, _ kind: BackupKind = .scheduled) -> RetainedBackup {
    RetainedBackup(id: BackupID(date: utc(text), kind: kind))
}

private func utc(_ text: String) -> Date {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd HH:mm"
    return formatter.date(from: text)!
}


/// The kept backups' times (UTC, `yyyy-MM-dd HH:mm`) with their reasons.
private func kept(_ plan: RetentionPlan) -> [String: [String]] {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd HH:mm"
    var result: [String: [String]] = [:]
    for entry in plan.keep { result[formatter.string(from: entry.backup.id.date)] = entry.reasons }
    return result
}

@Suite struct RetentionTests {
    @Test func lastKeepsTheNewestN() {
        let backups = ["2027-01-10 10:00", "2027-01-10 11:00", "2027-01-09 10:00", "2027-01-08 10:00"].map { backup($0) }
        let plan = planRetention(backups: backups, policy: RetentionPolicy(last: 2))
        #expect(kept(plan) == ["2027-01-10 11:00": ["newest", "last 2"], "2027-01-10 10:00": ["last 2"]])
        #expect(plan.remove.count == 2)
    }

    @Test func hourlyKeepsTheNewestOfEachHour() {
        let backups = ["2027-01-10 11:50", "2027-01-10 11:10", "2027-01-10 10:30", "2027-01-10 08:05", "2027-01-10 08:01"]
            .map { backup($0) }
        let plan = planRetention(backups: backups, policy: RetentionPolicy(hourly: 3))
        #expect(kept(plan) == [
            "2027-01-10 11:50": ["newest", "hourly 2027-01-10T11"],
            "2027-01-10 10:30": ["hourly 2027-01-10T10"],
            // The empty hour 09 does not count: the third slot goes to hour 08.
            "2027-01-10 08:05": ["hourly 2027-01-10T08"],
        ])
    }

    @Test func dailySkipsEmptyDaysAndKeepsEachDaysNewest() {
        let backups = ["2027-01-10 09:00", "2027-01-10 01:00", "2027-01-07 23:00", "2027-01-07 05:00",
                       "2027-01-03 12:00", "2027-01-01 12:00"].map { backup($0) }
        let plan = planRetention(backups: backups, policy: RetentionPolicy(daily: 3))
        #expect(kept(plan) == [
            "2027-01-10 09:00": ["newest", "daily 2027-01-10"],
            "2027-01-07 23:00": ["daily 2027-01-07"],
            "2027-01-03 12:00": ["daily 2027-01-03"],
        ])
        #expect(plan.remove.map(\.id.date) == [utc("2027-01-10 01:00"), utc("2027-01-07 05:00"), utc("2027-01-01 12:00")])
    }

    @Test func weeklyUsesISOWeeksAcrossTheYearEnd() {
        // 2026-12-29 (Tue) and 2027-01-02 (Sat) are both in ISO week 2026-W53;
        // 2027-01-04 is the Monday starting 2027-W01.
        let backups = ["2027-01-04 06:00", "2027-01-02 06:00", "2026-12-29 06:00", "2026-12-27 06:00"].map { backup($0) }
        let plan = planRetention(backups: backups, policy: RetentionPolicy(weekly: 3))
        #expect(kept(plan) == [
            "2027-01-04 06:00": ["newest", "weekly 2027-W01"],
            "2027-01-02 06:00": ["weekly 2026-W53"],
            "2026-12-27 06:00": ["weekly 2026-W52"],
        ])
    }

    @Test(arguments: [
        (2024, 12, 30, 2025, 1), (2021, 1, 3, 2020, 53), (2027, 1, 1, 2026, 53), (2026, 1, 1, 2026, 1),
        (2008, 12, 29, 2009, 1), (2010, 1, 3, 2009, 53), (2026, 11, 20, 2026, 47), (2020, 12, 31, 2020, 53),
        (2019, 12, 30, 2020, 1), (2016, 1, 3, 2015, 53),
    ])
    func isoWeekNumbers(year: Int, month: Int, day: Int, weekYear: Int, week: Int) {
        let parts = RetentionDateParts(year: year, month: month, day: day)
        #expect(parts.isoWeek == (weekYear, week))
    }

    @Test func isoWeeksAgreeWithFoundationsISOCalendar() {
        var iso = Calendar(identifier: .iso8601)
        iso.timeZone = TimeZone(identifier: "UTC")!
        var gregorian = Calendar(identifier: .gregorian)
        gregorian.timeZone = TimeZone(identifier: "UTC")!
        var date = utc("1999-12-01 12:00")
        for _ in 0..<(366 * 30 / 7) {
            let fields = iso.dateComponents([.yearForWeekOfYear, .weekOfYear], from: date)
            let parts = RetentionDateParts(date: date, calendar: gregorian)
            #expect(parts.isoWeek == (fields.yearForWeekOfYear!, fields.weekOfYear!), "\(date)")
            date.addTimeInterval(86_400 * 5)
        }
    }

    @Test func monthlyAndYearly() {
        let backups = ["2027-01-05 00:00", "2026-12-31 23:59", "2026-12-01 00:00", "2026-10-15 00:00",
                       "2025-06-01 00:00", "2024-03-01 00:00"].map { backup($0) }
        let monthly = planRetention(backups: backups, policy: RetentionPolicy(monthly: 3))
        #expect(kept(monthly) == [
            "2027-01-05 00:00": ["newest", "monthly 2027-01"],
            "2026-12-31 23:59": ["monthly 2026-12"],
            "2026-10-15 00:00": ["monthly 2026-10"],
        ])
        let yearly = planRetention(backups: backups, policy: RetentionPolicy(yearly: 3))
        #expect(kept(yearly) == [
            "2027-01-05 00:00": ["newest", "yearly 2027"],
            "2026-12-31 23:59": ["yearly 2026"],
            "2025-06-01 00:00": ["yearly 2025"],
        ])
    }

    @Test func withinKeepsEverythingWithinTheSpanOfTheNewestBackup() {
        let backups = ["2027-01-10 11:00", "2027-01-09 11:00", "2027-01-09 10:59", "2027-01-01 00:00"].map { backup($0) }
        let plan = planRetention(backups: backups, policy: RetentionPolicy(within: .seconds(86_400)))
        #expect(kept(plan) == [
            "2027-01-10 11:00": ["newest", "within 1d"],
            "2027-01-09 11:00": ["within 1d"],
        ])
    }

    @Test func withinDoesNotExpireBackupsThatStoppedForLongerThanTheSpan() {
        // The last backups are weeks old (the agent was down): measured from now, `within 1d` would
        // leave only the newest; measured from the newest backup, as restic does, the day before it stays.
        let backups = ["2026-12-01 12:00", "2026-12-01 06:00", "2026-11-30 18:00", "2026-11-30 11:00"].map { backup($0) }
        let plan = planRetention(backups: backups, policy: RetentionPolicy(within: .seconds(86_400)))
        #expect(kept(plan) == [
            "2026-12-01 12:00": ["newest", "within 1d"],
            "2026-12-01 06:00": ["within 1d"],
            "2026-11-30 18:00": ["within 1d"],
        ])
        #expect(plan.remove.map(\.id.date) == [utc("2026-11-30 11:00")])
    }

    @Test func rulesAreOredAndReasonsAccumulate() {
        let backups = ["2027-01-10 11:00", "2027-01-10 10:00", "2027-01-09 10:00", "2027-01-02 10:00",
                       "2026-12-20 10:00"].map { backup($0) }
        let policy = RetentionPolicy(last: 2, daily: 2, weekly: 2)
        let plan = planRetention(backups: backups, policy: policy)
        #expect(kept(plan) == [
            "2027-01-10 11:00": ["newest", "last 2", "daily 2027-01-10", "weekly 2027-W01"],
            "2027-01-10 10:00": ["last 2"],
            "2027-01-09 10:00": ["daily 2027-01-09"],
            "2027-01-02 10:00": ["weekly 2026-W53"],
        ])
        #expect(plan.remove.map(\.id.date) == [utc("2026-12-20 10:00")])
    }

    @Test func theNewestIsAlwaysKeptAndSaysSo() {
        let backups = ["2026-01-01 00:00", "2025-01-01 00:00"].map { backup($0) }
        let plan = planRetention(backups: backups, policy: RetentionPolicy(within: .seconds(3600)))
        #expect(kept(plan) == ["2026-01-01 00:00": ["newest", "within 1h"]])
        #expect(plan.remove.map(\.id.date) == [utc("2025-01-01 00:00")])
    }

    @Test func pinnedKindsAreKeptAndTakeNoSlots() {
        let backups = [backup("2027-01-10 11:00", .manual), backup("2027-01-10 10:00"),
                       backup("2027-01-09 10:00", .preRestore), backup("2027-01-09 09:00"),
                       backup("2020-01-01 00:00", .manual), backup("2027-01-08 09:00")]
        let plan = planRetention(backups: backups, policy: RetentionPolicy(last: 1, daily: 2))
        #expect(kept(plan) == [
            "2027-01-10 11:00": ["newest", "manual"],
            "2027-01-10 10:00": ["last 1", "daily 2027-01-10"],
            "2027-01-09 10:00": ["pre-restore"],
            "2027-01-09 09:00": ["daily 2027-01-09"],
            "2020-01-01 00:00": ["manual"],
        ])
        #expect(plan.remove.map(\.id.date) == [utc("2027-01-08 09:00")])
    }

    @Test func anEmptyPolicyKeepsEverything() {
        let backups = ["2027-01-10 11:00", "2020-01-01 00:00"].map { backup($0) }
        for policy in [RetentionPolicy(), RetentionPolicy(last: 0, daily: 0, within: .zero)] {
            #expect(policy.isEmpty)
            let plan = planRetention(backups: backups, policy: policy)
            #expect(plan.remove.isEmpty)
            #expect(kept(plan) == ["2027-01-10 11:00": ["newest", "no policy"], "2020-01-01 00:00": ["no policy"]])
        }
        #expect(RetentionPolicy().summary == "keep everything")
        #expect(RetentionPolicy(last: 3, daily: 7, within: .seconds(7 * 86_400)).summary == "last 3, daily 7, within 7d")
    }

    @Test func bucketsFollowTheTimeZone() {
        // 23:30 and 00:30 UTC are two UTC days but one day in New York (UTC-5).
        let backups = ["2026-11-21 00:30", "2026-11-20 23:30", "2026-11-19 12:00"].map { backup($0) }
        let policy = RetentionPolicy(daily: 2)
        let inUTC = planRetention(backups: backups, policy: policy)
        #expect(Set(kept(inUTC).keys) == ["2026-11-21 00:30", "2026-11-20 23:30"])
        let inNewYork = planRetention(backups: backups, policy: policy,
                                      timeZone: TimeZone(identifier: "America/New_York")!)
        #expect(kept(inNewYork) == [
            "2026-11-21 00:30": ["newest", "daily 2026-11-20"],
            "2026-11-19 12:00": ["daily 2026-11-19"],
        ])
    }

    @Test func entriesSharingAnIDShareAFate() {
        let id = BackupID(date: utc("2027-01-09 10:00"), kind: .scheduled)
        let backups = [backup("2027-01-10 10:00"), RetainedBackup(id: id, key: "crm/a.sqlite3.gz"),
                       RetainedBackup(id: id, key: "crm/a.sqlite3.gz.age"), backup("2027-01-08 10:00")]
        let plan = planRetention(backups: backups, policy: RetentionPolicy(last: 2))
        #expect(plan.keep.map(\.backup.key) == [backups[0].key, "crm/a.sqlite3.gz", "crm/a.sqlite3.gz.age"])
        #expect(plan.remove == [backups[3]])
    }

    @Test func keepAndRemovePartitionARandomInput() {
        var random = SplitMix64(seed: 42)
        let kinds = BackupKind.allCases
        for round in 0..<40 {
            let count = Int(random.next() % 200)
            let start = Int64(utc("2025-01-01 00:00").timeIntervalSince1970)
            let backups = (0..<count).map { _ in
                RetainedBackup(id: BackupID(seconds: start + Int64(random.next() % (2 * 365 * 86_400)),
                                            kind: kinds[Int(random.next() % UInt64(kinds.count))]))
            }
            func rule() -> Int? { random.next() % 3 == 0 ? nil : Int(random.next() % 10) }
            let policy = RetentionPolicy(last: rule(), hourly: rule(), daily: rule(), weekly: rule(), monthly: rule(),
                                         yearly: rule(), within: random.next() % 2 == 0 ? nil : .seconds(Int64(random.next() % 3_000_000)))
            let plan = planRetention(backups: backups, policy: policy)
            let keptKeys = plan.keep.map(\.backup)
            #expect(keptKeys.count + plan.remove.count == backups.count, "round \(round)")
            #expect(Set(keptKeys).isDisjoint(with: plan.remove), "round \(round)")
            #expect(Set(keptKeys).union(plan.remove) == Set(backups), "round \(round)")
            #expect(plan.keep.allSatisfy { !$0.reasons.isEmpty })
            #expect(plan.remove.allSatisfy { !$0.id.kind.isPinned })
            if let newest = backups.map(\.id).max() {
                #expect(keptKeys.contains { $0.id == newest }, "round \(round)")
            }
            for (name, limit) in [("daily", policy.daily), ("weekly", policy.weekly), ("monthly", policy.monthly)] {
                let used = plan.keep.filter { $0.reasons.contains { $0.hasPrefix(name + " ") } }.count
                #expect(used <= (limit ?? 0), "round \(round) \(name)")
            }
        }
    }
}
