import Foundation
import Testing
@testable import OffsiteCore

/// File sets on the agent's planner, through `offsite run` as a process — the wiring: a startup
/// snapshot, a change in the folder seen and shipped as a change snapshot that restores the new
/// tree, and `status` naming the set. When a file set is due is the planner's (PlannerTests).
@Suite struct AgentFileSetIntegrationTests {
    @Test(arguments: AgentTargetKind.allCases)
    func aChangedFileIsShippedAndRestored(kind: AgentTargetKind) async throws {
        let workspace = try AgentWorkspace("fileset", kind: kind)
        try workspace.addDatabase("crm")
        let uploads = workspace.folder.file("uploads")
        try FileManager.default.createDirectory(atPath: "\(uploads)/invoices", withIntermediateDirectories: true)
        try Data("first invoice".utf8).write(to: URL(fileURLWithPath: "\(uploads)/invoices/1.txt"))
        try Data("scratch".utf8).write(to: URL(fileURLWithPath: "\(uploads)/draft.tmp"))
        try workspace.writeConfig(minInterval: "2s", startup: true, extra: [
            "files": [["name": "uploads", "path": uploads, "exclude": ["*.tmp"]]],
        ])
        let target = try workspace.makeTestTarget()
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("backup.done", where: { $0["files"] == "uploads" })
        let first = try listFileSetSnapshots(on: target, set: "uploads")
        #expect(first.map(\.id.kind) == [.startup])

        // The application stores a second document and changes the first: the next look at the
        // folder sees it, and a change snapshot follows within minInterval.
        try Data("second invoice".utf8).write(to: URL(fileURLWithPath: "\(uploads)/invoices/2.txt"))
        try Data("first invoice, corrected".utf8).write(to: URL(fileURLWithPath: "\(uploads)/invoices/1.txt"))
        try await agent.waitFor("backup.done", count: 2, timeout: 30, where: { $0["files"] == "uploads" })
        let snapshots = try listFileSetSnapshots(on: target, set: "uploads")
        #expect(snapshots.count == 2 && snapshots.last?.id.kind == .change, "\(snapshots.map(\.id))")
        // A temporary file the set excludes changes nothing.
        try Data("scratch, again".utf8).write(to: URL(fileURLWithPath: "\(uploads)/draft.tmp"))
        try await pause(4)
        #expect(try listFileSetSnapshots(on: target, set: "uploads").count == 2)

        let status = try workspace.offsite(["status"])
        #expect(status.standardOutput.contains("uploads (files)"), "\(status.standardOutput)")
        #expect(try await agent.terminate() == 0)
        #expect(agent.events("backup.failed").isEmpty, "log:\n\(agent.log)")

        let restored = workspace.folder.file("restored-uploads")
        let restore = try workspace.offsite(["restore", "--files", "uploads", "--target", workspace.targetName, "--output", restored])
        try #require(restore.status == 0, "\(restore.standardError)")
        #expect(try String(contentsOfFile: "\(restored)/invoices/1.txt", encoding: .utf8) == "first invoice, corrected")
        #expect(try String(contentsOfFile: "\(restored)/invoices/2.txt", encoding: .utf8) == "second invoice")
        #expect(!FileManager.default.fileExists(atPath: "\(restored)/draft.tmp"))
    }
}
