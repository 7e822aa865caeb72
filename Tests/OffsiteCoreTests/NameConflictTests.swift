import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// Two files that would get one database name (`crm.db` and `crm.sqlite3` are both `crm`) never
/// share a remote folder: a configuration error naming both paths, for every command and the agent.
@Suite struct NameConflictTests {
    @Test func resolvingNamesBothPathsInTheWatchedFolderAndBesideDatabasesEntries() throws {
        let folder = try ScratchFolder("names")
        let source = try CRMFixture.shared.get().path
        for name in ["crm.db", "crm.sqlite3", "other.db"] {
            try FileManager.default.copyItem(atPath: source, toPath: folder.file(name))
        }
        let watch = WatchConfig(dir: folder.path)
        #expect(throws: DatabaseNameConflict(name: "crm", first: folder.file("crm.db"), second: folder.file("crm.sqlite3"))) {
            try resolveDatabases(configured: [], watch: watch)
        }
        // A configured database and a watched file with its name collide the same way.
        let elsewhere = try ScratchFolder("names-elsewhere")
        try FileManager.default.copyItem(atPath: source, toPath: elsewhere.file("crm.sqlite"))
        #expect(throws: DatabaseNameConflict(name: "crm", first: elsewhere.file("crm.sqlite"), second: folder.file("crm.db"))) {
            try resolveDatabases(configured: [DatabaseRef(path: elsewhere.file("crm.sqlite"))], watch: watch)
        }
        // The same file configured and watched is one database; a distinct name resolves the clash.
        unlink(folder.file("crm.sqlite3"))
        #expect(try resolveDatabases(configured: [DatabaseRef(path: folder.file("crm.db"))], watch: watch).map(\.name) == ["crm", "other"])
        let renamed = [DatabaseRef(path: elsewhere.file("crm.sqlite"), name: "crm-archive")]
        #expect(try resolveDatabases(configured: renamed, watch: watch).map(\.name) == ["crm-archive", "crm", "other"])
    }

    @Test func backupAndRestoreRefuseAndShipNothing() throws {
        let folder = try ScratchFolder("names-cli")
        try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try CRMFixture.shared.get().path, toPath: folder.file("data/crm.db"))
        _ = try CRMGenerator.generate(at: folder.file("data/crm.sqlite3"), sizeMiB: 1, seed: 5)
        let config = """
        { "watch": { "dir": "data" }, "encryption": "none", "targets": [{ "name": "usb", "url": "file://\(folder.file("remote"))" }] }
        """
        try Data(config.utf8).write(to: URL(fileURLWithPath: folder.file("offsite.json")))
        let backup = try offsite(["backup", "--config", "offsite.json"], in: folder)
        expectOneLineError(backup, containing: "\(folder.file("data/crm.db")) and \(folder.file("data/crm.sqlite3"))")
        #expect(!FileManager.default.fileExists(atPath: folder.file("remote")), "nothing was shipped")
        let restore = try offsite(["restore", "--config", "offsite.json", "--db", "crm", "--output", "r.db"], in: folder)
        expectOneLineError(restore, containing: "would both be backed up as database \"crm\"")
        #expect(!FileManager.default.fileExists(atPath: folder.file("r.db")))
    }

    @Test func theAgentRefusesToStartAndLeavesALaterArrivalUnprotectedLoudly() async throws {
        // At the start: a configuration error naming both paths, exit status non-zero.
        let refused = try AgentWorkspace("names-start")
        try refused.addDatabase("crm")
        try FileManager.default.copyItem(atPath: try CRMFixture.shared.get().path, toPath: "\(refused.dataFolder)/crm.sqlite3")
        try refused.writeConfig(startup: true)
        let first = try AgentProcess(refused)
        #expect(try await first.waitForExit(timeout: 20) != 0)
        #expect(first.log.contains("crm.db and \(refused.dataFolder)/crm.sqlite3 would both be backed up"), "\(first.log)")
        #expect(try refused.backups(of: "crm").isEmpty)

        // While running: the newcomer is not backed up; the error is logged, sent and in status.
        let workspace = try AgentWorkspace("names-run")
        let crm = try workspace.addDatabase("crm")
        let receiver = try await WebhookReceiver(in: workspace.folder)
        try workspace.writeConfig(minInterval: "1s", startup: true, extra: ["notify": ["webhookUrl": receiver.url]])
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("backup.done")
        let newcomer = "\(workspace.dataFolder)/crm.sqlite3"
        _ = try CRMGenerator.generate(at: newcomer + ".part", sizeMiB: 1, seed: 6)
        try FileManager.default.moveItem(atPath: newcomer + ".part", toPath: newcomer)
        let logged = try await agent.waitFor("name-conflict.failed")
        #expect(logged.level == "error")
        #expect(logged["reason"]?.contains(newcomer) == true)
        let sent = try await receiver.waitFor(event: "name-conflict.failed")
        #expect((sent["reason"] as? String)?.contains(crm) == true)
        // The state file holds it within a second or so (outcomes are written at most once a second).
        let state = try await eventually(timeout: 10, "the state to hold the unprotected file") { () -> AgentState? in
            let state = StateStore(folder: workspace.localFolder).load().state
            return state.unprotected?[newcomer] != nil ? state : nil
        }
        #expect(state.problemCounts?["name-conflict"] == 1)
        let status = try workspace.offsite(["status", "--json"])
        let root = try #require(try JSONSerialization.jsonObject(with: status.standardOutputData) as? [String: Any])
        #expect((root["unprotected"] as? [String: Any])?[newcomer] != nil, "\(status.standardOutput)")
        #expect((root["problemCounts"] as? [String: Int])?["name-conflict"] == 1)
        let health = try workspace.offsite(["healthcheck"])
        #expect(health.status == 1)
        #expect(health.standardOutput.contains("\(newcomer) is not backed up"), "\(health.standardOutput)")
        // The known database is still protected and only its own backups are in its folder.
        _ = try CRMWriter(path: crm, rate: 20, seed: 3).run(duration: .milliseconds(100))
        try await agent.waitFor("backup.done", count: 2)
        let clients = Int(try sqlite3(try CRMFixture.shared.get().path, "SELECT count(*) FROM clients", in: workspace.folder)) ?? 0
        let newcomerClients = Int(try sqlite3(newcomer, "SELECT count(*) FROM clients", in: workspace.folder)) ?? 0
        try #require(newcomerClients < clients)
        for backup in try workspace.backups(of: "crm") {
            // Restored with flags alone: the configuration itself is refused by every command now.
            let restored = workspace.folder.file("restored-\(backup.id).db")
            let restore = try offsite(["restore", "--target", "file://\(workspace.remoteFolder)", "--db", "crm", "--backup",
                                       backup.id.description, "--identity", workspace.identity, "--output", restored], in: workspace.folder)
            try #require(restore.status == 0, "\(restore.standardError)")
            #expect(try CRMInvariant.violations(inDatabaseAt: restored).isEmpty)
            #expect((Int(try sqlite3(restored, "SELECT count(*) FROM clients", in: workspace.folder)) ?? 0) >= clients)
        }
        #expect(try await agent.terminate() == 0)
    }
}
