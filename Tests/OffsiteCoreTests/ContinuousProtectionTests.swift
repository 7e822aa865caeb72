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

    /// A stamp is never before the moment it stands for, whatever part of a millisecond that is.
    @Test(arguments: [(seconds: 1_796_385_932.5091, expected: Int64(1_796_385_932_510)),
                      (seconds: 1_796_385_932.5099, expected: Int64(1_796_385_932_510)),
                      (seconds: 1_796_385_932.5, expected: Int64(1_796_385_932_500))])
    func aCommitTimeRoundsUpToTheMillisecond(seconds: Double, expected: Int64) {
        let stamp = commitMilliseconds(Date(timeIntervalSince1970: seconds))
        #expect(stamp == expected)
        #expect(Double(stamp) >= seconds * 1000)
    }

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

extension ContinuousProtectionTests {
    /// `maxChain` bounds what a restore reads, not what was shipped: many commits rewriting the
    /// same few rows ship several times the base's size, but their compacted object is small, so
    /// no new base is asked for; rewriting most of the database is what a new base is for.
    @Test(arguments: [(rows: 5, basesExpected: false), (rows: 400, basesExpected: true)])
    func maxChainCountsWhatARestoreReads(rows: Int, basesExpected: Bool) throws {
        let folder = try ScratchFolder("maxchain")
        let live = folder.file("app.db")
        do {
            let setup = try SQLiteDatabase(path: live, mode: .create)
            try setup.execute("""
                PRAGMA journal_mode = WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body BLOB);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
                INSERT INTO notes SELECT i, randomblob(1500) FROM n;
                """)
        }
        let target = FileTarget(name: "usb", root: folder.file("remote"))
        let database = DatabaseRef(path: live)
        let events = EventLog()
        let protection = ContinuousProtection(
            database: database,
            settings: .init(interval: .milliseconds(100), maxChain: .share(0.5), compressionLevel: 6, encryption: .none,
                            folder: folder.file("local/app"), compactAfterBytes: 128 << 10),
            targets: [(name: "usb", target: target)], cancellation: Cancellation(), report: { events.add($0) })
        try protection.start()
        defer { protection.stop() }
        let ticket = protection.prepareBase()
        let base = try runBackup(BackupJob(database: database, kind: .scheduled, targets: [target], encryption: .none))
        let baseBytes = base.uploads[0].size ?? 0
        protection.confirmBase(ticket, id: base.id, checksum: try #require(base.shippedChecksum), bytes: baseBytes)

        // 1,200 commits of 1.5 KB of random bytes each: 1.8 MB, several times the base (~650 KB).
        let writer = """
            import sqlite3, sys, time, os
            db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
            for i in range(1200):
                db.execute("UPDATE notes SET body = ? WHERE id = ?", (os.urandom(1500), 1 + (i * 7) % \(rows)))
                if i % 100 == 0: time.sleep(0.05)
            """
        let run = try runTool("python3", ["-c", writer, live], in: folder)
        try #require(run.status == 0, "\(run.standardError)")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && (try? FileManager.default.contentsOfDirectory(atPath: folder.file("local/app/.outbox")))?.isEmpty != true {
            Thread.sleep(forTimeInterval: 0.2)
        }
        Thread.sleep(forTimeInterval: 0.5)
        let shipped = try listBackupsAndChanges(on: target, database: "app").changes.reduce(Int64(0)) { $0 + $1.size }
        try #require(shipped > baseBytes, "the changes shipped (\(shipped) B) outweigh the base (\(baseBytes) B)")
        #expect((events.basesNeeded > 0) == basesExpected, "\(events.basesNeeded) new bases asked for; shipped \(shipped) B, base \(baseBytes) B")
    }
}

extension ContinuousProtectionTests {
    /// A new base taken while the application commits: its snapshot's read transaction is marked
    /// between two looks at the log, so the old chain ends with exactly the last commit the base
    /// holds, change object 1 of the new chain names that moment, and every moment from the old
    /// chain's end to the new chain's first commit restores (to the new base) instead of being
    /// refused as unknown.
    @Test func aBaseTakenWhileTheApplicationCommitsJoinsTheChainBefore() throws {
        let folder = try ScratchFolder("seam")
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
            settings: .init(interval: .milliseconds(100), maxChain: .count(10_000), compressionLevel: 1, encryption: .none,
                            folder: folder.file("local/app")),
            targets: [(name: "usb", target: target)], cancellation: Cancellation(), report: { events.add($0) })
        try protection.start()
        defer { protection.stop() }
        func takeBase() throws -> BackupID {
            let ticket = protection.prepareBase()
            var job = BackupJob(database: database, kind: .scheduled, targets: [target], encryption: .none)
            job.readMark = ticket
            let base = try runBackup(job)
            protection.confirmBase(ticket, id: base.id, checksum: try #require(base.shippedChecksum), bytes: base.uploads[0].size ?? 0)
            return base.id
        }
        let first = try takeBase()
        // The writer commits every few milliseconds for a few seconds; the second base is taken
        // in the middle of it, in another second than the first.
        let writer = """
            import sqlite3, sys, time
            db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
            for i in range(600):
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO notes(body) VALUES (?)", ("note %d" % i,))
                db.execute("UPDATE counter SET n = n + 1")
                db.execute("COMMIT")
                time.sleep(0.004)
            """
        let writing = JoinableThread(name: "writer") { try runTool("python3", ["-c", writer, live], in: folder) }
        Thread.sleep(forTimeInterval: 1.2)
        let second = try takeBase()
        #expect(second != first)
        let run = try writing.join().get()
        try #require(run.status == 0, "\(run.standardError)")
        let finalCount = try sqlite3(live, "SELECT n FROM counter", in: folder)
        var listing = try listBackupsAndChanges(on: target, database: "app")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            listing = try listBackupsAndChanges(on: target, database: "app")
            if let end = findChains(in: listing, database: "app").last?.window.end, end > 0,
               (try? FileManager.default.contentsOfDirectory(atPath: folder.file("local/app/.outbox")))?.isEmpty == true,
               try restoredCount(.latest) == finalCount { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(events.gaps.isEmpty, "\(events.gaps)")
        let chains = findChains(in: listing, database: "app")
        try #require(chains.map(\.baseID) == [first, second])
        let since = try #require(chains[1].since, "change object 1 of the second chain names the moment its base stands for")
        let oldEnd = try #require(chains[0].window.end)
        #expect(since == oldEnd, "the old chain ends exactly where the new base begins")
        let firstChange = try #require(chains[1].changes.first { $0.name.kind == .change(sequence: 1) }?.name.firstCommit)
        try #require(firstChange > since)

        func restoredCount(_ selection: BackupSelection) throws -> String {
            let restored = folder.file("restored-\(UUID().uuidString).db")
            _ = try OffsiteCore.restore(RestoreJob(target: target, database: "app", selection: selection, keys: DecryptionKeys()),
                                        toNewFile: restored, overwrite: false)
            #expect(try sqlite3(restored, "PRAGMA integrity_check", in: folder) == "ok")
            return try sqlite3(restored, "SELECT n FROM counter", in: folder)
        }
        func at(_ milliseconds: Int64) -> BackupSelection { .at(Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000)) }
        let baseCount = try restoredCount(.id(second))
        // The old chain's end, the seam and every moment up to the new chain's first commit: the new base.
        #expect(try restoredCount(at(oldEnd - 1)) != baseCount || chains[0].changes.isEmpty)
        #expect(try restoredCount(at(since)) == baseCount)
        #expect(try restoredCount(at((since + firstChange) / 2)) == baseCount)
        #expect(try restoredCount(at(firstChange - 1)) == baseCount)
        #expect(try restoredCount(at(firstChange)) == String(Int(baseCount)! + 1))
        #expect(try restoredCount(.latest) == finalCount)
    }
}

/// What a protection reported, for tests.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [ContinuousEvent] = []
    func add(_ event: ContinuousEvent) { lock.withLock { events.append(event) } }
    var basesNeeded: Int {
        lock.withLock { events.filter { if case .baseNeeded = $0 { return true } else { return false } }.count }
    }
    var gaps: [String] {
        lock.withLock {
            events.compactMap { if case let .log(_, name, fields) = $0, name == "changes.gap" { return fields.map(\.1).joined(separator: " ") } else { return nil } }
        }
    }
}
