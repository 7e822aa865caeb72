import CRMSim
import Foundation
import OffsiteCore
import Testing

@Suite struct CRMWriterTests {
    private func counters(_ path: String) throws -> (logs: Int64, comments: Int64) {
        let database = try SQLiteDatabase(path: path, mode: .readOnly)
        return (try database.scalarInt("SELECT count(*) FROM activity_logs") ?? -1,
                try database.scalarInt("SELECT count(*) FROM comments") ?? -1)
    }

    @Test func keepsPaceAt100PerSecondWithoutBusyErrors() throws {
        let folder = try ScratchFolder("crm")
        let path = try CRMFixture.copy(into: folder)
        let before = try counters(path)
        let writer = try CRMWriter(path: path, rate: 100, seed: 3)
        let report = try writer.run(duration: .seconds(2))
        #expect(report.busyErrors == 0)
        // The timeline holds every commit, in order, with the latencies the report summarises.
        let timeline = writer.timeline
        #expect(timeline.count == report.committed)
        #expect(zip(timeline, timeline.dropFirst()).allSatisfy { $0.beganSeconds < $1.beganSeconds })
        #expect(timeline.map(\.milliseconds).max() == report.latencyMaxMilliseconds)
        #expect(report.otherErrors == 0, "\(report.firstError ?? "")")
        #expect(report.committed >= 180, "\(report.summary)")
        #expect(report.achievedRate >= 90, "\(report.summary)")
        #expect(report.latencyP50Milliseconds > 0 && report.latencyP50Milliseconds <= report.latencyP99Milliseconds)
        #expect(report.latencyP99Milliseconds <= report.latencyMaxMilliseconds)
        #expect(report.longestStallMilliseconds >= 5)
        let after = try counters(path)
        #expect(after.logs - before.logs == Int64(report.committed))
        #expect(after.comments > before.comments)
        #expect(try CRMInvariant.check(databaseAt: path))
        let database = try SQLiteDatabase(path: path, mode: .readOnly)
        #expect(try database.scalarText("PRAGMA integrity_check") == "ok")
        #expect(try database.column("PRAGMA foreign_key_check").isEmpty)
        #expect(try database.scalarInt("SELECT count(*) FROM activity_logs WHERE NOT json_valid(payload)") == 0)
    }

    @Test func runsInTheBackgroundUntilStopped() throws {
        let folder = try ScratchFolder("crm")
        let path = try CRMFixture.copy(into: folder)
        let writer = try CRMWriter(path: path, rate: 200, seed: 4)
        writer.start()
        // While it writes, a reader's single read transaction still sees a consistent state.
        Thread.sleep(forTimeInterval: 0.3)
        #expect(try CRMInvariant.check(databaseAt: path))
        Thread.sleep(forTimeInterval: 0.2)
        let report = try writer.stop()
        #expect(report.committed >= 50, "\(report.summary)")
        #expect(report.busyErrors == 0)
        #expect(report.elapsedSeconds >= 0.45 && report.elapsedSeconds < 5)
        #expect(try CRMInvariant.check(databaseAt: path))
    }

    @Test func invariantDetectsABrokenCounter() throws {
        let folder = try ScratchFolder("crm")
        let path = try CRMFixture.copy(into: folder)
        #expect(try CRMInvariant.violations(inDatabaseAt: path).isEmpty)
        let database = try SQLiteDatabase(path: path)
        try database.execute("UPDATE app_counters SET n = n + 1 WHERE name = 'comments'")
        #expect(try !CRMInvariant.check(databaseAt: path))
        let problems = try CRMInvariant.violations(inDatabaseAt: path)
        #expect(problems.count == 1 && problems[0].contains("comments"), "\(problems)")
        try database.execute("DELETE FROM app_counters WHERE name = 'activity_logs'")
        #expect(try CRMInvariant.violations(inDatabaseAt: path).count == 2)
    }

    @Test func rejectsBadRatesAndNonCRMDatabases() throws {
        #expect(throws: CRMError.invalidRate(0)) { _ = try CRMWriter(path: "unused.db", rate: 0) }
        let folder = try ScratchFolder("crm")
        let path = folder.file("plain.db")
        try SQLiteDatabase(path: path, mode: .create).execute("CREATE TABLE t(x)")
        #expect(throws: CRMError.notACRMDatabase(path)) { _ = try CRMInvariant.check(databaseAt: path) }
        #expect(throws: CRMError.notACRMDatabase(path)) {
            _ = try CRMWriter(path: path, rate: 10).run(duration: .milliseconds(50))
        }
    }
}
