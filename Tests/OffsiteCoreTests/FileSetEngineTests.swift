import Foundation
import Testing
@testable import OffsiteCore

/// Backups and restores of file sets through the library, against a folder, S3 (rclone serve s3)
/// and WebDAV (rclone serve webdav): exact trees at three points in time, incremental uploads,
/// sub-paths, in place.
@Suite(.serialized) struct FileSetEngineTests {
    enum Server: String, CaseIterable, CustomStringConvertible {
        case folder, s3, webDAV
        var description: String { rawValue }
    }

    static func makeTarget(_ server: Server, folder: ScratchFolder) throws -> any Target {
        let prefix = uniqueS3Prefix("files")
        switch server {
        case .folder: return FileTarget(name: "usb", root: folder.file("remote"))
        case .s3: return try S3TestServer.shared(.rclone).makeTarget(prefix: prefix)
        case .webDAV: return try WebDAVTestServer.shared(.rclone).makeTarget(path: prefix)
        }
    }

    /// A tree with what uploads folders hold: documents, photos (incompressible), a large file of
    /// several chunks, links inside and out, an empty folder and file, awkward names and modes.
    static func makeTree(_ root: String) throws {
        let base = 1_700_000_000.0
        try TreeFixture.write(root, "invoices/2026/a.txt", TreeFixture.content(20_000, seed: 1, text: true), mtime: base + 0.25)
        try TreeFixture.write(root, "invoices/2026/b.pdf", TreeFixture.content(300_000, seed: 2, text: false), mode: 0o600, mtime: base + 1)
        try TreeFixture.write(root, "photos/p1.jpg", TreeFixture.content(1_000_000, seed: 3, text: false), mtime: base + 2)
        try TreeFixture.write(root, "photos/copy-of-p1.jpg", TreeFixture.content(1_000_000, seed: 3, text: false), mtime: base + 3)
        try TreeFixture.write(root, "exports/big.csv", TreeFixture.content(FileSetSizes.chunk * 2 + 12_345, seed: 4, text: true), mtime: base + 4)
        try TreeFixture.write(root, "empty-file", Data(), mtime: base + 5)
        try TreeFixture.write(root, "bin/run.sh", Data("#!/bin/sh\necho hi\n".utf8), mode: 0o755, mtime: base + 6)
        try TreeFixture.write(root, "read-only.json", Data(#"{"a": 1}"#.utf8), mode: 0o444, mtime: base + 7)
        try TreeFixture.write(root, "tab\tand\nnewline \\ name.txt", Data("odd".utf8), mtime: base + 8)
        let bytesName: [UInt8] = Array((root + "/caf").utf8) + [0xE9, 0]
        let descriptor = bytesName.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_CREAT | O_WRONLY, 0o640) } }
        _ = write(descriptor, "latin-1 name", 12)
        close(descriptor)
        try FileManager.default.createDirectory(atPath: root + "/empty-folder", withIntermediateDirectories: true)
        try TreeFixture.link(root, "latest.pdf", to: "invoices/2026/b.pdf")
        try TreeFixture.link(root, "outside", to: "/etc/hostname")
        try TreeFixture.link(root, "dangling", to: "no/such/file")
        try TreeFixture.write(root, "cache/thumb.tmp", Data("excluded".utf8))
        try TreeFixture.write(root, "note.tmp", Data("excluded".utf8))
        for folder in ["invoices/2026", "invoices", "photos", "exports", "bin", "empty-folder"] {
            try TreeFixture.setTime("\(root)/\(folder)", base + 100)
        }
        chmod(root + "/empty-folder", 0o750)
    }

    static let excluded: Set<String> = ["cache", "cache/thumb.tmp", "note.tmp"]

    @Test(arguments: Server.allCases)
    func restoresExactlyTheTreeOfEachOfThreePointsInTime(server: Server) throws {
        let folder = try ScratchFolder("fileset-\(server)")
        let root = folder.file("uploads")
        try Self.makeTree(root)
        // Files changed less than 2 s before they are read are read again next time (racy
        // timestamps); let the new tree settle so that the second backup shows what is skipped.
        Thread.sleep(forTimeInterval: 2.1)
        let identity = AgeX25519Identity.generate()
        let target = try Self.makeTarget(server, folder: folder)
        let set = FileSetConfig(path: root, name: "uploads", exclude: try ExcludePatterns(["*.tmp", "cache/"]))
        let job = FileSetBackupJob(set: set, kind: .scheduled, targets: [target], encryption: .recipients([identity.recipient]),
                                   cacheFolder: folder.file("local/.offsite-files"))
        let keys = DecryptionKeys(identities: [identity])

        // 1: the tree as made.
        var states: [[String: String]] = []
        var reports: [FileSetBackupReport] = []
        states.append(try TreeFixture.state(root, skipping: Self.excluded))
        reports.append(try runFileSetBackup(job))
        #expect(reports[0].succeeded, "\(reports[0].uploads.compactMap(\.error))")
        #expect(reports[0].skipped.isEmpty, "\(reports[0].skipped)")
        #expect(reports[0].files == 10 && reports[0].links == 3, "\(reports[0])")
        #expect(reports[0].uploads[0].base == nil)

        // 2: a document edited, one deleted, one added, a mode changed, a link retargeted, a file
        // that became a folder, a folder that became a file, a big file's last chunk changed.
        try TreeFixture.write(root, "invoices/2026/a.txt", TreeFixture.content(20_000, seed: 11, text: true), mtime: 1_700_001_000.5)
        unlink(root + "/photos/copy-of-p1.jpg")
        try TreeFixture.write(root, "invoices/2026/c.txt", Data("new invoice".utf8), mtime: 1_700_001_001)
        chmod(root + "/bin/run.sh", 0o700)
        try TreeFixture.link(root, "latest.pdf", to: "invoices/2026/c.txt")
        unlink(root + "/empty-file")
        try TreeFixture.write(root, "empty-file/now-a-file", Data("x".utf8), mtime: 1_700_001_002)
        removeTree(root + "/empty-folder")
        try TreeFixture.write(root, "empty-folder", Data("now a file".utf8), mtime: 1_700_001_003)
        let big = root + "/exports/big.csv"
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: big))
        try handle.seek(toOffset: UInt64(FileSetSizes.chunk * 2 + 100))
        try handle.write(contentsOf: Data("CHANGED".utf8))
        try handle.close()
        try TreeFixture.setTime(big, 1_700_001_004)
        states.append(try TreeFixture.state(root, skipping: Self.excluded))
        reports.append(try runFileSetBackup(job))
        #expect(reports[1].succeeded)
        #expect(reports[1].uploads[0].base == reports[0].id, "incremental to the first")
        // Only the changed and new content was read; the unchanged photo and big chunks were not.
        #expect(reports[1].filesRead == 6, "\(reports[1].filesRead) files read")
        #expect(reports[1].newContentBytes < 40_000, "\(reports[1].newContentBytes) bytes of new content")

        // 3: everything removed but one file.
        for name in try FileManager.default.contentsOfDirectory(atPath: root) where name != "photos" && name != "cache" {
            removeTree("\(root)/\(name)")
        }
        states.append(try TreeFixture.state(root, skipping: Self.excluded))
        reports.append(try runFileSetBackup(job))
        #expect(reports[2].succeeded)
        #expect(reports[2].uploads[0].packsUploaded == 0, "nothing new to upload")

        let snapshots = try listFileSetSnapshots(on: target, set: "uploads")
        #expect(snapshots.map(\.id) == reports.map(\.id))
        for (index, report) in reports.enumerated() {
            let output = folder.file("restored-\(index)")
            let restored = try restoreFileSet(FileSetRestoreJob(target: target, set: "uploads", selection: .id(report.id), keys: keys),
                                              toNewFolder: output)
            #expect(restored.snapshot.id == report.id)
            let state = try TreeFixture.state(output)
            #expect(state == states[index], "snapshot \(index + 1): \(difference(state, states[index]))")
        }
        // --at picks the newest at or before the time.
        let at = try restoreFileSet(FileSetRestoreJob(target: target, set: "uploads", selection: .at(reports[1].id.date.addingTimeInterval(0.5)),
                                                      keys: keys), toNewFolder: folder.file("restored-at"))
        #expect(at.snapshot.id == reports[1].id)
        #expect(throws: FileSetError.self) {
            _ = try restoreFileSet(FileSetRestoreJob(target: target, set: "uploads", selection: .latest, keys: keys),
                                   toNewFolder: folder.file("restored-at"))
        }

        // A sub-path: that folder and the folders on the way, nothing else.
        let sub = try restoreFileSet(FileSetRestoreJob(target: target, set: "uploads", selection: .id(reports[0].id), keys: keys,
                                                       subpath: "invoices/2026"), toNewFolder: folder.file("restored-sub"))
        #expect(sub.files == 2)
        let subState = try TreeFixture.state(folder.file("restored-sub"), folderTimes: false)
        #expect(Set(subState.keys) == [".", "invoices", "invoices/2026", "invoices/2026/a.txt", "invoices/2026/b.pdf"])
        #expect(subState["invoices/2026/b.pdf"] == states[0]["invoices/2026/b.pdf"])

        // In place, back to the first point in time: deletions, additions, types and times undone;
        // the excluded files stay as they are.
        try TreeFixture.write(root, "photos/added-later.jpg", Data("later".utf8))
        let inPlace = try restoreFileSetInPlace(FileSetRestoreJob(target: target, set: "uploads", selection: .id(reports[0].id), keys: keys),
                                                root: root, exclude: set.exclude)
        #expect(inPlace.removed >= 1)
        let live = try TreeFixture.state(root, skipping: Self.excluded)
        #expect(live == states[0], "\(difference(live, states[0]))")
        #expect(FileManager.default.contents(atPath: root + "/cache/thumb.tmp") == Data("excluded".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).allSatisfy { !$0.hasPrefix(".offsite-restore-") })

        // In place, one file of the third point: only that path changes.
        let before = try TreeFixture.state(root, skipping: Self.excluded)
        _ = try restoreFileSetInPlace(FileSetRestoreJob(target: target, set: "uploads", selection: .id(reports[1].id), keys: keys,
                                                        subpath: "invoices/2026/a.txt"), root: root, exclude: set.exclude)
        let after = try TreeFixture.state(root, skipping: Self.excluded)
        #expect(after["invoices/2026/a.txt"] == states[1]["invoices/2026/a.txt"])
        #expect(after.filter { $0.key != "invoices/2026/a.txt" && $0.key != "invoices/2026" } ==
                before.filter { $0.key != "invoices/2026/a.txt" && $0.key != "invoices/2026" })
    }

    /// The keys whose values differ, for failure messages.
    func difference(_ a: [String: String], _ b: [String: String]) -> String {
        Set(a.keys).union(b.keys).sorted().filter { a[$0] != b[$0] }.map { "\($0): \(a[$0] ?? "missing") vs \(b[$0] ?? "missing")" }
            .joined(separator: "; ")
    }
}
