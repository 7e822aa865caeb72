import Foundation
import Testing
@testable import OffsiteCore

/// File sets beyond a plain backup and restore: files that change while read, retention and the
/// collection of packs, the restore drill, damaged packs, and the checks before publishing.
@Suite struct FileSetMaintenanceTests {
    /// A tree, a folder target, a cache and keys.
    struct Setup {
        let folder: ScratchFolder
        let root: String
        let target: FileTarget
        let identity = AgeX25519Identity.generate()
        var keys: DecryptionKeys { DecryptionKeys(identities: [identity]) }
        var cache: String { folder.file("local/.offsite-files") }

        init(_ label: String) throws {
            folder = try ScratchFolder(label)
            root = folder.file("uploads")
            target = FileTarget(name: "usb", root: folder.file("remote"))
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        }

        func job(_ kind: BackupKind = .scheduled, encryption: PayloadEncryption? = nil) -> FileSetBackupJob {
            FileSetBackupJob(set: FileSetConfig(path: root, name: "uploads"), kind: kind, targets: [target],
                             encryption: encryption ?? .recipients([identity.recipient]), cacheFolder: cache)
        }

        func restore(_ selection: BackupSelection = .latest, to name: String) throws -> FileSetRestoreReport {
            try restoreFileSet(FileSetRestoreJob(target: target, set: "uploads", selection: selection, keys: keys),
                               toNewFolder: folder.file(name))
        }

        /// Every object key on the target (hidden temporaries included).
        func remoteFiles() -> [String] {
            let base = folder.file("remote")
            return (FileManager.default.enumerator(atPath: base)?.allObjects as? [String] ?? []).filter { path in
                var isFolder: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: "\(base)/\(path)", isDirectory: &isFolder)
                return !isFolder.boolValue
            }.sorted()
        }
    }

    @Test func aFileChangedWhileReadIsReadAgain() throws {
        let setup = try Setup("changed-once")
        try TreeFixture.write(setup.root, "a.json", Data(#"{"v": 1}"#.utf8))
        try TreeFixture.write(setup.root, "b.txt", Data("b".utf8))
        var job = setup.job()
        job.afterRead = { path, attempt in
            if path == "a.json" && attempt == 0 { try? Data(#"{"v": 2, "more": true}"#.utf8).write(to: URL(fileURLWithPath: setup.root + "/a.json")) }
        }
        let report = try runFileSetBackup(job)
        #expect(report.succeeded && report.skipped.isEmpty, "\(report.skipped)")
        #expect(report.files == 2)
        _ = try setup.restore(to: "restored")
        #expect(FileManager.default.contents(atPath: setup.folder.file("restored/a.json")) == Data(#"{"v": 2, "more": true}"#.utf8))
    }

    @Test func aFileThatKeepsChangingIsReportedAndTheRestBackedUp() throws {
        let setup = try Setup("changed-always")
        try TreeFixture.write(setup.root, "log.txt", Data("line\n".utf8))
        try TreeFixture.write(setup.root, "keep.txt", Data("keep".utf8))
        var job = setup.job()
        job.afterRead = { path, attempt in
            guard path == "log.txt" else { return }
            let handle = FileHandle(forWritingAtPath: setup.root + "/log.txt")
            handle?.seekToEndOfFile()
            handle?.write(Data("line \(attempt)\n".utf8))
            try? handle?.close()
        }
        let report = try runFileSetBackup(job)
        #expect(report.skipped == [SkippedEntry(path: "log.txt", reason: .changedWhileRead)])
        #expect(report.succeeded && report.files == 1)
        _ = try setup.restore(to: "restored")
        #expect(FileManager.default.contents(atPath: setup.folder.file("restored/keep.txt")) == Data("keep".utf8))
        #expect(!FileManager.default.fileExists(atPath: setup.folder.file("restored/log.txt")))
    }

    @Test func socketsAndFIFOsAreReportedAsUnsupportedAndLinksNeverFollowed() throws {
        let setup = try Setup("special")
        try TreeFixture.write(setup.root, "a.txt", Data("a".utf8))
        #expect(mkfifo(setup.root + "/pipe", 0o600) == 0)
        let outside = setup.folder.file("outside")
        try TreeFixture.write(outside, "secret.txt", Data("not part of the set".utf8))
        try TreeFixture.link(setup.root, "escape", to: outside)
        let report = try runFileSetBackup(setup.job())
        #expect(report.skipped == [SkippedEntry(path: "pipe", reason: .unsupported("a FIFO"))])
        #expect(report.files == 1 && report.links == 1)
        _ = try setup.restore(to: "restored")
        let state = try TreeFixture.state(setup.folder.file("restored"), folderTimes: false)
        #expect(Set(state.keys) == [".", "a.txt", "escape"])
        #expect(state["escape"]?.hasSuffix(outside) == true)
    }

    @Test func retentionRemovesSnapshotsAndCollectsOnlyPacksNoKeptSnapshotNeedsOnceOldEnough() throws {
        let setup = try Setup("prune")
        try TreeFixture.write(setup.root, "stays.bin", TreeFixture.content(200_000, seed: 1, text: false))
        let zeroth = try runFileSetBackup(setup.job())
        try TreeFixture.write(setup.root, "goes.bin", TreeFixture.content(200_000, seed: 2, text: false))
        let first = try runFileSetBackup(setup.job())
        unlink(setup.root + "/goes.bin")
        try TreeFixture.write(setup.root, "new.bin", TreeFixture.content(200_000, seed: 3, text: false))
        let second = try runFileSetBackup(setup.job())
        let manual = try runFileSetBackup(setup.job(.manual))
        try TreeFixture.write(setup.root, "newest.bin", TreeFixture.content(100_000, seed: 4, text: false))
        let third = try runFileSetBackup(setup.job())
        #expect([zeroth, first, second, manual, third].allSatisfy { $0.succeeded })
        let packsBefore = try FileSetListing(target: setup.target, set: "uploads").packs.count
        #expect(packsBefore == 4, "one pack per backup that had new content")

        // Now: the unneeded pack is too young to be collected.
        let policy = RetentionPolicy(last: 1)
        let young = try pruneFileSet(named: "uploads", on: setup.target, policy: policy, cacheFolder: setup.cache)
        #expect(young.removedSnapshots == [second.id, first.id, zeroth.id])
        #expect(young.plan.keep.map(\.backup.id) == [third.id, manual.id])
        #expect(young.deletedPacks.isEmpty && young.youngUnneededPacks == 1)
        #expect(try listFileSetSnapshots(on: setup.target, set: "uploads").map(\.id) == [manual.id, third.id])
        #expect(!setup.remoteFiles().contains("uploads/\(first.id).packs"))

        // A day later: the pack only a removed snapshot needed (goes.bin) is deleted; the others stay.
        let later = { Date().addingTimeInterval(2 * 86400) }
        let dry = try pruneFileSet(named: "uploads", on: setup.target, policy: policy, cacheFolder: setup.cache, dryRun: true, now: later)
        #expect(dry.deletedPacks.count == 1)
        #expect(try FileSetListing(target: setup.target, set: "uploads").packs.count == 4, "a dry run deletes nothing")
        let old = try pruneFileSet(named: "uploads", on: setup.target, policy: policy, cacheFolder: setup.cache, now: later)
        #expect(old.deletedPacks == dry.deletedPacks && old.keptPacks == 3, "\(old)")
        for (index, snapshot) in [manual, third].enumerated() {
            let restored = try setup.restore(.id(snapshot.id), to: "restored-\(index)")
            #expect(restored.files == (index == 0 ? 2 : 3))
        }
        #expect(try verifyFileSet(named: "uploads", on: setup.target, scope: .all, keys: setup.keys).allSatisfy { $0.status == .ok })

        // Without a readable pack list for a kept snapshot, no pack is deleted at all.
        try setup.target.delete(key: "uploads/\(third.id).packs")
        let noCache: String? = nil
        let blind = try pruneFileSet(named: "uploads", on: setup.target, policy: RetentionPolicy(last: 1), cacheFolder: noCache,
                                     now: { Date().addingTimeInterval(3 * 86400) })
        #expect(!blind.collectedPacks && blind.deletedPacks.isEmpty && !blind.problems.isEmpty)
        // With the identity, the manifest itself says which packs it needs.
        let withKeys = try pruneFileSet(named: "uploads", on: setup.target, policy: RetentionPolicy(last: 1), cacheFolder: noCache,
                                        keys: setup.keys, now: { Date().addingTimeInterval(3 * 86400) })
        #expect(withKeys.collectedPacks && withKeys.deletedPacks.isEmpty)
    }

    @Test func aListingThatFailsDeletesNothing() throws {
        final class Unlistable: Target, @unchecked Sendable {
            let name = "down"
            let location = "nowhere"
            var deletes = 0
            func makeUpload(key: String) throws -> any TargetUpload { throw TargetError.notFound(target: name, key: key) }
            func list(prefix: String) throws -> [RemoteObject] {
                throw TargetError.failed(target: name, operation: "list", detail: "down", hint: nil, isPermanent: false)
            }
            func download(key: String, into sink: any ByteSink) throws { throw TargetError.notFound(target: name, key: key) }
            func delete(key: String) throws { deletes += 1 }
        }
        let target = Unlistable()
        #expect(throws: TargetError.self) {
            _ = try pruneFileSet(named: "uploads", on: target, policy: RetentionPolicy(last: 1), cacheFolder: nil)
        }
        #expect(target.deletes == 0)
    }

    @Test func verifyAndRestoreRefuseADamagedPackAndChangeNothing() throws {
        let setup = try Setup("damaged")
        try TreeFixture.write(setup.root, "doc.txt", TreeFixture.content(300_000, seed: 5, text: true))
        let report = try runFileSetBackup(setup.job(encryption: PayloadEncryption.none))
        #expect(report.succeeded)
        #expect(try verifyFileSet(named: "uploads", on: setup.target, scope: .latest, keys: DecryptionKeys(passphrase: "unused")).first?.status == .ok)
        let noKeys = try verifyFileSet(named: "uploads", on: setup.target, scope: .latest, keys: nil)
        #expect(noKeys.first?.status == .notDecrypted, "\(noKeys)")

        // Flip one byte in the middle of the (unencrypted) pack: gzip's CRC or the hash catches it.
        let pack = try #require(setup.remoteFiles().first { $0.hasPrefix("uploads/packs/") })
        let path = setup.folder.file("remote/\(pack)")
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[data.count / 2] ^= 0x20
        try data.write(to: URL(fileURLWithPath: path))
        let outcome = try verifyFileSet(named: "uploads", on: setup.target, scope: .latest, keys: DecryptionKeys(passphrase: "unused"))
        #expect(outcome.first?.status == .failed, "\(outcome)")
        #expect(throws: (any Error).self) { _ = try setup.restore(to: "restored") }
        #expect(!FileManager.default.fileExists(atPath: setup.folder.file("restored")))
        let names = try setup.folder.names()
        #expect(names.allSatisfy { !$0.contains("offsite-restore") }, "\(names)")

        // A pack gone: verify without keys sees it too.
        unlink(path)
        let gone = try verifyFileSet(named: "uploads", on: setup.target, scope: .latest, keys: nil)
        #expect(gone.first?.status == .failed && gone.first?.detail.contains("missing") == true, "\(gone)")
    }

    @Test func aBaseWhosePacksAreGoneIsNotTrustedAndTheNextBackupShipsEverythingAgain() throws {
        let setup = try Setup("lost-base")
        try TreeFixture.write(setup.root, "a.bin", TreeFixture.content(100_000, seed: 6, text: false))
        _ = try runFileSetBackup(setup.job())
        for file in setup.remoteFiles() where file.hasPrefix("uploads/packs/") { unlink(setup.folder.file("remote/\(file)")) }
        let next = try runFileSetBackup(setup.job())
        #expect(next.succeeded && next.uploads[0].base == nil && next.uploads[0].packsUploaded == 1)
        #expect(try setup.restore(to: "restored").files == 1)
    }

    @Test func withTheIdentityALostCacheStillAvoidsUploadingKnownContent() throws {
        let setup = try Setup("lost-cache")
        try TreeFixture.write(setup.root, "a.bin", TreeFixture.content(500_000, seed: 7, text: false))
        let first = try runFileSetBackup(setup.job())
        try FileManager.default.removeItem(atPath: setup.cache)
        var job = setup.job()
        job.keys = setup.keys
        let second = try runFileSetBackup(job)
        #expect(second.uploads[0].base == first.id)
        #expect(second.uploads[0].packsUploaded == 0, "the content is on the target already")
        #expect(try setup.restore(to: "restored").bytes == 500_000)
    }

    @Test func theLockKeepsASecondBackupOfTheSameSetOut() throws {
        let setup = try Setup("lock")
        let cache = try FileSetCache(root: setup.cache, set: "uploads")
        try cache.lock()
        #expect(throws: FileSetError.self) { _ = try runFileSetBackup(setup.job()) }
        cache.unlock()
        #expect(try runFileSetBackup(setup.job()).succeeded)
    }

    @Test func theDatabasesTheLocalFolderAndStagingFoldersAreNeverPartOfASet() throws {
        let setup = try Setup("left-out")
        try TreeFixture.write(setup.root, "crm.db", Data("SQLite format 3\0".utf8))
        try TreeFixture.write(setup.root, "crm.db-wal", Data("wal".utf8))
        try TreeFixture.write(setup.root, "doc.txt", Data("doc".utf8))
        try FileManager.default.createDirectory(atPath: setup.root + "/.offsite-restore-1234", withIntermediateDirectories: true)
        var job = setup.job()
        job.leftOut = [setup.root + "/crm.db", setup.root + "/crm.db-wal"]
        job.cacheFolder = setup.root + "/local/.offsite-files"
        let report = try runFileSetBackup(job)
        #expect(report.files == 1 && report.folders == 2, "\(report)")  // the root and local/
    }
}
