import Foundation
import Testing
@testable import OffsiteCore

/// The shipping engine on its own threads, in process: a base, change objects every interval, a
/// compacted object once enough was shipped, all uploaded; a restore of the newest moment reads the
/// compacted object for the bulk and equals the database.
@Suite struct ContinuousProtectionTests {
    static let writer = #"""
        import sqlite3, sys
        db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
        for i in range(int(sys.argv[2])):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO notes(body) VALUES (?)", ("note %d %s" % (i, "z" * 2000),))
            db.execute("UPDATE counter SET n = n + 1")
            db.execute("COMMIT")
        """#

    @Test func changesAreShippedCompactedAndRestoredToTheNewestMoment() throws {
        let folder = try ScratchFolder("protection")
        let live = folder.file("app.db")
        do {
            let setup = try SQLiteDatabase(path: live, mode: .create)
            try setup.execute("""
                PRAGMA journal_mode = WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
                CREATE TABLE counter(n INTEGER); INSERT INTO counter VALUES (0);
                """)
        }
        let target = FileTarget(name: "usb", root: folder.file("remote"))
        let database = DatabaseRef(path: live)
        let events = EventLog()
        let protection = ContinuousProtection(
            database: database,
            settings: .init(interval: .milliseconds(200), maxChain: .count(10_000), compressionLevel: 6, encryption: .none,
                            folder: folder.file("local/app"), compactAfterBytes: 256 << 10),
            targets: [(name: "usb", target: target)], cancellation: Cancellation(), report: { events.add($0) })
        try protection.start()
        let ticket = protection.prepareBase()
        let base = try runBackup(BackupJob(database: database, kind: .scheduled, targets: [target], encryption: .none))
        protection.confirmBase(ticket, id: base.id, checksum: try #require(base.shippedChecksum), bytes: base.uploads[0].size ?? 0)

        let run = try runTool("python3", ["-c", Self.writer, live, "400"], in: folder)
        try #require(run.status == 0, "\(run.standardError)")
        // Done when the newest moment on the target holds the last commit (an empty outbox alone
        // can come before the capture thread has seen the writer's last commits).
        let deadline = Date().addingTimeInterval(30)
        var listing = try listBackupsAndChanges(on: target, database: "app")
        let finalCount = try sqlite3(live, "SELECT n FROM counter", in: folder)
        let restored = folder.file("restored.db")
        var report: RestoreReport?
        while Date() < deadline {
            listing = try listBackupsAndChanges(on: target, database: "app")
            let compacted = listing.changes.contains { if case .compacted = $0.name.kind { return true } else { return false } }
            if compacted {
                try? FileManager.default.removeItem(atPath: restored)
                report = try OffsiteCore.restore(RestoreJob(target: target, database: "app", selection: .latest, keys: DecryptionKeys()),
                                                 toNewFile: restored, overwrite: false)
                if try sqlite3(restored, "SELECT n FROM counter", in: folder) == finalCount { break }
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        protection.stop()
        #expect(events.gaps.isEmpty, "\(events.gaps)")
        #expect(listing.changes.count >= 3)
        #expect((report?.changes?.compactedObjects ?? 0) >= 1, "\(String(describing: report?.changes))")
        #expect(try sqlite3(restored, "SELECT n FROM counter", in: folder) == finalCount)
        #expect(try sqlite3(restored, "SELECT count(*), sum(length(body)) FROM notes", in: folder)
                == sqlite3(live, "SELECT count(*), sum(length(body)) FROM notes", in: folder))
        #expect(try sqlite3(restored, "PRAGMA integrity_check", in: folder) == "ok")
    }
}

/// What a protection reported, for tests.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [ContinuousEvent] = []
    func add(_ event: ContinuousEvent) { lock.withLock { events.append(event) } }
    var gaps: [String] {
        lock.withLock {
            events.compactMap { if case let .log(_, name, fields) = $0, name == "changes.gap" { return fields.map(\.1).joined(separator: " ") } else { return nil } }
        }
    }
}
