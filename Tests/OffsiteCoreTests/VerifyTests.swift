import Foundation
import Testing
@testable import OffsiteCore

/// The restore drill, in the core (with what was recorded at backup time) and at the command line.
@Suite struct VerifyTests {
    /// A backup of the workspace's database through `runBackup`, recorded in an `AgentState`.
    static func recordedBackup(_ workspace: RestoreWorkspace, into state: inout AgentState) throws -> BackupReport {
        let job = BackupJob(database: DatabaseRef(path: workspace.database), kind: .manual, targets: [workspace.target],
                            encryption: .recipients([workspace.identity.recipient]), compressionLevel: 1)
        let report = try runBackup(job)
        #expect(report.succeeded)
        state.recordBackup(report, database: "crm")
        return report
    }

    @Test(arguments: RemoteKind.allCases)
    func theDrillComparesWithWhatWasRecorded(kind: RemoteKind) throws {
        let workspace = try RestoreWorkspace(kind)
        var state = AgentState()
        let report = try Self.recordedBackup(workspace, into: &state)
        let records = state.backupRecords(database: "crm", target: workspace.target.name)
        let record = try #require(records[report.id.description])
        #expect(record.snapshotBytes == report.snapshot.byteCount && record.pageCount == Int64(report.snapshot.pageCount))
        let keys = DecryptionKeys(identities: [workspace.identity])
        let databaseBefore = try contents(workspace.database)

        let good = try verifyBackups(of: "crm", on: workspace.target, scope: .latest, keys: keys, records: records,
                                     temporaryFolder: workspace.localFolder)
        #expect(good.map(\.status) == [.ok], "\(good)")
        #expect(good.first?.detail.contains("as recorded") == true)
        #expect(good.first?.result(at: Date()).ok == true)

        // A record that disagrees with the restored copy is a failure naming what differs.
        var wrong = record
        wrong.pageCount += 1
        let backup = try #require(try workspace.backups().last)
        let mismatch = verifyBackup(backup, on: workspace.target, keys: keys, recorded: wrong, temporaryFolder: workspace.localFolder)
        #expect(mismatch.status == .failed && mismatch.detail.contains("pages"), "\(mismatch)")

        // Without keys: the size is checked against the upload, and it says it could not decrypt.
        let unread = verifyBackup(backup, on: workspace.target, keys: DecryptionKeys(), recorded: record)
        #expect(unread.status == .notDecrypted && unread.detail.contains("could not decrypt"), "\(unread)")
        #expect(!unread.isFailure)
        var shorter = record
        shorter.objectBytes -= 1
        let sizeMismatch = verifyBackup(backup, on: workspace.target, keys: DecryptionKeys(), recorded: shorter)
        #expect(sizeMismatch.status == .failed, "\(sizeMismatch)")

        // Nothing was left behind, and the live database was not touched.
        #expect(try FileManager.default.contentsOfDirectory(atPath: workspace.localFolder).filter { $0.hasSuffix(".tmp") }.isEmpty)
        #expect(try contents(workspace.database) == databaseBefore)
    }

    @Test(arguments: RemoteKind.allCases)
    func verifyPassesGoodBackupsAndFailsATamperedOneNamingIt(kind: RemoteKind) throws {
        let workspace = try RestoreWorkspace(kind)
        try workspace.backup()
        try workspace.backup()
        let goods = try workspace.backups()
        try #require(goods.count == 2)
        var tampered = try workspace.object(goods[0].key)
        tampered[tampered.count / 3] ^= 0x01
        try workspace.plant("20261101T000000Z-scheduled", tampered)
        let databaseBefore = try folderState(workspace.dataFolder)

        let all = try workspace.run(["verify", "--backup", "all"])
        #expect(all.status == 1)
        #expect(all.standardError.contains("crm 20261101T000000Z-scheduled: failed"), "\(all.standardError)")
        #expect(all.standardError.split(separator: "\n").count == 1, "\(all.standardError)")
        for good in goods {
            #expect(all.standardOutput.contains("crm \(good.id): ok: integrity_check ok"), "\(all.standardOutput)")
        }

        let latest = try workspace.run(["verify"])
        #expect(latest.status == 0, "\(latest.standardError)")
        #expect(latest.standardOutput.contains("crm \(goods[1].id): ok"), "\(latest.standardOutput)")
        let one = try workspace.run(["verify", "--db", "crm", "--backup", "20261101T000000Z-scheduled"])
        #expect(one.status == 1)
        #expect(try folderState(workspace.dataFolder) == databaseBefore, "verify touched the live database")
    }
}
