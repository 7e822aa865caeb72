import CRMSim
import Foundation
import OffsiteCore

/// A 4 MiB CRM database generated once (seed 42) and shared by the read-only tests; its folder
/// is removed when the test process exits.
enum CRMFixture {
    struct Generated: Sendable {
        let path: String
        let stats: CRMStats
    }

    static let folder = FileManager.default.temporaryDirectory
        .appendingPathComponent("offsite-crm-fixture-\(ProcessInfo.processInfo.processIdentifier)")

    static let shared: Result<Generated, any Error> = Result {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: CRMFixture.folder) }
        let path = folder.appendingPathComponent("crm.db").path
        let stats = try CRMGenerator.generate(at: path, sizeMiB: 4, seed: 42)
        return Generated(path: path, stats: stats)
    }

    /// A private copy of the shared database, for tests that write.
    static func copy(into folder: ScratchFolder) throws -> String {
        let source = try shared.get().path
        let destination = folder.file("copy.db")
        try FileManager.default.copyItem(atPath: source, toPath: destination)
        return destination
    }
}

/// An FNV-1a hash of every row of `table` (all columns, in rowid order), to compare logical content.
func crmRowHash(_ database: SQLiteDatabase, table: String) throws -> UInt64 {
    let columns = try database.column("SELECT name FROM pragma_table_info('\(table)') ORDER BY cid")
    let rows = try database.column("SELECT json_array(\(columns.joined(separator: ", "))) FROM \(table) ORDER BY rowid")
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for row in rows {
        for byte in row.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        hash = (hash ^ 10) &* 0x100_0000_01b3
    }
    return hash
}

/// The size of the file at `path` in bytes.
func crmFileSize(_ path: String) throws -> Int64 {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.size] as? NSNumber)?.int64Value ?? -1
}
