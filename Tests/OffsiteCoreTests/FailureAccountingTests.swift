import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// SPEC invariant 7: every failed backup, upload or prune — by the agent or by a command run by
/// hand — is logged as an error with the reason, counted in `status`, and sent to the webhook.
/// The faults are real file-system conditions that hold even for root: a symbolic-link loop makes a
/// listing fail, a folder where a file should be makes a removal or a rename fail.
@Suite struct FailureAccountingTests {
    /// `status --json` parsed.
    private func status(_ workspace: AgentWorkspace) throws -> [String: Any] {
        let result = try workspace.offsite(["status", "--json"])
        return try #require(try JSONSerialization.jsonObject(with: result.standardOutputData) as? [String: Any])
    }

    private func problemCount(_ status: [String: Any], _ operation: String) -> Int {
        (status["problemCounts"] as? [String: Int])?[operation] ?? 0
    }

    /// Makes every listing of the folder target's `crm/` folder fail (ELOOP), while uploads still work.
    private func breakListing(_ workspace: AgentWorkspace) throws {
        let folder = "\(workspace.remoteFolder)/crm"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(folder)/loop", withDestinationPath: "loop")
    }

    @Test func theAgentCountsAndSendsAFailedPrune() async throws {
        let workspace = try AgentWorkspace("prune-fails")
        try workspace.addDatabase("crm")
        let receiver = try await WebhookReceiver(in: workspace.folder)
        try breakListing(workspace)
        try workspace.writeConfig(startup: true, target: ["retention": ["last": 1]], extra: ["notify": ["webhookUrl": receiver.url]])
        let agent = try AgentProcess(workspace)
        let logged = try await agent.waitFor("prune.failed")
        #expect(logged.level == "error")
        #expect(logged["reason"]?.contains("loop") == true || logged["reason"]?.contains("symbolic links") == true, "\(logged.fields)")
        let sent = try await receiver.waitFor(event: "prune.failed")
        #expect(sent["target"] as? String == workspace.targetName)
        #expect(sent["database"] as? String == "crm")
        try await eventually(timeout: 10, "the prune failure in the state file") { () -> Bool? in
            StateStore(folder: workspace.localFolder).load().state.problemCounts?["prune"] != nil ? true : nil
        }
        #expect(problemCount(try status(workspace), "prune") == 1)
        #expect(try await agent.terminate() == 0)
    }

    @Test func backupAndPruneByHandAreRecordedAndSent() async throws {
        let workspace = try AgentWorkspace("by-hand")
        try workspace.addDatabase("crm")
        let receiver = try await WebhookReceiver(in: workspace.folder)
        try workspace.writeConfig(target: ["retention": ["last": 1]], extra: ["notify": ["webhookUrl": receiver.url],
                                                                            "local": ["dir": workspace.localFolder, "keep": ["last": 1]]])
        // A good backup is recorded as a success.
        let good = try workspace.offsite(["backup"])
        #expect(good.status == 0, "\(good.standardError)")
        let target = try #require(((try status(workspace))["databases"] as? [[String: Any]])?.first?["targets"] as? [[String: Any]])
        #expect(target.first?["successCount"] as? Int == 1)

        // A prune whose listing fails: error, state, webhook.
        try breakListing(workspace)
        let prune = try workspace.offsite(["prune"])
        #expect(prune.status == 1)
        #expect(prune.standardError.contains("listing failed, nothing removed"), "\(prune.standardError)")
        #expect(problemCount(try status(workspace), "prune") == 1)
        #expect((try await receiver.waitFor(event: "prune.failed"))["target"] as? String == workspace.targetName)

        // A local rotation entry that cannot be removed (a folder where a snapshot should be).
        let stuck = "\(workspace.localFolder)/crm/20200101T000000Z-scheduled.sqlite3"
        try FileManager.default.createDirectory(atPath: stuck, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: "\(stuck)/keep"))
        try FileManager.default.createDirectory(atPath: "\(workspace.localFolder)/crm/20200102T000000Z-scheduled.sqlite3", withIntermediateDirectories: true)

        // A backup whose target fails (a file where its folder should be), while the local rotation
        // cannot remove the stuck entry: both are reported, recorded and sent.
        try FileManager.default.removeItem(atPath: workspace.remoteFolder)
        try Data("not a folder".utf8).write(to: URL(fileURLWithPath: workspace.remoteFolder))
        let bad = try workspace.offsite(["backup"])
        #expect(bad.status == 1)
        #expect(bad.standardError.contains("Not a directory"), "\(bad.standardError)")
        #expect(bad.standardError.contains(stuck), "\(bad.standardError)")
        let after = try status(workspace)
        let failing = try #require(((after["databases"] as? [[String: Any]])?.first?["targets"] as? [[String: Any]])?.first)
        #expect(failing["failureCount"] as? Int == 1)
        #expect(((failing["lastFailure"] as? [String: Any])?["reason"] as? String)?.contains("Not a directory") == true)
        #expect(problemCount(after, "local-rotation") == 1)
        let sentBackup = try await receiver.waitFor(event: "backup.failed")
        #expect(sentBackup["database"] as? String == "crm")
        try await receiver.waitFor(event: "local-rotation.failed")
    }

    @Test func aStateFileThatCannotBeWrittenIsReportedAndCountedOnceItCanBe() async throws {
        let workspace = try AgentWorkspace("state-fails")
        let crm = try workspace.addDatabase("crm")
        let receiver = try await WebhookReceiver(in: workspace.folder)
        try workspace.writeConfig(minInterval: "1s", startup: true, extra: ["notify": ["webhookUrl": receiver.url]])
        // A folder where the state file goes: every write's final rename fails.
        let statePath = "\(workspace.localFolder)/\(StateStore.fileName)"
        try FileManager.default.createDirectory(atPath: statePath, withIntermediateDirectories: true)
        let agent = try AgentProcess(workspace)
        let logged = try await agent.waitFor("state.failed")
        #expect(logged.level == "error")
        try await receiver.waitFor(event: "state.failed")
        try await agent.waitFor("backup.done")
        #expect(agent.events("state.failed").count == 1, "reported once per streak")

        // Once the file can be written, the next write holds what happened meanwhile, and the count.
        try FileManager.default.removeItem(atPath: statePath)
        _ = try CRMWriter(path: crm, rate: 20, seed: 4).run(duration: .milliseconds(100))
        try await agent.waitFor("state.recovered", timeout: 20)
        let state = StateStore(folder: workspace.localFolder).load().state
        #expect((state.problemCounts?["state-write"] ?? 0) >= 1)
        #expect((state.target(workspace.targetName, of: "crm")?.successCount ?? 0) >= 1, "the backup done meanwhile is recorded")
        #expect(try await agent.terminate() == 0)
    }
}
