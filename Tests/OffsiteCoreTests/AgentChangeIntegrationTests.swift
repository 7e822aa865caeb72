import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// On-change backups by `offsite run` as a process — the wiring: a write is shipped within
/// minInterval + 10 s, an idle database gets nothing, and a database created while the agent runs
/// is picked up. What the gate decides (a burst gives at most two backups, the last holding it
/// all) is a table test of the planner (PlannerTests).
@Suite struct AgentChangeIntegrationTests {
    static let minInterval: TimeInterval = 3
    static let count = "SELECT count(*) FROM activity_logs"

    @Test(arguments: AgentTargetKind.allCases)
    func aWriteIsShippedAndAnIdleDatabaseIsNot(kind: AgentTargetKind) async throws {
        let workspace = try AgentWorkspace("onchange", kind: kind)
        let crm = try workspace.addDatabase("crm")
        try workspace.addDatabase("idle")
        try workspace.writeConfig(minInterval: "3s")
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("agent.start")
        let started = Date()
        #expect(try workspace.backups(of: "crm").isEmpty, "no startup backup was configured")

        // One write: a change backup within minInterval + 10 s.
        let single = try CRMWriter(path: crm, rate: 20, seed: 3).run(duration: .milliseconds(60))
        try #require(single.committed >= 1)
        let written = Date()
        let (first, seenAt) = try await eventually(timeout: Self.minInterval + 10, "a change backup of crm") {
            try workspace.backups(of: "crm").first.map { ($0, Date()) }
        }
        #expect(first.id.kind == .change)
        #expect(seenAt.timeIntervalSince(written) <= Self.minInterval + 10)
        try await agent.waitFor("backup.done", where: { $0["db"] == "crm" })
        // Once it settled (a commit may follow the first snapshot: one more backup, minInterval
        // later), the newest backup holds every write.
        try await pause(Self.minInterval + 2)
        let newest = try #require(try workspace.backups(of: "crm").last)
        #expect(newest.id.kind == .change)
        let restored = try workspace.restore("crm", id: newest.id)
        #expect(try sqlite3(restored, Self.count, in: workspace.folder) == sqlite3(crm, Self.count, in: workspace.folder))

        // The idle database got nothing over at least the same window.
        let remaining = Self.minInterval + 10 - Date().timeIntervalSince(started)
        if remaining > 0 { try await pause(remaining) }
        #expect(try workspace.backups(of: "idle").isEmpty)
        #expect(agent.events("backup.start", where: { $0["db"] == "idle" }).isEmpty)
        #expect(agent.events("backup.failed").isEmpty, "log:\n\(agent.log)")
        #expect(try await agent.terminate() == 0)
    }

    @Test func aDatabaseCreatedWhileTheAgentRunsIsBackedUp() async throws {
        let workspace = try AgentWorkspace("newdb")
        try workspace.addDatabase("crm")
        try workspace.writeConfig(minInterval: "3s")
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("agent.start")

        // The application creates a new database in the data folder.
        let fresh = "\(workspace.dataFolder)/fresh.db"
        _ = try CRMGenerator.generate(at: fresh, sizeMiB: 1, seed: 5)
        try await agent.waitFor("database.found", where: { $0["db"] == "fresh" })
        try await eventually(timeout: Self.minInterval + 10, "a backup of fresh") {
            try workspace.backups(of: "fresh").first
        }
        // Once it settled, the newest backup holds the whole database.
        try await pause(Self.minInterval + 2)
        let newest = try #require(try workspace.backups(of: "fresh").last)
        let restored = try workspace.restore("fresh", id: newest.id)
        #expect(try sqlite3(restored, Self.count, in: workspace.folder) == sqlite3(fresh, Self.count, in: workspace.folder))
        #expect(try CRMInvariant.violations(inDatabaseAt: restored) == [])

        // Only real databases were taken: never the -journal, -wal or -shm files beside them.
        #expect(agent.events("database.found").compactMap { $0["db"] }.sorted() == ["crm", "fresh"])
        #expect(try workspace.backups(of: "crm").isEmpty, "crm did not change")
        #expect(try await agent.terminate() == 0)
    }
}
