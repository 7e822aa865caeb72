import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// A target that is down, seen from outside the agent: `status --json`, `healthcheck`, the
/// webhook; and its recovery.
@Suite struct AgentFailureIntegrationTests {
    @Test func aDownTargetShowsInStatusHealthAndTheWebhookAndItsRecoveryIsAnnounced() async throws {
        let workspace = try AgentWorkspace("down")
        let crm = try workspace.addDatabase("crm")
        let receiver = try await WebhookReceiver(in: workspace.folder)
        // A regular file where the target folder should be: creating the folder fails.
        try Data("not a folder".utf8).write(to: URL(fileURLWithPath: workspace.remoteFolder))
        try workspace.writeConfig(minInterval: "2s", startup: true,
                                  extra: ["health": ["maxAge": "5s"], "notify": ["webhookUrl": receiver.url]])
        let agent = try AgentProcess(workspace)

        // The webhook: event, database, target and reason.
        let failed = try await receiver.waitFor(event: "backup.failed")
        #expect(failed["database"] as? String == "crm")
        #expect(failed["target"] as? String == workspace.targetName)
        let reason = try #require(failed["reason"] as? String)
        #expect(reason.contains("Not a directory"), "\(reason)")
        #expect(!agent.events("backup.failed", where: { $0["target"] == workspace.targetName }).isEmpty)

        // status --json: the failure and its reason (outcomes reach the state file within a second).
        try await eventually(timeout: 10, "the failure in the state file") { () -> Bool? in
            StateStore(folder: workspace.localFolder).load().state.target(workspace.targetName, of: "crm")?.lastFailure != nil ? true : nil
        }
        let status = try workspace.offsite(["status", "--json"])
        #expect(status.status == 0, "\(status.standardError)")
        let target = try #require(statusTarget(status, database: "crm", target: workspace.targetName))
        let lastFailure = try #require(target["lastFailure"] as? [String: Any])
        #expect(lastFailure["reason"] as? String == reason)
        #expect(target["lastSuccess"] is NSNull)
        #expect((target["consecutiveFailures"] as? Int ?? 0) >= 1)

        // healthcheck turns unhealthy once maxAge has passed without an off-site copy.
        let unhealthy = try await eventually(timeout: 15, "healthcheck to turn unhealthy") { () -> ToolResult? in
            let result = try workspace.offsite(["healthcheck"])
            return result.status == 0 ? nil : result
        }
        #expect(unhealthy.status == 1)
        #expect(unhealthy.standardOutput.contains("crm on \(workspace.targetName)"), "\(unhealthy.standardOutput)")
        #expect(unhealthy.standardOutput.contains("Not a directory"), "\(unhealthy.standardOutput)")
        let stateAtUnhealthy = StateStore(folder: workspace.localFolder).load().state
        let firstStart = try #require(stateAtUnhealthy.firstStartedAt)
        #expect(Date().timeIntervalSince(firstStart) >= 5, "unhealthy only after maxAge")

        // The target returns; the next write is shipped to it and recovery is announced.
        try FileManager.default.removeItem(atPath: workspace.remoteFolder)
        _ = try CRMWriter(path: crm, rate: 20, seed: 9).run(duration: .milliseconds(60))
        try await agent.waitFor("backup.done", timeout: 15, where: { $0["target"] == workspace.targetName })
        let recovered = try await receiver.waitFor(event: "backup.recovered")
        #expect(recovered["database"] as? String == "crm")
        #expect(recovered["target"] as? String == workspace.targetName)
        // The write's change backup, or the retry when its back-off came first on a loaded machine.
        let shipped = try workspace.backups(of: "crm").map(\.id.kind)
        #expect(shipped.count == 1 && [.change, .scheduled].contains(shipped[0]), "\(shipped)")

        let after = try #require(statusTarget(try workspace.offsite(["status", "--json"]), database: "crm",
                                              target: workspace.targetName))
        #expect(after["lastSuccess"] is [String: Any])
        #expect(after["consecutiveFailures"] as? Int == 0)
        let healthy = try workspace.offsite(["healthcheck"])
        #expect(healthy.status == 0, "\(healthy.standardOutput)")
        #expect(try await agent.terminate() == 0)
    }

    /// The entry for `target` of `database` in `status --json` output.
    private func statusTarget(_ result: ToolResult, database: String, target: String) -> [String: Any]? {
        guard let root = try? JSONSerialization.jsonObject(with: result.standardOutputData) as? [String: Any],
              let databases = root["databases"] as? [[String: Any]],
              let entry = databases.first(where: { $0["name"] as? String == database }),
              let targets = entry["targets"] as? [[String: Any]] else { return nil }
        return targets.first { $0["name"] as? String == target }
    }
}
