import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// Restore temporaries are full-size plaintext copies: one that a killed restore left behind is
/// removed when the agent starts; one still in use never is. A restore drill stops when the agent
/// is asked to, within its shutdownTimeout.
@Suite struct RestoreLeftoverTests {
    @Test func temporaryNamesAreRecognisedExactly() {
        for name in [".crm.restore-1f2e.tmp", ".crm.restore-abc.tmp-wal", ".my.db.restore-0.tmp-journal"] {
            #expect(RestoredFile.isTemporaryName(name), "\(name)")
        }
        for name in ["crm.restore-1f2e.tmp", ".crm.restore-.tmp", ".crm.restore-xyz.tmp", ".crm.restore-1f.tmp.bak", "crm.db"] {
            #expect(!RestoredFile.isTemporaryName(name), "\(name)")
        }
    }

    @Test func onlyTemporariesNoProcessHoldsAreRemoved() throws {
        let folder = try ScratchFolder("leftovers")
        let held = folder.file(".crm.restore-aaaa.tmp")
        let abandoned = folder.file(".crm.restore-bbbb.tmp")
        let unrelated = folder.file(".crm.something.tmp")
        for path in [held, abandoned, unrelated] { try Data("x".utf8).write(to: URL(fileURLWithPath: path)) }
        // A restore in progress holds its temporary with an flock (another open file description).
        let holder = open(held, O_RDONLY)
        defer { close(holder) }
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        #expect(removeStaleRestoreTemporaries(in: folder.path, olderThan: 60).isEmpty, "younger than a minute: kept")
        #expect(removeStaleRestoreTemporaries(in: folder.path, olderThan: 0) == [".crm.restore-bbbb.tmp"])
        #expect(try folder.names() == [".crm.restore-aaaa.tmp", ".crm.something.tmp"])
    }

    @Test func theAgentRemovesWhatAKilledRestoreLeftBehind() async throws {
        let workspace = try AgentWorkspace("restore-leftover")
        let crm = try workspace.addDatabase("crm")
        try workspace.writeConfig(startup: true)
        let first = try AgentProcess(workspace, label: "first")
        try await first.waitFor("backup.done")
        #expect(try await first.terminate() == 0)

        // kill -9 of a restore right after it downloaded and checked its temporary.
        let restore = try OffsiteCoreTests.offsite(["restore", "--config", workspace.configPath, "--db", "crm",
                                                    "--in-place", "--yes"], in: workspace.folder,
                                                   environment: [CrashPoint.variable: "restore.fetched"])
        #expect(restore.status == SIGKILL)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: workspace.dataFolder).filter(RestoredFile.isTemporaryName)
        try #require(leftovers.count == 1, "\(leftovers)")
        #expect(try fileSize(at: "\(workspace.dataFolder)/\(leftovers[0])") == (try fileSize(at: crm)))

        let second = try AgentProcess(workspace, label: "second")
        let removed = try await second.waitFor("leftovers.removed")
        #expect(removed["file"] == "\(workspace.dataFolder)/\(leftovers[0])")
        #expect(try FileManager.default.contentsOfDirectory(atPath: workspace.dataFolder).filter(RestoredFile.isTemporaryName).isEmpty)
        #expect(try await second.terminate() == 0)
    }

    @Test func aRestoreDrillStopsWithinTheShutdownTimeout() async throws {
        let workspace = try AgentWorkspace("drill-stop", kind: .s3)
        try workspace.addDatabase("crm")
        let proxy = try FaultyProxy(inFrontOf: try S3TestServer.shared(.rclone), mode: .slow)
        defer { proxy.stop() }
        try workspace.writeConfig(startup: true, target: ["endpoint": "http://127.0.0.1:\(proxy.port)"],
                                  extra: ["verify": ["every": "1s"], "shutdownTimeout": "2s"])
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("backup.done", timeout: 30)
        // The drill downloads at 8 KiB/s: it would take minutes to finish.
        try #require(try workspace.backups(of: "crm").first.map { $0.size > 512 << 10 } == true)
        // Watching for the drill and signalling happen on a thread of their own: the concurrency
        // pool may be busy with other tests for seconds, which would move the signal past the drill.
        let (took, drillsBefore) = try await onThread { () -> (TimeInterval, Int) in
            let deadline = Date().addingTimeInterval(30)
            while agent.events("verify.start").count <= agent.events("verify.done").count + agent.events("verify.failed").count {
                guard Date() < deadline else { throw TestFailure("no drill started: \(agent.log.suffix(2000))") }
                Thread.sleep(forTimeInterval: 0.05)
            }
            Thread.sleep(forTimeInterval: 0.5)
            let finished = agent.events("verify.done").count
            let asked = Date()
            agent.send(SIGTERM)
            agent.process.waitUntilExit()
            return (Date().timeIntervalSince(asked), finished)
        }
        #expect(agent.process.terminationStatus == 0)
        #expect(took < 2 + 2, "stopped \(String(format: "%.1f", took)) s after SIGTERM with shutdownTimeout 2s")
        #expect(agent.events("verify.done").count == drillsBefore, "the drill in progress did not finish")
        #expect(AgentWorkspace.temporaryFiles(under: workspace.localFolder).isEmpty,
                "\(AgentWorkspace.temporaryFiles(under: workspace.localFolder))")
    }
}
