import Foundation
import Testing
@testable import OffsiteCore

@Suite struct SQLiteDatabaseTests {
    @Test func roundTripsValues() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("offsite-sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = try SQLiteDatabase(path: dir.appendingPathComponent("t.db").path, mode: .create)
        try db.execute("CREATE TABLE t(a INTEGER, b TEXT)")
        try db.prepare("INSERT INTO t VALUES (?, ?)").run([.integer(42), .text("x")])
        #expect(try db.scalarInt("SELECT a FROM t") == 42)
        #expect(try db.scalarText("SELECT b FROM t") == "x")
        #expect(throws: SQLiteError.self) { try db.execute("SELECT * FROM missing") }
    }
}
