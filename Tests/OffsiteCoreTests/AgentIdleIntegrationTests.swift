import Foundation
import Testing
@testable import OffsiteCore

/// The agent at rest: watching three databases that do not change, it takes no backups and
/// sleeps. Its CPU use over a minute is measured and printed (the target is under 1% of a core);
/// the test asserts that nothing was backed up, not the figure, which depends on the machine.
@Suite struct AgentIdleIntegrationTests {
    static let window: TimeInterval = 60

    @Test func anIdleAgentWatchingThreeDatabasesTakesNoBackupsAndSleeps() async throws {
        let workspace = try AgentWorkspace("idle")
        for name in ["crm", "billing", "inventory"] { try workspace.addDatabase(name) }
        try workspace.writeConfig(startup: true)
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("backup.done", count: 3, timeout: 30)
        try await Task.sleep(for: .seconds(1))
        let startsBefore = agent.events("backup.start").count

        let cpuBefore = try agent.cpuSeconds()
        let clockBefore = Date()
        try await Task.sleep(for: .seconds(Self.window))
        let cpu = try agent.cpuSeconds() - cpuBefore
        let elapsed = Date().timeIntervalSince(clockBefore)
        let percent = cpu / elapsed * 100
        print("agent idle CPU: \(String(format: "%.3f", cpu)) s over \(String(format: "%.1f", elapsed)) s "
              + "watching 3 databases = \(String(format: "%.3f", percent))% of one core")

        #expect(agent.process.isRunning)
        #expect(agent.events("backup.start").count == startsBefore, "log:\n\(agent.log)")
        #expect(Set(try ["crm", "billing", "inventory"].flatMap { try workspace.backups(of: $0).map(\.id.kind) }) == [.startup])
        #expect(try await agent.terminate() == 0)
    }
}
