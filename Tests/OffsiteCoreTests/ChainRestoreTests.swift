import Foundation
import Testing
@testable import OffsiteCore

/// Restore to a moment from a base and change objects on real targets: every moment gives the
/// content committed then, links are checked, missing and broken links refuse.
@Suite struct ChainRestoreTests {
    /// Restores `time` and checks content and integrity against the workspace's history.
    static func expectRestore(_ workspace: ChainWorkspace, at time: Int64, label: String,
                              sourceLocation: SourceLocation = #_sourceLocation) throws -> RestoreReport {
        let name = "restored-\(time).db"
        let report = try workspace.restore(moment(time), to: name)
        let path = workspace.folder.file(name)
        #expect(try WALWorkload.content(ofFileAt: path) == workspace.content(at: time), "\(label)", sourceLocation: sourceLocation)
        #expect(try sqlite3(path, "PRAGMA integrity_check", in: workspace.folder) == "ok", "\(label)", sourceLocation: sourceLocation)
        removeDatabaseFiles(path)
        return report
    }

    @Test(arguments: RemoteKind.allCases)
    func everyMomentOfAChainRestoresWhatWasCommittedThen(kind: RemoteKind) throws {
        let workspace = try ChainWorkspace(kind)
        try workspace.commit(10)
        let base = try workspace.takeBase()
        try workspace.commitAndShip(objects: 6, transactions: 7)
        let chain = workspace.chains[0]
        let objects = chain.objects

        var times: [Int64] = [base.id.seconds * 1000, base.id.seconds * 1000 + 1000, objects[0].name.firstCommit - 1]
        for object in [objects[0], objects[2], objects[5]] {
            times += [object.name.firstCommit, object.name.firstCommit + 41, object.name.lastCommit, object.name.lastCommit + 1]
        }
        for time in times {
            // Within the second the base was taken in, it may hold later commits: refused.
            if time < base.id.seconds * 1000 + 1000 {
                #expect(throws: ChainError.self, "at \(formatInstant(time))") { try workspace.restore(moment(time), to: "early.db") }
                continue
            }
            let report = try Self.expectRestore(workspace, at: time, label: "at \(formatInstant(time))")
            #expect(report.backup == base)
            if time >= objects[0].name.firstCommit {
                let applied = try #require(report.changes)
                #expect(applied.point == workspace.moments.last { $0 <= time })
            }
        }
        // latest: the newest change.
        let latest = try workspace.restore(.latest, to: "latest.db")
        #expect(try WALWorkload.content(ofFileAt: workspace.folder.file("latest.db")) == workspace.history.last?.content)
        #expect(latest.changes?.objects == 6)
        #expect(latest.changes?.point == objects[5].name.lastCommit)
        // --backup ID: the full backup as it was.
        let asItWas = try workspace.restore(.id(base.id), to: "base.db")
        #expect(asItWas.changes == nil)
        #expect(try WALWorkload.content(ofFileAt: workspace.folder.file("base.db")) == workspace.content(at: base.id.seconds * 1000))
        // After the end: the end, with a warning.
        var warnings: [String] = []
        let late = try workspace.restore(moment(objects[5].name.lastCommit + 3_600_000), to: "late.db") { warnings.append($0) }
        #expect(late.changes?.point == objects[5].name.lastCommit)
        #expect(warnings.count == 1, "\(warnings)")
        // Nothing left beside the outputs.
        #expect(try workspace.folder.names().filter { $0.contains(".restore-") }.isEmpty)
    }

    @Test func aSecondChainAndCompactedObjects() throws {
        let workspace = try ChainWorkspace(.folder, label: "chain-two")
        try workspace.commit(5)
        try workspace.takeBase()
        try workspace.commitAndShip(objects: 5, transactions: 6)
        let compacted = try workspace.compact(chain: 0, from: 1, to: 4)
        let firstEnd = workspace.chains[0].objects[4].name.lastCommit
        try workspace.commit(3)
        let second = try workspace.takeBase(kind: .change, shipFirst: false)
        try workspace.commitAndShip(objects: 3, transactions: 5)

        // The plans: the bulk through the compacted object.
        let listing = try listBackupsAndChanges(on: workspace.target, database: "crm")
        let source = try chooseRestoreSource(from: listing, database: "crm", selection: moment(firstEnd), target: "remote")
        guard case let .chain(plan) = source else { Issue.record("no chain for \(source)"); return }
        #expect(plan.steps.map(\.object) == [compacted, workspace.chains[0].objects[4]])
        let latest = try chooseRestoreSource(from: listing, database: "crm", selection: .latest, target: "remote")
        #expect(latest.base == second)

        for time in [firstEnd, workspace.chains[0].objects[2].name.firstCommit + 45, workspace.chains[0].objects[4].name.firstCommit,
                     second.id.seconds * 1000 + 1000, workspace.chains[1].objects[1].name.lastCommit, workspace.moments.last!] {
            _ = try Self.expectRestore(workspace, at: time, label: "at \(formatInstant(time))")
        }
        // The commits between the first chain's end and the second base are in the base only: a
        // moment between them (or within the base's second) is refused, never restored older.
        for time in [second.id.seconds * 1000 - 1, second.id.seconds * 1000] {
            do {
                _ = try workspace.restore(moment(time), to: "between.db")
                Issue.record("a moment between two chains was restored")
            } catch let error as ChainError {
                #expect(error.hint?.contains(formatInstant(firstEnd)) == true, "\(error.hint ?? "")")
            }
            #expect(!pathExists(workspace.folder.file("between.db")))
        }
    }

    @Test func missingAndBrokenLinksAreRefusedNamingTheObject() throws {
        let workspace = try ChainWorkspace(.folder, label: "chain-links")
        try workspace.commit(4)
        let base = try workspace.takeBase()
        try workspace.commitAndShip(objects: 4, transactions: 5)
        let objects = workspace.chains[0].objects

        // Object 3 missing: moments after object 2 are refused, those before restore.
        let third = try Data(contentsOf: URL(fileURLWithPath: workspace.folder.file("remote/\(objects[2].key)")))
        try workspace.target.delete(key: objects[2].key)
        do {
            _ = try workspace.restore(moment(objects[3].name.lastCommit), to: "refused.db")
            Issue.record("a moment after a missing link was restored")
        } catch let error as ChainError {
            #expect(error.message.contains("change object 3"), "\(error.message)")
            #expect(error.hint?.contains(formatInstant(objects[1].name.lastCommit)) == true, "\(error.hint ?? "")")
        }
        #expect(!pathExists(workspace.folder.file("refused.db")))
        _ = try Self.expectRestore(workspace, at: objects[1].name.lastCommit, label: "before the missing link")
        try workspace.upload(third, key: objects[2].key)

        // Object 2 replaced by one that does not link to object 1 (written with another prev).
        let original = try Data(contentsOf: URL(fileURLWithPath: workspace.folder.file("remote/\(objects[1].key)")))
        let chain = workspace.chains[0]
        func replace(_ index: Int, previous: ChainLink, base baseID: BackupID? = nil, database: String = "crm") throws {
            let metadata = ChangeObjectMetadata.change(database: database, base: baseID ?? base.id, sequence: index + 1, previous: previous,
                                                       pageSize: workspace.workload.pageSize,
                                                       transactions: transactionList(chain.transactions[index]))
            let forged = try makeChangeObject(chain.transactions[index], metadata: metadata, encryption: workspace.encryption)
            try workspace.upload(forged.data, key: objects[index].key)
        }
        try replace(1, previous: .object(ChainDigest(bytes: [UInt8](repeating: 1, count: 32))!))
        func expectBroken(_ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            do {
                _ = try workspace.restore(moment(objects[3].name.lastCommit), to: "broken.db")
                Issue.record("a broken link was restored", sourceLocation: sourceLocation)
            } catch let error as ChainError {
                #expect(error.message.contains(objects[1].key) || error.message.contains(objects[0].key), "\(error.message)",
                        sourceLocation: sourceLocation)
                #expect(error.message.contains(fragment), "\(error.message)", sourceLocation: sourceLocation)
                #expect(error.hint?.contains("restore --at") == true, sourceLocation: sourceLocation)
            } catch {
                Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            }
            #expect(try workspace.folder.names().filter { $0.contains(".restore-") || $0 == "broken.db" }.isEmpty,
                    sourceLocation: sourceLocation)
        }
        try expectBroken("object before it")
        // Of another chain.
        try replace(1, previous: .object(chain.digests[0]), base: BackupID(seconds: base.id.seconds - 60, kind: .scheduled))
        try expectBroken("chain of")
        // Of another database.
        try replace(1, previous: .object(chain.digests[0]), database: "other")
        try expectBroken("database other")
        try workspace.upload(original, key: objects[1].key)
        // Object 1 naming another base file (its CRC).
        let first = try Data(contentsOf: URL(fileURLWithPath: workspace.folder.file("remote/\(objects[0].key)")))
        try replace(0, previous: .base(crc: 0xdead_beef, length: 4096))
        try expectBroken("base")
        try workspace.upload(first, key: objects[0].key)
        // A damaged object (one byte flipped in the middle).
        var damaged = original
        damaged[damaged.count / 2] ^= 0x40
        try workspace.upload(damaged, key: objects[1].key)
        try expectBroken(objects[1].key)
        try workspace.upload(original, key: objects[1].key)
        // Mended, the whole chain restores.
        _ = try Self.expectRestore(workspace, at: objects[3].name.lastCommit, label: "mended")
    }

    @Test func aChainOfUnencryptedObjectsAndAnInPlaceRestore() throws {
        let workspace = try ChainWorkspace(.folder, label: "chain-plain")
        try workspace.commit(3)
        try workspace.takeBase()
        try workspace.commit(4)
        try workspace.ship(encryption: PayloadEncryption.none)
        try workspace.commitAndShip(objects: 2, transactions: 3)
        let objects = workspace.chains[0].objects
        #expect(objects[0].key.hasSuffix(".wal.gz") && objects[1].key.hasSuffix(".wal.gz.age"))
        let time = objects[1].name.firstCommit + 41
        _ = try Self.expectRestore(workspace, at: time, label: "mixed formats")

        // In place, over a copy of the database.
        try FileManager.default.createDirectory(atPath: workspace.folder.file("live"), withIntermediateDirectories: true)
        let live = workspace.folder.file("live/crm.db")
        do {
            let other = try SQLiteDatabase(path: live, mode: .create)
            try other.execute("CREATE TABLE unrelated(x); INSERT INTO unrelated VALUES (1)")
        }
        let job = RestoreJob(target: workspace.target, database: "crm", selection: moment(time), keys: workspace.keys)
        let report = try restoreInPlace(job, databasePath: live, preRestore: nil, localFolder: workspace.folder.file("local"))
        #expect(try WALWorkload.content(ofFileAt: live) == workspace.content(at: time))
        #expect(report.changes?.objects == 2)
        let replaced = try #require(report.replacedPath)
        #expect(try sqlite3(replaced, "SELECT x FROM unrelated", in: workspace.folder) == "1")
    }
}
