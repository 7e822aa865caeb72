import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// A remote server the end-to-end tests run against.
enum RemoteServer: String, CaseIterable, Sendable, CustomStringConvertible {
    case s3Rclone = "s3 (rclone)"
    case webDAVRclone = "webdav (rclone)"
    case webDAVWsgidav = "webdav (wsgidav)"
    case webDAVApache = "webdav (apache)"
    case webDAVNginx = "webdav (nginx)"

    var description: String { rawValue }

    /// The good secret for this server.
    var secret: String {
        self == .s3Rclone ? S3TestServer.secretAccessKey : WebDAVTestServer.password
    }

    /// The configuration of a target named `remote` under a fresh `prefix`, its secret read from `secretFile`.
    func targetJSON(prefix: String, secretFile: String) throws -> String {
        switch self {
        case .s3Rclone:
            let server = try S3TestServer.shared(.rclone)
            return """
            { "name": "remote", "url": "s3://\(S3TestServer.bucket)/\(prefix)", "endpoint": "\(server.endpoint.absoluteString)",
              "region": "us-east-1", "accessKeyId": "\(S3TestServer.accessKeyId)", "secretAccessKeyFile": "\(secretFile)" }
            """
        case .webDAVRclone, .webDAVWsgidav, .webDAVApache, .webDAVNginx:
            let server = try WebDAVTestServer.shared(webDAVKind!)
            return """
            { "name": "remote", "url": "\(server.url(path: "\(prefix)/nested/folder"))",
              "username": "\(WebDAVTestServer.username)", "passwordFile": "\(secretFile)" }
            """
        }
    }

    /// The WebDAV server's kind, or nil for S3.
    var webDAVKind: WebDAVTestServer.Kind? {
        switch self {
        case .s3Rclone: return nil
        case .webDAVRclone: return .rclone
        case .webDAVWsgidav: return .wsgidav
        case .webDAVApache: return .apache
        case .webDAVNginx: return .nginx
        }
    }
}

/// The offsite binary against real S3 and WebDAV servers (rclone checks every SigV4 signature).
@Suite struct RemoteCommandLineTests {
    /// A configuration with one remote target, the secret in a file, and a CRM database.
    struct Workspace {
        let folder: ScratchFolder
        let recipient: String
        let configPath: String
        /// The target's folder or prefix on the server, under a unique name.
        let prefix: String

        init(server: RemoteServer, secret: String? = nil) throws {
            folder = try ScratchFolder("s3-cli")
            try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: try CRMFixture.shared.get().path, toPath: folder.file("data/crm.db"))
            let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
            recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            try Data(((secret ?? server.secret) + "\n").utf8).write(to: URL(fileURLWithPath: folder.file("remote-secret")))
            prefix = "cli-\(UUID().uuidString.prefix(8))"
            let config = """
            {
              "databases": [{ "path": "data/crm.db" }],
              "local": { "dir": "local" },
              "encryption": { "recipients": ["\(recipient)"], "identityFile": "identity.txt" },
              "targets": [\(try server.targetJSON(prefix: prefix, secretFile: "remote-secret"))]
            }
            """
            configPath = folder.file("offsite.json")
            try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
        }

        func run(_ arguments: [String]) throws -> ToolResult {
            try offsite(arguments + ["--config", configPath], in: folder)
        }
    }

    @Test(arguments: RemoteServer.allCases)
    func backupListRestoreAndCheck(server: RemoteServer) throws {
        let workspace = try Workspace(server: server)
        let backup = try workspace.run(["backup"])
        #expect(backup.status == 0, "\(backup.standardError)")
        let list = try workspace.run(["list", "--json"])
        #expect(list.status == 0, "\(list.standardError)")
        let rows = try JSONSerialization.jsonObject(with: list.standardOutputData) as? [[String: Any]] ?? []
        #expect(rows.filter { $0["target"] as? String == "remote" }.count == 1)
        #expect(rows.filter { $0["target"] as? String == "local" }.count == 1)
        #expect((rows.first?["size"] as? Int ?? 0) > 0)
        let restore = try workspace.run(["restore", "--target", "remote", "--db", "crm", "--output", "restored.db"])
        #expect(restore.status == 0, "\(restore.standardError)")
        let restored = workspace.folder.file("restored.db")
        #expect(try sqlite3(restored, "PRAGMA integrity_check", in: workspace.folder) == "ok")
        #expect(try CRMInvariant.violations(inDatabaseAt: restored).isEmpty)
        #expect(try sqlite3(restored, "SELECT count(*) FROM activity_logs", in: workspace.folder)
                == sqlite3(workspace.folder.file("data/crm.db"), "SELECT count(*) FROM activity_logs", in: workspace.folder))
        let check = try workspace.run(["check"])
        #expect(check.status == 0, "\(check.standardOutput)")
        #expect(check.standardOutput.contains("target remote: write, list, read, delete ok"))
        // Nothing is left in the spool or temporary files in the local folder.
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: workspace.folder.file("local")).filter { $0.contains("tmp") || $0.contains("spool") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test(arguments: RemoteServer.allCases.filter { $0.webDAVKind != nil })
    func checkLeavesNothingInAWebDAVTargetsFolder(server: RemoteServer) throws {
        let workspace = try Workspace(server: server)
        let check = try workspace.run(["check"])
        #expect(check.status == 0, "\(check.standardOutput)\(check.standardError)")
        #expect(check.standardOutput.contains("target remote: write, list, read, delete ok"), "\(check.standardOutput)")
        // The target's own folder is made (a backup would make it too); nothing is left in it.
        let dataFolder = try WebDAVTestServer.shared(try #require(server.webDAVKind)).dataFolder
        let targetFolder = dataFolder.appendingPathComponent("\(workspace.prefix)/nested/folder").path
        #expect(try FileManager.default.contentsOfDirectory(atPath: targetFolder) == [])
    }

    @Test(arguments: RemoteServer.allCases)
    func aWrongSecretNamesTheTargetAndNeverTheSecret(server: RemoteServer) throws {
        let wrongSecret = "wrong-secret-\(UUID().uuidString)"
        let workspace = try Workspace(server: server, secret: wrongSecret)
        let backup = try workspace.run(["backup"])
        #expect(backup.status != 0)
        #expect(backup.standardError.contains("remote"))
        if server == .s3Rclone {
            #expect(backup.standardError.contains("SignatureDoesNotMatch") || backup.standardError.contains("AccessDenied")
                    || backup.standardError.contains("InvalidAccessKeyId"), "\(backup.standardError)")
        } else {
            #expect(backup.standardError.contains("authentication"), "\(backup.standardError)")
        }
        for output in [backup.standardError, backup.standardOutput] { #expect(!output.contains(wrongSecret)) }
        let list = try workspace.run(["list"])
        #expect(list.status != 0)
        for output in [list.standardError, list.standardOutput] { #expect(!output.contains(wrongSecret)) }
    }
}
