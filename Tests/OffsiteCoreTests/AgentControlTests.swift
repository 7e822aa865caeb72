import Foundation
import Testing
@testable import OffsiteCore

/// The agent's side of the control endpoint, without its loop: what it shows and how it takes
/// manual backup requests.
@Suite struct AgentControlTests {
    private func makeAgent(_ folder: ScratchFolder) throws -> Agent {
        var config = OffsiteConfig(databases: [DatabaseConfig(path: folder.file("crm.db"))],
                                   local: LocalConfig(dir: folder.file("local")), encryption: .plaintext,
                                   targets: [TargetConfig(name: "usb", url: "file://\(folder.file("usb"))",
                                                          location: .folder(path: folder.file("usb")))])
        config.health = HealthConfig(maxAge: .seconds(600))
        return try Agent(config: config, encryption: .none, logger: Logger(output: .lines { _ in }))
    }

    @Test func aSecondRequestForTheSameDatabaseWaitsItsTurn() throws {
        let folder = try ScratchFolder("agent-control")
        let agent = try makeAgent(folder)
        guard case .accepted(let ticket) = agent.requestBackup(database: "crm", target: "usb", reason: "before import") else {
            Issue.record("the first request was not accepted")
            return
        }
        #expect(ticket.progress == .queued)
        #expect(ticket.reason == "before import")
        guard case .alreadyRunning = agent.requestBackup(database: "crm", target: nil, reason: nil) else {
            Issue.record("a second request for a waiting database was accepted")
            return
        }
        #expect(agent.controlSnapshot().busyDatabases == ["crm"])
        guard case .unknownDatabase = agent.requestBackup(database: "payroll", target: nil, reason: nil),
              case .unknownTarget = agent.requestBackup(database: "crm", target: "tape", reason: nil) else {
            Issue.record("unknown names were accepted")
            return
        }

        // The loop, when it stops, answers every waiting request.
        agent.manualRequests.dropAll("the agent is stopping")
        #expect(ticket.progress == .dropped("the agent is stopping"))
        #expect(agent.controlSnapshot().busyDatabases.isEmpty)
        agent.requestStop()
        guard case .stopping = agent.requestBackup(database: "crm", target: nil, reason: nil) else {
            Issue.record("a stopping agent accepted a request")
            return
        }
    }

    @Test func theSnapshotNamesConfiguredAndRecordedDatabasesAndTargets() throws {
        let folder = try ScratchFolder("agent-control")
        var recorded = AgentState()
        recorded.recordDatabase("found", path: folder.file("found.db"), at: Date())
        try StateStore(folder: folder.file("local")).save(recorded)
        let agent = try makeAgent(folder)
        let snapshot = agent.controlSnapshot()
        #expect(snapshot.databases == ["crm", "found"])
        #expect(snapshot.targets == [ControlTarget(name: "usb", kind: .folder)])
        #expect(snapshot.maxAge == .seconds(600))
        #expect(!snapshot.isStopping)
        #expect(snapshot.state.databases["found"]?.path == folder.file("found.db"))
    }

    @Test func aTicketTellsItsWaiterTheIdOnce() async throws {
        let ticket = ManualBackupTicket(database: "crm", target: nil, reason: nil)
        #expect(ticket.waitUntilSettled(timeout: .milliseconds(20)) == .queued)
        let id = BackupID(seconds: 1_795_317_420, kind: .manual)
        let waiter = Task { try await onThread { ticket.waitUntilSettled(timeout: .seconds(20)) } }
        ticket.markStarted(id)
        ticket.drop("too late")
        ticket.markStarted(BackupID(seconds: 1, kind: .manual))
        #expect(try await waiter.value == .started(id))
        #expect(ticket.progress == .started(id))
    }
}
