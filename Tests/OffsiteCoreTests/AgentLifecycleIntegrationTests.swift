import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// `offsite run` started, stopped and killed as a process: SIGTERM takes the shutdown backup and
/// leaves nothing temporary behind; `kill -9` in the middle of an upload leaves no partial object
/// and the next run cleans up and succeeds; a second agent on the same local folder refuses to start.
@Suite struct AgentLifecycleIntegrationTests {
    @Test(arguments: AgentTargetKind.allCases)
    func sigtermTakesTheShutdownBackupExitsZeroAndLeavesNoTemporaryFiles(kind: AgentTargetKind) async throws {
        let workspace = try AgentWorkspace("sigterm", kind: kind)
        try workspace.addDatabase("crm")
        try workspace.writeConfig(startup: true, shutdown: true)
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("backup.done", where: { $0["db"] == "crm" })
        #expect(try workspace.backups(of: "crm").map(\.id.kind) == [.startup])

        let status = try await agent.terminate()
        #expect(status == 0, "exit status; log:\n\(agent.log)")
        let kinds = try workspace.backups(of: "crm").map(\.id.kind)
        #expect(kinds.sorted { $0.rawValue < $1.rawValue } == [.shutdown, .startup], "log:\n\(agent.log)")
        #expect(agent.events("agent.stop").count == 1)

        for folder in [workspace.dataFolder, workspace.localFolder, workspace.remoteFolder] {
            #expect(AgentWorkspace.temporaryFiles(under: folder) == [], "in \(folder)")
        }
        if kind == .s3 {
            let keys = try workspace.makeTestTarget().list(prefix: "").map(\.key)
            #expect(keys.allSatisfy { !$0.contains("tmp") && !($0 as NSString).lastPathComponent.hasPrefix(".") }, "\(keys)")
            #expect(try workspace.openUploads() == 0)
        }
    }

    @Test func afterARestartEveryContinuesFromTheLastRun() async throws {
        // every 6s; the agent is stopped about a second after its first scheduled run and started
        // again. Continuing from the last run, the next one comes 6 s after the first, or at once
        // when that moment passed while it was down; counted from the restart, as before, it would
        // come a whole period after the restart.
        let workspace = try AgentWorkspace("restart-every")
        let crm = try workspace.addDatabase("crm")
        try workspace.writeConfig(extra: ["schedule": ["every": "6s", "startup": false, "shutdown": false,
                                                        "onChange": ["minInterval": "1h"]]])
        let first = try AgentProcess(workspace, label: "first")
        try await first.waitFor("backup.done", timeout: 30, where: { $0["db"] == "crm" })
        let firstRun = try await eventually(timeout: 5, "the first run in the state") {
            StateStore(folder: workspace.localFolder).load().state.scheduledRuns?[workspace.targetName]
        }
        #expect(try await first.terminate() == 0)
        _ = try CRMWriter(path: crm, rate: 20, seed: 8).run(duration: .milliseconds(60))
        let second = try AgentProcess(workspace, label: "second")
        // Counted from the moment the agent is up, not from its launch: a loaded machine (the
        // whole suite runs at once) can take seconds to start a process, which says nothing about
        // the schedule.
        try await second.waitFor("agent.start", timeout: 30)
        let restartedAt = Date()
        try await second.waitFor("backup.done", timeout: 30, where: { $0["db"] == "crm" })
        let secondRun = try await eventually(timeout: 5, "the second run in the state") { () -> Date? in
            let run = StateStore(folder: workspace.localFolder).load().state.scheduledRuns?[workspace.targetName]
            return run.flatMap { $0 > firstRun ? $0 : nil }
        }
        let expected = max(firstRun.addingTimeInterval(6), restartedAt)
        #expect(secondRun >= firstRun.addingTimeInterval(6), "never before a period has passed since the last run")
        let timing = "the second run came \(String(format: "%.1f", secondRun.timeIntervalSince(firstRun))) s after the first and "
            + "\(String(format: "%.1f", secondRun.timeIntervalSince(restartedAt))) s after the restart"
        #expect(secondRun.timeIntervalSince(expected) < 3, "\(timing)")
        #expect(try workspace.backups(of: "crm").map(\.id.kind) == [.scheduled, .scheduled])
        #expect(try await second.terminate() == 0)
    }

    @Test func aSecondAgentOnTheSameLocalFolderRefusesToStartNamingTheFirst() async throws {
        let workspace = try AgentWorkspace("twoagents")
        try workspace.addDatabase("crm")
        try workspace.writeConfig()
        let first = try AgentProcess(workspace, label: "first")
        try await first.waitFor("agent.start")

        let second = try workspace.offsite(["run"])
        #expect(second.status != 0)
        #expect(second.standardError.contains("pid \(first.pid)"), "stderr: \(second.standardError)")
        #expect(second.standardError.contains(workspace.localFolder), "stderr: \(second.standardError)")
        #expect(first.process.isRunning, "the first agent keeps running")

        #expect(try await first.terminate() == 0, "log:\n\(first.log)")
        // Once the first one is gone the folder is free again.
        let third = try AgentProcess(workspace, label: "third")
        try await third.waitFor("agent.start")
        #expect(try await third.terminate() == 0)
    }
}

/// `kill -9` while the startup backup of a 64 MiB database is being uploaded, then a restart.
@Suite struct AgentCrashIntegrationTests {
    @Test(arguments: AgentTargetKind.allCases)
    func killDuringAnUploadLeavesNoPartialObjectAndTheNextRunCleansUpAndSucceeds(kind: AgentTargetKind) async throws {
        let workspace = try AgentWorkspace("kill9", kind: kind)
        try workspace.addDatabase("big", from: try LargeCRMFixture.shared.get())
        try workspace.writeConfig(startup: true, shutdown: false, target: kind == .s3 ? ["partSize": "5MiB"] : [:],
                                  extra: ["compression": ["level": 9]])
        let target = try workspace.makeTestTarget()

        let crashed = try AgentProcess(workspace, label: "crashed")
        // Kill it as soon as the upload is under way: a multipart upload open on S3, a temporary
        // file with bytes in it in the folder. (One probe on its own thread does it all, so a busy
        // test pool cannot make it miss the moment.)
        let remoteFolder = workspace.remoteFolder
        try await eventually(timeout: 120, "an upload in progress") { () -> Bool? in
            guard crashed.process.isRunning, crashed.events("backup.done").isEmpty, crashed.events("backup.failed").isEmpty else {
                throw TestFailure("the backup ended before it could be interrupted; log:\n\(crashed.log)")
            }
            let uploading: Bool
            switch kind {
            case .s3: uploading = try workspace.openUploads() > 0
            case .folder:
                uploading = AgentWorkspace.temporaryFiles(under: remoteFolder).contains {
                    $0.hasSuffix(FileTarget.temporarySuffix) && ((try? crmFileSize("\(remoteFolder)/\($0)")) ?? 0) > 0
                }
            }
            guard uploading, !crashed.events("backup.start", where: { $0["db"] == "big" }).isEmpty else { return nil }
            crashed.send(SIGKILL)
            return true
        }
        _ = try await crashed.waitForExit(timeout: 10)
        #expect(crashed.events("backup.done").isEmpty, "the kill came before the upload finished")
        #expect(try workspace.backups(of: "big").isEmpty, "no object under a final name")
        #expect(try target.list(prefix: "").isEmpty, "nothing listed at all")
        switch kind {
        case .s3: #expect(try workspace.openUploads() == 1, "the crash left its multipart upload open")
        case .folder: #expect(AgentWorkspace.temporaryFiles(under: workspace.remoteFolder).count == 1)
        }
        // Another agent's upload in progress, of a database this one does not back up, under the
        // same prefix: the cleanup must leave it alone.
        let neighbours = try target.makeUpload(key: "neighbour/in-progress.bin")
        try neighbours.write(Data(repeating: 3, count: 33 << 20))  // two full parts: a multipart upload on S3

        let next = try AgentProcess(workspace, label: "next")
        let done = try await next.waitFor("backup.done", timeout: 90, where: { $0["db"] == "big" })
        #expect(next.events("backup.failed").isEmpty, "log:\n\(next.log)")
        #expect(next.events("leftovers.removed", where: { $0["target"] == workspace.targetName }).count == 1,
                "the startup cleanup removed the crash's leftovers; log:\n\(next.log)")
        #expect(try await next.terminate() == 0)
        switch kind {
        case .s3: #expect(try workspace.openUploads() == 1, "the neighbour's upload is still open")
        case .folder:
            #expect(AgentWorkspace.temporaryFiles(under: workspace.remoteFolder).filter { $0.hasPrefix("neighbour/") }.count == 1,
                    "the neighbour's temporary is still there")
        }
        try neighbours.write(Data(repeating: 4, count: 1000))
        try neighbours.commit()
        #expect(try target.list(prefix: "neighbour/").map(\.size) == [(33 << 20) + 1000], "and it completes")
        try target.delete(key: "neighbour/in-progress.bin")

        let backups = try workspace.backups(of: "big")
        #expect(backups.map(\.id.description) == [done["id"]].compactMap { $0 })
        #expect(backups.first?.id.kind == .startup)
        #expect(try workspace.openUploads() == 0, "no multipart upload left open")
        for folder in [workspace.dataFolder, workspace.localFolder, workspace.remoteFolder] {
            #expect(AgentWorkspace.temporaryFiles(under: folder) == [], "in \(folder)")
        }
        // The object is whole: it restores (restore runs quick_check) and holds the live rows.
        let id = try #require(backups.first?.id)
        let restored = try workspace.restore("big", id: id)
        let count = "SELECT count(*) FROM activity_logs"
        #expect(try sqlite3(restored, count, in: workspace.folder) == sqlite3("\(workspace.dataFolder)/big.db", count, in: workspace.folder))
    }
}
