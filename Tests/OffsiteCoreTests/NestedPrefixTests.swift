import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// One host keeps its backups at PREFIX, another at PREFIX/site-b: only PREFIX/DBNAME/ID… belongs
/// to the first host's configuration, for list, restore, verify and prune alike (SPEC invariant 4).
@Suite struct NestedPrefixTests {
    @Test func onlyKeysDirectlyUnderADatabaseFolderAreBackups() {
        let key = "crm/20261122T031700Z-scheduled.sqlite3.gz.age"
        #expect(RemoteBackup(object: RemoteObject(key: key, size: 1))?.database == "crm")
        for foreign in ["site-b/" + key, "a/b/" + key, "20261122T031700Z-scheduled.sqlite3.gz.age"] {
            #expect(RemoteBackup(object: RemoteObject(key: foreign, size: 1)) == nil, "\(foreign)")
        }
    }

    enum Server: String, CaseIterable, CustomStringConvertible {
        case folder, s3, webDAV
        var description: String { rawValue }
    }

    @Test(arguments: Server.allCases)
    func anotherHostsBackupsUnderANestedPrefixAreNeverListedRestoredOrPruned(server: Server) throws {
        let folder = try ScratchFolder("nested")
        try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try CRMFixture.shared.get().path, toPath: folder.file("data/crm.db"))
        let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
        let recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let prefix = "nested-\(UUID().uuidString.prefix(8))"
        let targetJSON: String
        let target: any Target
        switch server {
        case .folder:
            targetJSON = #"{ "name": "remote", "url": "file://\#(folder.file("remote"))""#
            target = FileTarget(name: "remote", root: folder.file("remote"))
        case .s3:
            try Data(S3TestServer.secretAccessKey.utf8).write(to: URL(fileURLWithPath: folder.file("secret")))
            targetJSON = try RemoteServer.s3Rclone.targetJSON(prefix: prefix, secretFile: "secret").replacingOccurrences(of: " }", with: "")
            target = try S3TestServer.shared(.rclone).makeTarget(prefix: prefix)
        case .webDAV:
            try Data(WebDAVTestServer.password.utf8).write(to: URL(fileURLWithPath: folder.file("secret")))
            targetJSON = try RemoteServer.webDAVRclone.targetJSON(prefix: prefix, secretFile: "secret").replacingOccurrences(of: " }", with: "")
            target = try WebDAVTestServer.shared(.rclone).makeTarget(path: "\(prefix)/nested/folder")
        }
        let config = """
        { "databases": [{ "path": "data/crm.db" }],
          "encryption": { "recipients": ["\(recipient)"], "identityFile": "identity.txt" },
          "targets": [\(targetJSON), "retention": { "last": 1 } }] }
        """
        try Data(config.utf8).write(to: URL(fileURLWithPath: folder.file("offsite.json")))
        func run(_ arguments: [String]) throws -> ToolResult { try offsite(arguments + ["--config", "offsite.json"], in: folder) }

        // Our own backups (a manual one and two old scheduled ones), and site-b's: one older and one
        // "newer" than ours, same database name.
        let backup = try run(["backup"])
        try #require(backup.status == 0, "\(backup.standardError)")
        let oldKeys = ["crm/20200601T000000Z-scheduled.sqlite3.gz.age", "crm/20200602T000000Z-scheduled.sqlite3.gz.age"]
        let foreignKeys = ["site-b/crm/20991231T000000Z-scheduled.sqlite3.gz.age", "site-b/crm/20200101T000000Z-scheduled.sqlite3.gz.age"]
        for key in oldKeys + foreignKeys {
            let upload = try target.makeUpload(key: key)
            try upload.write(Data("site b's backup".utf8))
            try upload.finish()
            try upload.commit()
        }
        let ours = try listBackups(on: target, database: "crm")
        try #require(ours.count == 3)

        // list shows only ours; restore takes our newest, not site-b's "2099" one.
        let list = try run(["list", "--json"])
        let rows = try JSONSerialization.jsonObject(with: list.standardOutputData) as? [[String: Any]] ?? []
        #expect(Set(rows.filter { $0["target"] as? String == "remote" }.compactMap { $0["id"] as? String })
                == Set(ours.map(\.id.description)), "\(list.standardOutput)")
        let restore = try run(["restore", "--target", "remote", "--db", "crm", "--output", "restored.db"])
        #expect(restore.status == 0, "\(restore.standardError)")
        #expect(restore.standardOutput.contains(ours[2].id.description), "\(restore.standardOutput)")
        let verify = try run(["verify", "--target", "remote", "--backup", "latest"])
        #expect(verify.status == 0, "\(verify.standardOutput)\(verify.standardError)")
        #expect(verify.standardOutput.contains(ours[2].id.description), "\(verify.standardOutput)")

        // prune (last 1) removes our older scheduled backup only: site-b's objects stay, our newest
        // scheduled one and the manual one stay.
        let prune = try run(["prune"])
        #expect(prune.status == 0, "\(prune.standardOutput)\(prune.standardError)")
        #expect(!prune.standardOutput.contains("2099") && !prune.standardOutput.contains("20200101"), "\(prune.standardOutput)")
        #expect(try listBackups(on: target, database: "crm").map(\.id) == [ours[1].id, ours[2].id])
        #expect(Set(try target.list(prefix: "site-b/").map(\.key)) == Set(foreignKeys))
    }
}
