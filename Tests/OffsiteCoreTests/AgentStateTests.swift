import Foundation
import Testing
@testable import OffsiteCore

/// 2026-11-22T03:17:00Z plus `seconds`.
private func at(_ seconds: TimeInterval) -> Date {
    Date(timeIntervalSince1970: 1_795_317_420 + seconds)
}

/// A state with two databases: `crm` healthy on `s3` and failing on `nas`, `ledger` with no history.
func sampleAgentState() -> AgentState {
    var state = AgentState()
    state.recordStart(at: at(-7500), pid: 4242)
    state.recordDatabase("crm", path: "/data/crm.db", at: at(-7500))
    state.recordChange(of: "crm", at: at(-300))
    state.recordSnapshot(of: "crm", SnapshotRecord(time: at(-240), backupID: "20261122T031300Z-change",
                                                   bytes: 1_258_291, pageCount: 307, pageSize: 4096))
    state.recordSuccess(database: "crm", target: "s3", at: at(-235), backupID: "20261122T031300Z-change", bytes: 402_653)
    state.recordNextRun(database: "crm", target: "s3", at: at(3360), now: at(-235))
    state.recordListing(database: "crm", target: "s3",
                        TargetListing(time: at(-230), objectCount: 34, storedBytes: 42_046_259))
    state.recordVerify(database: "crm", target: "s3",
                       VerifyResult(time: at(-86_400), backupID: "20261121T031700Z-scheduled", ok: true))
    for minutes in [3.0, 2.0, 1.0] {
        state.recordFailure(database: "crm", target: "nas", at: at(-60 * minutes),
                            reason: "connect to nas.example:443 failed:\nConnection refused")
    }
    state.recordNextRun(database: "crm", target: "nas", at: at(-5), now: at(-60))
    state.recordDatabase("ledger", path: "/data/ledger.sqlite", at: at(-100))
    return state
}

@Suite struct AgentStateTests {
    // MARK: Recording

    @Test func successesAndFailuresAreCounted() {
        var state = AgentState()
        #expect(state.recordFailure(database: "crm", target: "s3", at: at(0), reason: "HTTP 503") == 1)
        #expect(state.recordFailure(database: "crm", target: "s3", at: at(60), reason: "HTTP 503") == 2)
        let target = try! #require(state.target("s3", of: "crm"))
        #expect(target.consecutiveFailures == 2 && target.failureCount == 2 && target.isFailing)
        #expect(target.firstSeenAt == at(0))
        // The first success after failures is a recovery ending two failures.
        #expect(state.recordSuccess(database: "crm", target: "s3", at: at(120), backupID: "x", bytes: 10) == 2)
        #expect(state.recordSuccess(database: "crm", target: "s3", at: at(180), backupID: "y", bytes: 11) == 0)
        let after = try! #require(state.target("s3", of: "crm"))
        #expect(after.consecutiveFailures == 0 && after.successCount == 2 && after.failureCount == 2 && !after.isFailing)
        #expect(after.lastSuccess == BackupSuccess(time: at(180), backupID: "y", bytes: 11))
        #expect(after.lastFailure?.time == at(60), "the last failure stays on record")
        #expect(state.target("nas", of: "crm") == nil && state.target("s3", of: "other") == nil)
    }

    @Test func startsKeepTheFirstStartTime() {
        var state = AgentState()
        state.recordStart(at: at(0), pid: 10)
        state.recordStart(at: at(500), pid: 11)
        #expect(state.firstStartedAt == at(0) && state.agentStartedAt == at(500) && state.agentPID == 11)
    }

    @Test func databasesKeepTheirFirstSightingAndLatestPath() {
        var state = AgentState()
        state.recordDatabase("crm", path: "/old/crm.db", at: at(0))
        state.recordDatabase("crm", path: "/data/crm.db", at: at(100))
        #expect(state.databases["crm"]?.firstSeenAt == at(0) && state.databases["crm"]?.path == "/data/crm.db")
    }

    @Test func failureReasonsAreOneShortLine() {
        var state = AgentState()
        state.recordFailure(database: "crm", target: "s3", at: at(0), reason: "  first line\n\tsecond\r\nthird  ")
        #expect(state.target("s3", of: "crm")?.lastFailure?.reason == "first line second third")
        state.recordFailure(database: "crm", target: "s3", at: at(1), reason: String(repeating: "x", count: 1000))
        let long = state.target("s3", of: "crm")!.lastFailure!.reason
        #expect(long.count == 300 && long.hasSuffix("…"))
        state.recordVerify(database: "crm", target: "s3", VerifyResult(time: at(2), backupID: "b", ok: false, reason: "a\nb"))
        #expect(state.target("s3", of: "crm")?.lastVerify?.reason == "a b")
    }

    // MARK: The state file

    @Test func aMissingFileIsAnEmptyState() throws {
        let folder = try ScratchFolder("state")
        let store = StateStore(folder: folder.path)
        let loaded = store.load()
        #expect(loaded.state == AgentState() && loaded.warning == nil)
        #expect(try folder.names().isEmpty, "loading creates nothing")
    }

    @Test func savedStateLoadsBackEqualWithPrivatePermissions() throws {
        let folder = try ScratchFolder("state")
        var state = sampleAgentState()
        state.recordChange(of: "crm", at: Date(timeIntervalSince1970: 1_795_317_420.25))
        try StateStore(folder: folder.path).save(state)
        #expect(try folder.names() == [".offsite-state.json", StateStore.lockFileName], "no temporary file left")
        #expect(try permissions(of: folder.file(".offsite-state.json")) == 0o600)
        let loaded = StateStore(folder: folder.path).load()
        #expect(loaded.warning == nil)
        #expect(loaded.state == state)
        let text = try String(contentsOfFile: folder.file(".offsite-state.json"), encoding: .utf8)
        #expect(text.contains(#""lastChangeAt" : "2026-11-22T03:17:00.250Z""#))
    }

    @Test func aFolderThatDoesNotExistYetIsCreatedPrivate() throws {
        let folder = try ScratchFolder("state")
        let nested = folder.file("backups")
        try StateStore(folder: nested).save(sampleAgentState())
        #expect(try permissions(of: nested) == 0o700)
        #expect(StateStore(folder: nested).load().state == sampleAgentState())
    }

    @Test(arguments: ["", "{", "not json at all", #"{"version": 1}"#, #"{"version": 1, "databases": []}"#,
                      #"{"version": 1, "databases": {}, "agentStartedAt": "yesterday"}"#])
    func aCorruptFileIsAnEmptyStateAndAWarning(content: String) throws {
        let folder = try ScratchFolder("state")
        try content.write(toFile: folder.file(".offsite-state.json"), atomically: false, encoding: .utf8)
        let store = StateStore(folder: folder.path)
        let loaded = store.load()
        #expect(loaded.state == AgentState())
        let warning = try #require(loaded.warning)
        #expect(warning.contains("corrupt") && warning.contains(".offsite-state.json"))
        // The next save replaces the bad file.
        try store.update { $0.recordStart(at: at(0), pid: 1) }
        #expect(StateStore(folder: folder.path).load().warning == nil)
    }

    @Test func anUnreadableFileIsAWarning() throws {
        guard getuid() != 0 else {
            // root reads everything; check the folder case instead, which no one can read as a file.
            let folder = try ScratchFolder("state")
            try FileManager.default.createDirectory(atPath: folder.file(".offsite-state.json"), withIntermediateDirectories: false)
            let loaded = StateStore(folder: folder.path).load()
            #expect(loaded.state == AgentState() && loaded.warning != nil)
            return
        }
        let folder = try ScratchFolder("state")
        try "{}".write(toFile: folder.file(".offsite-state.json"), atomically: false, encoding: .utf8)
        chmod(folder.file(".offsite-state.json"), 0)
        let loaded = StateStore(folder: folder.path).load()
        #expect(loaded.state == AgentState() && loaded.warning?.contains("cannot read") == true)
    }

    @Test func unknownKeysFromANewerVersionAreIgnored() throws {
        let folder = try ScratchFolder("state")
        var data = try StateStore.encode(sampleAgentState())
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        object["somethingNew"] = ["x": 1]
        data = try JSONSerialization.data(withJSONObject: object)
        try data.write(to: URL(fileURLWithPath: folder.file(".offsite-state.json")))
        let loaded = StateStore(folder: folder.path).load()
        #expect(loaded.warning == nil && loaded.state == sampleAgentState())
    }

    @Test func concurrentUpdatesAreSerialised() throws {
        let folder = try ScratchFolder("state")
        let store = StateStore(folder: folder.path)
        let threads = 4, perThread = 10
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<perThread {
                try! store.update { state in
                    state.recordSuccess(database: "db\(thread % 2)", target: "t\(thread)", at: at(Double(index)),
                                        backupID: "id\(index)", bytes: Int64(index))
                }
            }
        }
        let loaded = StateStore(folder: folder.path).load().state
        #expect(loaded == store.current)
        let counts = (0..<threads).map { loaded.target("t\($0)", of: "db\($0 % 2)")?.successCount }
        #expect(counts == Array(repeating: perThread, count: threads))
        #expect(try folder.names() == [".offsite-state.json", StateStore.lockFileName])
    }

    @Test func aThrowingUpdateChangesNothing() throws {
        let folder = try ScratchFolder("state")
        let store = StateStore(folder: folder.path)
        try store.update { $0.recordStart(at: at(0), pid: 1) }
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try store.update { state in
                state.recordStart(at: at(100), pid: 2)
                throw Stop()
            }
        }
        #expect(store.current.agentPID == 1)
        #expect(StateStore(folder: folder.path).load().state.agentPID == 1)
        let result = try store.update { $0.recordFailure(database: "a", target: "b", at: at(5), reason: "r") }
        #expect(result == 1)
    }

    @Test func staleTemporaryFilesAreRemoved() throws {
        let folder = try ScratchFolder("state")
        let temporary = makeTemporaryPath(nextTo: folder.file(".offsite-state.json"))
        try "x".write(toFile: temporary, atomically: false, encoding: .utf8)
        try "y".write(toFile: folder.file(".offsite-state.json"), atomically: false, encoding: .utf8)
        try "keep".write(toFile: folder.file("other.tmp-1"), atomically: false, encoding: .utf8)
        StateStore(folder: folder.path).removeStaleTemporaryFiles()
        #expect(try folder.names() == [".offsite-state.json", "other.tmp-1"])
    }

    // MARK: Status

    @Test func statusTableShowsSuccessFailureAndNextRun() {
        let table = renderStatusTable(sampleAgentState(), now: at(0))
        let expected = """
        agent: pid 4242, started 2h 5m ago (2026-11-22T01:12:00Z)

        crm  /data/crm.db
          changed 5m ago; snapshot 4m ago 20261122T031300Z-change, 1.2 MiB (307 pages of 4096 B)
          TARGET  LAST SUCCESS                    NEXT RUN  OK  FAILED  STORED
          nas     never                           due now    0       3  -
                  failing (3 in a row), 1m ago: connect to nas.example:443 failed: Connection refused
          s3      3m ago 20261122T031300Z-change  in 56m     1       0  40.1 MiB in 34
                  verified 1d ago 20261121T031700Z-scheduled: ok

        ledger  /data/ledger.sqlite
          no snapshot yet
          no off-site backups tried yet

        """
        #expect(table == expected, "\n\(table)")
    }

    @Test func statusTableFitsOneHundredColumns() {
        var state = sampleAgentState()
        state.recordFailure(database: "crm", target: "a-rather-long-target-name", at: at(-10),
                            reason: String(repeating: "very long reason ", count: 30))
        state.recordSuccess(database: "crm", target: "a-rather-long-target-name", at: at(-200_000),
                            backupID: "20261119T000000Z-pre-restore", bytes: 5_000_000_000_000)
        state.recordListing(database: "crm", target: "a-rather-long-target-name",
                            TargetListing(time: at(0), objectCount: 123_456, storedBytes: 5_000_000_000_000))
        let table = renderStatusTable(state, now: at(0))
        for line in table.split(separator: "\n") { #expect(line.count <= 100, "\(line.count): \(line)") }
        #expect(table.contains("2d 7h ago 20261119T000000Z-pre-restore"))
        #expect(table.contains("4.5 TiB in 123456"))
    }

    @Test func statusTableOfAnEmptyState() {
        #expect(renderStatusTable(AgentState(), now: at(0)) == "agent: has not run yet\n\nno databases recorded yet\n")
    }

    @Test func statusJSONHasStableKeysAndISOTimes() throws {
        let json = renderStatusJSON(sampleAgentState())
        #expect(json == renderStatusJSON(sampleAgentState()))
        let root = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let agent = try #require(root["agent"] as? [String: Any])
        #expect(agent["pid"] as? Int == 4242 && agent["startedAt"] as? String == "2026-11-22T01:12:00Z")
        let databases = try #require(root["databases"] as? [[String: Any]])
        #expect(databases.map { $0["name"] as? String } == ["crm", "ledger"])
        #expect(databases[1]["lastSnapshot"] is NSNull && databases[1]["lastChangeAt"] is NSNull)
        let targets = try #require(databases[0]["targets"] as? [[String: Any]])
        #expect(targets.map { $0["name"] as? String } == ["nas", "s3"])
        #expect(Set(targets[0].keys) == ["name", "firstSeenAt", "lastSuccess", "lastFailure", "consecutiveFailures",
                                         "successCount", "failureCount", "nextRunAt", "listing", "lastVerify",
                                         "oldestUnshippedChange", "replicationLagSeconds"])
        #expect(targets[0]["replicationLagSeconds"] is NSNull, "no chain of changes: no lag")
        #expect(targets[0]["lastSuccess"] is NSNull && targets[0]["consecutiveFailures"] as? Int == 3)
        let failure = try #require(targets[0]["lastFailure"] as? [String: Any])
        #expect(failure["time"] as? String == "2026-11-22T03:16:00Z")
        let success = try #require(targets[1]["lastSuccess"] as? [String: Any])
        #expect(success["backupId"] as? String == "20261122T031300Z-change" && success["bytes"] as? Int == 402_653)
        #expect(json.contains(#""path" : "/data/crm.db""#), "slashes are not escaped")
        // Keys come out sorted, so the text is stable.
        let agentRange = try #require(json.range(of: #""agent""#)), databasesRange = try #require(json.range(of: #""databases""#))
        #expect(agentRange.lowerBound < databasesRange.lowerBound)
    }

    @Test(arguments: [
        (0.0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (3660, "1h 1m"), (86_399, "23h 59m"),
        (86_400, "1d"), (90_000, "1d 1h"), (-300, "5m"),
    ])
    func spans(seconds: Double, text: String) {
        #expect(formatSpan(seconds) == text)
    }

    @Test(arguments: [(Int64(0), "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
                      (42_046_259, "40.1 MiB"), (5_000_000_000_000, "4.5 TiB")])
    func sizes(bytes: Int64, text: String) {
        #expect(formatBytes(bytes) == text)
    }
}
