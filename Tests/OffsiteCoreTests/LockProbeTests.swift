import Foundation
import Testing
@testable import OffsiteCore

@Suite struct LockProbeTests {
    /// The probe must see a connection held open by another process, in WAL mode, and see
    /// nothing once it has gone.
    @Test func seesAnotherProcessHoldingAWALDatabase() throws {
        let folder = try makeTemporaryFolder("lock")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("crm.db").path
        do {
            let db = try SQLiteDatabase(path: path, mode: .create)
            try db.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        }
        #expect(LockProbe.holders(ofDatabaseAt: path).isEmpty)

        // The real sqlite3 CLI keeps the database open while it waits on its standard input.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sqlite3", path]
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        input.fileHandleForWriting.write(Data("SELECT count(*) FROM t;\n".utf8))
        var holders: [LockProbe.Holder] = []
        for _ in 0..<100 where holders.isEmpty {
            Thread.sleep(forTimeInterval: 0.05)
            holders = LockProbe.holders(ofDatabaseAt: path)
        }
        #expect(holders.contains { $0.pid == process.processIdentifier })
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        #expect(LockProbe.holders(ofDatabaseAt: path).isEmpty)
    }
}
