import Foundation
import OffsiteCore

/// `offsite list`: backups on the targets and in the local rotation.
enum ListCommand {
    static let help = """
    usage: offsite list [--target NAME|URL] [--db NAME] [--json] [--config FILE]

    Lists the backups on every target (or the one --target names) and in the local rotation:
    database, id, time, kind, size, and for manual backups asked for over HTTP the reason given
    (from the agent's state in the local folder). One listing per target; no object is read.
    """

    /// One row of the listing.
    struct Row {
        var location: String
        var database: String
        var id: BackupID
        var size: Int64
        var encrypted: Bool?
        var reason: String?
    }

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["config", "db", "target"], flags: ["json"])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        let databaseFilter = try parsed.value("db").map { _ in try setup.databaseName().name }
        var rows: [Row] = []
        // Reasons of manual backups, as the agent recorded them; the state file is only read.
        let state = setup.localFolder.map { StateStore(folder: $0).load().state }
        for target in try setup.targets() {
            for backup in try listBackups(on: target, database: databaseFilter) {
                let reason = state?.backupRecords(database: backup.database, target: target.name)[backup.id.description]?.reason
                rows.append(Row(location: target.name, database: backup.database, id: backup.id, size: backup.size,
                                encrypted: backup.format == .encrypted, reason: reason))
            }
        }
        if let local = setup.localFolder, parsed.value("target") == nil {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: local)) ?? []).sorted()
            for name in names where databaseFilter == nil || databaseFilter == name {
                for backup in localBackups(inFolder: "\(local)/\(name)") {
                    rows.append(Row(location: "local", database: name, id: backup.id, size: backup.size, encrypted: nil))
                }
            }
        }
        if parsed.has("json") {
            printJSON(rows)
        } else {
            printTable(rows)
        }
        return 0
    }

    static func printTable(_ rows: [Row]) {
        guard !rows.isEmpty else {
            print("no backups")
            return
        }
        let showsReasons = rows.contains { $0.reason != nil }
        let table = [["TARGET", "DATABASE", "ID", "TIME (UTC)", "KIND", "SIZE"] + (showsReasons ? ["REASON"] : [])] + rows.map { row in
            [row.location, row.database, row.id.description, formatUTC(row.id.date).replacingOccurrences(of: " UTC", with: ""),
             row.id.kind.rawValue, formatBytes(row.size)] + (showsReasons ? [row.reason ?? ""] : [])
        }
        let widths = (0..<table[0].count).map { column in table.map { $0[column].count }.max() ?? 0 }
        for line in table {
            print(line.enumerated().map { column, cell in
                column == line.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
    }

    static func printJSON(_ rows: [Row]) {
        let formatter = ISO8601DateFormatter()
        let objects: [[String: Any]] = rows.map { row in
            var object: [String: Any] = [
                "target": row.location, "database": row.database, "id": row.id.description,
                "time": formatter.string(from: row.id.date), "kind": row.id.kind.rawValue, "size": row.size,
            ]
            if let encrypted = row.encrypted { object["encrypted"] = encrypted }
            if let reason = row.reason { object["reason"] = reason }
            return object
        }
        let data = (try? JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys])) ?? Data("[]".utf8)
        print(String(decoding: data, as: UTF8.self))
    }
}
