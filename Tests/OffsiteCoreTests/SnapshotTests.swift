import Foundation
import Testing
@testable import OffsiteCore

/// Creates a database with `items`, a one-row `counter` kept equal to the number of items,
/// `itemCount` items, and about `fillerMiB` MiB of filler rows written in one transaction.
@discardableResult
private func makeDatabase(at path: String, journalMode: String, itemCount: Int = 100, fillerMiB: Int = 0) throws -> SQLiteDatabase {
    let db = try SQLiteDatabase(path: path, mode: .create)
    #expect(try db.scalarText("PRAGMA journal_mode = \(journalMode)") == journalMode)
    try db.execute("""
        CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL);
        CREATE INDEX items_name ON items(name);
        CREATE TABLE counter(n INTEGER NOT NULL);
        INSERT INTO counter VALUES (0);
        CREATE TABLE filler(id INTEGER PRIMARY KEY, payload BLOB);
        """)
    try db.transaction {
        try db.execute("""
            WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < \(fillerMiB * 256))
            INSERT INTO filler(payload) SELECT randomblob(4000) FROM c WHERE \(fillerMiB) > 0;
            WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < \(itemCount))
            INSERT INTO items(name, created) SELECT 'item ' || x, julianday('now') FROM c WHERE \(itemCount) > 0;
            UPDATE counter SET n = (SELECT count(*) FROM items);
            """)
    }
    return db
}

/// A thread that commits transactions as fast as a busy application would: each inserts one
/// item and increments the counter, on its own connection.
private final class Writer: @unchecked Sendable {
    private let lock = NSLock()
    private var _committed = 0
    private var _maxLatency = Duration.zero
    private var _error: (any Error)?
    private var _shouldStop = false
    private let done = DispatchSemaphore(value: 0)
    private let startedAt = ContinuousClock.now

    var committed: Int { lock.withLock { _committed } }
    var maxLatency: Duration { lock.withLock { _maxLatency } }
    var error: (any Error)? { lock.withLock { _error } }

    init(path: String, synchronous: String) {
        let thread = Thread { [self] in
            defer { done.signal() }
            do {
                let db = try SQLiteDatabase(path: path, mode: .readWrite, busyTimeout: .seconds(10))
                try db.execute("PRAGMA synchronous = \(synchronous)")
                let insert = try db.prepare("INSERT INTO items(name, created) VALUES (?, julianday('now'))")
                let increment = try db.prepare("UPDATE counter SET n = n + 1")
                let clock = ContinuousClock()
                while !lock.withLock({ _shouldStop }) {
                    let start = clock.now
                    try db.transaction {
                        try insert.run([.text("written during snapshot")])
                        try increment.run()
                    }
                    let latency = clock.now - start
                    lock.withLock {
                        _committed += 1
                        _maxLatency = max(_maxLatency, latency)
                    }
                    Thread.sleep(forTimeInterval: 0.002)
                }
            } catch {
                lock.withLock { _error = error }
            }
        }
        thread.start()
    }

    /// Waits until at least `count` transactions are committed (or the writer failed).
    func waitUntilCommitted(_ count: Int) {
        while committed < count && error == nil { Thread.sleep(forTimeInterval: 0.005) }
    }

    /// Commits per second since the writer started.
    var rate: Double {
        let elapsed = ContinuousClock.now - startedAt
        return Double(committed) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    func stop() {
        lock.withLock { _shouldStop = true }
        done.wait()
    }
}

/// Checks a snapshot file the way a person would: with the real sqlite3 command.
private func expectSQLiteCLIAccepts(_ path: String, itemCount: Int) throws {
    #expect(try toolOutput(["sqlite3", path, "PRAGMA integrity_check"]) == "ok")
    #expect(try toolOutput(["sqlite3", path, "SELECT count(*) FROM items"]) == "\(itemCount)")
    #expect(try toolOutput(["sqlite3", path, "SELECT n FROM counter"]) == "\(itemCount)")
}

@Suite struct SnapshotTests {
    @Test(arguments: ["wal", "delete"])
    func copiesEveryCommittedRowIntoAPrivateSelfContainedFile(journalMode: String) throws {
        let source = try ScratchFolder("snapshot-source")
        let destination = try ScratchFolder("snapshot-destination")
        let db = try makeDatabase(at: source.file("crm.db"), journalMode: journalMode, itemCount: 500)
        // Rows still only in the -wal (no checkpoint yet) must be in the snapshot too.
        try db.execute("PRAGMA wal_autocheckpoint = 0")
        try db.transaction {
            try db.execute("INSERT INTO items(name, created) VALUES ('late', 0); UPDATE counter SET n = n + 1")
        }
        let before = Date()
        let finalPath = destination.file("crm.sqlite3")
        let info = try takeSnapshot(of: source.file("crm.db"), to: finalPath, check: .full)
        #expect(info.path == finalPath)
        #expect(info.readStartedAt >= before && info.readStartedAt <= Date())
        #expect(info.pageSize == 4096)
        #expect(info.byteCount == Int64(info.pageSize * info.pageCount))
        #expect(info.byteCount == (try fileSize(at: finalPath)))
        #expect(try destination.names() == ["crm.sqlite3"])
        #expect(try permissions(of: finalPath) == 0o600)
        try expectSQLiteCLIAccepts(finalPath, itemCount: 501)
        #expect(try toolOutput(["sqlite3", finalPath, "PRAGMA journal_mode"]) == journalMode)
        #expect(try destination.names() == ["crm.sqlite3"])
    }

    @Test func missingSourceIsAnErrorNamingThePathAndCreatesNothing() throws {
        let folder = try ScratchFolder("snapshot")
        let missing = folder.file("nope.db")
        let error = #expect(throws: SnapshotError.self) { try takeSnapshot(of: missing, to: folder.file("out.sqlite3")) }
        #expect(error == .sourceMissing(path: missing))
        #expect(error?.message.contains(missing) == true)
        #expect(try folder.names().isEmpty)
    }

    @Test func nonSQLiteFileIsAnErrorAndLeavesTheFinalPathUntouched() throws {
        let folder = try ScratchFolder("snapshot")
        try Data("name,email\nada,ada@example.com\n".utf8).write(to: URL(fileURLWithPath: folder.file("contacts.csv")))
        try Data().write(to: URL(fileURLWithPath: folder.file("empty.db")))
        try Data("previous snapshot".utf8).write(to: URL(fileURLWithPath: folder.file("out.sqlite3")))

        let error = #expect(throws: SnapshotError.self) {
            try takeSnapshot(of: folder.file("contacts.csv"), to: folder.file("out.sqlite3"))
        }
        #expect(error == .notSQLite(path: folder.file("contacts.csv"), isEmpty: false))
        #expect(error?.message.contains(folder.file("contacts.csv")) == true)
        #expect(throws: SnapshotError.notSQLite(path: folder.file("empty.db"), isEmpty: true)) {
            try takeSnapshot(of: folder.file("empty.db"), to: folder.file("out.sqlite3"))
        }
        #expect(try folder.names() == ["contacts.csv", "empty.db", "out.sqlite3"])
        #expect(try String(contentsOfFile: folder.file("out.sqlite3"), encoding: .utf8) == "previous snapshot")
    }

    @Test func refusesToSnapshotOntoTheDatabaseItself() throws {
        let folder = try ScratchFolder("snapshot")
        let path = folder.file("crm.db")
        do { try makeDatabase(at: path, journalMode: "delete", itemCount: 7) }
        try FileManager.default.createSymbolicLink(atPath: folder.file("link.db"), withDestinationPath: path)
        for target in [path, folder.file("link.db")] {
            #expect(throws: SnapshotError.destinationIsSource(path: path)) { try takeSnapshot(of: path, to: target) }
        }
        #expect(try folder.names() == ["crm.db", "link.db"])
        #expect(try toolOutput(["sqlite3", path, "SELECT count(*) FROM items"]) == "7")
    }

    @Test func corruptSourceFailsTheCheckAndLeavesNothingBehind() throws {
        let source = try ScratchFolder("snapshot-source")
        let destination = try ScratchFolder("snapshot-destination")
        let path = source.file("broken.db")
        do {
            try makeDatabase(at: path, journalMode: "delete", itemCount: 20_000)
        }
        // Scribble over the middle of a page deep in the file: a b-tree page, now garbage.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: (size / 4096 / 2) * 4096 + 100)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 3000))
        try handle.close()
        try Data("previous snapshot".utf8).write(to: URL(fileURLWithPath: destination.file("broken.sqlite3")))

        #expect(throws: (any Error).self) {
            try takeSnapshot(of: path, to: destination.file("broken.sqlite3"), check: .full)
        }
        #expect(try destination.names() == ["broken.sqlite3"])
        #expect(try String(contentsOfFile: destination.file("broken.sqlite3"), encoding: .utf8) == "previous snapshot")
    }

    @Test func sourceLockedLongerThanTheRetryLimitFailsClearly() throws {
        let source = try ScratchFolder("snapshot-source")
        let destination = try ScratchFolder("snapshot-destination")
        let db = try makeDatabase(at: source.file("locked.db"), journalMode: "delete")
        try db.execute("BEGIN EXCLUSIVE; INSERT INTO items(name, created) VALUES ('held', 0)")
        defer { try? db.execute("ROLLBACK") }
        let clock = ContinuousClock()
        let start = clock.now
        let error = #expect(throws: SnapshotError.self) {
            try Snapshotter(busyRetryLimit: .milliseconds(400))
                .takeSnapshot(of: source.file("locked.db"), to: destination.file("locked.sqlite3"))
        }
        #expect(error == .busy(path: source.file("locked.db"), waited: .milliseconds(400)))
        #expect(error?.hint?.contains("WAL") == true)
        #expect(clock.now - start < .seconds(3))
        #expect(try destination.names().isEmpty)
    }

    @Test func snapshotDuringBusyWALWriterIsConsistent() throws {
        let source = try ScratchFolder("snapshot-source")
        let destination = try ScratchFolder("snapshot-destination")
        try makeDatabase(at: source.file("busy.db"), journalMode: "wal", itemCount: 0, fillerMiB: 40)
        let writer = Writer(path: source.file("busy.db"), synchronous: "NORMAL")
        writer.waitUntilCommitted(30)
        let committedBefore = writer.committed
        let info = try takeSnapshot(of: source.file("busy.db"), to: destination.file("busy.sqlite3"))
        let committedAfterCopy = writer.committed
        writer.waitUntilCommitted(committedAfterCopy + 20)
        writer.stop()
        #expect(writer.error == nil)
        let final = writer.committed
        #expect(writer.rate >= 100)

        // Nothing but the snapshot in its folder, before anyone opens it.
        #expect(try destination.names() == ["busy.sqlite3"])
        let copy = try SQLiteDatabase(path: destination.file("busy.sqlite3"), mode: .readOnly)
        let items = try #require(try copy.scalarInt("SELECT count(*) FROM items"))
        #expect(try copy.scalarInt("SELECT n FROM counter") == items)
        #expect(items >= Int64(committedBefore))
        #expect(items > 0 && items <= Int64(final))
        #expect(info.byteCount > 40 * 1024 * 1024)
        // In WAL mode the writer is not held up by the copy.
        #expect(committedAfterCopy > committedBefore || info.copyDuration < .milliseconds(20))
        #expect(try toolOutput(["sqlite3", destination.file("busy.sqlite3"), "PRAGMA quick_check"]) == "ok")
    }

    @Test func snapshotDuringRollbackJournalWriterIsConsistentAndHoldsTheWriterBack() throws {
        let source = try ScratchFolder("snapshot-source")
        let destination = try ScratchFolder("snapshot-destination")
        try makeDatabase(at: source.file("busy.db"), journalMode: "delete", itemCount: 0, fillerMiB: 40)
        let writer = Writer(path: source.file("busy.db"), synchronous: "OFF")
        writer.waitUntilCommitted(30)
        let committedBefore = writer.committed
        let info = try takeSnapshot(of: source.file("busy.db"), to: destination.file("busy.sqlite3"))
        writer.waitUntilCommitted(writer.committed + 20)
        writer.stop()
        #expect(writer.error == nil)
        let final = writer.committed
        #expect(try destination.names() == ["busy.sqlite3"])

        let copy = try SQLiteDatabase(path: destination.file("busy.sqlite3"), mode: .readOnly)
        let items = try #require(try copy.scalarInt("SELECT count(*) FROM items"))
        #expect(try copy.scalarInt("SELECT n FROM counter") == items)
        #expect(items >= Int64(committedBefore))
        #expect(items > 0 && items <= Int64(final))
        // The copy holds a SHARED lock: a commit attempted meanwhile waits until the copy ends.
        #expect(writer.maxLatency >= info.copyDuration / 2)
    }
}
