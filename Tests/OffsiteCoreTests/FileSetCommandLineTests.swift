import Foundation
import Testing
@testable import OffsiteCore

/// File sets through the `offsite` binary: the README's standard-tools procedure against
/// `offsite restore`, kill -9 at every step of a backup, unreadable files, list/verify/prune.
@Suite struct FileSetCommandLineTests {
    /// A folder with a set (`data/uploads`), a folder target (`remote`) or an S3 one, a local
    /// folder, an identity, and `offsite.json`.
    /// Where a workspace's target is.
    enum Remote: String, CaseIterable, CustomStringConvertible {
        case folder, s3, webDAV
        var description: String { rawValue }
    }

    struct Workspace {
        let folder: ScratchFolder
        let remoteKind: Remote
        let prefix = uniqueS3Prefix("files-cli")
        var root: String { folder.file("data/uploads") }
        var remote: String { folder.file("remote") }

        init(_ label: String, remote: Remote = .folder) throws {
            folder = try ScratchFolder(label)
            remoteKind = remote
            try FileSetEngineTests.makeTree(folder.file("data/uploads"))
            let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
            try #require(keygen.status == 0, "\(keygen.standardError)")
            let recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            var target = #"{ "name": "usb", "url": "file://\#(folder.file("remote"))", "retention": { "last": 1 } }"#
            if remote == .webDAV {
                let server = try WebDAVTestServer.shared(.rclone)
                try Data(WebDAVTestServer.password.utf8).write(to: URL(fileURLWithPath: folder.file("secret")))
                target = """
                { "name": "usb", "url": "\(server.url(path: prefix))", "username": "\(WebDAVTestServer.username)",
                  "passwordFile": "secret", "retention": { "last": 1 } }
                """
            }
            if remote == .s3 {
                let server = try S3TestServer.shared(.rclone)
                try Data(S3TestServer.secretAccessKey.utf8).write(to: URL(fileURLWithPath: folder.file("secret")))
                target = """
                { "name": "usb", "url": "s3://\(S3TestServer.bucket)/\(prefix)", "endpoint": "\(server.endpoint.absoluteString)",
                  "region": "us-east-1", "accessKeyId": "\(S3TestServer.accessKeyId)", "secretAccessKeyFile": "secret",
                  "retention": { "last": 1 } }
                """
            }
            let config = """
            { "files": [{ "name": "uploads", "path": "data/uploads", "exclude": ["*.tmp", "cache/"] }],
              "local": { "dir": "local" },
              "encryption": { "recipients": ["\(recipient)"], "identityFile": "identity.txt" },
              "targets": [\(target)] }
            """
            try Data(config.utf8).write(to: URL(fileURLWithPath: folder.file("offsite.json")))
        }

        func run(_ arguments: [String], environment: [String: String] = [:]) throws -> ToolResult {
            try offsite(arguments + ["--config", "offsite.json"], in: folder, environment: environment)
        }

        func target() throws -> any Target {
            switch remoteKind {
            case .folder: return FileTarget(name: "usb", root: remote)
            case .s3: return try S3TestServer.shared(.rclone).makeTarget(prefix: prefix)
            case .webDAV: return try WebDAVTestServer.shared(.rclone).makeTarget(path: prefix)
            }
        }

        /// The snapshot ids `offsite list --files uploads --json` shows.
        func listedSnapshots() throws -> [String] {
            let list = try run(["list", "--files", "uploads", "--json"])
            #expect(list.status == 0, "\(list.standardError)")
            let rows = try JSONSerialization.jsonObject(with: list.standardOutputData) as? [[String: Any]] ?? []
            return rows.compactMap { $0["files"] as? String == "uploads" ? $0["id"] as? String : nil }
        }
    }

    /// The README's procedure, word for word, with its three variables set.
    static func readmeProcedure(folder: String, id: String, out: String) throws -> String {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let start = text.range(of: "<!-- standard-tools-procedure -->\n```sh\n"),
              let end = text.range(of: "```\n<!-- end standard-tools-procedure -->", range: start.upperBound..<text.endIndex) else {
            throw TestFailure("README.md has no standard-tools procedure between its markers")
        }
        var lines = text[start.upperBound..<end.lowerBound].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var replaced = 0
        for (index, line) in lines.enumerated() {
            for (name, value) in [("folder", folder), ("id", id), ("out", out)] where line.hasPrefix("\(name)=") {
                lines[index] = "\(name)='\(value)'"
                replaced += 1
            }
        }
        guard replaced == 3 else { throw TestFailure("the README procedure should set folder=, id= and out= on lines of their own") }
        return lines.joined(separator: "\n")
    }

    @Test func theStandardToolsProcedureRestoresTheSameTreeAsOffsiteRestore() throws {
        let workspace = try Workspace("files-tools")
        Thread.sleep(forTimeInterval: 2.1)  // let the new tree's timestamps settle (see the engine tests)
        var states = [try TreeFixture.state(workspace.root, skipping: FileSetEngineTests.excluded)]
        let first = try workspace.run(["backup"])
        #expect(first.status == 0, "\(first.standardOutput)\(first.standardError)")
        // A second point in time, with deletions, a file that became a folder and new names.
        removeTree(workspace.root + "/photos")
        unlink(workspace.root + "/empty-file")
        try TreeFixture.write(workspace.root, "empty-file/inside", Data("inside".utf8), mtime: 1_700_002_000)
        try TreeFixture.write(workspace.root, "new folder/with space & 'quote'.txt", Data("q".utf8), mode: 0o640, mtime: 1_700_002_001.125)
        chmod(workspace.root + "/invoices", 0o555)
        states.append(try TreeFixture.state(workspace.root, skipping: FileSetEngineTests.excluded))
        let second = try workspace.run(["backup", "--files", "uploads"])
        #expect(second.status == 0, "\(second.standardOutput)\(second.standardError)")
        let ids = try workspace.listedSnapshots()
        try #require(ids.count == 2, "\(ids)")

        for (index, id) in ids.enumerated() {
            let restore = try workspace.run(["restore", "--files", "uploads", "--target", "usb", "--backup", id,
                                             "--output", "by-offsite-\(index)"])
            #expect(restore.status == 0, "\(restore.standardError)")
            let byOffsite = try TreeFixture.state(workspace.folder.file("by-offsite-\(index)"))
            #expect(byOffsite == states[index], "offsite restore of \(id): \(FileSetEngineTests().difference(byOffsite, states[index]))")

            let work = try ScratchFolder("files-tools-work")
            try FileManager.default.copyItem(atPath: workspace.folder.file("identity.txt"), toPath: work.file("identity.txt"))
            let script = try Self.readmeProcedure(folder: workspace.remote + "/uploads", id: id, out: "restored")
            let result = try runTool("bash", ["-c", script], in: work)
            #expect(result.status == 0, "\(result.standardError)")
            let byTools = try TreeFixture.state(work.file("restored"))
            #expect(byTools == byOffsite, "standard tools vs offsite restore of \(id): \(FileSetEngineTests().difference(byTools, byOffsite))")
            chmod(workspace.folder.file("by-offsite-\(index)/invoices"), 0o755)
            chmod(work.file("restored/invoices"), 0o755)
        }
        chmod(workspace.root + "/invoices", 0o755)

        // And each piece is named by its BLAKE2b-256, as b2sum prints it.
        let work = try ScratchFolder("files-tools-b2sum")
        let pack = try #require(try FileManager.default.contentsOfDirectory(atPath: workspace.remote + "/uploads/packs").first)
        try FileManager.default.createDirectory(atPath: work.file("blobs"), withIntermediateDirectories: true)
        let unpack = try runTool("bash", ["-c", "age -d -i '\(workspace.folder.file("identity.txt"))' '\(workspace.remote)/uploads/packs/\(pack)' | tar -xz -C blobs"], in: work)
        #expect(unpack.status == 0, "\(unpack.standardError)")
        let check = try runTool("bash", ["-c", #"cd blobs && for f in */*; do [ "$(b2sum -l 256 < "$f" | cut -d' ' -f1)" = "${f#*/}" ] || echo "BAD $f"; done; ls */* | wc -l"#], in: work)
        #expect(!check.standardOutput.contains("BAD") && (Int(check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0,
                "\(check.standardOutput)")
    }

    enum Crash: String, CaseIterable, CustomStringConvertible {
        case packWritten = "files.pack-written"
        case packCommitted = "files.pack-committed"
        case packListPublished = "files.pack-list-published"
        case manifestPublished = "files.manifest-published"
        var description: String { rawValue }
    }

    /// Every object on the target belongs to a snapshot: a manifest, its pack list, or a pack that
    /// a listed snapshot's pack list names; no temporaries (folder) or open uploads (S3).
    static func expectOnlyCompleteSnapshots(_ workspace: Workspace, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let target = try workspace.target()
        let listing = try FileSetListing(target: target, set: "uploads")
        let objects = try target.list(prefix: "")
        var needed = Set<String>()
        for snapshot in listing.snapshots {
            let sink = DataSink()
            try target.download(key: "uploads/\(snapshot.id).packs", into: sink)
            needed.formUnion(try #require(parsePackList(sink.data), sourceLocation: sourceLocation))
        }
        for object in objects {
            let relative = String(object.key.dropFirst("uploads/".count))
            let isManifest = RemoteFileSnapshot(object: object) != nil
            let isList = relative.hasSuffix(".packs") && listing.snapshots.contains { "\($0.id).packs" == relative }
            #expect(isManifest || isList || needed.contains(relative), "left on the target: \(object.key)", sourceLocation: sourceLocation)
        }
        #expect(Set(listing.packs.keys) == needed, "packs missing or extra", sourceLocation: sourceLocation)
        switch workspace.remoteKind {
        case .folder:
            let hidden = (FileManager.default.enumerator(atPath: workspace.remote)?.allObjects as? [String] ?? [])
                .filter { ($0 as NSString).lastPathComponent.hasPrefix(".") }
            #expect(hidden.isEmpty, "temporaries left: \(hidden)", sourceLocation: sourceLocation)
        case .s3:
            let s3 = try #require(target as? S3Target, sourceLocation: sourceLocation)
            #expect(try s3.openUploads().isEmpty, "open multipart uploads left", sourceLocation: sourceLocation)
        case .webDAV:
            // Its temporaries are hidden from listings; the server's own folder shows them.
            let server = try WebDAVTestServer.shared(.rclone)
            let files = (FileManager.default.enumerator(atPath: server.dataFolder.appendingPathComponent(workspace.prefix).path)?
                .allObjects as? [String] ?? []).filter { ($0 as NSString).lastPathComponent.hasPrefix(WebDAVTarget.temporaryNamePrefix) }
            #expect(files.isEmpty, "temporaries left: \(files)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: Crash.allCases, Remote.allCases)
    func killMinus9DuringABackupLeavesNoPartialSnapshotAndTheNextRunCleansUp(crash: Crash, remote: Remote) throws {
        let workspace = try Workspace("files-kill", remote: remote)
        // A pack's worth of content, so that the first pack closes while the walk goes on.
        try TreeFixture.write(workspace.root, "zz/large.bin", TreeFixture.content(FileSetSizes.pack + (2 << 20), seed: 9, text: false))
        let killed = try workspace.run(["backup", "--files", "uploads"], environment: [CrashPoint.variable: crash.rawValue])
        #expect(killed.status != 0, "the crash point was not reached: \(killed.standardOutput)")
        let afterCrash = try workspace.listedSnapshots()
        if crash == .manifestPublished {
            #expect(afterCrash.count == 1, "the manifest was published before the kill")
        } else {
            #expect(afterCrash.isEmpty, "a partial snapshot is visible: \(afterCrash)")
            let restore = try workspace.run(["restore", "--files", "uploads", "--output", "nothing"])
            #expect(restore.status != 0 && restore.standardError.contains("no snapshots"), "\(restore.standardError)")
        }

        let next = try workspace.run(["backup", "--files", "uploads"])
        #expect(next.status == 0, "\(next.standardOutput)\(next.standardError)")
        if crash != .manifestPublished {
            #expect(next.standardOutput.contains("left unpublished"), "the next run says what it removed: \(next.standardOutput)")
        }
        try Self.expectOnlyCompleteSnapshots(workspace)
        let ids = try workspace.listedSnapshots()
        #expect(ids.count == (crash == .manifestPublished ? 2 : 1))
        let restore = try workspace.run(["restore", "--files", "uploads", "--output", "restored"])
        #expect(restore.status == 0, "\(restore.standardError)")
        let restored = try TreeFixture.state(workspace.folder.file("restored"))
        let live = try TreeFixture.state(workspace.root, skipping: FileSetEngineTests.excluded)
        #expect(restored == live, "\(FileSetEngineTests().difference(restored, live))")
        if crash == .manifestPublished {
            // The published snapshot became the base: nothing new was uploaded the second time.
            #expect(next.standardOutput.contains("0 new pack(s)"), "\(next.standardOutput)")
        }
    }

    @Test func anUnreadableFileOrFolderIsReportedAndTheRestBackedUp() throws {
        let workspace = try Workspace("files-unreadable")
        try TreeFixture.write(workspace.root, "private/secret.txt", Data("secret".utf8))
        try TreeFixture.write(workspace.root, "locked.txt", Data("locked".utf8))
        var prefix: [String] = []
        if geteuid() == 0 {
            // root reads everything: run the backup as nobody, who may read all but the two.
            let setpriv = try locateTool("setpriv")
            prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
            let chown = try runTool("chown", ["-R", "65534:65534", workspace.folder.path], in: workspace.folder)
            #expect(chown.status == 0)
            _ = chown0(workspace.root + "/locked.txt")
            _ = chown0(workspace.root + "/private")
        }
        chmod(workspace.root + "/locked.txt", 0o000)
        chmod(workspace.root + "/private", 0o000)
        let executable = "\(productsFolder)/offsite"
        let backup = try runProgram(prefix.isEmpty ? executable : prefix[0],
                                    (prefix.isEmpty ? [] : Array(prefix.dropFirst()) + [executable]) + ["backup", "--config", "offsite.json"],
                                    in: workspace.folder, environment: ["HOME": workspace.folder.path])
        #expect(backup.status == 1, "\(backup.standardOutput)\(backup.standardError)")
        #expect(backup.standardError.contains("locked.txt: unreadable (Permission denied)"), "\(backup.standardError)")
        #expect(backup.standardError.contains("private: unreadable (Permission denied)"), "\(backup.standardError)")
        #expect(try workspace.listedSnapshots().count == 1)
        chmod(workspace.root + "/locked.txt", 0o644)
        chmod(workspace.root + "/private", 0o755)
        let restore = try workspace.run(["restore", "--files", "uploads", "--output", "restored"])
        #expect(restore.status == 0, "\(restore.standardError)")
        let restored = try TreeFixture.state(workspace.folder.file("restored"), folderTimes: false)
        #expect(restored["locked.txt"] == nil && restored["private"] == nil)
        #expect(restored["invoices/2026/a.txt"] != nil && restored["photos/p1.jpg"] != nil)
    }

    /// `chown path 0:0`; returns the status.
    func chown0(_ path: String) -> Int32 {
        Glibc.lchown(path, 0, 0)
    }

    @Test func listVerifyAndPruneCoverFileSets() throws {
        let workspace = try Workspace("files-commands")
        #expect(try workspace.run(["backup"]).status == 0)
        try TreeFixture.write(workspace.root, "more.txt", Data("more".utf8))
        #expect(try workspace.run(["backup", "--files", "uploads"]).status == 0)

        let table = try workspace.run(["list"])
        #expect(table.standardOutput.contains("uploads (files)"), "\(table.standardOutput)")
        let verify = try workspace.run(["verify", "--backup", "all"])
        #expect(verify.status == 0, "\(verify.standardOutput)\(verify.standardError)")
        #expect(verify.standardOutput.components(separatedBy: ": ok: ").count == 3, "\(verify.standardOutput)")
        let blind = try offsite(["verify", "--files", "uploads", "--target", "file://\(workspace.remote)"], in: workspace.folder)
        #expect(blind.status == 0 && blind.standardOutput.contains("not decrypted"), "\(blind.standardOutput)\(blind.standardError)")

        let dry = try workspace.run(["prune", "--dry-run"])
        #expect(dry.status == 0, "\(dry.standardError)")
        #expect(dry.standardOutput.contains("usb uploads (files): keep 2, remove 0"), "manual snapshots stay: \(dry.standardOutput)")
        let wrongName = try workspace.run(["restore", "--files", "nope", "--output", "x"])
        expectOneLineError(wrongName, containing: "no snapshots of file set nope")
    }
}
