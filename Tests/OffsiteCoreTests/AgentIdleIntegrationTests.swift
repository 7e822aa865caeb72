import Foundation
import Testing
@testable import OffsiteCore

/// The agent at rest: watching three databases that do not change, it takes no backups and
/// sleeps. Its CPU use is measured by the benchmark over a minute (bench/run.sh); here, over a few
/// seconds, the test asserts that nothing was backed up and the agent stays idle.
@Suite struct AgentIdleIntegrationTests {
    static let window: TimeInterval = 5

    @Test func anIdleAgentWatchingThreeDatabasesTakesNoBackupsAndSleeps() async throws {
        let workspace = try AgentWorkspace("idle")
        for name in ["crm", "billing", "inventory"] { try workspace.addDatabase(name) }
        try workspace.writeConfig(startup: true)
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("backup.done", count: 3, timeout: 30)
        try await pause(1)
        let startsBefore = agent.events("backup.start").count

        let (cpuBefore, cpuAfter, elapsed) = try await onThread { () -> (Double, Double, TimeInterval) in
            let cpuBefore = try agent.cpuSeconds()
            let clockBefore = Date()
            Thread.sleep(forTimeInterval: Self.window)
            return (cpuBefore, try agent.cpuSeconds(), Date().timeIntervalSince(clockBefore))
        }
        let cpu = cpuAfter - cpuBefore
        print("agent idle CPU: \(String(format: "%.3f", cpu)) s over \(String(format: "%.1f", elapsed)) s "
              + "watching 3 databases = \(String(format: "%.3f", cpu / elapsed * 100))% of one core "
              + "(\(String(format: "%.2f", cpuBefore)) s before, for start-up and three startup backups)")
        #expect(cpuBefore > 0, "the CPU reading works: the startup backups took some")

        #expect(agent.process.isRunning)
        #expect(agent.events("backup.start").count == startsBefore, "log:\n\(agent.log)")
        #expect(Set(try ["crm", "billing", "inventory"].flatMap { try workspace.backups(of: $0).map(\.id.kind) }) == [.startup])
        #expect(try await agent.terminate() == 0)
    }
}
