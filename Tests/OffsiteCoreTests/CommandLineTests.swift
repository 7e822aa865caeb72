import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// End-to-end tests of the `offsite` binary against the folder target, checked with the real
/// sqlite3, age and gunzip.
@Suite struct CommandLineTests {
    /// A folder with a CRM database `data/crm.db`, an identity `identity.txt` and its recipient.
    struct Workspace {
        let folder: ScratchFolder
        let database: String
        let recipient: String
        var identity: String { folder.file("identity.txt") }
        var remote: String { folder.file("remote") }
        var targetURL: String { "file://\(remote)" }

        init() throws {
            folder = try ScratchFolder("cli")
            try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
            database = folder.file("data/crm.db")
            try FileManager.default.copyItem(atPath: try CRMFixture.shared.get().path, toPath: database)
            let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
            #expect(keygen.status == 0, "\(keygen.standardError)")
            recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// `offsite backup` of the database to the remote folder with flags alone.
        func backup(_ extra: [String] = []) throws -> ToolResult {
            try offsite(["backup", "--db", database, "--target", targetURL, "--recipient", recipient] + extra, in: folder)
        }

        /// The backup objects on the remote, sorted.
        func objects() throws -> [String] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: "\(remote)/crm")) ?? []
            return names.filter { !$0.hasPrefix(".") }.sorted().map { "\(remote)/crm/\($0)" }
        }
    }

    @Test func keygenWritesAPrivateIdentityAndPrintsOnlyTheRecipient() throws {
        let workspace = try Workspace()
        #expect(workspace.recipient.hasPrefix("age1") && workspace.recipient.count == 62)
        #expect(try permissions(of: workspace.identity) == 0o600)
        let contents = try String(contentsOfFile: workspace.identity, encoding: .utf8)
        #expect(contents.contains("AGE-SECRET-KEY-1"))
        #expect(contents.contains("# public key: \(workspace.recipient)"))
        // The real age-keygen derives the same recipient from the file.
        let derived = try runTool("age-keygen", ["-y", workspace.identity], in: workspace.folder)
        #expect(derived.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == workspace.recipient)
        // Never overwrites.
        let again = try offsite(["keygen", "--output", "identity.txt"], in: workspace.folder)
        expectOneLineError(again, containing: "identity.txt")
        #expect(try String(contentsOfFile: workspace.identity, encoding: .utf8) == contents)
    }

    @Test func backupListRestoreRoundTripsAndStandardToolsReadTheObject() throws {
        let workspace = try Workspace()
        let backup = try workspace.backup()
        #expect(backup.status == 0, "\(backup.standardError)")
        let objects = try workspace.objects()
        try #require(objects.count == 1)
        #expect(objects[0].hasSuffix("-manual.sqlite3.gz.age"))
        #expect(try permissions(of: objects[0]) == 0o600)

        let list = try offsite(["list", "--target", workspace.targetURL, "--json"], in: workspace.folder)
        #expect(list.status == 0)
        let rows = try JSONSerialization.jsonObject(with: list.standardOutputData) as? [[String: Any]]
        #expect(rows?.count == 1)
        #expect(rows?.first?["kind"] as? String == "manual")
        #expect(rows?.first?["database"] as? String == "crm")

        let restore = try offsite(["restore", "--target", workspace.targetURL, "--db", "crm", "--identity", "identity.txt",
                                   "--output", "restored.db"], in: workspace.folder)
        #expect(restore.status == 0, "\(restore.standardError)")
        let restored = workspace.folder.file("restored.db")
        #expect(try sqlite3(restored, "PRAGMA integrity_check", in: workspace.folder) == "ok")
        try expectSameRows(restored, workspace.database)

        // Anyone holding the identity restores with standard tools alone.
        let byHand = try runTool("sh", ["-c", "age -d -i identity.txt '\(objects[0])' | gunzip > by-hand.db"], in: workspace.folder)
        #expect(byHand.status == 0, "\(byHand.standardError)")
        #expect(try sqlite3(workspace.folder.file("by-hand.db"), "PRAGMA integrity_check", in: workspace.folder) == "ok")
        try expectSameRows(workspace.folder.file("by-hand.db"), workspace.database)
    }

    @Test func objectsTheAgeCLIEncryptedRestoreThroughOffsite() throws {
        let workspace = try Workspace()
        try FileManager.default.createDirectory(atPath: "\(workspace.remote)/crm", withIntermediateDirectories: true)
        // X25519: gzip | age -r, named as offsite names its objects.
        let x25519 = "\(workspace.remote)/crm/20261101T000000Z-manual.sqlite3.gz.age"
        let encrypt = try runTool("sh", ["-c", "gzip -c data/crm.db | age -r \(workspace.recipient) > '\(x25519)'"], in: workspace.folder)
        #expect(encrypt.status == 0, "\(encrypt.standardError)")
        let restore = try offsite(["restore", "--target", workspace.targetURL, "--db", "crm", "--identity", "identity.txt",
                                   "--backup", "20261101T000000Z-manual", "--output", "x.db"], in: workspace.folder)
        #expect(restore.status == 0, "\(restore.standardError)")
        try expectSameRows(workspace.folder.file("x.db"), workspace.database)

        // Passphrase: age -p, typed on a pseudo-terminal.
        _ = try runTool("sh", ["-c", "gzip -c data/crm.db > crm.db.gz"], in: workspace.folder)
        let passphraseObject = "\(workspace.remote)/crm/20261102T000000Z-manual.sqlite3.gz.age"
        let passphrase = "correct horse battery staple"
        let ageP = try runAgeWithPassphrase(["-p", "-o", passphraseObject, workspace.folder.file("crm.db.gz")],
                                            passphrase: passphrase, in: workspace.folder)
        #expect(ageP.status == 0, "\(ageP.standardError)")
        try Data(passphrase.utf8).write(to: URL(fileURLWithPath: workspace.folder.file("passphrase.txt")))
        let restoreP = try offsite(["restore", "--target", workspace.targetURL, "--db", "crm", "--passphrase-file", "passphrase.txt",
                                    "--at", "2026-11-02 00:00", "--output", "p.db"], in: workspace.folder)
        #expect(restoreP.status == 0, "\(restoreP.standardError)")
        try expectSameRows(workspace.folder.file("p.db"), workspace.database)
    }

    @Test func aBackupTakenWhileTheApplicationWritesIsAStateItCommitted() throws {
        let workspace = try Workspace()
        let writer = try CRMWriter(path: workspace.database, rate: 150, seed: 9)
        writer.start()
        Thread.sleep(forTimeInterval: 0.5)
        let backup = try workspace.backup()
        Thread.sleep(forTimeInterval: 0.3)
        let report = try writer.stop()
        #expect(backup.status == 0, "\(backup.standardError)")
        #expect(report.busyErrors == 0)
        #expect(report.achievedRate >= 100, "the writer reached \(report.achievedRate) tx/s")

        let restore = try offsite(["restore", "--target", workspace.targetURL, "--db", "crm", "--identity", "identity.txt",
                                   "--output", "restored.db"], in: workspace.folder)
        #expect(restore.status == 0, "\(restore.standardError)")
        let restored = workspace.folder.file("restored.db")
        #expect(try sqlite3(restored, "PRAGMA integrity_check", in: workspace.folder) == "ok")
        #expect(try CRMInvariant.violations(inDatabaseAt: restored).isEmpty, "the counters agree with the rows they count")
        // Some of the writer's transactions are in the backup, and not all of them.
        let logs = { (path: String) in try sqlite3(path, "SELECT count(*) FROM activity_logs", in: workspace.folder) }
        let before = try Int(logs(try CRMFixture.shared.get().path)) ?? 0
        let inBackup = try Int(logs(restored)) ?? 0
        let after = try Int(logs(workspace.database)) ?? 0
        #expect(before < inBackup && inBackup < after, "\(before) < \(inBackup) < \(after)")
    }

    @Test func badInputIsAOneLineErrorAndChangesNothing() throws {
        let workspace = try Workspace()
        #expect(try workspace.backup().status == 0)
        let object = try workspace.objects()[0]
        try Data("not a database, just text\n".utf8).write(to: URL(fileURLWithPath: workspace.folder.file("notes.db")))
        let other = try offsite(["keygen", "--output", "other.txt"], in: workspace.folder)
        #expect(other.status == 0)
        try Data("wrong passphrase".utf8).write(to: URL(fileURLWithPath: workspace.folder.file("wrong.txt")))
        try Data("AGE-SECRET-KEY-1NOTAKEY\n".utf8).write(to: URL(fileURLWithPath: workspace.folder.file("garbage-identity.txt")))
        try Data().write(to: URL(fileURLWithPath: workspace.folder.file("existing.db")))

        // Copies of the object, truncated and tampered, as further backups of the same database.
        let data = try Data(contentsOf: URL(fileURLWithPath: object))
        let truncatedObject = "\(workspace.remote)/crm/20261101T000000Z-manual.sqlite3.gz.age"
        try data.prefix(data.count - 1000).write(to: URL(fileURLWithPath: truncatedObject))
        var tampered = data
        tampered[data.count / 2] ^= 0x20
        let tamperedObject = "\(workspace.remote)/crm/20261102T000000Z-manual.sqlite3.gz.age"
        try tampered.write(to: URL(fileURLWithPath: tamperedObject))
        // A well-encrypted object whose payload is not a database.
        let notDatabase = "\(workspace.remote)/crm/20261103T000000Z-manual.sqlite3.gz.age"
        _ = try runTool("sh", ["-c", "gzip -c notes.db | age -r \(workspace.recipient) > '\(notDatabase)'"], in: workspace.folder)

        let before = try folderState(workspace.folder.path)
        let restore = ["restore", "--target", workspace.targetURL, "--db", "crm"]
        let cases: [(arguments: [String], fragment: String)] = [
            (["backup", "--db", "data/missing.db", "--target", workspace.targetURL, "--recipient", workspace.recipient], "missing.db"),
            (["backup", "--db", "notes.db", "--target", workspace.targetURL, "--recipient", workspace.recipient], "not a SQLite database"),
            (["backup", "--db", "data/crm.db", "--target", workspace.targetURL], "no encryption key"),
            (["backup", "--db", "data/crm.db", "--target", workspace.targetURL, "--recipient", "age1notarecipient"], "recipient"),
            (restore + ["--identity", "nowhere.txt", "--output", "out.db"], "nowhere.txt"),
            (restore + ["--identity", "garbage-identity.txt", "--output", "out.db"], "identity"),
            (restore + ["--identity", "other.txt", "--output", "out.db"], "identit"),
            (restore + ["--passphrase-file", "wrong.txt", "--output", "out.db"], "passphrase"),
            (restore + ["--identity", "identity.txt", "--backup", "20261101T000000Z-manual", "--output", "out.db"], "failed authentication"),
            (restore + ["--identity", "identity.txt", "--backup", "20261102T000000Z-manual", "--output", "out.db"], "chunk"),
            (restore + ["--identity", "identity.txt", "--backup", "20261103T000000Z-manual", "--output", "out.db"], "not a SQLite database"),
            (restore + ["--identity", "identity.txt", "--output", "existing.db"], "existing.db already exists"),
            (restore + ["--identity", "identity.txt", "--backup", "20250101T000000Z-manual", "--output", "out.db"], "no backup"),
            (restore + ["--identity", "identity.txt", "--at", "2020-01-01 00:00", "--output", "out.db"], "at or before"),
            (restore + ["--identity", "identity.txt", "--at", "yesterday", "--output", "out.db"], "--at"),
        ]
        for (arguments, fragment) in cases {
            let result = try offsite(arguments, in: workspace.folder)
            expectOneLineError(result, containing: fragment)
            #expect(try folderState(workspace.folder.path) == before, "\(arguments) changed something on disk")
        }
        // No secret of the identity appears in any output.
        let secret = try String(contentsOfFile: workspace.identity, encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("AGE-SECRET-KEY-1") }!
        let wrong = try offsite(restore + ["--identity", "other.txt", "--output", "out.db"], in: workspace.folder)
        #expect(!wrong.standardError.contains(secret) && !wrong.standardOutput.contains(secret))
    }

    @Test func restoreInPlaceIsRefusedWhileTheDatabaseIsOpenAndReplacesItSafelyOtherwise() throws {
        let workspace = try Workspace()
        #expect(try workspace.backup().status == 0)
        let original = try Data(contentsOf: URL(fileURLWithPath: workspace.database))
        let inPlace = ["restore", "--target", workspace.targetURL, "--db", workspace.database, "--identity", "identity.txt", "--in-place"]

        // Not on a terminal and no --yes: refused.
        let unconfirmed = try offsite(inPlace, in: workspace.folder)
        expectOneLineError(unconfirmed, containing: "not confirmed")

        // The application holds the database open: refused, naming the holder.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: try locateTool("sqlite3"))
        holder.arguments = [workspace.database]
        let input = Pipe()
        holder.standardInput = input
        holder.standardOutput = FileHandle.nullDevice
        try holder.run()
        input.fileHandleForWriting.write(Data("SELECT count(*) FROM users;\n".utf8))
        for _ in 0..<100 where LockProbe.holders(ofDatabaseAt: workspace.database).isEmpty {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let busy = try offsite(inPlace + ["--yes"], in: workspace.folder)
        try input.fileHandleForWriting.close()
        holder.waitUntilExit()
        expectOneLineError(busy, containing: "pid \(holder.processIdentifier)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: workspace.database)) == original)

        // Change the live database, leave a stale -wal beside it, then restore in place.
        _ = try sqlite3(workspace.database, "DELETE FROM comments; PRAGMA wal_checkpoint(TRUNCATE);", in: workspace.folder)
        try Data(repeating: 0x5a, count: 4096).write(to: URL(fileURLWithPath: workspace.database + "-wal"))
        try Data(repeating: 0x5a, count: 4096).write(to: URL(fileURLWithPath: workspace.database + "-shm"))
        let restored = try offsite(inPlace + ["--yes"], in: workspace.folder)
        #expect(restored.status == 0, "\(restored.standardError)")
        #expect(!FileManager.default.fileExists(atPath: workspace.database + "-wal"))
        #expect(try sqlite3(workspace.database, "PRAGMA integrity_check", in: workspace.folder) == "ok")
        try expectSameRows(workspace.database, try CRMFixture.shared.get().path)
        // The database as it was before the restore was kept as a pre-restore backup.
        let preRestore = try workspace.objects().filter { $0.contains("-pre-restore.") }
        #expect(preRestore.count == 1)
    }

    @Test func aConfigurationFileDrivesBackupsAndTheLocalRotation() throws {
        let workspace = try Workspace()
        let config = """
        {
          "databases": [{ "path": "data/crm.db" }],
          "local": { "dir": "local", "keep": { "last": 2 } },
          "encryption": { "recipients": ["${TEST_RECIPIENT}"], "identityFile": "identity.txt" },
          "compression": { "level": 1 },
          "targets": [{ "name": "usb", "url": "file://\(workspace.remote)" }]
        }
        """
        try Data(config.utf8).write(to: URL(fileURLWithPath: workspace.folder.file("offsite.json")))
        let environment = ["OFFSITE_CONFIG": workspace.folder.file("offsite.json"), "TEST_RECIPIENT": workspace.recipient]
        for _ in 0..<3 {
            let backup = try offsite(["backup"], in: workspace.folder, environment: environment)
            #expect(backup.status == 0, "\(backup.standardError)")
        }
        // Three ids in three distinct seconds. Manual backups are never pruned, not even by the
        // local rotation's `last 2`: snapshots mode 0600 in a 0700 folder.
        #expect(try workspace.objects().count == 3)
        let local = workspace.folder.file("local/crm")
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: local).sorted()
        #expect(snapshots.count == 3)
        #expect(try permissions(of: local) == 0o700)
        for name in snapshots {
            #expect(try permissions(of: "\(local)/\(name)") == 0o600)
            #expect(try sqlite3("\(local)/\(name)", "PRAGMA quick_check", in: workspace.folder) == "ok")
        }
        let list = try offsite(["list"], in: workspace.folder, environment: environment)
        #expect(list.standardOutput.split(separator: "\n").filter { $0.hasPrefix("usb ") }.count == 3)
        #expect(list.standardOutput.split(separator: "\n").filter { $0.hasPrefix("local ") }.count == 3)
        let restore = try offsite(["restore", "--db", "crm", "--output", "r.db"], in: workspace.folder, environment: environment)
        #expect(restore.status == 0, "\(restore.standardError)")

        // A misspelt key is an error naming its path, not a silently ignored setting.
        let misspelt = config.replacingOccurrences(of: "\"keep\"", with: "\"kepe\"")
        try Data(misspelt.utf8).write(to: URL(fileURLWithPath: workspace.folder.file("offsite.json")))
        expectOneLineError(try offsite(["backup"], in: workspace.folder, environment: environment), containing: "local.kepe")
    }

    @Test func checkProbesAFolderTargetAndLeavesNothingBehind() throws {
        let workspace = try Workspace()
        let config = """
        {
          "databases": [{ "path": "data/crm.db" }],
          "encryption": { "recipients": ["\(workspace.recipient)"] },
          "targets": [{ "name": "usb", "url": "file://\(workspace.remote)" }]
        }
        """
        try Data(config.utf8).write(to: URL(fileURLWithPath: workspace.folder.file("offsite.json")))
        try FileManager.default.createDirectory(atPath: workspace.remote, withIntermediateDirectories: true)
        let check = try offsite(["check", "--config", "offsite.json"], in: workspace.folder)
        #expect(check.status == 0, "\(check.standardOutput)\(check.standardError)")
        #expect(check.standardOutput.contains("target usb: write, list, read, delete ok"), "\(check.standardOutput)")
        // The probe leaves no object, temporary or folder on the target, hidden or not.
        #expect(try FileManager.default.contentsOfDirectory(atPath: workspace.remote).isEmpty)
    }

    @Test func aDatabaseTheSidecarMayNotOpenIsNamedAsAPermissionProblem() throws {
        // The image runs as uid 10001; the application's database belongs to another user, mode 0600.
        guard getuid() == 0 else { throw TestFailure("this test runs offsite as uid 10001 with setpriv and needs root") }
        let workspace = try Workspace()
        chmod(workspace.folder.path, 0o755)
        chmod(workspace.folder.file("data"), 0o755)
        chmod(workspace.database, 0o600)
        try FileManager.default.createDirectory(atPath: workspace.remote, withIntermediateDirectories: true)
        chown(workspace.remote, 10001, 10001)
        let backup = try runTool("setpriv", ["--reuid", "10001", "--regid", "10001", "--clear-groups", "\(productsFolder)/offsite",
                                             "backup", "--db", workspace.database, "--target", workspace.targetURL,
                                             "--recipient", workspace.recipient], in: workspace.folder)
        #expect(backup.status == 1)
        #expect(backup.standardError.contains("permission denied"), "\(backup.standardError)")
        #expect(backup.standardError.contains("\(workspace.database) belongs to uid 0 gid 0 (mode 0600)"), "\(backup.standardError)")
        #expect(backup.standardError.contains("offsite runs as uid 10001 gid 10001"), "\(backup.standardError)")
        #expect(backup.standardError.contains("hint: run offsite as the application's user"), "\(backup.standardError)")
        #expect(!backup.standardError.contains("unable to open database file"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: workspace.remote).isEmpty)
    }

    @Test func everyCommandHasHelpAndUnknownInputIsRefused() throws {
        let folder = try ScratchFolder("cli-help")
        for command in ["backup", "list", "restore", "keygen", "version"] {
            let help = try offsite([command, "--help"], in: folder)
            #expect(help.status == 0)
            #expect(help.standardOutput.hasPrefix("usage: offsite \(command)"))
        }
        expectOneLineError(try offsite(["frobnicate"], in: folder), containing: "unknown command")
        expectOneLineError(try offsite(["backup", "--dbb", "x"], in: folder), containing: "--dbb")
        let version = try offsite(["version"], in: folder)
        for library in ["sqlite", "zlib", "libsodium", "libcurl"] { #expect(version.standardOutput.contains(library)) }
    }

    /// The two databases hold the same rows in the tables the application writes.
    func expectSameRows(_ left: String, _ right: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let a = try SQLiteDatabase(path: left, mode: .readOnly)
        let b = try SQLiteDatabase(path: right, mode: .readOnly)
        for table in ["users", "leads", "clients", "comments", "activity_logs", "app_counters"] {
            #expect(try crmRowHash(a, table: table) == crmRowHash(b, table: table), "table \(table)", sourceLocation: sourceLocation)
        }
    }
}
