import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// The overlapped backup and restore: the check gates what becomes visible, and the result is
/// still byte for byte the snapshot.
@Suite struct PipelineBackupTests {
    /// Every file under `path`, hidden ones included, relative to it.
    private func allFiles(under path: String) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: path) else { return [] }
        return enumerator.compactMap { $0 as? String }.filter { name in
            var isFolder: ObjCBool = false
            FileManager.default.fileExists(atPath: "\(path)/\(name)", isDirectory: &isFolder)
            return !isFolder.boolValue
        }.sorted()
    }

    @Test func aFailedIntegrityCheckLeavesNothingOnTheTargetNorInTheLocalRotation() throws {
        let folder = try ScratchFolder("pipeline")
        let database = try CRMFixture.copy(into: folder)
        // Fold the WAL into the file, then scribble over a b-tree page deep inside it: the copy
        // succeeds (the backup API copies pages as they are) and its check fails.
        do {
            let db = try SQLiteDatabase(path: database)
            try db.execute("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE")
        }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: database))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: (size / 4096 / 2) * 4096 + 100)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 3000))
        try handle.close()

        let target = FileTarget(name: "t", root: folder.file("target"))
        let local = folder.file("local")
        let job = BackupJob(database: DatabaseRef(path: database, name: "crm"), kind: .manual, targets: [target],
                            encryption: .recipients([AgeX25519Identity.generate().recipient]),
                            check: .full, localFolder: local)
        let error = #expect(throws: SnapshotError.self) { try runBackup(job) }
        guard case .integrityCheckFailed = error else {
            Issue.record("expected an integrity check failure, got \(String(describing: error))")
            return
        }
        #expect(try target.list(prefix: "").isEmpty)
        #expect(allFiles(under: folder.file("target")) == [], "no temporary upload left behind")
        #expect(allFiles(under: local) == [], "no snapshot, temporary or final, in the local rotation")
    }

    @Test func theObjectIsAMultiMemberGzipThatStandardToolsRestore() throws {
        let folder = try ScratchFolder("pipeline")
        let database = try CRMFixture.copy(into: folder)
        let target = FileTarget(name: "t", root: folder.file("target"))
        let job = BackupJob(database: DatabaseRef(path: database, name: "crm"), kind: .manual, targets: [target],
                            encryption: .none, compressionLevel: 6, localFolder: folder.file("local"))
        let report = try runBackup(job)
        #expect(report.succeeded)
        let object = try #require(try target.list(prefix: "crm/").first)
        #expect(object.size == report.uploads[0].size)
        // 4 MiB in 1 MiB blocks: several members, which gunzip reads as one file.
        let unpacked = folder.file("unpacked.db")
        #expect(try runTool(["gunzip", "-c", folder.file("target/\(object.key)")], output: unpacked) == 0)
        let snapshot = try Data(contentsOf: URL(fileURLWithPath: try #require(report.localPath)))
        #expect(try Data(contentsOf: URL(fileURLWithPath: unpacked)) == snapshot)
        #expect(try CRMInvariant.violations(inDatabaseAt: unpacked) == [])

        // And the overlapped restore gives the same bytes back.
        let restored = folder.file("restored.db")
        let restoreJob = RestoreJob(target: target, database: "crm", selection: .latest, keys: DecryptionKeys())
        _ = try OffsiteCore.restore(restoreJob, toNewFile: restored, overwrite: false)
        #expect(try Data(contentsOf: URL(fileURLWithPath: restored)) == snapshot)
    }

    @Test func bytesShippedThatDifferFromTheCheckedCopyAreNeverCommittedAndTheBackupIsRetaken() throws {
        let folder = try ScratchFolder("pipeline-crc")
        let database = try CRMFixture.copy(into: folder)
        let target = FileTarget(name: "t", root: folder.file("target"))
        var job = BackupJob(database: DatabaseRef(path: database, name: "crm"), kind: .manual, targets: [target],
                            encryption: .none, localFolder: folder.file("local"))
        job.flipsFirstStreamedByte = true
        let retakes = Retakes()
        job.onRetake = { retakes.reasons.append($0) }
        let report = try runBackup(job)
        #expect(report.succeeded)
        #expect(retakes.reasons.count == 1 && retakes.reasons[0].contains("differ from the checked copy"), "\(retakes.reasons)")
        // One object, and it holds exactly the checked snapshot.
        let objects = try target.list(prefix: "crm/")
        try #require(objects.count == 1)
        let unpacked = folder.file("unpacked.db")
        #expect(try runTool(["gunzip", "-c", folder.file("target/\(objects[0].key)")], output: unpacked) == 0)
        let snapshot = try Data(contentsOf: URL(fileURLWithPath: try #require(report.localPath)))
        let same = try Data(contentsOf: URL(fileURLWithPath: unpacked)) == snapshot
        #expect(same)
        #expect(allFiles(under: folder.file("target")) == [objects[0].key], "nothing else left on the target")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.file("local/crm")).count == 1)
    }

    @Test func checksumsOfPiecesAddUpToTheWhole() {
        let data = mixedTestData(count: 3 << 20)
        let whole = data.withUnsafeBytes { PlaintextChecksum(of: $0) }
        var pieces = PlaintextChecksum()
        for start in stride(from: 0, to: data.count, by: 700_001) {
            let piece = data[start..<min(start + 700_001, data.count)].withUnsafeBytes { PlaintextChecksum(of: $0) }
            pieces.append(crc: piece.crc, length: piece.length)
        }
        #expect(pieces == whole)
        #expect(whole.length == Int64(data.count))
    }
}

/// What `onRetake` was told.
private final class Retakes: @unchecked Sendable {
    var reasons: [String] = []
}
