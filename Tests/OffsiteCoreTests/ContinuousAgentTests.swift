import Foundation
import Testing
@testable import OffsiteCore

/// Continuous protection through `offsite run`, end to end: an application commits in bursts,
/// the agent ships every committed change within seconds, and `offsite restore --at` a moment in
/// the pause between two bursts gives exactly what had been committed by then.
@Suite struct ContinuousAgentTests {
    /// Commits `bursts` bursts of 10 transactions (each adds one row and bumps a counter), a pause of
    /// 600 ms after each, and logs the time of every commit with the counter's value.
    static let writer = #"""
        import sqlite3, sys, time
        path, bursts, log = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "w")
        db = sqlite3.connect(path, isolation_level=None, timeout=5)
        n = db.execute("SELECT n FROM counter").fetchone()[0]
        for burst in range(bursts):
            for _ in range(10):
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO notes(body) VALUES (?)", ("row %d %s" % (n, "y" * 500),))
                db.execute("UPDATE counter SET n = n + 1")
                db.execute("COMMIT")
                n += 1
                log.write("%d %d\n" % (int(time.time() * 1000), n)); log.flush()
                time.sleep(0.01)
            time.sleep(0.6)
        """#

    @Test(arguments: AgentTargetKind.allCases)
    func everyCommitIsShippedAndRestorableToAMomentBetweenBursts(kind: AgentTargetKind) async throws {
        let workspace = try AgentWorkspace("continuous", kind: kind)
        let live = "\(workspace.dataFolder)/app.db"
        do {
            let setup = try SQLiteDatabase(path: live, mode: .create)
            try setup.execute("""
                PRAGMA journal_mode = WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
                CREATE TABLE counter(n INTEGER); INSERT INTO counter VALUES (0);
                """)
        }
        try workspace.writeConfig(extra: ["continuous": ["interval": "1s", "maxChain": 1000] as [String: Any],
                                          "schedule": ["every": "1h", "startup": false, "shutdown": false]])
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("changes.chain", timeout: 30)

        let log = workspace.folder.file("commits.log")
        let run = try runTool("python3", ["-c", Self.writer, live, "6", log], in: workspace.folder)
        try #require(run.status == 0, "\(run.standardError)")
        let commits = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map { line -> (Int64, Int) in
            let parts = line.split(separator: " ")
            return (Int64(parts[0])!, Int(parts[1])!)
        }
        try #require(commits.count == 60)
        // Every change reaches the target within a few seconds of its commit.
        let target = try workspace.makeTestTarget()
        let lastCommit = commits.last!.0
        try await eventually(timeout: 15, "the last commit on the target") { () -> Bool? in
            let listing = try listBackupsAndChanges(on: target, database: "app")
            return listing.changes.contains { $0.name.lastCommit >= lastCommit - 50 } ? true : nil
        }

        // Moments in the middle of each pause between bursts: what was committed by then.
        for burst in 0..<5 {
            let lastOfBurst = commits[burst * 10 + 9]
            let moment = Date(timeIntervalSince1970: Double(lastOfBurst.0 + 300) / 1000)
            let output = workspace.folder.file("at-\(burst).db")
            let restore = try workspace.offsite(["restore", "--db", "app", "--target", workspace.targetName,
                                                 "--at", formatISO8601(moment, milliseconds: true), "--output", output])
            #expect(restore.status == 0, "\(restore.standardError)")
            #expect(try sqlite3(output, "SELECT n FROM counter", in: workspace.folder) == String(lastOfBurst.1), "burst \(burst)")
            #expect(try sqlite3(output, "PRAGMA integrity_check", in: workspace.folder) == "ok")
        }
        let status = StateStore(folder: workspace.localFolder).load().state
        #expect((status.databases["app"]?.chain?.objects ?? 0) >= 3, "the changes came in several objects, one per second at most")
        #expect(try await agent.terminate() == 0)
        #expect(agent.events("changes.gap").isEmpty, "\(agent.log.suffix(3000))")
    }

    @Test func aDatabaseNotInWALModeGetsFullBackupsOnlyAndStatusSaysWhy() async throws {
        let workspace = try AgentWorkspace("continuous-rollback")
        let path = "\(workspace.dataFolder)/plain.db"
        try SQLiteDatabase(path: path, mode: .create).execute("PRAGMA journal_mode = DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        try workspace.writeConfig(startup: true, extra: ["continuous": [:] as [String: Any]])
        let agent = try AgentProcess(workspace)
        let off = try await agent.waitFor("changes.off")
        #expect(off["reason"]?.contains("not in WAL mode") == true)
        try await agent.waitFor("backup.done")
        try await eventually(timeout: 10, "the reason in the state") { () -> Bool? in
            StateStore(folder: workspace.localFolder).load().state.databases["plain"]?.continuity != nil ? true : nil
        }
        let status = try workspace.offsite(["status"])
        #expect(status.standardOutput.contains("not shipped continuously"), "\(status.standardOutput)")
        #expect(try await agent.terminate() == 0)
    }
}
