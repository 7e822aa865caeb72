import Foundation
import Testing
@testable import OffsiteCore

/// Capture of committed transactions out of a write-ahead log that another process writes, while
/// that process checkpoints in every way SQLite allows (PASSIVE, FULL, RESTART, TRUNCATE, its
/// autocheckpoint) and runs a VACUUM: the base plus every captured transaction is exactly the
/// database, and the application's checkpoints all completed.
@Suite struct WALCaptureTests {
    /// A writer in its own process (python3's sqlite3 module, the same libsqlite3): inserts and
    /// updates at about `rate` transactions a second for `seconds`, a random checkpoint of each
    /// kind every few hundred milliseconds (busy timeout 5 s), a VACUUM half way; prints one line
    /// of counts at the end.
    static let writer = #"""
        import random, sqlite3, sys, time
        path, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
        db = sqlite3.connect(path, isolation_level=None, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        rng = random.Random(7)
        modes = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"]
        done = {m: 0 for m in modes}; busy = {m: 0 for m in modes}
        commits = 0; vacuumed = False
        start = time.time(); next_ckpt = start + 0.3
        while time.time() - start < seconds:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO notes(body) VALUES (?)", ("note %d %s" % (commits, "x" * rng.randint(10, 3000)),))
            db.execute("UPDATE counter SET n = n + 1")
            if rng.random() < 0.1:
                db.execute("DELETE FROM notes WHERE id IN (SELECT id FROM notes ORDER BY random() LIMIT 3)")
            db.execute("COMMIT")
            commits += 1
            now = time.time()
            if not vacuumed and now - start > seconds / 2:
                db.execute("VACUUM"); vacuumed = True; commits += 1
            if now >= next_ckpt:
                mode = rng.choice(modes)
                b, log, ckpt = db.execute("PRAGMA wal_checkpoint(%s)" % mode).fetchone()
                (busy if b else done)[mode] += 1
                next_ckpt = now + rng.uniform(0.2, 0.6)
            time.sleep(1.0 / rate)
        print("commits=%d vacuumed=%s done=%s busy=%s" % (commits, vacuumed, done, busy))
        """#

    /// Applies the spool's transactions to the database file at `path` as a checkpoint would:
    /// each frame's page in place, the file cut to the size after each transaction.
    static func apply(_ spool: ChangeSpool, to path: String) throws {
        let descriptor = open(path, O_RDWR)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var page = [UInt8](repeating: 0, count: spool.pageSize)
        for transaction in spool.transactions {
            for frame in transaction.firstFrame..<transaction.endFrame {
                let number = try page.withUnsafeMutableBytes { try spool.readFrame(frame, into: $0) }
                let written = page.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(number - 1) * off_t(spool.pageSize)) }
                try #require(written == spool.pageSize)
            }
            try #require(ftruncate(descriptor, off_t(transaction.pageCount) * off_t(spool.pageSize)) == 0)
        }
    }

    @Test func everyCommittedTransactionIsCapturedWhileTheApplicationCheckpointsEveryWay() throws {
        let folder = try ScratchFolder("capture")
        let live = folder.file("app.db")
        do {
            let setup = try SQLiteDatabase(path: live, mode: .create)
            try setup.execute("""
                PRAGMA journal_mode = WAL;
                CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
                CREATE INDEX notes_body ON notes(body);
                CREATE TABLE counter(n INTEGER); INSERT INTO counter VALUES (0);
                """)
        }
        let capture = try WALCapture(path: live)
        try capture.startAtCurrentEnd()
        // The base: a page-exact copy taken after the cursor was placed.
        let base = try Snapshotter().copy(of: live, to: folder.file("base.db"), progress: nil).temporaryPath
        let spool = try ChangeSpool(path: folder.file("spool"), pageSize: try #require(capture.cursor?.pageSize), framesPerSegment: 256)

        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: try locateTool("python3"))
        writer.arguments = ["-c", Self.writer, live, "6", "150"]
        let output = Pipe()
        writer.standardOutput = output
        try writer.run()
        var steps = 0
        while writer.isRunning {
            try capture.step(into: spool)
            steps += 1
            usleep(2000)
        }
        writer.waitUntilExit()
        try capture.step(into: spool)
        let summary = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(writer.terminationStatus == 0, "\(summary)")
        #expect(summary.contains("vacuumed=True"), "\(summary)")
        // Every checkpoint the application asked for completed: none was starved by the pins.
        #expect(summary.contains("busy={'PASSIVE': 0, 'FULL': 0, 'RESTART': 0, 'TRUNCATE': 0}"), "\(summary)")
        #expect(steps > 100)
        print("capture: \(summary.trimmingCharacters(in: .whitespacesAndNewlines)), \(capture.topUps) top-ups, \(steps) steps")

        try Self.apply(spool, to: base)
        let commits = Int(summary.split(separator: " ").first { $0.hasPrefix("commits=") }?.dropFirst(8) ?? "") ?? 0
        #expect(spool.transactions.count >= commits - 1, "\(spool.transactions.count) transactions captured of \(commits)")
        #expect(try sqlite3(base, "PRAGMA integrity_check", in: folder) == "ok")
        for query in ["SELECT n FROM counter", "SELECT count(*), sum(length(body)), max(id) FROM notes"] {
            #expect(try sqlite3(base, query, in: folder) == sqlite3(live, query, in: folder), "\(query)")
        }
        // The log never grew much past the application's checkpoint threshold.
        let walBytes = try fileSize(at: live + "-wal")
        #expect(walBytes < 3000 * Int64(4096 + 24), "\(walBytes) bytes of log")
        // Segments no kept frame needs are removed.
        spool.discard(upTo: spool.frameCount)
        #expect(try folder.names().filter { $0.hasPrefix("spool.") }.count <= 1)
    }

    /// A writer that never pauses (autocheckpoint as SQLite sets it) gives no moment at which the
    /// log is fully checkpointed between two of its transactions: the pins alone would keep the
    /// log from ever restarting. Capture restarts it itself past one and a half times the
    /// threshold: the log stays under twice the threshold, and nothing is lost.
    @Test func aWriterThatNeverPausesDoesNotGrowTheLogPastTwiceTheThreshold() throws {
        let folder = try ScratchFolder("nonstop")
        let live = folder.file("app.db")
        do {
            let setup = try SQLiteDatabase(path: live, mode: .create)
            try setup.execute("""
                PRAGMA journal_mode = WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
                CREATE TABLE counter(n INTEGER); INSERT INTO counter VALUES (0);
                """)
        }
        let capture = try WALCapture(path: live)
        try capture.startAtCurrentEnd()
        let base = try Snapshotter().copy(of: live, to: folder.file("base.db"), progress: nil).temporaryPath
        let spool = try ChangeSpool(path: folder.file("spool"), pageSize: try #require(capture.cursor?.pageSize))
        // Each transaction writes about three pages, half a millisecond apart: never long enough for
        // the log to be found fully checkpointed, and several thresholds' worth in 4 s.
        let writer = """
            import sqlite3, sys, time, os
            db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
            commits = 0; start = time.time()
            while time.time() - start < 4:
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO notes(body) VALUES (?)", (os.urandom(1500).hex(),))
                db.execute("UPDATE counter SET n = n + 1")
                db.execute("COMMIT")
                commits += 1
                time.sleep(0.0005)
            print(commits)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try locateTool("python3"))
        process.arguments = ["-c", writer, live]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        var largestLog: Int64 = 0
        while process.isRunning {
            try capture.step(into: spool)
            largestLog = max(largestLog, (try? fileSize(at: live + "-wal")) ?? 0)
            usleep(3000)
        }
        process.waitUntilExit()
        try capture.step(into: spool)
        largestLog = max(largestLog, (try? fileSize(at: live + "-wal")) ?? 0)
        let commits = Int(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(process.terminationStatus == 0)
        let frameBytes = Int64(4096 + 24)
        #expect(Int64(commits) * 3 * frameBytes > 4 * 1000 * frameBytes, "the writer wrote several thresholds' worth (\(commits) commits)")
        #expect(capture.restarts > 0)
        print("nonstop: \(commits) commits, \(capture.restarts) restarts (\(capture.busyRestarts) busy), \(capture.topUps) top-ups, log at most \(largestLog / frameBytes) frames")
        #expect(largestLog < 2 * 1000 * frameBytes + 32, "the log reached \(largestLog / frameBytes) frames")
        #expect(spool.transactions.count == commits, "\(spool.transactions.count) transactions captured of \(commits)")
        try Self.apply(spool, to: base)
        #expect(try sqlite3(base, "SELECT n, (SELECT count(*) FROM notes) FROM counter", in: folder)
                == sqlite3(live, "SELECT n, (SELECT count(*) FROM notes) FROM counter", in: folder))
        #expect(try sqlite3(base, "PRAGMA integrity_check", in: folder) == "ok")
    }

    @Test func aLogThatRestartedWhileNothingPinnedItIsAGap() throws {
        let folder = try ScratchFolder("capture-gap")
        let live = folder.file("app.db")
        let app = try SQLiteDatabase(path: live, mode: .create)
        try app.execute("PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        var saved: WALCursor?
        do {
            let capture = try WALCapture(path: live)
            try capture.startAtCurrentEnd()
            let spool = try ChangeSpool(path: folder.file("spool"), pageSize: try #require(capture.cursor?.pageSize))
            try app.execute("INSERT INTO t VALUES (2)")
            #expect(try capture.step(into: spool) == 1)
            saved = capture.cursor
            // Resuming where it stands works while the log is unchanged.
            let again = try WALCapture(path: live)
            try again.resume(from: try #require(saved))
        }
        // With no pin held, the application checkpoints and its next write restarts the log.
        try app.execute("PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t VALUES (3)")
        let restarted = try WALCapture(path: live)
        #expect(throws: CaptureGap.self) { try restarted.resume(from: try #require(saved)) }
        // A database not in WAL mode is refused: it gets full backups only.
        let rollback = folder.file("plain.db")
        try SQLiteDatabase(path: rollback, mode: .create).execute("CREATE TABLE t(x)")
        #expect(throws: CaptureGap.self) { try WALCapture(path: rollback) }
    }
}
