import Foundation
import Testing
@testable import OffsiteCore

/// The agent's decisions as tables: fixed clocks, sequences of events, expected actions. No
/// process, no sleeping: what the end-to-end tests of `offsite run` used to check by waiting.
@Suite struct PlannerTests {
    static let utc = TimeZone(identifier: "UTC")!

    static func time(_ text: String) -> Date { parseISO8601(text)! }

    /// "every 1h" target `usb` that follows changes, and a nightly cron target `s3`.
    static func settings(every: Duration = .seconds(3600), minInterval: Duration = .seconds(300), startup: Bool = false,
                         shutdown: Bool = false, verifyEvery: Duration? = nil, cron: Bool = true) -> PlannerSettings {
        var targets = [PlannerSettings.Target(name: "usb", schedule: .every(every), followsChanges: true, prunes: true)]
        if cron {
            targets.append(.init(name: "s3", schedule: .cron(try! CronExpression(parsing: "0 2 * * *"), utc), followsChanges: false))
        }
        return PlannerSettings(targets: targets, minInterval: minInterval, verifyEvery: verifyEvery, startup: startup, shutdown: shutdown)
    }

    /// A planner at `now` with one database `crm`, seeded from `state`.
    static func planner(_ settings: PlannerSettings, state: AgentState = AgentState(), now: String) -> AgentPlanner {
        var planner = AgentPlanner(settings: settings, state: state, now: time(now))
        _ = planner.found("crm", path: "/data/crm.db", at: time(now), isNew: false)
        _ = planner.start(pid: 7)
        return planner
    }

    /// A successful backup of `crm` to `targets`, snapshot at `at`.
    static func success(_ planner: inout AgentPlanner, _ kind: BackupKind, to targets: [String], at: String)
        -> (changes: [StateChange], actions: [AgentAction], recoveredAfter: [String: Int]) {
        let date = time(at)
        let id = BackupID(date: date, kind: kind).description
        return planner.finished(BackupOutcome(
            item: "crm", kind: kind, generation: planner.generation(of: "crm"), startedAt: date, finishedAt: date.addingTimeInterval(2),
            snapshot: SnapshotRecord(time: date, backupID: id, bytes: 10, pageCount: 1, pageSize: 4096), backupID: id,
            uploads: targets.map { BackupOutcome.Upload(target: $0, bytes: 5) }))
    }

    // MARK: Schedules and restarts

    @Test(arguments: [
        // (last scheduled run in the state, agent starts at, expected next run of `usb` (every 1h))
        (nil, "2026-11-22T10:00:00Z", "2026-11-22T11:00:00Z"),                          // never ran: one period after the start
        ("2026-11-22T09:30:00Z", "2026-11-22T10:00:00Z", "2026-11-22T10:30:00Z"),        // continues from the last run
        ("2026-11-21T09:30:00Z", "2026-11-22T10:00:00Z", "2026-11-21T10:30:00Z"),        // missed: due at once (in the past)
    ] as [(String?, String, String)])
    func everyContinuesFromTheLastRunAfterARestart(lastRun: String?, start: String, expected: String) {
        var state = AgentState()
        if let lastRun { state.apply(.scheduledRun(target: "usb", at: Self.time(lastRun))) }
        let planner = Self.planner(Self.settings(), state: state, now: start)
        #expect(planner.nextScheduledRun(of: planner.settings.targets[0]) == Self.time(expected))
    }

    @Test func aMissedCronSlotIsMadeUpOnceAtStartThenTheScheduleGoesOn() {
        var state = AgentState()
        state.apply(.scheduledRun(target: "s3", at: Self.time("2026-11-20T02:00:00Z")))
        state.apply(.scheduledRun(target: "usb", at: Self.time("2026-11-22T03:00:00Z")))
        var planner = Self.planner(Self.settings(), state: state, now: "2026-11-22T03:17:00Z")
        // Two nights were missed: one scheduled backup to s3, at once.
        let due = planner.due(at: Self.time("2026-11-22T03:17:00Z"))
        #expect(due.actions == [.backup(item: "crm", targets: ["s3"], kind: .scheduled)])
        #expect(due.changes.contains(.scheduledRun(target: "s3", at: Self.time("2026-11-22T03:17:00Z"))))
        _ = Self.success(&planner, .scheduled, to: ["s3"], at: "2026-11-22T03:17:00Z")
        // Nothing more is due until the next slot, and the next run is tomorrow night, not replayed.
        #expect(planner.due(at: Self.time("2026-11-22T03:17:30Z")).actions.isEmpty)
        #expect(planner.nextScheduledRun(of: planner.settings.targets[1]) == Self.time("2026-11-23T02:00:00Z"))
        #expect(planner.nextDeadline() == Self.time("2026-11-22T04:00:00Z"), "usb's hourly run comes first")
    }

    @Test func anUnchangedDatabaseGetsNoNewScheduledBackupOnceATargetHoldsIt() {
        var planner = Self.planner(Self.settings(cron: false), now: "2026-11-22T10:00:00Z")
        // After a restart the target may be behind: the first scheduled run ships.
        #expect(planner.due(at: Self.time("2026-11-22T11:00:00Z")).actions == [.backup(item: "crm", targets: ["usb"], kind: .scheduled)])
        _ = Self.success(&planner, .scheduled, to: ["usb"], at: "2026-11-22T11:00:00Z")
        #expect(planner.due(at: Self.time("2026-11-22T12:00:00Z")).actions.isEmpty, "no change since: nothing to ship")
        _ = planner.changed("crm", at: Self.time("2026-11-22T12:10:00Z"))
        _ = Self.success(&planner, .change, to: ["usb"], at: "2026-11-22T12:15:00Z")
        #expect(planner.due(at: Self.time("2026-11-22T13:00:00Z")).actions.isEmpty)
    }

    // MARK: Changes

    @Test func aBurstOfChangesGivesAtMostTwoBackupsAndTheLastHoldsItAll() {
        var planner = Self.planner(Self.settings(minInterval: .seconds(300), cron: false), now: "2026-11-22T10:00:00Z")
        _ = Self.success(&planner, .scheduled, to: ["usb"], at: "2026-11-22T10:00:00Z")
        // The first change after a quiet time is shipped at once.
        _ = planner.changed("crm", at: Self.time("2026-11-22T10:10:00Z"))
        #expect(planner.changeDueAt("crm") == Self.time("2026-11-22T10:10:00Z"))
        #expect(planner.due(at: Self.time("2026-11-22T10:10:00Z")).actions == [.backup(item: "crm", targets: ["usb"], kind: .change)])
        _ = Self.success(&planner, .change, to: ["usb"], at: "2026-11-22T10:10:00Z")
        // A burst right after: one more backup, minInterval after the last one, holding the burst.
        for second in 1...120 {
            _ = planner.changed("crm", at: Self.time("2026-11-22T10:10:00Z").addingTimeInterval(Double(second)))
            #expect(planner.due(at: Self.time("2026-11-22T10:10:00Z").addingTimeInterval(Double(second))).actions.isEmpty)
        }
        #expect(planner.changeDueAt("crm") == Self.time("2026-11-22T10:15:00Z"))
        #expect(planner.due(at: Self.time("2026-11-22T10:15:00Z")).actions == [.backup(item: "crm", targets: ["usb"], kind: .change)])
        _ = Self.success(&planner, .change, to: ["usb"], at: "2026-11-22T10:15:00Z")
        #expect(planner.changeDueAt("crm") == nil, "the burst is covered")
        #expect(planner.due(at: Self.time("2026-11-22T10:20:00Z")).actions.isEmpty)
    }

    @Test(arguments: [
        // (schedule.onChange in the configuration, expected actions at the change)
        (#""onChange": {"minInterval": "5m"}"#, [AgentAction.backup(item: "crm", targets: ["usb"], kind: .change)]),
        (#""onChange": true"#, [AgentAction.backup(item: "crm", targets: ["usb"], kind: .change)]),
        (#""onChange": false"#, []),
    ] as [(String, [AgentAction])])
    func onChangeFalseMeansChangesCauseNoBackups(onChange: String, expected: [AgentAction]) throws {
        let json = #"{"databases": [{"path": "/data/crm.db"}], "encryption": "none", "#
            + #""schedule": {"every": "1h", "startup": false, "shutdown": false, \#(onChange)}, "#
            + #""targets": [{"name": "usb", "url": "file:///mnt/usb"}]}"#
        let config = try OffsiteConfig.parse(data: Data(json.utf8), environment: [:], baseDirectory: "/etc/offsite")
        var planner = Self.planner(try PlannerSettings(config: config), now: "2026-11-22T10:00:00Z")
        _ = planner.changed("crm", at: Self.time("2026-11-22T10:00:05Z"))
        #expect(planner.due(at: Self.time("2026-11-22T10:00:05Z")).actions == expected)
        #expect((planner.changeDueAt("crm") == nil) == expected.isEmpty)
        // The schedule still runs either way.
        #expect(!planner.due(at: Self.time("2026-11-22T11:00:00Z")).actions.isEmpty)
    }

    @Test func aChangeThatRacedTheSnapshotStaysPending() {
        var planner = Self.planner(Self.settings(minInterval: .seconds(60), cron: false), now: "2026-11-22T10:00:00Z")
        _ = planner.changed("crm", at: Self.time("2026-11-22T10:00:10Z"))
        let generation = planner.generation(of: "crm")
        // A write lands after the snapshot's read transaction began, before the outcome is in.
        _ = planner.changed("crm", at: Self.time("2026-11-22T10:00:11Z"))
        let id = "20261122T100010Z-change"
        _ = planner.finished(BackupOutcome(item: "crm", kind: .change, generation: generation, startedAt: Self.time("2026-11-22T10:00:10Z"),
                                           finishedAt: Self.time("2026-11-22T10:00:12Z"),
                                           snapshot: SnapshotRecord(time: Self.time("2026-11-22T10:00:10.500Z"), backupID: id, bytes: 1,
                                                                    pageCount: 1, pageSize: 4096),
                                           backupID: id, uploads: [.init(target: "usb", bytes: 1)]))
        #expect(planner.hasNews("crm", for: "usb"), "the later write is not on the target yet")
        #expect(planner.changeDueAt("crm") == Self.time("2026-11-22T10:01:10.500Z"))
    }

    @Test func changesGoOnlyToTargetsWithoutASchedule() {
        // usb follows changes; s3 only gets its nightly run.
        var planner = Self.planner(Self.settings(), now: "2026-11-22T10:00:00Z")
        _ = planner.changed("crm", at: Self.time("2026-11-22T10:05:00Z"))
        #expect(planner.due(at: Self.time("2026-11-22T10:05:00Z")).actions == [.backup(item: "crm", targets: ["usb"], kind: .change)])
        // With every target on its own schedule, a change goes to the local rotation alone.
        var cronOnly = AgentPlanner(settings: PlannerSettings(targets: [.init(name: "s3", schedule: .cron(try! CronExpression(parsing: "0 2 * * *"), Self.utc),
                                                                               followsChanges: false)]),
                                    state: AgentState(), now: Self.time("2026-11-22T10:00:00Z"))
        _ = cronOnly.found("crm", path: "/data/crm.db", at: Self.time("2026-11-22T10:00:00Z"), isNew: false)
        _ = cronOnly.changed("crm", at: Self.time("2026-11-22T10:05:00Z"))
        #expect(cronOnly.due(at: Self.time("2026-11-22T10:05:00Z")).actions == [.backup(item: "crm", targets: [], kind: .change)])
    }

    @Test func aDatabaseThatAppearsWhileRunningIsBackedUpSoonAndGetsItsNextRuns() {
        var planner = Self.planner(Self.settings(cron: false), now: "2026-11-22T10:00:00Z")
        let changes = planner.found("fresh", path: "/data/fresh.db", at: Self.time("2026-11-22T10:30:00Z"), isNew: true)
        #expect(changes.contains(.nextRun("fresh", target: "usb", at: Self.time("2026-11-22T11:00:00Z"), now: Self.time("2026-11-22T10:30:00Z"))))
        #expect(planner.due(at: Self.time("2026-11-22T10:30:00Z")).actions == [.backup(item: "fresh", targets: ["usb"], kind: .change)])
    }

    // MARK: Continuous protection

    @Test func aContinuousDatabaseGetsNoFullBackupsOnChangeOnlyNewBasesAndItsSchedule() {
        var planner = Self.planner(Self.settings(), now: "2026-11-22T10:00:00Z")
        planner.setContinuous("crm", true)
        planner.baseNeeded("crm", reason: "the chain starts")
        #expect(planner.nextDeadline() == Self.time("2026-11-22T10:00:00Z"))
        // The base goes to the target that takes changes (usb), not to the nightly one.
        #expect(planner.due(at: Self.time("2026-11-22T10:00:00Z")).actions == [.backup(item: "crm", targets: ["usb"], kind: .change)])
        _ = Self.success(&planner, .change, to: ["usb"], at: "2026-11-22T10:00:01Z")
        #expect(!planner.needsBase("crm"))
        // Changes are shipped by the chain: no on-change full backup.
        _ = planner.changed("crm", at: Self.time("2026-11-22T10:05:00Z"))
        #expect(planner.changeDueAt("crm") == nil)
        #expect(planner.due(at: Self.time("2026-11-22T10:30:00Z")).actions.isEmpty)
        // The hourly schedule still takes full backups of a changed database.
        #expect(planner.due(at: Self.time("2026-11-22T11:00:00Z")).actions == [.backup(item: "crm", targets: ["usb"], kind: .scheduled)])
        _ = Self.success(&planner, .scheduled, to: ["usb"], at: "2026-11-22T11:00:00Z")
        // A broken chain asks for a new base at once, only once.
        planner.baseNeeded("crm", reason: "gap")
        planner.baseNeeded("crm", reason: "gap again")
        #expect(planner.due(at: Self.time("2026-11-22T11:10:00Z")).actions == [.backup(item: "crm", targets: ["usb"], kind: .change)])
        _ = Self.success(&planner, .change, to: ["usb"], at: "2026-11-22T11:10:00Z")
        #expect(planner.due(at: Self.time("2026-11-22T11:10:01Z")).actions.isEmpty)
    }

    // MARK: Failures

    // MARK: File sets

    /// A file set `uploads` beside the database, both changed at 10:05; then what is due when.
    @Test(arguments: [
        // (targets: "follow" = usb follows changes (every 1h) + s3 nightly; "scheduled" = s3 nightly only,
        //  moment asked, expected actions for `uploads`)
        ("follow", "2026-11-22T10:04:00Z", [String]()),                       // nothing changed yet
        ("follow", "2026-11-22T10:06:00Z", ["change usb"]),                   // the change goes where changes go (no backup before: at once)
        ("scheduled", "2026-11-22T10:10:00Z", [String]()),                    // no local rotation for a file set
        ("scheduled", "2026-11-23T02:00:00Z", ["scheduled s3"]),              // the schedule takes the change
    ] as [(String, String, [String])])
    func aFileSetIsAnItemOfItsOwnWithoutALocalRotation(targets: String, at: String, expected: [String]) {
        var settings = Self.settings(cron: true)
        if targets == "scheduled" { settings.targets.removeFirst() }
        var planner = AgentPlanner(settings: settings, state: AgentState(), now: Self.time("2026-11-22T10:00:00Z"))
        _ = planner.found("uploads", path: "/data/uploads", at: Self.time("2026-11-22T10:00:00Z"), isNew: false, isFileSet: true)
        _ = planner.start(pid: 7)
        if Self.time(at) >= Self.time("2026-11-22T10:05:00Z") { _ = planner.changed("uploads", at: Self.time("2026-11-22T10:05:00Z")) }
        let due = planner.due(at: Self.time(at)).actions
        let actions = due.compactMap { action -> String? in
            guard case let .backup(item, targets, kind, _) = action, item == "uploads" else { return nil }
            return ([kind.rawValue] + targets).joined(separator: " ")
        }
        #expect(actions == expected)
        // Once what was due is done, nothing is due in the past over and over (the loop would spin).
        for case let .backup(item, targets, kind, _) in due {
            let date = Self.time(at)
            let id = BackupID(date: date, kind: kind).description
            _ = planner.finished(BackupOutcome(item: item, kind: kind, generation: planner.generation(of: item), startedAt: date,
                                               finishedAt: date, snapshot: SnapshotRecord(time: date, backupID: id, bytes: 1, pageCount: 0, pageSize: 0),
                                               backupID: id, uploads: targets.map { BackupOutcome.Upload(target: $0, bytes: 1) }))
        }
        if let deadline = planner.nextDeadline() { #expect(deadline > Self.time(at)) }
        #expect(planner.state.databases["uploads"]?.isFileSet == true)
    }

    @Test func retriesBackOffAndTheBackOffSurvivesARestart() {
        var planner = Self.planner(Self.settings(cron: false), now: "2026-11-22T10:00:00Z")
        _ = planner.changed("crm", at: Self.time("2026-11-22T10:00:00Z"))
        for (attempt, delay) in [(1, 30.0), (2, 60), (3, 120)] {
            let at = Self.time("2026-11-22T10:00:00Z").addingTimeInterval(Double(attempt * 1000))
            let outcome = BackupOutcome(item: "crm", kind: .change, generation: planner.generation(of: "crm"), startedAt: at, finishedAt: at,
                                        snapshot: SnapshotRecord(time: at, backupID: "x", bytes: 1, pageCount: 1, pageSize: 4096),
                                        backupID: "x", uploads: [.init(target: "usb", failure: "target usb: connection refused")])
            _ = planner.finished(outcome)
            #expect(planner.retryAt("crm", target: "usb") == at.addingTimeInterval(delay), "after \(attempt) failure(s)")
            #expect(planner.due(at: at.addingTimeInterval(delay - 1)).actions.isEmpty)
        }
        let lastFailure = Self.time("2026-11-22T10:00:00Z").addingTimeInterval(3000)
        // A restart: the back-off continues from the saved state.
        let restarted = Self.planner(Self.settings(cron: false), state: planner.state, now: "2026-11-22T10:51:00Z")
        #expect(restarted.retryAt("crm", target: "usb") == lastFailure.addingTimeInterval(120))
        var again = restarted
        #expect(again.due(at: lastFailure.addingTimeInterval(120)).actions == [.backup(item: "crm", targets: ["usb"], kind: .scheduled)])
        // Capped at 15 minutes.
        #expect(AgentPlanner.retryDelay(afterFailures: 50) == 900)
    }

    @Test func aSuccessAfterFailuresEndsTheRetryAndSaysHowManyItEnded() {
        var planner = Self.planner(Self.settings(cron: false), now: "2026-11-22T10:00:00Z")
        let at = Self.time("2026-11-22T10:00:00Z")
        for _ in 0..<2 {
            _ = planner.finished(BackupOutcome(item: "crm", kind: .scheduled, generation: 0, startedAt: at, finishedAt: at, snapshot: nil,
                                               snapshotFailure: "database /data/crm.db stayed locked", uploads: [.init(target: "usb")]))
        }
        #expect(planner.state.target("usb", of: "crm")?.consecutiveFailures == 2)
        let result = Self.success(&planner, .scheduled, to: ["usb"], at: "2026-11-22T10:05:00Z")
        #expect(result.recoveredAfter == ["usb": 2])
        #expect(result.actions == [.prune(item: "crm", target: "usb")], "usb has a retention policy")
        #expect(planner.retryAt("crm", target: "usb") == nil)
    }

    @Test func aBackupByHandThatSucceededEndsTheAgentsRetry() {
        var planner = Self.planner(Self.settings(cron: false), now: "2026-11-22T10:00:00Z")
        let at = Self.time("2026-11-22T10:00:00Z")
        _ = planner.finished(BackupOutcome(item: "crm", kind: .change, generation: 0, startedAt: at, finishedAt: at, snapshot: nil,
                                           snapshotFailure: "locked", uploads: [.init(target: "usb")]))
        #expect(planner.retryAt("crm", target: "usb") != nil)
        var merged = planner.state
        merged.apply(.succeeded("crm", target: "usb", at: at.addingTimeInterval(10), backupID: "20261122T100010Z-manual", bytes: 1, seconds: 1))
        planner.adopt(merged)
        #expect(planner.retryAt("crm", target: "usb") == nil)
    }

    // MARK: Start, stop, drills, persistence

    @Test func startupAndShutdownBackupsGoToEveryTarget() {
        var planner = AgentPlanner(settings: Self.settings(startup: true, shutdown: true), state: AgentState(),
                                   now: Self.time("2026-11-22T10:00:00Z"))
        _ = planner.found("crm", path: "/data/crm.db", at: Self.time("2026-11-22T10:00:00Z"), isNew: false)
        let start = planner.start(pid: 1)
        #expect(start.actions == [.backup(item: "crm", targets: ["usb", "s3"], kind: .startup)])
        #expect(start.changes.first == .started(at: Self.time("2026-11-22T10:00:00Z"), pid: 1))
        _ = planner.changed("crm", at: Self.time("2026-11-22T10:01:00Z"))
        #expect(planner.stop() == [.backup(item: "crm", targets: ["usb", "s3"], kind: .shutdown)])
        #expect(planner.due(at: Self.time("2026-11-22T12:00:00Z")).actions.isEmpty, "nothing else once stopping")
        #expect(planner.nextDeadline() == nil)
    }

    @Test func drillsComeEveryIntervalCountedFromTheLastOne() {
        var state = AgentState()
        state.apply(.verified("crm", target: "usb", VerifyResult(time: Self.time("2026-11-22T09:00:00Z"), backupID: "x", ok: true)))
        var planner = Self.planner(Self.settings(verifyEvery: .seconds(7200), cron: false), state: state, now: "2026-11-22T10:00:00Z")
        #expect(planner.nextDrill() == Self.time("2026-11-22T11:00:00Z"))
        #expect(planner.due(at: Self.time("2026-11-22T11:00:00Z")).actions.contains(.drill))
        #expect(planner.nextDrill() == Self.time("2026-11-22T13:00:00Z"))
    }

    @Test func aChangeSeenIsAnObservationAndEverythingElseAnOutcome() {
        #expect(!StateChange.changed("crm", at: Date()).isOutcome)
        #expect(StateChange.failed("crm", target: "usb", at: Date(), reason: "x").isOutcome)
        #expect(StateChange.scheduledRun(target: "usb", at: Date()).isOutcome)
    }

    @Test func stagedChangesAreWrittenOntoWhatAnotherProcessWroteMeanwhile() throws {
        let folder = try ScratchFolder("stage")
        let agent = StateStore(folder: folder.path)
        _ = agent.load()
        agent.stage([.changed("crm", at: Self.time("2026-11-22T10:00:00Z")),
                     .failed("crm", target: "usb", at: Self.time("2026-11-22T10:00:01Z"), reason: "down")])
        #expect(!FileManager.default.fileExists(atPath: agent.path), "staged, not written")
        // `offsite backup` by hand records its success meanwhile.
        try StateStore(folder: folder.path).update {
            $0.recordSuccess(database: "crm", target: "s3", at: Self.time("2026-11-22T10:00:02Z"), backupID: "m", bytes: 3)
        }
        let written = try agent.flush()
        #expect(written.target("s3", of: "crm")?.successCount == 1)
        #expect(written.target("usb", of: "crm")?.failureCount == 1)
        #expect(written.databases["crm"]?.lastChangeAt == Self.time("2026-11-22T10:00:00Z"))
        #expect(StateStore(folder: folder.path).load().state == written)
    }
}
