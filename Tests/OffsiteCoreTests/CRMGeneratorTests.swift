import CRMSim
import Foundation
import OffsiteCore
import Testing

@Suite struct CRMGeneratorTests {
    static let tables = ["users", "clients", "leads", "comments", "attendance", "notifications", "activity_logs", "app_counters"]

    @Test func sameSeedGivesSameRowsAndOtherSeedDiffers() throws {
        let folder = try ScratchFolder("crm")
        _ = try CRMGenerator.generate(at: folder.file("a.db"), sizeMiB: 2, seed: 7)
        _ = try CRMGenerator.generate(at: folder.file("b.db"), sizeMiB: 2, seed: 7)
        _ = try CRMGenerator.generate(at: folder.file("c.db"), sizeMiB: 2, seed: 8)
        let a = try SQLiteDatabase(path: folder.file("a.db"), mode: .readOnly)
        let b = try SQLiteDatabase(path: folder.file("b.db"), mode: .readOnly)
        let c = try SQLiteDatabase(path: folder.file("c.db"), mode: .readOnly)
        for table in Self.tables {
            #expect(try crmRowHash(a, table: table) == crmRowHash(b, table: table), "table \(table)")
        }
        #expect(try crmRowHash(a, table: "comments") != crmRowHash(c, table: "comments"))
        #expect(try crmRowHash(a, table: "activity_logs") != crmRowHash(c, table: "activity_logs"))
    }

    @Test func sizeIsWithinFivePercent() throws {
        let generated = try CRMFixture.shared.get()
        let target = 4.0 * 1_048_576
        let size = Double(try crmFileSize(generated.path))
        #expect(abs(size - target) / target <= 0.05, "size \(size) bytes for a 4 MiB target")
        #expect(generated.stats.fileBytes == Int64(size))
    }

    @Test func databaseIsSoundWalWithValidKeysAndJSON() throws {
        let generated = try CRMFixture.shared.get()
        let database = try SQLiteDatabase(path: generated.path, mode: .readOnly)
        #expect(try database.scalarText("PRAGMA integrity_check") == "ok")
        #expect(try database.column("PRAGMA foreign_key_check").isEmpty)
        #expect(try database.scalarText("PRAGMA journal_mode") == "wal")
        for (table, column) in [("users", "settings"), ("clients", "custom_fields"), ("leads", "custom_fields"),
                                ("notifications", "payload"), ("activity_logs", "payload")] {
            let invalid = try database.scalarInt("SELECT count(*) FROM \(table) WHERE NOT json_valid(\(column))")
            #expect(invalid == 0, "\(table).\(column)")
            let total = try database.scalarInt("SELECT count(*) FROM \(table)") ?? 0
            #expect(total > 0, "\(table) is empty")
        }
        let indexes = try database.column("SELECT name FROM sqlite_schema WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")
        #expect(indexes.contains("leads_email") && indexes.contains("leads_status") && indexes.contains("activity_logs_created_at"))
        // Every row count the generator reports is what the file holds.
        for (table, count) in generated.stats.rowCounts {
            #expect(try database.scalarInt("SELECT count(*) FROM \(table)") == Int64(count), "\(table)")
        }
        #expect(try CRMInvariant.check(databaseAt: generated.path))
    }

    @Test func foreignKeysCanBeEnforced() throws {
        let folder = try ScratchFolder("crm")
        let path = try CRMFixture.copy(into: folder)
        let database = try SQLiteDatabase(path: path)
        try database.execute("PRAGMA foreign_keys = ON")
        #expect(try database.scalarInt("PRAGMA foreign_keys") == 1)
        #expect(throws: SQLiteError.self) {
            try database.execute("INSERT INTO comments (author_id, lead_id, body, created_at) VALUES (999999, NULL, 'x', '2024-01-01')")
        }
    }

    @Test func compressesLikeRealData() throws {
        let generated = try CRMFixture.shared.get()
        let folder = try ScratchFolder("crm")
        let compressed = folder.file("crm.db.gz")
        _ = FileManager.default.createFile(atPath: compressed, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: compressed))
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["gzip", "-6", "-c", generated.path]
        gzip.standardOutput = output
        try gzip.run()
        gzip.waitUntilExit()
        try output.close()
        #expect(gzip.terminationStatus == 0)
        let ratio = Double(try crmFileSize(generated.path)) / Double(try crmFileSize(compressed))
        #expect(ratio >= 2 && ratio <= 6, "gzip -6 ratio \(ratio)")
    }

    @Test func refusesToOverwriteAndRejectsBadSizes() throws {
        let generated = try CRMFixture.shared.get()
        let before = try crmFileSize(generated.path)
        #expect(throws: CRMError.fileExists(generated.path)) {
            _ = try CRMGenerator.generate(at: generated.path, sizeMiB: 1, seed: 1)
        }
        #expect(try crmFileSize(generated.path) == before)
        let folder = try ScratchFolder("crm")
        #expect(throws: CRMError.invalidSize(0)) {
            _ = try CRMGenerator.generate(at: folder.file("zero.db"), sizeMiB: 0, seed: 1)
        }
        #expect(!FileManager.default.fileExists(atPath: folder.file("zero.db")))
    }
}
