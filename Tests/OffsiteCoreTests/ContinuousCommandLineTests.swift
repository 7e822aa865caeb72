import Foundation
import Testing
@testable import OffsiteCore

/// Continuous protection through the `offsite` binary and with standard tools alone: the README's
/// procedure against `offsite restore --at`, and list, verify, prune of chains.
@Suite struct ContinuousCommandLineTests {
    /// The README's continuous procedure, word for word, with its four variables set.
    static func readmeProcedure(folder: String, base: String, at: String, out: String) throws -> String {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let start = text.range(of: "<!-- continuous-standard-tools-procedure -->\n```sh\n"),
              let end = text.range(of: "```\n<!-- end continuous-standard-tools-procedure -->", range: start.upperBound..<text.endIndex) else {
            throw TestFailure("README.md has no continuous standard-tools procedure between its markers")
        }
        var lines = text[start.upperBound..<end.lowerBound].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var replaced = 0
        for (index, line) in lines.enumerated() {
            for (name, value) in [("folder", folder), ("base", base), ("at", at), ("out", out)] where line.hasPrefix("\(name)=") {
                lines[index] = "\(name)='\(value)'"
                replaced += 1
            }
        }
        guard replaced == 4 else { throw TestFailure("the README procedure should set folder=, base=, at= and out= on lines of their own") }
        return lines.joined(separator: "\n")
    }

    @Test func theStandardToolsProcedureRestoresWhatOffsiteRestores() throws {
        let workspace = try ChainWorkspace(.folder, label: "chain-tools")
        try workspace.commit(6)
        let base = try workspace.takeBase()
        try workspace.commitAndShip(objects: 5, transactions: 6)
        let objects = workspace.chains[0].objects
        let work = try ScratchFolder("chain-tools-work")
        try FileManager.default.copyItem(atPath: workspace.folder.file("identity.txt"), toPath: work.file("id.txt"))

        let moments: [Int64?] = [nil, base.id.seconds * 1000 + 1010, objects[1].name.lastCommit, objects[2].name.firstCommit + 45,
                                 objects[4].name.lastCommit - 1, objects[4].name.lastCommit]
        for (index, time) in moments.enumerated() {
            let at = time.map(ChangeObjectName.formatCommitTime) ?? ""
            let script = try Self.readmeProcedure(folder: workspace.folder.file("remote/crm"), base: base.id.description,
                                                  at: at, out: "tools-\(index).db")
            let result = try runTool("bash", ["-c", script], in: work)
            #expect(result.status == 0, "\(at): \(result.standardError)")
            #expect(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "\(at)")
            let byTools = work.file("tools-\(index).db")
            #expect(((try? fileSize(at: byTools + "-wal")) ?? 0) == 0)

            let restore = try workspace.run(["restore", "--target", "remote", "--db", "crm", "--output", "offsite-\(index).db"]
                                            + (time.map { ["--at", formatInstant($0)] } ?? []))
            #expect(restore.status == 0, "\(restore.standardError)")
            let byOffsite = workspace.folder.file("offsite-\(index).db")
            let expected = time.map { workspace.content(at: $0) } ?? workspace.history.last?.content
            #expect(try WALWorkload.content(ofFileAt: byOffsite) == expected, "offsite restore at \(at)")
            #expect(try WALWorkload.content(ofFileAt: byTools) == expected, "standard tools at \(at)")
            // The same pages: byte for byte the same file.
            #expect(try contents(byTools) == contents(byOffsite), "standard tools vs offsite restore at \(at)")
        }

        // A missing object stops the procedure, naming it.
        try FileManager.default.removeItem(atPath: workspace.folder.file("remote/\(objects[2].key)"))
        let script = try Self.readmeProcedure(folder: workspace.folder.file("remote/crm"), base: base.id.description, at: "", out: "gap.db")
        let gap = try runTool("bash", ["-c", script], in: work)
        #expect(gap.status != 0)
        #expect(gap.standardError.contains("change object 3 is missing"), "\(gap.standardError)")
    }

    @Test(arguments: RemoteKind.allCases)
    func listRestoreAndVerifyAChain(kind: RemoteKind) throws {
        let workspace = try ChainWorkspace(kind, label: "chain-cli")
        try workspace.commit(4)
        let base = try workspace.takeBase()
        try workspace.commitAndShip(objects: 4, transactions: 5)
        let objects = workspace.chains[0].objects

        // list: the window in the table, every object in --json.
        let list = try workspace.run(["list"])
        #expect(list.status == 0, "\(list.standardError)")
        let window = "remote crm: restorable from \(listedMoment(base.id.seconds * 1000 + 1000)) to "
            + "\(listedMoment(objects[3].name.lastCommit)) UTC (\(base.id) and 4 change objects"
        #expect(list.standardOutput.contains(window), "\(list.standardOutput)")
        let json = try workspace.run(["list", "--json"])
        let rows = try JSONSerialization.jsonObject(with: json.standardOutputData) as? [[String: Any]] ?? []
        let changes = rows.filter { $0["object"] as? String == "change" }
        #expect(changes.compactMap { $0["sequence"] as? Int } == [1, 2, 3, 4])
        #expect(changes.first?["key"] as? String == objects[0].key)
        let baseRow = rows.first { $0["object"] as? String == "backup" && $0["id"] as? String == base.id.description }
        #expect(baseRow?["restorableTo"] as? String == formatInstant(objects[3].name.lastCommit))

        // restore --at: the content committed then; the output names the moment.
        let time = objects[2].name.firstCommit + 41
        let restore = try workspace.run(["restore", "--at", formatInstant(time), "--output", "at.db"])
        #expect(restore.status == 0, "\(restore.standardError)")
        #expect(restore.standardOutput.contains("as of \(formatInstant(workspace.moments.last { $0 <= time }!))"), "\(restore.standardOutput)")
        #expect(try WALWorkload.content(ofFileAt: workspace.folder.file("at.db")) == workspace.content(at: time))
        // `YYYY-MM-DD HH:MM:SS` works too (whole seconds).
        let second = (objects[1].name.lastCommit / 1000 + 1) * 1000
        let plain = formatInstant(second).prefix(19).replacingOccurrences(of: "T", with: " ")
        let restorePlain = try workspace.run(["restore", "--at", plain, "--output", "plain.db"])
        #expect(restorePlain.status == 0, "\(restorePlain.standardError)")
        #expect(try WALWorkload.content(ofFileAt: workspace.folder.file("plain.db")) == workspace.content(at: second))

        // verify: the chain is downloaded, linked, applied, checked.
        let verify = try workspace.run(["verify"])
        #expect(verify.status == 0, "\(verify.standardError)")
        #expect(verify.standardOutput.contains("4 change objects") && verify.standardOutput.contains("every link checked"),
                "\(verify.standardOutput)")

        // A missing object: verify fails naming it, restore after it refuses with a hint, list says so.
        try workspace.target.delete(key: objects[1].key)
        let broken = try workspace.run(["verify"])
        #expect(broken.status == 1)
        #expect(broken.standardError.contains("change object 2 is missing"), "\(broken.standardError)")
        let refused = try workspace.run(["restore", "--at", formatInstant(time), "--output", "refused.db"])
        expectOneLineError(refused, containing: "change object 2 of the chain of \(base.id) is missing")
        #expect(refused.standardError.contains("hint: restore --at \(formatInstant(objects[0].name.lastCommit))"))
        #expect(!pathExists(workspace.folder.file("refused.db")))
        let listAfter = try workspace.run(["list"])
        #expect(listAfter.standardOutput.contains("change object 2 is missing"), "\(listAfter.standardOutput)")
    }

    /// On a terminal, the picker offers the newest change first (Enter), then the full backups.
    @Test func onATerminalThePickerOffersTheNewestChange() throws {
        let workspace = try ChainWorkspace(.folder, label: "chain-picker")
        try workspace.commit(3)
        let base = try workspace.takeBase()
        try workspace.commitAndShip(objects: 2, transactions: 3)
        let script = workspace.folder.file("pty-answer.py")
        try Data(answeringDriver.utf8).write(to: URL(fileURLWithPath: script))
        // " " stands for Enter (the test environment drops empty variables; the answer is trimmed).
        for (answer, expected) in [(" ", workspace.history.last!.content), ("1", workspace.content(at: base.id.seconds * 1000)!)] {
            let output = "picked-\(answer == " " ? "enter" : answer).db"
            let result = try runTool("python3", [script, "\(productsFolder)/offsite", "restore", "--db", "crm", "--output", output,
                                                 "--config", workspace.configPath],
                                     in: workspace.folder, environment: ["PTY_PROMPT": "Restore which backup?", "PTY_ANSWER": answer])
            #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
            #expect(result.standardOutput.contains("0  \(listedMoment(workspace.chains[0].objects[1].name.lastCommit)) UTC  newest change"),
                    "\(result.standardOutput)")
            #expect(try WALWorkload.content(ofFileAt: workspace.folder.file(output)) == expected, "answer '\(answer)'")
        }
    }

    @Test func pruneRemovesOldChainsWithTheirBaseAndKeepsBasesOfRecentChanges() throws {
        // Everything starts three days ago: the first chain is old, the second is recent.
        let workspace = try ChainWorkspace(.folder, label: "chain-prune", start: Date().addingTimeInterval(-3 * 86400))
        try workspace.commit(3)
        let old = try workspace.takeBase()
        try workspace.commitAndShip(objects: 3, transactions: 2)
        try workspace.compact(chain: 0, from: 1, to: 2)
        let recentStart = (Int64(Date().timeIntervalSince1970) - 3600) * 1000
        workspace.advanceClock(to: recentStart)
        let recent = try workspace.takeBase()
        try workspace.commitAndShip(objects: 2, transactions: 2)
        let newest = try workspace.takeBase(kind: .change)
        // Retention keeps only the newest full backup; `recent` stays as the base of kept changes.
        var config = try String(contentsOfFile: workspace.configPath, encoding: .utf8)
        config = config.replacingOccurrences(of: "\"name\": \"remote\",", with: "\"name\": \"remote\", \"retention\": { \"last\": 1 },")
        try Data(config.utf8).write(to: URL(fileURLWithPath: workspace.configPath))

        // With continuous.keep 4d, the three-day-old chain stays, and so does its base.
        let longKeep = config.replacingOccurrences(of: "\"targets\":", with: "\"continuous\": { \"keep\": \"4d\" },\n  \"targets\":")
        try Data(longKeep.utf8).write(to: URL(fileURLWithPath: workspace.configPath))
        let kept = try workspace.run(["prune", "--dry-run"])
        #expect(kept.status == 0, "\(kept.standardError)")
        #expect(kept.standardOutput.contains("keep    \(old.id)  base of changes"), "\(kept.standardOutput)")
        #expect(kept.standardOutput.contains("changes: keep 6, remove 0 (within 4d"), "\(kept.standardOutput)")
        try Data(config.utf8).write(to: URL(fileURLWithPath: workspace.configPath))

        let dry = try workspace.run(["prune", "--dry-run"])
        #expect(dry.status == 0, "\(dry.standardError)")
        #expect(dry.standardOutput.contains("keep    \(recent.id)  base of changes"), "\(dry.standardOutput)")
        #expect(dry.standardOutput.contains("keep    \(old.id)") == false)
        #expect(dry.standardOutput.contains("remove  \(old.id) c00000001–c00000003 (3)  older than 1d  (dry run)"), "\(dry.standardOutput)")
        #expect(dry.standardOutput.contains("keep    \(recent.id) c00000001–c00000002 (2)  within 1d"), "\(dry.standardOutput)")
        #expect(try listBackupsAndChanges(on: workspace.target, database: "crm").changes.count == 6)

        let prune = try workspace.run(["prune"])
        #expect(prune.status == 0, "\(prune.standardError)")
        let after = try listBackupsAndChanges(on: workspace.target, database: "crm")
        #expect(after.backups.map(\.id) == [recent.id, newest.id])
        #expect(after.changes.map(\.name.base) == [recent.id, recent.id])
        // What is left still restores.
        let restore = try workspace.run(["restore", "--at", formatInstant(workspace.chains[1].objects[1].name.lastCommit), "--output", "left.db"])
        #expect(restore.status == 0, "\(restore.standardError)")
    }
}

/// A moment as `offsite list` prints it (`2026-12-03 12:41:07.512`).
func listedMoment(_ milliseconds: Int64) -> String {
    String(formatInstant(milliseconds).dropLast()).replacingOccurrences(of: "T", with: " ")
}
