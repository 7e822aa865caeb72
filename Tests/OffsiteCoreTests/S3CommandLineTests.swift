import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// The offsite binary against the rclone S3 server, which checks every SigV4 signature.
@Suite struct S3CommandLineTests {
    /// A configuration with one S3 target on `server`, the secret in a file, and a CRM database.
    struct Workspace {
        let folder: ScratchFolder
        let recipient: String
        let configPath: String

        init(server: S3TestServer, secret: String = S3TestServer.secretAccessKey) throws {
            folder = try ScratchFolder("s3-cli")
            try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: try CRMFixture.shared.get().path, toPath: folder.file("data/crm.db"))
            let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
            recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            try Data((secret + "\n").utf8).write(to: URL(fileURLWithPath: folder.file("s3-secret")))
            let prefix = "cli-\(UUID().uuidString.prefix(8))"
            let config = """
            {
              "databases": [{ "path": "data/crm.db" }],
              "encryption": { "recipients": ["\(recipient)"], "identityFile": "identity.txt" },
              "targets": [{
                "name": "s3", "url": "s3://\(S3TestServer.bucket)/\(prefix)", "endpoint": "\(server.endpoint.absoluteString)",
                "region": "us-east-1", "accessKeyId": "\(S3TestServer.accessKeyId)", "secretAccessKeyFile": "s3-secret"
              }]
            }
            """
            configPath = folder.file("offsite.json")
            try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
        }

        func run(_ arguments: [String]) throws -> ToolResult {
            try offsite(arguments + ["--config", configPath], in: folder)
        }
    }

    @Test func backupListRestoreThroughSignedRequests() throws {
        let workspace = try Workspace(server: try S3TestServer.shared(.rclone))
        let backup = try workspace.run(["backup"])
        #expect(backup.status == 0, "\(backup.standardError)")
        let list = try workspace.run(["list", "--json"])
        #expect(list.status == 0, "\(list.standardError)")
        let rows = try JSONSerialization.jsonObject(with: list.standardOutputData) as? [[String: Any]] ?? []
        #expect(rows.count == 1)
        #expect(rows.first?["target"] as? String == "s3")
        #expect((rows.first?["size"] as? Int ?? 0) > 0)
        let restore = try workspace.run(["restore", "--target", "s3", "--db", "crm", "--output", "restored.db"])
        #expect(restore.status == 0, "\(restore.standardError)")
        let restored = workspace.folder.file("restored.db")
        #expect(try sqlite3(restored, "PRAGMA integrity_check", in: workspace.folder) == "ok")
        #expect(try CRMInvariant.violations(inDatabaseAt: restored).isEmpty)
        #expect(try sqlite3(restored, "SELECT count(*) FROM activity_logs", in: workspace.folder)
                == sqlite3(workspace.folder.file("data/crm.db"), "SELECT count(*) FROM activity_logs", in: workspace.folder))
        let check = try workspace.run(["check"])
        #expect(check.status == 0, "\(check.standardOutput)")
        #expect(check.standardOutput.contains("target s3: write, list, read, delete ok"))
    }

    @Test func aWrongSecretNamesTheTargetAndTheS3CodeAndNeverTheSecret() throws {
        let wrongSecret = "wrong-secret-\(UUID().uuidString)"
        let workspace = try Workspace(server: try S3TestServer.shared(.rclone), secret: wrongSecret)
        let backup = try workspace.run(["backup"])
        #expect(backup.status != 0)
        #expect(backup.standardError.contains("s3"))
        #expect(backup.standardError.contains("SignatureDoesNotMatch") || backup.standardError.contains("AccessDenied")
                || backup.standardError.contains("InvalidAccessKeyId"), "\(backup.standardError)")
        for output in [backup.standardError, backup.standardOutput] { #expect(!output.contains(wrongSecret)) }
        let list = try workspace.run(["list"])
        #expect(list.status != 0)
        for output in [list.standardError, list.standardOutput] { #expect(!output.contains(wrongSecret)) }
    }
}
