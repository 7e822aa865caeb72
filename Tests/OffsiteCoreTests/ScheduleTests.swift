import Foundation
import Testing
@testable import OffsiteCore

@Suite struct ScheduleTests {
    private static let berlin = TimeZone(identifier: "Europe/Berlin")!
    private static let utc = TimeZone(identifier: "UTC")!

    // MARK: TriggerSchedule

    @Test(arguments: [
        // (schedule, last run, now, expected)
        (TriggerSchedule.every(.seconds(3600)), nil, "2026-11-22T03:17:00Z", "2026-11-22T04:17:00Z"),
        (.every(.seconds(3600)), "2026-11-22T03:00:00Z", "2026-11-22T03:17:00Z", "2026-11-22T04:00:00Z"),
        // Stopped over the due time: due in the past, the caller runs once now.
        (.every(.seconds(3600)), "2026-11-21T03:00:00Z", "2026-11-22T03:17:00Z", "2026-11-21T04:00:00Z"),
        (.every(.milliseconds(1500)), "2026-11-22T03:00:00Z", "2026-11-22T03:00:00Z", "2026-11-22T03:00:01.5Z"),
        (.cron(try! CronExpression(parsing: "0 2 * * *"), utc), nil, "2026-11-22T03:17:00Z", "2026-11-23T02:00:00Z"),
        (.cron(try! CronExpression(parsing: "0 2 * * *"), utc), "2026-11-22T02:00:04Z", "2026-11-22T03:17:00Z",
         "2026-11-23T02:00:00Z"),
        // Missed last night's run: made up once (due time in the past).
        (.cron(try! CronExpression(parsing: "0 2 * * *"), utc), "2026-11-20T02:00:00Z", "2026-11-22T03:17:00Z",
         "2026-11-21T02:00:00Z"),
        (.cron(try! CronExpression(parsing: "0 2 * * *"), berlin), nil, "2026-11-22T03:17:00Z", "2026-11-23T01:00:00Z"),
    ] as [(TriggerSchedule, String?, String, String)])
    func nextRun(schedule: TriggerSchedule, lastRun: String?, now: String, expected: String) {
        let next = schedule.nextRun(lastRun: lastRun.map(parseTime), now: parseTime(now))
        #expect(next == parseTime(expected))
    }

    @Test func aTargetFollowsItsOwnCronOrTheGlobalInterval() throws {
        var schedule = ScheduleConfig(every: .seconds(1800))
        schedule.timeZone = Self.berlin
        var target = TargetConfig(name: "s3", url: "file:///x", location: .folder(path: "/x"))
        #expect(try TriggerSchedule(target: target, schedule: schedule) == .every(.seconds(1800)))
        target.schedule = "0 2 * * *"
        let cron = try TriggerSchedule(target: target, schedule: schedule)
        #expect(cron == .cron(try CronExpression(parsing: "0 2 * * *"), Self.berlin))
        #expect(cron.description == #"cron "0 2 * * *" (Europe/Berlin)"#)
        #expect(TriggerSchedule.every(.seconds(5400)).description == "every 1h30m")
        target.schedule = "0 2 * *"
        #expect(throws: CronError.self) { try TriggerSchedule(target: target, schedule: schedule) }
    }

    // MARK: OnChangeGate

    @Test(arguments: [
        // (change at, last backup at, expected earliest run) with minInterval 5m
        ("2026-11-22T03:00:00Z", nil, "2026-11-22T03:00:00Z"),
        ("2026-11-22T03:00:00Z", "2026-11-22T02:00:00Z", "2026-11-22T03:00:00Z"),
        ("2026-11-22T03:00:00Z", "2026-11-22T02:55:00Z", "2026-11-22T03:00:00Z"),
        ("2026-11-22T03:00:00Z", "2026-11-22T02:58:00Z", "2026-11-22T03:03:00Z"),
        ("2026-11-22T03:00:00Z", "2026-11-22T03:00:00Z", "2026-11-22T03:05:00Z"),
    ] as [(String, String?, String)])
    func earliestRun(changeAt: String, lastBackupAt: String?, expected: String) {
        let gate = OnChangeGate(minInterval: .seconds(300))
        #expect(gate.earliestRun(changeAt: parseTime(changeAt), lastBackupAt: lastBackupAt.map(parseTime))
                    == parseTime(expected))
    }

    // MARK: ChangeCheckGate

    @Test(arguments: [
        // (file events at these seconds, the loop woken at these seconds; expected: seconds at which a
        // check runs, in order) with a spacing of 1 s
        ([0.0], [], [0.0]),                                       // a first event is checked at once
        ([0.0, 0.02, 0.04, 0.5], [1.0], [0.0, 1.0]),              // a burst: one check, then one at the end of the second
        ([0.0, 0.02], [0.5, 0.99], [0.0]),                        // not before the second is over (that check is still due)
        ([0.0, 1.5], [], [0.0, 1.5]),                             // quiet for a second: checked at once again
        ([0.0, 0.3, 1.2, 1.25, 2.1], [1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]),  // a steady writer: one check a second
        ([0.0, 0.1], [1.0, 2.0, 5.0], [0.0, 1.0]),                // after the last deferred check, nothing more
    ] as [([Double], [Double], [Double])])
    func changeChecksAreSpacedAndNoneIsMissed(events: [Double], wakeups: [Double], expected: [Double]) {
        let start = parseTime("2026-11-22T03:00:00Z")
        var gate = ChangeCheckGate(spacing: 1)
        var checks: [Double] = []
        let moments = (events.map { ($0, true) } + wakeups.map { ($0, false) }).sorted { $0.0 < $1.0 }
        for (second, isEvent) in moments {
            let now = start.addingTimeInterval(second)
            if isEvent ? gate.event(at: now) : gate.due(at: now) { checks.append(second) }
        }
        #expect(checks == expected)
        // Every event is covered by a check at or after it.
        #expect(events.allSatisfy { event in checks.contains { $0 >= event } } || gate.dueAt != nil)
    }

    @Test func aDeferredCheckIsDueOneSpacingAfterTheLastCheck() {
        let start = parseTime("2026-11-22T03:00:00Z")
        var gate = ChangeCheckGate(spacing: 1)
        #expect(gate.dueAt == nil)
        let first = gate.event(at: start)
        #expect(first)
        #expect(gate.dueAt == nil, "nothing is left to check")
        let second = gate.event(at: start.addingTimeInterval(0.2))
        #expect(!second)
        #expect(gate.dueAt == start.addingTimeInterval(1))
        let early = gate.due(at: start.addingTimeInterval(0.999))
        #expect(!early)
        let onTime = gate.due(at: start.addingTimeInterval(1.01))
        #expect(onTime)
        #expect(gate.dueAt == nil && gate.lastCheckAt == start.addingTimeInterval(1.01))
    }

    @Test func pendingChangesJoinAndBackupsClearThem() {
        let start = parseTime("2026-11-22T03:00:00Z")
        var gate = OnChangeGate(minInterval: .seconds(300), lastBackupAt: start)
        #expect(gate.dueAt == nil && !gate.isDue(at: start.addingTimeInterval(3600)))
        #expect(gate.recordChange(at: start.addingTimeInterval(10)) == start.addingTimeInterval(300))
        // A later change joins the pending one; the due time does not move.
        #expect(gate.recordChange(at: start.addingTimeInterval(200)) == start.addingTimeInterval(300))
        #expect(gate.pendingChangeAt == start.addingTimeInterval(10))
        #expect(!gate.isDue(at: start.addingTimeInterval(299)) && gate.isDue(at: start.addingTimeInterval(300)))
        // A backup whose snapshot started before a change does not cover it.
        gate.recordBackup(at: start.addingTimeInterval(5))
        #expect(gate.pendingChangeAt == start.addingTimeInterval(10))
        #expect(gate.lastBackupAt == start.addingTimeInterval(5))
        // One that started after covers it.
        gate.recordBackup(at: start.addingTimeInterval(300))
        #expect(gate.pendingChangeAt == nil && gate.dueAt == nil)
        // An older backup reported late does not move the last backup back.
        gate.recordBackup(at: start)
        #expect(gate.lastBackupAt == start.addingTimeInterval(300))
    }

    /// Simulates the agent: a burst of `writes` writes `spacing` apart, change notifications fed
    /// to the gate, a backup started whenever it is due, taking `backupDuration` after its snapshot
    /// instant. Returns the snapshot times.
    private func simulateBurst(writes: Int, spacing: TimeInterval, minInterval: Duration,
                               backupDuration: TimeInterval, lastBackupAt: Date?) -> (snapshots: [Date], lastWrite: Date) {
        let start = parseTime("2026-11-22T03:00:00Z")
        var gate = OnChangeGate(minInterval: minInterval, lastBackupAt: lastBackupAt)
        let writeTimes = (0..<writes).map { start.addingTimeInterval(TimeInterval($0) * spacing) }
        var snapshots: [Date] = []
        var busyUntil = Date.distantPast
        var nextWrite = 0
        var now = start
        while true {
            // Deliver every write up to now.
            while nextWrite < writeTimes.count && writeTimes[nextWrite] <= now {
                gate.recordChange(at: writeTimes[nextWrite])
                nextWrite += 1
            }
            if now >= busyUntil, gate.isDue(at: now) {
                snapshots.append(now)
                gate.recordBackup(at: now)
                busyUntil = now.addingTimeInterval(backupDuration)
            }
            // Wake at the next event: a write, the gate's due time, or the end of a running backup.
            var wakeTimes: [Date] = []
            if nextWrite < writeTimes.count { wakeTimes.append(writeTimes[nextWrite]) }
            if let due = gate.dueAt { wakeTimes.append(max(due, busyUntil)) }
            guard let wake = wakeTimes.filter({ $0 > now }).min() else { break }
            now = wake
        }
        return (snapshots, writeTimes.last!)
    }

    @Test(arguments: [
        // (writes, spacing s, minInterval s, backup s, last backup seconds before the burst or nil)
        (50, 0.04, 300, 0.5, nil),
        (50, 0.04, 300, 0.5, 3600),
        (50, 0.04, 300, 0.5, 60),
        (50, 0.04, 5, 3.0, nil),
        (1, 0.0, 300, 0.5, 10),
        (500, 0.5, 300, 2.0, nil),
    ] as [(Int, Double, Int, Double, Int?)])
    func aBurstOfWritesGivesAtMostTwoBackupsAndTheLastCoversIt(
        writes: Int, spacing: Double, minInterval: Int, backupDuration: Double, backupBefore: Int?
    ) {
        let start = parseTime("2026-11-22T03:00:00Z")
        let result = simulateBurst(writes: writes, spacing: spacing, minInterval: .seconds(minInterval),
                                   backupDuration: backupDuration,
                                   lastBackupAt: backupBefore.map { start.addingTimeInterval(-TimeInterval($0)) })
        #expect(!result.snapshots.isEmpty && result.snapshots.count <= 2, "\(result.snapshots)")
        #expect(result.snapshots.last! >= result.lastWrite, "the last backup misses writes")
        // Backups are at least minInterval apart.
        for (a, b) in zip(result.snapshots, result.snapshots.dropFirst()) {
            #expect(b.timeIntervalSince(a) >= TimeInterval(minInterval))
        }
        if backupBefore == nil || backupBefore! >= minInterval {
            #expect(result.snapshots.first == start, "the first change is backed up at once")
        }
    }
}

/// An instant from RFC 3339 text (fractional seconds allowed).
private func parseTime(_ text: String) -> Date {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = text.contains(".") ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
    guard let date = formatter.date(from: text) else { fatalError("bad test timestamp \(text)") }
    return date
}
