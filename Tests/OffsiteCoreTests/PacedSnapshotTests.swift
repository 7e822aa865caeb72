import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// The WAL-mode snapshot copies in small flushed steps inside one read transaction; these tests
/// show that a busy writer neither restarts nor tears it, and that without the held transaction
/// the same stepped copy does restart (so the restart count is a measurement that can fail).
@Suite struct PacedSnapshotTests {
    /// A thread-safe tally of how many commits the writer had made when each step ended.
    final class Steps: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        var value: Int { lock.withLock { count } }
        func add() { lock.withLock { count += 1 } }
    }

    @Test func aCopyInStepsUnderABusyWriterIsConsistentAndNeverRestarts() throws {
        let folder = try ScratchFolder("paced")
        let database = try CRMFixture.copy(into: folder)
        let writer = try CRMWriter(path: database, rate: 200, seed: 7)
        writer.start()
        var stopped = false
        defer { if !stopped { _ = try? writer.stop() } }
        Thread.sleep(forTimeInterval: 0.1)

        let steps = Steps()
        var snapshotter = Snapshotter(stepBytes: 64 * 1024)  // 4 MiB in ~64 steps
        // Slow every step down, so that the writer commits many times during the copy.
        snapshotter.afterStep = { _, _ in
            steps.add()
            Thread.sleep(forTimeInterval: 0.008)
        }
        let rowsBefore = try CRMInvariantCounts.activityLogs(database)
        let info = try snapshotter.takeSnapshot(of: database, to: folder.file("snap.sqlite3"))
        let rowsAfter = try CRMInvariantCounts.activityLogs(database)
        let report = try writer.stop()
        stopped = true

        #expect(steps.value >= 30, "the copy took many steps: \(steps.value)")
        #expect(rowsAfter - rowsBefore >= 20, "the writer committed during the copy: \(rowsAfter - rowsBefore)")
        #expect(report.busyErrors == 0 && report.otherErrors == 0, "\(report.summary)")
        #expect(try CRMInvariant.violations(inDatabaseAt: info.path) == [])
        // The snapshot is the state when its read began: nothing committed during the copy.
        let copied = try CRMInvariantCounts.activityLogs(info.path)
        #expect(copied >= rowsBefore && copied < rowsAfter)
        #expect(try toolOutput(["sqlite3", info.path, "PRAGMA integrity_check"]) == "ok")
    }

    @Test func theCopyReportsNoRestartsWithTheTransactionHeldAndSomeWithout() throws {
        let folder = try ScratchFolder("paced")
        let database = try CRMFixture.copy(into: folder)
        let writer = try CRMWriter(path: database, rate: 200, seed: 8)
        writer.start()
        defer { _ = try? writer.stop() }
        Thread.sleep(forTimeInterval: 0.1)

        func stepCopy(holdingTransaction: Bool) throws -> Int {
            let target = folder.file("copy-\(holdingTransaction)-\(UUID().uuidString).db")
            try FileSink(creating: target).finish()
            let source = try SQLiteDatabase(path: database, mode: .readWrite)
            let destination = try SQLiteDatabase(path: target, mode: .readWrite)
            try destination.execute("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")
            if holdingTransaction {
                try source.execute("BEGIN")
                _ = try source.scalarInt("SELECT count(*) FROM sqlite_schema")
            }
            struct Enough: Error {}
            var restarts = 0
            var steps = 0
            do {
                restarts = try source.copyDatabase(into: destination, pagesPerStep: 8) { _, _ in
                    steps += 1
                    Thread.sleep(forTimeInterval: 0.002)
                    if steps > 400 { throw Enough() }  // a copy that keeps restarting never ends
                }.restarts
            } catch is Enough {
                restarts = 1
            }
            if holdingTransaction {
                try source.execute("COMMIT")
                #expect(try CRMInvariant.violations(inDatabaseAt: target) == [])
            }
            return restarts
        }
        #expect(try stepCopy(holdingTransaction: true) == 0)
        #expect(try stepCopy(holdingTransaction: false) > 0)
    }
}

/// A copy read while it is being made (`SnapshotProgress`) under a busy writer: what the reader
/// got is byte for byte the finished copy, which is a consistent snapshot.
@Suite struct StreamedSnapshotTests {
    @Test(arguments: [true, false])
    func whatIsReadDuringTheCopyIsTheFinishedCopy(durable: Bool) throws {
        let folder = try ScratchFolder("streamed")
        let database = try CRMFixture.copy(into: folder)
        let writer = try CRMWriter(path: database, rate: 200, seed: 9)
        writer.start()
        var stopped = false
        defer { if !stopped { _ = try? writer.stop() } }
        Thread.sleep(forTimeInterval: 0.1)

        var snapshotter = Snapshotter(stepBytes: 64 * 1024)
        snapshotter.durable = durable
        snapshotter.afterStep = { _, _ in Thread.sleep(forTimeInterval: 0.005) }
        let progress = SnapshotProgress()
        let copied = Result<SnapshotCopy, any Error>.Cell()
        let snapshotPath = folder.file("snap.sqlite3")
        let copier = snapshotter
        let thread = Thread {
            let result = Result { try copier.copy(of: database, to: snapshotPath, progress: progress) }
            progress.finish(result)
            copied.set(result)
        }
        thread.start()

        // Read behind the copy, the first page last, the way a backup does.
        let expected = try progress.waitForStart()
        #expect(expected > 1 << 20)
        #expect(!progress.isStable(from: 0) && progress.isStable(from: 1 << 20))
        let rest = DataSink()
        var readWhileCopying = false
        final class Watch: ByteSink {
            let next: DataSink
            let progress: SnapshotProgress
            var sawUnfinished = false
            init(next: DataSink, progress: SnapshotProgress) { self.next = next; self.progress = progress }
            func write(_ bytes: UnsafeRawBufferPointer) throws {
                if !progress.hasEnded { sawUnfinished = true }
                try next.write(bytes)
            }
            func finish() throws {}
        }
        let watch = Watch(next: rest, progress: progress)
        let restCount = try progress.read(into: watch, from: 1 << 20)
        readWhileCopying = watch.sawUnfinished
        let head = try progress.finalPrefix(count: 1 << 20)
        let copy = try copied.wait().get()
        let report = try writer.stop()
        stopped = true

        #expect(readWhileCopying, "the reader got bytes before the copy ended")
        #expect(Int64(head.count) + restCount == (try fileSize(at: copy.temporaryPath)))
        let finished = try Data(contentsOf: URL(fileURLWithPath: copy.temporaryPath))
        #expect(Data(head) + rest.data == finished, "the bytes read are the finished copy")
        #expect(report.busyErrors == 0 && report.otherErrors == 0, "\(report.summary)")
        let checked = try snapshotter.check(copy, using: .full)
        #expect(checked.pageSize > 0)
        let info = try snapshotter.install(copy, checked: checked)
        #expect(try CRMInvariant.violations(inDatabaseAt: info.path) == [])
    }

    @Test func aCopyThatFailsWakesTheReaderWithItsError() throws {
        let folder = try ScratchFolder("streamed")
        try Data("not a database at all".utf8).write(to: URL(fileURLWithPath: folder.file("notes.db")))
        let progress = SnapshotProgress()
        let result = Result { try Snapshotter().copy(of: folder.file("notes.db"), to: folder.file("snap.sqlite3"), progress: progress) }
        progress.finish(result)
        #expect(throws: SnapshotError.self) { try progress.read(into: DataSink()) }
        #expect(throws: SnapshotError.self) { try progress.waitForStart() }
    }
}

extension Result where Failure == any Error {
    /// A result handed from one thread to another.
    final class Cell: @unchecked Sendable {
        private let condition = NSCondition()
        private var value: Result<Success, any Error>?
        func set(_ result: Result<Success, any Error>) {
            condition.withLock { value = result; condition.broadcast() }
        }
        func wait() -> Result<Success, any Error> {
            condition.lock()
            defer { condition.unlock() }
            while value == nil { condition.wait() }
            return value!
        }
    }
}

/// Row counts read in their own transaction.
enum CRMInvariantCounts {
    static func activityLogs(_ path: String) throws -> Int64 {
        let database = try SQLiteDatabase(path: path, mode: .readOnly)
        return try database.scalarInt("SELECT count(*) FROM activity_logs") ?? -1
    }
}
