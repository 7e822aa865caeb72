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

    /// A target that is down: every listing takes its retries (`delay` seconds on `clock`), then fails.
    final class SlowDownTarget: Target, @unchecked Sendable {
        let name = "slow"
        let location = "nowhere"
        let clock: ManualClock
        let delay: TimeInterval
        init(clock: ManualClock, delay: TimeInterval) {
            self.clock = clock
            self.delay = delay
        }
        func makeUpload(key: String) throws -> any TargetUpload { throw TargetError.failed(target: name, operation: "upload", detail: "down", hint: nil, isPermanent: false) }
        func list(prefix: String) throws -> [RemoteObject] {
            clock.now += delay
            throw TargetError.failed(target: name, operation: "list", detail: "down", hint: nil, isPermanent: false)
        }
        func download(key: String, into sink: any ByteSink) throws { throw TargetError.notFound(target: name, key: key) }
        func delete(key: String) throws {}
    }

    /// A clock the test moves.
    final class ManualClock: @unchecked Sendable {
        var now: Date
        init(_ now: Date) { self.now = now }
    }

    /// A continuous chain's window starts at its base's id: the id must be the second the snapshot
    /// begins in, not the second before a slow listing of the targets (found by bench/torture.py:
    /// a base named 10 s before its snapshot made restores inside those 10 s apply change objects
    /// to a base that already held later commits).
    @Test(arguments: [0.0, 0.4, 3.0, 10.0])
    func theBackupIDIsTheSecondTheSnapshotBeginsInEvenWhenListingTheTargetsIsSlow(delay: TimeInterval) throws {
        let folder = try ScratchFolder("runner-slow-list")
        let clock = ManualClock(Date(timeIntervalSince1970: 1_795_000_000.7))
        let job = BackupJob(database: DatabaseRef(path: folder.file("crm.db"), name: "crm"), kind: .change,
                            targets: [SlowDownTarget(clock: clock, delay: delay)], encryption: .none)
        let id = chooseBackupID(job: job, folder: folder.file("local"), now: { clock.now })
        #expect(id.seconds == Int64(clock.now.timeIntervalSince1970.rounded(.down)), "id \(id) at \(clock.now)")
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
