import Foundation
import Testing
@testable import OffsiteCore

/// `repairIfCorrupt` (for `restoreIfCorrupt`) and the refusal to ship a corrupt database.
@Suite struct RestoreRepairTests {
    /// Overwrites pages 20–29 of the database at `path` with garbage, keeping its header.
    static func corrupt(_ path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 4096 * 20)
        try handle.write(contentsOf: Data(repeating: 0xab, count: 4096 * 10))
        try handle.close()
    }

    @Test(arguments: RemoteKind.allCases)
    func aCorruptDatabaseIsMovedAsideAndTheNewestGoodBackupRestored(kind: RemoteKind) throws {
        let workspace = try RestoreWorkspace(kind)
        let database = DatabaseRef(path: workspace.database)
        let keys = DecryptionKeys(identities: [workspace.identity])
        try workspace.backup()
        let good = try #require(try workspace.backups().last)
        // A newer backup that is damaged: it must be passed over.
        var damaged = try workspace.object(good.key)
        damaged[damaged.count / 2] ^= 0x04
        try workspace.plant("20991231T000000Z-scheduled", damaged)

        #expect(repairIfCorrupt(database: database, targets: [workspace.target], keys: keys,
                                localFolder: workspace.localFolder) == .healthy)

        try Self.corrupt(workspace.database)
        let corrupted = try contents(workspace.database)
        guard case let .repaired(report) = repairIfCorrupt(database: database, targets: [workspace.target], keys: keys,
                                                            localFolder: workspace.localFolder) else {
            Issue.record("not repaired")
            return
        }
        #expect(report.backup.id == good.id)
        #expect(report.rejected.count == 1 && report.rejected[0].contains("20991231T000000Z-scheduled"), "\(report.rejected)")
        #expect(try contents(workspace.database) == workspace.decrypted(good.key))
        #expect(checkDatabaseHealth(at: workspace.database) == .healthy)
        #expect((report.movedAside as NSString).lastPathComponent.hasPrefix("crm.corrupt-"))
        #expect(parentDirectory(of: report.movedAside) == workspace.localFolder)
        #expect(try contents(report.movedAside) == corrupted)
        #expect(try permissions(of: report.movedAside) == 0o600)
    }

    @Test func withoutAGoodBackupTheCorruptDatabaseStaysWhereItIs() throws {
        let workspace = try RestoreWorkspace(.folder, local: false)
        try Data("this is not a database".utf8).write(to: URL(fileURLWithPath: workspace.database))
        let before = try folderState(workspace.dataFolder)
        let outcome = repairIfCorrupt(database: DatabaseRef(path: workspace.database), targets: [workspace.target],
                                      keys: DecryptionKeys(identities: [workspace.identity]), localFolder: nil)
        guard case let .failed(problem, reason) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(problem.contains("not a SQLite database"))
        #expect(reason.contains("no backup"))
        #expect(try folderState(workspace.dataFolder) == before)
        #expect(repairIfCorrupt(database: DatabaseRef(path: workspace.folder.file("none.db")), targets: [], keys: DecryptionKeys(),
                                localFolder: nil) == .missing)
    }

    @Test func aCorruptDatabaseOpenInAnotherProcessIsLeftAlone() throws {
        let workspace = try RestoreWorkspace(.folder)
        try workspace.backup()
        try Self.corrupt(workspace.database)
        let holder = try DatabaseHolder(workspace.database)
        defer { holder.release() }
        let before = try contents(workspace.database)
        let outcome = repairIfCorrupt(database: DatabaseRef(path: workspace.database), targets: [workspace.target],
                                      keys: DecryptionKeys(identities: [workspace.identity]), localFolder: workspace.localFolder)
        guard case .inUse = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(try contents(workspace.database) == before)
    }

    @Test func anInPlaceRestoreOverACorruptDatabaseGoesOnWithoutShippingIt() throws {
        let workspace = try RestoreWorkspace(.folder, local: false)
        try workspace.backup()
        let backup = try #require(try workspace.backups().last)
        try Self.corrupt(workspace.database)
        let corrupted = try contents(workspace.database)
        let result = try workspace.run(["restore", "--db", "crm", "--in-place", "--yes"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardError.contains("warning: no pre-restore backup was shipped"), "\(result.standardError)")
        #expect(try workspace.backups().map(\.id) == [backup.id], "the corrupt database was not shipped")
        #expect(try contents(workspace.database) == workspace.decrypted(backup.key))
        // Without a local folder, the replaced file is kept beside the database.
        let kept = try FileManager.default.contentsOfDirectory(atPath: workspace.dataFolder).filter { $0.hasPrefix("crm.replaced-") }
        try #require(kept.count == 1, "\(kept)")
        #expect(try contents("\(workspace.dataFolder)/\(kept[0])") == corrupted)
        #expect(try permissions(of: "\(workspace.dataFolder)/\(kept[0])") == 0o600)
    }

    @Test func aDatabaseThatFailsItsCheckIsNeverShipped() throws {
        let workspace = try RestoreWorkspace(.folder)
        try Self.corrupt(workspace.database)
        let job = BackupJob(database: DatabaseRef(path: workspace.database), kind: .manual, targets: [workspace.target],
                            encryption: .recipients([workspace.identity.recipient]), localFolder: workspace.localFolder)
        // The snapshot's check refuses it: either its report or SQLite's own "malformed" error.
        #expect {
            try runBackup(job)
        } throws: { error in
            if case SnapshotError.integrityCheckFailed = error { return true }
            return (error as? SQLiteError)?.code == 11
        }
        #expect(try workspace.target.list(prefix: "").isEmpty)
        let local = (try? FileManager.default.contentsOfDirectory(atPath: "\(workspace.localFolder)/crm")) ?? []
        #expect(local.isEmpty, "\(local)")
    }
}
