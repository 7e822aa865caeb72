import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

@Suite struct BackupRunnerTests {
    /// A target whose uploads always fail, to show that one failing target does not stop the others.
    final class BrokenTarget: Target {
        let name = "broken"
        let location = "nowhere"
        func makeUpload(key: String) throws -> any TargetUpload { throw TargetError.failed(target: name, operation: "upload", detail: "down", hint: nil, isPermanent: false) }
        func list(prefix: String) throws -> [RemoteObject] { throw TargetError.failed(target: name, operation: "list", detail: "down", hint: nil, isPermanent: false) }
        func download(key: String, into sink: any ByteSink) throws { throw TargetError.notFound(target: name, key: key) }
        func delete(key: String) throws {}
    }

    @Test func shipsOneSnapshotToEveryTargetAndRotatesTheLocalFolder() throws {
        let folder = try ScratchFolder("runner")
        let database = try CRMFixture.copy(into: folder)
        let first = FileTarget(name: "first", root: folder.file("first"))
        let second = FileTarget(name: "second", root: folder.file("second"))
        let identity = AgeX25519Identity.generate()
        var clock = Date(timeIntervalSince1970: 1_795_000_000)
        var reports: [BackupReport] = []
        for _ in 0..<4 {
            let job = BackupJob(database: DatabaseRef(path: database, name: "crm"), kind: .scheduled,
                                targets: [first, BrokenTarget(), second], encryption: .recipients([identity.recipient]),
                                compressionLevel: 1, localFolder: folder.file("local"), localKeep: RetentionPolicy(last: 2))
            reports.append(try runBackup(job, now: { clock }))
            clock += 3600
        }
        for report in reports {
            #expect(report.uploads.map(\.target) == ["first", "broken", "second"])
            #expect(report.uploads[0].error == nil && report.uploads[2].error == nil)
            #expect(report.uploads[1].error != nil)
            #expect(!report.succeeded)
        }
        // Both healthy targets hold the same four objects, byte for byte.
        let firstKeys = try first.list(prefix: "crm/").map(\.key)
        #expect(firstKeys.count == 4)
        #expect(try second.list(prefix: "crm/").map(\.key) == firstKeys)
        for key in firstKeys {
            let a = DataSink(), b = DataSink()
            try first.download(key: key, into: a)
            try second.download(key: key, into: b)
            #expect(a.data == b.data)
        }
        // The local rotation kept the last two scheduled snapshots.
        let local = localBackups(inFolder: folder.file("local/crm")).map(\.id)
        #expect(local == reports.suffix(2).map(\.id))
        #expect(reports[3].prunedLocal.count == 1)

        // The newest object decrypts to a database equal to the snapshot.
        let restored = folder.file("restored.db")
        let job = RestoreJob(target: second, database: "crm", selection: .latest, keys: DecryptionKeys(identities: [identity]))
        let restore = try OffsiteCore.restore(job, toNewFile: restored, overwrite: false)
        #expect(restore.backup.id == reports[3].id)
        #expect(try Data(contentsOf: URL(fileURLWithPath: restored)) == Data(contentsOf: URL(fileURLWithPath: reports[3].localPath!)))
    }

    @Test func twoBackupsInOneSecondDoNotCollide() throws {
        let folder = try ScratchFolder("runner")
        let database = try CRMFixture.copy(into: folder)
        let target = FileTarget(name: "t", root: folder.file("t"))
        let job = BackupJob(database: DatabaseRef(path: database, name: "crm"), kind: .manual, targets: [target], encryption: .none)
        let a = try runBackup(job)
        let b = try runBackup(job)
        #expect(a.id != b.id)
        #expect(try target.list(prefix: "crm/").count == 2)
        #expect(try target.list(prefix: "crm/").allSatisfy { $0.key.hasSuffix(".sqlite3.gz") }, "plaintext only when asked")
    }
}
