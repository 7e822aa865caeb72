import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// The kinds of target the restore tests run against; each test body runs once per kind.
/// (WebDAV joins when its test server does.)
enum RemoteKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case folder
    case s3
    case webdav
    var description: String { rawValue }
}

/// A folder with a database `data/crm.db` (a copy of the CRM fixture), an identity, optionally a
/// local folder, and a configuration naming one target `remote` of the chosen kind. `target` is a
/// handle on the same remote for planting and reading objects directly.
final class RestoreWorkspace {
    let folder: ScratchFolder
    let kind: RemoteKind
    let database: String
    let recipient: String
    let identity: AgeX25519Identity
    let configPath: String
    let target: any Target
    var localFolder: String { folder.file("local") }
    var dataFolder: String { folder.file("data") }

    init(_ kind: RemoteKind, local: Bool = true) throws {
        self.kind = kind
        folder = try ScratchFolder("restore-\(kind)")
        try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
        database = folder.file("data/crm.db")
        try FileManager.default.copyItem(atPath: try CRMFixture.shared.get().path, toPath: database)
        let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
        recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        identity = try AgeIdentityFile.parse(try String(contentsOfFile: folder.file("identity.txt"), encoding: .utf8))[0]
        let targetJSON: String
        switch kind {
        case .folder:
            let remote = folder.file("remote")
            targetJSON = #"{ "name": "remote", "url": "file://\#(remote)" }"#
            target = FileTarget(name: "remote", root: remote)
        case .s3:
            let server = try S3TestServer.shared(.rclone)
            let prefix = "restore-\(UUID().uuidString.prefix(8))"
            try Data((S3TestServer.secretAccessKey + "\n").utf8).write(to: URL(fileURLWithPath: folder.file("s3-secret")))
            targetJSON = """
            { "name": "remote", "url": "s3://\(S3TestServer.bucket)/\(prefix)", "endpoint": "\(server.endpoint.absoluteString)",
              "region": "us-east-1", "accessKeyId": "\(S3TestServer.accessKeyId)", "secretAccessKeyFile": "\(folder.file("s3-secret"))" }
            """
            target = try server.makeTarget(prefix: prefix)
        case .webdav:
            let server = try WebDAVTestServer.shared(.rclone)
            let path = "restore-\(UUID().uuidString.prefix(8))"
            try Data((WebDAVTestServer.password + "\n").utf8).write(to: URL(fileURLWithPath: folder.file("dav-secret")))
            targetJSON = """
            { "name": "remote", "url": "\(server.url(path: path))", "username": "\(WebDAVTestServer.username)",
              "passwordFile": "\(folder.file("dav-secret"))" }
            """
            target = try server.makeTarget(path: path)
        }
        let localJSON = local ? #""local": { "dir": "\#(folder.file("local"))" },"# : ""
        let config = """
        {
          "databases": [{ "path": "\(database)" }],
          \(localJSON)
          "encryption": { "recipients": ["\(recipient)"], "identityFile": "\(folder.file("identity.txt"))" },
          "targets": [\(targetJSON)]
        }
        """
        configPath = folder.file("offsite.json")
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
    }

    /// Runs `offsite` with the workspace's configuration.
    func run(_ arguments: [String], standardInput: String? = nil) throws -> ToolResult {
        try offsite(arguments + ["--config", configPath], in: folder, standardInput: standardInput)
    }

    /// `offsite backup`, expected to succeed.
    func backup(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try run(["backup"])
        #expect(result.status == 0, "\(result.standardError)", sourceLocation: sourceLocation)
    }

    /// The database file at `path` gzip-compressed and encrypted to the workspace's recipient.
    func encrypt(_ path: String) throws -> Data {
        let sink = DataSink()
        let encoder = try makeBackupEncoder(level: 1, encryption: .recipients([identity.recipient]), into: sink)
        try readFile(at: path, into: encoder)
        try encoder.finish()
        return sink.data
    }

    /// Stores `bytes` on the remote as backup `id` of crm.
    func plant(_ id: String, _ bytes: Data) throws {
        let upload = try target.makeUpload(key: "crm/\(id).sqlite3.gz.age")
        try upload.write(bytes)
        try upload.finish()
        try upload.commit()
    }

    /// The bytes of backup object `key`.
    func object(_ key: String) throws -> Data {
        let sink = DataSink()
        try target.download(key: key, into: sink)
        return sink.data
    }

    /// The decrypted, decompressed content of backup object `key`.
    func decrypted(_ key: String) throws -> Data {
        let sink = DataSink()
        let decoder = try makeRestoreDecoder(format: .encrypted, keys: DecryptionKeys(identities: [identity]), into: sink)
        try target.download(key: key, into: decoder)
        try decoder.finish()
        return sink.data
    }

    /// The backups of crm on the remote, oldest first.
    func backups() throws -> [RemoteBackup] { try listBackups(on: target, database: "crm") }

    /// A small database at `name` in the workspace whose table `marker` holds `value`.
    func makeMarkedDatabase(_ name: String, value: String) throws -> String {
        let path = folder.file(name)
        let database = try SQLiteDatabase(path: path, mode: .create)
        try database.execute("CREATE TABLE marker(value TEXT); INSERT INTO marker VALUES ('\(value)')")
        return path
    }
}

/// The bytes of the file at `path`.
func contents(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

/// A `sqlite3` shell holding `path` open (it has read from it), until `release()`.
final class DatabaseHolder {
    let process = Process()
    let input = Pipe()

    init(_ path: String) throws {
        process.executableURL = URL(fileURLWithPath: try locateTool("sqlite3"))
        process.arguments = [path]
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        input.fileHandleForWriting.write(Data("SELECT count(*) FROM sqlite_schema;\n".utf8))
        for _ in 0..<100 where LockProbe.holders(ofDatabaseAt: path).isEmpty { Thread.sleep(forTimeInterval: 0.05) }
    }

    func release() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

/// End-to-end restores through the `offsite` binary, on every kind of target.
@Suite struct RestoreCommandLineTests {
    @Test(arguments: RemoteKind.allCases)
    func atPicksTheNewestBackupAtOrBeforeTheTime(kind: RemoteKind) throws {
        let workspace = try RestoreWorkspace(kind)
        for (id, value) in [("20261120T020000Z-scheduled", "a"), ("20261121T020000Z-scheduled", "b"),
                            ("20261121T093015Z-manual", "c")] {
            try workspace.plant(id, try workspace.encrypt(try workspace.makeMarkedDatabase("\(value).db", value: value)))
        }
        let cases: [(arguments: [String], expected: String)] = [
            (["--at", "2026-11-21T02:00:00Z"], "b"),        // exact
            (["--at", "2026-11-21 09:30"], "b"),            // between two
            (["--at", "2026-11-21T10:30:15+01:00"], "c"),   // exact, with an offset
            (["--at", "2030-01-01 00:00"], "c"),            // after the last
            (["--backup", "20261120T020000Z-scheduled"], "a"),
            ([], "c"),                                      // latest
        ]
        for (index, (arguments, expected)) in cases.enumerated() {
            let output = "out-\(index).db"
            let result = try workspace.run(["restore", "--db", "crm", "--output", output] + arguments)
            #expect(result.status == 0, "\(arguments): \(result.standardError)")
            #expect(try sqlite3(workspace.folder.file(output), "SELECT value FROM marker", in: workspace.folder) == expected,
                    "\(arguments)")
        }
        let before = try folderState(workspace.folder.path)
        let early = try workspace.run(["restore", "--db", "crm", "--output", "early.db", "--at", "2026-11-19 23:59"])
        expectOneLineError(early, containing: "no backup of crm on target remote at or before 2026-11-19 23:59:00 UTC")
        #expect(early.standardError.contains("the oldest is 20261120T020000Z-scheduled"))
        #expect(try folderState(workspace.folder.path) == before)
    }

    @Test(arguments: RemoteKind.allCases)
    func inPlaceIsRefusedWhileAnotherProcessHoldsTheDatabase(kind: RemoteKind) throws {
        let workspace = try RestoreWorkspace(kind)
        try workspace.backup()
        let before = try folderState(workspace.dataFolder)
        let objectsBefore = try workspace.backups()
        let holder = try DatabaseHolder(workspace.database)
        let result = try workspace.run(["restore", "--db", "crm", "--in-place", "--yes"])
        holder.release()
        expectOneLineError(result, containing: "pid \(holder.process.processIdentifier)")
        #expect(result.standardError.contains("open in another process"))
        #expect(try folderState(workspace.dataFolder) == before, "the database folder changed")
        #expect(try workspace.backups() == objectsBefore, "nothing was shipped")
    }

    @Test(arguments: RemoteKind.allCases)
    func inPlaceBesideAStaleWALGivesExactlyTheBackupAndKeepsTheReplacedFile(kind: RemoteKind) throws {
        let workspace = try RestoreWorkspace(kind)
        try workspace.backup()
        let backup = try #require(try workspace.backups().last)
        let expected = try workspace.decrypted(backup.key)

        _ = try sqlite3(workspace.database, "DELETE FROM comments; PRAGMA wal_checkpoint(TRUNCATE);", in: workspace.folder)
        let changed = try contents(workspace.database)
        #expect(changed != expected)
        try Data(repeating: 0x5a, count: 8192).write(to: URL(fileURLWithPath: workspace.database + "-wal"))
        try Data(repeating: 0x5a, count: 32768).write(to: URL(fileURLWithPath: workspace.database + "-shm"))

        let result = try workspace.run(["restore", "--db", "crm", "--in-place", "--yes"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(try contents(workspace.database) == expected, "the database is byte for byte the backup")
        for suffix in ["-wal", "-shm", "-journal"] { #expect(!pathExists(workspace.database + suffix), "\(suffix) left") }
        #expect(try sqlite3(workspace.database, "PRAGMA integrity_check", in: workspace.folder) == "ok")

        // The replaced file, in the local folder, private, exactly as it was.
        let kept = try FileManager.default.contentsOfDirectory(atPath: workspace.localFolder)
            .filter { $0.hasPrefix("crm.replaced-") && $0.hasSuffix(".sqlite3") }
        try #require(kept.count == 1, "\(kept)")
        let keptPath = "\(workspace.localFolder)/\(kept[0])"
        #expect(try permissions(of: keptPath) == 0o600)
        #expect(try contents(keptPath) == changed)
        #expect(result.standardOutput.contains(kept[0]))
        // And a pre-restore backup of it on the target.
        #expect(try workspace.backups().filter { $0.id.kind == .preRestore }.count == 1)
    }

    @Test(arguments: RemoteKind.allCases)
    func aBadObjectOrKeyIsAnErrorAndTheLiveDatabaseIsUnchanged(kind: RemoteKind) throws {
        let workspace = try RestoreWorkspace(kind, local: false)
        try workspace.backup()
        let good = try workspace.object(try #require(try workspace.backups().last).key)
        try workspace.plant("20261101T000000Z-manual", good.prefix(good.count - 1000))            // truncated
        var tampered = good
        tampered[good.count / 2] ^= 0x20
        try workspace.plant("20261102T000000Z-manual", tampered)                                   // tampered
        try Data("just text, not a database\n".utf8).write(to: URL(fileURLWithPath: workspace.folder.file("notes.txt")))
        try workspace.plant("20261103T000000Z-manual", try workspace.encrypt(workspace.folder.file("notes.txt")))
        _ = try offsite(["keygen", "--output", "other.txt"], in: workspace.folder)

        let before = try folderState(workspace.dataFolder)
        let objects = try workspace.backups()
        let inPlace = ["restore", "--db", "crm", "--in-place", "--yes"]
        let cases: [(arguments: [String], fragment: String)] = [
            (inPlace + ["--identity", workspace.folder.file("other.txt")], "identit"),
            (inPlace + ["--backup", "20261101T000000Z-manual"], "failed authentication"),
            (inPlace + ["--backup", "20261102T000000Z-manual"], "chunk"),
            (inPlace + ["--backup", "20261103T000000Z-manual"], "not a SQLite database"),
        ]
        for (arguments, fragment) in cases {
            let result = try workspace.run(arguments)
            expectOneLineError(result, containing: fragment)
            #expect(try folderState(workspace.dataFolder) == before, "\(arguments) changed the database folder")
            #expect(try workspace.backups() == objects, "\(arguments) shipped something")
        }
    }

    @Test(arguments: RemoteKind.allCases)
    func ifDatabaseNotExistsRestoresOnlyWhenMissingAndSaysWhy(kind: RemoteKind) throws {
        let workspace = try RestoreWorkspace(kind)
        let original = try contents(workspace.database)
        let initStep = ["restore", "--db", "crm", "--in-place", "--if-db-not-exists"]

        // No backup yet: exit 0, nothing written.
        try FileManager.default.removeItem(atPath: workspace.database)
        let empty = try workspace.run(initStep)
        #expect(empty.status == 0, "\(empty.standardError)")
        #expect(empty.standardOutput.contains("no backup yet"), "\(empty.standardOutput)")
        #expect(!pathExists(workspace.database))

        // The database exists: left alone.
        try original.write(to: URL(fileURLWithPath: workspace.database))
        try workspace.backup()
        _ = try sqlite3(workspace.database, "DELETE FROM comments; PRAGMA wal_checkpoint(TRUNCATE);", in: workspace.folder)
        let changed = try contents(workspace.database)
        let exists = try workspace.run(initStep)
        #expect(exists.status == 0, "\(exists.standardError)")
        #expect(exists.standardOutput.contains("exists; nothing restored"), "\(exists.standardOutput)")
        #expect(try contents(workspace.database) == changed)

        // Missing: restored, without asking.
        try FileManager.default.removeItem(atPath: workspace.database)
        let restored = try workspace.run(initStep)
        #expect(restored.status == 0, "\(restored.standardError)")
        #expect(restored.standardOutput.contains("restored"))
        let backup = try #require(try workspace.backups().last)
        #expect(try contents(workspace.database) == workspace.decrypted(backup.key))
        #expect(try sqlite3(workspace.database, "SELECT count(*) FROM comments", in: workspace.folder) != "0")
    }
}

/// The interactive picker, on a pseudo-terminal.
@Suite struct RestorePickerTests {
    @Test func onATerminalTheChosenBackupIsRestored() throws {
        let workspace = try RestoreWorkspace(.folder)
        for (id, value) in [("20261120T020000Z-scheduled", "old"), ("20261121T020000Z-change", "new")] {
            try workspace.plant(id, try workspace.encrypt(try workspace.makeMarkedDatabase("\(value).db", value: value)))
        }
        let script = workspace.folder.file("pty-answer.py")
        try Data(answeringDriver.utf8).write(to: URL(fileURLWithPath: script))
        let result = try runTool("python3", [script, "\(productsFolder)/offsite", "restore", "--db", "crm",
                                             "--output", "picked.db", "--config", workspace.configPath],
                                 in: workspace.folder, environment: ["PTY_PROMPT": "Restore which backup?", "PTY_ANSWER": "2"])
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        let transcript = result.standardOutput
        #expect(transcript.contains("1  2026-11-21 02:00:00 UTC  change"), "\(transcript)")
        #expect(transcript.contains("2  2026-11-20 02:00:00 UTC  scheduled"), "\(transcript)")
        #expect(try sqlite3(workspace.folder.file("picked.db"), "SELECT value FROM marker", in: workspace.folder) == "old")
    }
}

/// Runs its arguments on a new pseudo-terminal, answers $PTY_ANSWER once $PTY_PROMPT appears, and
/// prints the whole transcript.
let answeringDriver = #"""
import os, pty, sys
prompt = os.environ["PTY_PROMPT"].encode()
answer = os.environ["PTY_ANSWER"].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
transcript = b""
answered = False
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    transcript += data
    if not answered and prompt in transcript:
        os.write(fd, answer + b"\n")
        answered = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(transcript.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"""#
