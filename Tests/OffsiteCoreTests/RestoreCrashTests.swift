import Foundation
import Testing
@testable import OffsiteCore

/// `kill -9` at every step of an in-place restore (through the `CrashPoint` hook): afterwards the live
/// path holds either the old database's whole committed state — its last transactions lived only in
/// its write-ahead log — or the restored one, never the old main file without its log.
@Suite struct RestoreCrashTests {
    /// Commits `rows` rows into table `t` of the WAL database at `path` and exits without closing,
    /// so the last transactions stay in the `-wal` file only (python3's sqlite3 module, `os._exit`).
    static func commitAndLeaveInWAL(_ path: String, rows: Int, in folder: ScratchFolder) throws {
        let script = """
            import os, sqlite3, sys
            db = sqlite3.connect(sys.argv[1], isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute("CREATE TABLE IF NOT EXISTS t(x TEXT)")
            for i in range(int(sys.argv[2])):
                db.execute("INSERT INTO t VALUES (?)", ("row %d %s" % (i, "x" * 200),))
            os._exit(0)
            """
        let result = try runTool("python3", ["-c", script, path, String(rows)], in: folder)
        guard result.status == 0 else { throw TestFailure("python3 failed: \(result.standardError)") }
    }

    static let points = ["replace.settled", "replace.kept", "replace.companions-removed", "replace.renamed"]

    /// `--in-place` (with its pre-restore backup) and `--output PATH --force` over an existing database.
    static let modes = [["--in-place", "--yes"], ["--force"]]

    @Test(arguments: points, modes)
    func aKillAtAnyStepLeavesTheOldStateWholeOrTheNewOne(point: String, mode: [String]) throws {
        let folder = try ScratchFolder("restore-crash")
        try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
        let live = folder.file("data/app.db")
        let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
        let recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let target = "file://\(folder.file("remote"))"

        // The backup holds 10 rows; then 40 more are committed, living only in the -wal file.
        try Self.commitAndLeaveInWAL(live, rows: 10, in: folder)
        let backup = try offsite(["backup", "--db", live, "--target", target, "--recipient", recipient], in: folder)
        try #require(backup.status == 0, "\(backup.standardError)")
        try Self.commitAndLeaveInWAL(live, rows: 40, in: folder)
        try #require((try fileSize(at: live + "-wal")) > 0, "the last transactions are in the -wal file only")
        let backups = try listBackups(on: FileTarget(name: "remote", root: folder.file("remote")), database: "app")
        let restoredID = try #require(backups.first?.id)

        let output = mode.contains("--force") ? ["--output", live] : []
        let restore = try offsite(["restore", "--db", live, "--target", target, "--identity", "identity.txt",
                                   "--backup", restoredID.description] + output + mode,
                                  in: folder, environment: [CrashPoint.variable: point])
        #expect(restore.status == SIGKILL, "killed at \(point): \(restore.standardError)")

        // Opened afterwards, as the application would: whole, and one of the two states.
        #expect(try sqlite3(live, "PRAGMA integrity_check", in: folder) == "ok")
        let rows = try sqlite3(live, "SELECT count(*) FROM t", in: folder)
        let expected = point == "replace.renamed" ? "10" : "50"
        #expect(rows == expected, "after a kill at \(point) the live database holds \(rows) rows")
    }
}
