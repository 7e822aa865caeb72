import Foundation
import Testing
@testable import OffsiteCore

/// The WebDAV target against real servers on loopback: rclone, wsgidav and nginx (Basic) and
/// Apache mod_dav_fs (Digest), each with its own quirks.
@Suite struct WebDAVServerTests {
    @Test(arguments: WebDAVTestServer.Kind.allCases)
    func passesTheTargetConformanceSuite(kind: WebDAVTestServer.Kind) throws {
        let server = try WebDAVTestServer.shared(kind)
        // The target's own folder does not exist yet, two levels deep; keys add more levels.
        let target = try server.makeTarget(path: "\(uniqueWebDAVFolder("conformance"))/nested")
        try runTargetConformance(target, prefix: "")
        try runTargetConformance(target, prefix: "run2/deeper/")
    }

    @Test(arguments: WebDAVTestServer.Kind.allCases)
    func keysWithReservedCharactersRoundTrip(kind: WebDAVTestServer.Kind) throws {
        let server = try WebDAVTestServer.shared(kind)
        let target = try server.makeTarget(path: "\(uniqueWebDAVFolder("encoding"))/a b+c")
        // No `;`: wsgidav 4.4 cuts a MOVE Destination at a decoded `;` (commit then fails, loudly).
        let keys = ["dir/sub dir/a+b=c.bin", "dir/ünïcödé.bin", "dir/and&amp%41,(x)'!.bin"]
        for key in keys { try upload(Data(key.utf8), to: target, key: key) }
        #expect(try target.list(prefix: "dir/").map(\.key) == keys.sorted())
        #expect(try target.list(prefix: "dir/sub dir/a+").map(\.key) == [keys[0]])
        for key in keys {
            #expect(try download(from: target, key: key) == Data(key.utf8))
            #expect(try target.size(key: key) == Int64(key.utf8.count))
        }
        for key in keys { try target.delete(key: key) }
        #expect(try target.list(prefix: "").isEmpty)
    }

    @Test(arguments: WebDAVTestServer.Kind.allCases)
    func backupListRestorePassesIntegrityCheck(kind: WebDAVTestServer.Kind) throws {
        let server = try WebDAVTestServer.shared(kind)
        let folder = try makeTemporaryFolder("dav-e2e")
        defer { try? FileManager.default.removeItem(at: folder) }
        let databasePath = folder.appendingPathComponent("crm.db").path
        do {
            let database = try SQLiteDatabase(path: databasePath, mode: .create)
            try database.execute("CREATE TABLE contacts(id INTEGER PRIMARY KEY, name TEXT, notes TEXT)")
            try database.transaction {
                let insert = try database.prepare("INSERT INTO contacts(name, notes) VALUES (?, ?)")
                for index in 0..<2000 { try insert.run([.text("contact \(index)"), .text(String(repeating: "n", count: index % 300))]) }
            }
        }
        let target = try server.makeTarget(path: uniqueWebDAVFolder("e2e"), spoolFolder: folder.appendingPathComponent("spool"))
        let key = "crm/20261122T031700Z-manual.sqlite3"
        let original = try Data(contentsOf: URL(fileURLWithPath: databasePath))
        try upload(original, to: target, key: key, chunk: 65_536)

        let listed = try target.list(prefix: "crm/")
        #expect(listed.map(\.key) == [key])
        #expect(listed.first?.size == Int64(original.count))
        #expect(listed.first?.modified.map { abs($0.timeIntervalSinceNow) < 600 } == true, "getlastmodified was read")

        let restoredPath = folder.appendingPathComponent("restored.db").path
        try download(from: target, key: key).write(to: URL(fileURLWithPath: restoredPath))
        let restored = try SQLiteDatabase(path: restoredPath)
        #expect(try restored.scalarText("PRAGMA integrity_check") == "ok")
        #expect(try restored.scalarInt("SELECT count(*) FROM contacts") == 2000)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("spool").path).isEmpty,
                "the spool file is gone")
    }

    @Test(arguments: WebDAVTestServer.Kind.allCases)
    func wrongPasswordNamesTheTargetWithoutThePassword(kind: WebDAVTestServer.Kind) throws {
        let server = try WebDAVTestServer.shared(kind)
        let wrongPassword = "wrong-password-Hq4zP9"
        let target = try server.makeTarget(path: uniqueWebDAVFolder("auth"), password: wrongPassword)
        var errors: [TargetError] = []
        let attempts: [() throws -> Void] = [
            { _ = try target.list(prefix: "") },
            { try upload(Data("x".utf8), to: target, key: "db/a.bin") },
            { _ = try download(from: target, key: "db/a.bin") },
        ]
        for attempt in attempts {
            do {
                try attempt()
                Issue.record("a wrong password must fail")
            } catch let error as TargetError {
                errors.append(error)
            }
        }
        #expect(errors.count == 3)
        for error in errors {
            guard case .authentication = error else {
                Issue.record("expected an authentication error, got \(error)")
                continue
            }
            let text = "\(error.message)\n\(error.hint ?? "")\n\(error)\n\(String(reflecting: error))"
            #expect(text.contains("target dav-\(kind)"), "\(text)")
            #expect(text.contains("401"), "\(text)")
            #expect(!text.contains(wrongPassword))
            #expect(!text.contains(WebDAVTestServer.password))
            #expect(error.isPermanent)
        }
    }

    @Test(arguments: WebDAVTestServer.Kind.allCases)
    func abortedUploadLeavesNothingOnTheServerOrInTheSpool(kind: WebDAVTestServer.Kind) throws {
        let server = try WebDAVTestServer.shared(kind)
        let spool = try makeTemporaryFolder("dav-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        let folder = uniqueWebDAVFolder("abort")
        let target = try server.makeTarget(path: folder, spoolFolder: spool)
        try upload(Data("earlier".utf8), to: target, key: "db/earlier.bin")

        let pending = try target.makeUpload(key: "db/later.bin")
        try pending.write(Data(repeating: 9, count: 3 << 20))
        try pending.write(Data(repeating: 8, count: 12345))
        #expect(try target.list(prefix: "").map(\.key) == ["db/earlier.bin"], "nothing is sent before commit")
        pending.abort()
        #expect(throws: TargetError.self) { try pending.commit() }

        #expect(try target.list(prefix: "").map(\.key) == ["db/earlier.bin"])
        #expect(try download(from: target, key: "db/earlier.bin") == Data("earlier".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool.path).isEmpty, "no spool file is left")
        #expect(try namesOnDisk(server.dataFolder.appendingPathComponent(folder)) == ["db", "db/earlier.bin"])
    }

    @Test(arguments: WebDAVTestServer.Kind.allCases)
    func removesStaleTemporariesOnly(kind: WebDAVTestServer.Kind) throws {
        let server = try WebDAVTestServer.shared(kind)
        let folder = uniqueWebDAVFolder("stale")
        let target = try server.makeTarget(path: folder)
        try upload(Data("kept".utf8), to: target, key: "db/kept.bin")
        // A temporary as a crash leaves it: partial bytes under a temporary name, never renamed.
        // nginx leaves dot-files out of its listings: a temporary must not be one to be found.
        let name = WebDAVTarget.makeTemporaryName()
        try put(Data("partial".utf8), on: target, key: "db/\(name)")
        #expect(try namesOnDisk(server.dataFolder.appendingPathComponent(folder)).contains("db/\(name)"))
        #expect(try target.list(prefix: "").map(\.key) == ["db/kept.bin"], "temporaries are never listed")

        #expect(try target.removeStaleTemporaries(olderThan: .seconds(3600)) == 0, "a recent temporary may still be uploading")
        #expect(try target.removeStaleTemporaries(olderThan: .zero, inFolder: "d") == 0, "a folder is matched whole")
        #expect(try target.removeStaleTemporaries(olderThan: .zero, inFolder: "other") == 0, "another database's folder")
        #expect(try target.removeStaleTemporaries(olderThan: .zero, inFolder: "db") == 1)
        #expect(try namesOnDisk(server.dataFolder.appendingPathComponent(folder)) == ["db", "db/kept.bin"])
        #expect(try download(from: target, key: "db/kept.bin") == Data("kept".utf8))

        // Earlier versions named temporaries as dot-files: where the server lists them, they go too.
        guard kind != .nginx else { return }
        let former = WebDAVTarget.formerTemporaryNamePrefix + "1700000000-00112233.tmp"
        try put(Data("partial".utf8), on: target, key: "db/\(former)")
        #expect(try target.list(prefix: "").map(\.key) == ["db/kept.bin"])
        #expect(try target.removeStaleTemporaries(olderThan: .zero, inFolder: "db") == 1)
        #expect(try namesOnDisk(server.dataFolder.appendingPathComponent(folder)) == ["db", "db/kept.bin"])
    }

    @Test(arguments: WebDAVTestServer.Kind.allCases)
    func uploadsRecreateFoldersDeletedOnTheServer(kind: WebDAVTestServer.Kind) throws {
        let server = try WebDAVTestServer.shared(kind)
        let folder = uniqueWebDAVFolder("deleted")
        let onDisk = server.dataFolder.appendingPathComponent("\(folder)/nested")
        let target = try server.makeTarget(path: "\(folder)/nested")
        try upload(Data("first".utf8), to: target, key: "crm/first.bin")

        // The database's folder goes: nginx answers the next PUT with 500, the others with 409.
        try deleteFolder("\(folder)/nested/crm", on: server)
        try upload(Data("second".utf8), to: target, key: "crm/second.bin")
        #expect(try target.list(prefix: "").map(\.key) == ["crm/second.bin"])

        // The target's whole folder goes, parents the target made included.
        try deleteFolder(folder, on: server)
        try upload(Data("third".utf8), to: target, key: "crm/third.bin")
        #expect(try target.list(prefix: "").map(\.key) == ["crm/third.bin"])
        #expect(try download(from: target, key: "crm/third.bin") == Data("third".utf8))
        #expect(try namesOnDisk(onDisk) == ["crm", "crm/third.bin"], "no temporary is left")
    }

    @Test func aPUTAnswered404ForAMissingFolderHasTheFolderMadeAgain() throws {
        let server = try WebDAVTestServer.shared(.rclone)
        let proxy = try WebDAVFaultProxy(inFrontOf: server, mode: .put404)
        defer { proxy.stop() }
        let folder = uniqueWebDAVFolder("put404")
        let target = try proxy.makeTarget(path: folder)
        try upload(Data("first".utf8), to: target, key: "crm/first.bin")
        try deleteFolder("\(folder)/crm", on: server)

        try upload(Data("second".utf8), to: target, key: "crm/second.bin")
        #expect(try proxy.faultCounts()["put404"] == 1, "the PUT into the missing folder was answered 404")
        #expect(try target.list(prefix: "").map(\.key) == ["crm/second.bin"])
        #expect(try namesOnDisk(server.dataFolder.appendingPathComponent(folder)) == ["crm", "crm/second.bin"])
    }

    @Test(arguments: [WebDAVTestServer.Kind.rclone, .nginx])
    func aFolderDeletedBetweenPUTAndMOVEHasTheUploadSentAgain(kind: WebDAVTestServer.Kind) throws {
        let server = try WebDAVTestServer.shared(kind)
        let proxy = try WebDAVFaultProxy(inFrontOf: server, mode: .vanishBeforeMove)
        defer { proxy.stop() }
        let folder = uniqueWebDAVFolder("vanish")
        let target = try proxy.makeTarget(path: "\(folder)/nested")

        // The MOVE finds its source gone (rclone 403, nginx 404): the folder is made again and
        // the upload sent again.
        try upload(Data("the only backup".utf8), to: target, key: "crm/only.bin")
        let counts = try proxy.faultCounts()
        #expect(counts["vanish"] == 2, "two MOVEs: \(counts)")
        #expect(counts.keys.filter { $0.hasPrefix("deleted2") }.count == 1, "the folder was deleted before the first: \(counts)")
        #expect(try download(from: target, key: "crm/only.bin") == Data("the only backup".utf8))
        #expect(try namesOnDisk(server.dataFolder.appendingPathComponent("\(folder)/nested")) == ["crm", "crm/only.bin"])
    }

    @Test(arguments: [WebDAVTestServer.Kind.apache, .nginx])
    func credentialsGoWithEveryRequestOnceTheSchemeIsKnown(kind: WebDAVTestServer.Kind) throws {
        // Apache asks for Digest, nginx for Basic; each logs every request with its status.
        let server = try WebDAVTestServer.shared(kind)
        let folder = uniqueWebDAVFolder("rounds")
        let target = try server.makeTarget(path: folder)
        for index in 0..<3 { try upload(Data("backup \(index)".utf8), to: target, key: "crm/\(index).bin") }
        #expect(try target.list(prefix: "crm/").count == 3)
        #expect(try download(from: target, key: "crm/1.bin") == Data("backup 1".utf8))
        try target.delete(key: "crm/0.bin")

        // A server logs a request after answering it: wait for the DELETE's line.
        var lines: [String] = []
        let deadline = Date().addingTimeInterval(10)
        repeat {
            lines = try server.accessLog().filter { $0.contains("/dav/\(folder)") }
            if lines.contains(where: { $0.hasPrefix("DELETE ") }) { break }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        let challenged = lines.filter { $0.hasSuffix(" 401") }
        #expect(challenged.count == 1, "only the first request goes without credentials: \(lines)")
        #expect(lines.first?.hasSuffix(" 401") == true, "\(lines)")
        #expect(lines.count - challenged.count >= 15, "\(lines)")
    }

    @Test func serverKilledMidUploadLeavesEarlierBackupsAndNoFinalName() throws {
        var server = try WebDAVTestServer.startPrivate(.rclone)
        defer { server.stop() }
        let spool = try makeTemporaryFolder("dav-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        let folder = uniqueWebDAVFolder("killed")
        let onDisk = server.dataFolder.appendingPathComponent(folder)
        let target = try server.makeTarget(path: folder, spoolFolder: spool)
        let earlier = Data("the earlier backup".utf8)
        try upload(earlier, to: target, key: "db/earlier.bin")

        // A large upload; the server dies while the PUT streams.
        let pending = try target.makeUpload(key: "db/cut.bin")
        let chunk = Data(repeating: 0x5A, count: 1 << 20)
        for _ in 0..<256 { try pending.write(chunk) }
        try pending.finish()
        let outcome = CommitOutcome(pending)
        Thread { outcome.commit() }.start()
        let deadline = Date().addingTimeInterval(20)
        var sawPartial = false
        while Date() < deadline, !sawPartial {
            let partials = (try? namesOnDisk(onDisk).filter { $0.contains(WebDAVTarget.temporaryNamePrefix) }) ?? []
            sawPartial = partials.contains { name in
                let size = (try? FileManager.default.attributesOfItem(atPath: onDisk.appendingPathComponent(name).path)[.size] as? Int) ?? 0
                return size > 0
            }
            if !sawPartial { usleep(1000) }
        }
        #expect(sawPartial, "the temporary was seen growing on the server")
        server.killHard()
        #expect(outcome.done.wait(timeout: .now() + 30) == .success)
        #expect(outcome.error is TargetError, "the commit fails when the server dies")

        // Nothing under the final name; the partial temporary is all that is left.
        let left = try namesOnDisk(onDisk)
        #expect(!left.contains("db/cut.bin"))
        #expect(left.filter { $0.contains(WebDAVTarget.temporaryNamePrefix) }.count == 1, "\(left)")

        // The next run: the server is back, earlier backups are intact, and the temporary goes.
        server = try WebDAVTestServer.startPrivate(.rclone, replacing: server)
        #expect(try target.list(prefix: "").map(\.key) == ["db/earlier.bin"])
        #expect(try download(from: target, key: "db/earlier.bin") == earlier)
        #expect(try target.removeStaleTemporaries(olderThan: .zero) == 1)
        #expect(try namesOnDisk(onDisk) == ["db", "db/earlier.bin"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool.path).isEmpty, "no spool file is left")
    }
}

/// What a commit on another thread ended with.
private final class CommitOutcome: @unchecked Sendable {
    let upload: any TargetUpload
    let done = DispatchSemaphore(value: 0)
    var error: Error?

    init(_ upload: any TargetUpload) {
        self.upload = upload
    }

    func commit() {
        do { try upload.commit() } catch { self.error = error }
        done.signal()
    }
}

/// Deletes the folder at `path` (from the served root) through the server, as someone tidying up would.
private func deleteFolder(_ path: String, on server: WebDAVTestServer) throws {
    let other = try server.makeTarget(path: "")
    let request = HTTPRequest(method: "DELETE", url: other.client.url(ofPath: other.client.path(of: path + "/")),
                              headers: [("Depth", "infinity")])
    _ = try other.client.send(request, operation: "delete \(path)")
}

/// PUTs `data` straight to `key`, bypassing the upload's temporary name and checks.
private func put(_ data: Data, on target: WebDAVTarget, key: String) throws {
    let request = HTTPRequest(method: "PUT", url: target.client.url(ofPath: target.client.path(of: key)), body: .data(data))
    _ = try target.client.send(request, operation: "put \(key)")
}

/// Every file and folder under `folder`, relative and sorted.
private func namesOnDisk(_ folder: URL) throws -> [String] {
    guard let enumerator = FileManager.default.enumerator(atPath: folder.path) else { return [] }
    return enumerator.compactMap { $0 as? String }.sorted()
}
