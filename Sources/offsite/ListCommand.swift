import Foundation
import OffsiteCore

/// `offsite list`: backups on the targets and in the local rotation.
enum ListCommand {
    static let help = """
    usage: offsite list [--target NAME|URL] [--db NAME | --files NAME] [--json] [--config FILE]

    Lists the backups on every target (or the one --target names) and in the local rotation:
    database, id, time, kind, size, and for manual backups asked for over HTTP the reason given
    (from the agent's state in the local folder); the snapshots of file sets (--files NAME: that
    set only), whose size is their manifest's (their content is in packs shared between
    snapshots). With continuous protection it also shows, per database and target, the window
    of moments that can be restored (`restorable from … to …`) and any missing link; --json
    lists every change object too. One listing per target; no object is read.
    """

    /// One row of the listing.
    struct Row {
        var location: String
        var name: String
        var isFileSet: Bool
        var id: BackupID
        var size: Int64
        var encrypted: Bool?
        var reason: String? = nil
    }

    /// A chain with change objects, as one target lists it.
    struct Window {
        var location: String
        var chain: Chain
    }

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["config", "db", "files", "target"], flags: ["json"])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        let databaseFilter = try parsed.value("db").map { _ in try setup.databaseName().name }
        let setFilter = try parsed.value("files").map { _ in try setup.fileSetName().name }
        var rows: [Row] = []
        var windows: [Window] = []
        var packSummaries: [String] = []
        // Reasons of manual backups, as the agent recorded them; the state file is only read.
        let state = setup.localFolder.map { StateStore(folder: $0).load().state }
        for target in try setup.targets() {
            var targetRows: [Row] = []
            defer {
                rows += targetRows.sorted { ($0.isFileSet ? 1 : 0, $0.name, $0.id) < ($1.isFileSet ? 1 : 0, $1.name, $1.id) }
            }
            if let setFilter {
                let listing = try target.list(prefix: "\(setFilter)/")
                for snapshot in listing.compactMap(RemoteFileSnapshot.init(object:)) where snapshot.set == setFilter {
                    targetRows.append(Row(location: target.name, name: snapshot.set, isFileSet: true, id: snapshot.id,
                                          size: snapshot.size, encrypted: snapshot.format == .encrypted))
                }
                let packs = listing.filter { $0.key.hasPrefix("\(setFilter)/packs/") }
                packSummaries.append("\(target.name) \(setFilter): \(packs.count) pack(s), \(formatBytes(packs.reduce(0) { $0 + $1.size })) shared by these snapshots")
                continue
            }
            let objects = try target.list(prefix: databaseFilter.map { "\($0)/" } ?? "")
            let listing = ContinuousListing(objects: objects, database: databaseFilter)
            for backup in listing.backups {
                let reason = state?.backupRecords(database: backup.database, target: target.name)[backup.id.description]?.reason
                targetRows.append(Row(location: target.name, name: backup.database, isFileSet: false, id: backup.id,
                                      size: backup.size, encrypted: backup.format == .encrypted, reason: reason))
            }
            if databaseFilter == nil {
                for snapshot in objects.compactMap(RemoteFileSnapshot.init(object:)) {
                    targetRows.append(Row(location: target.name, name: snapshot.set, isFileSet: true, id: snapshot.id,
                                          size: snapshot.size, encrypted: snapshot.format == .encrypted))
                }
            }
            for database in listing.databases {
                for chain in findChains(in: listing, database: database) where chain.hasChanges {
                    windows.append(Window(location: target.name, chain: chain))
                }
            }
        }
        if let local = setup.localFolder, parsed.value("target") == nil, setFilter == nil {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: local)) ?? []).sorted()
            for name in names where !name.hasPrefix(".") && (databaseFilter == nil || databaseFilter == name) {
                for backup in localBackups(inFolder: "\(local)/\(name)") {
                    rows.append(Row(location: "local", name: name, isFileSet: false, id: backup.id, size: backup.size, encrypted: nil))
                }
            }
        }
        if parsed.has("json") {
            printJSON(rows, windows: windows)
        } else {
            printTable(rows)
            for window in windows { print(describe(window)) }
            for line in packSummaries { print(line) }
        }
        return 0
    }

    /// `remote crm: restorable from 2026-12-03 12:00:00.000 to 2026-12-03 12:41:07.512 UTC (20261203T120000Z-scheduled and 42 change objects, 1.2 MiB)`.
    static func describe(_ window: Window) -> String {
        let chain = window.chain
        let description = chain.window
        let count = chain.changes.count + chain.compacted.count
        let objects = "\(count) change object\(count == 1 ? "" : "s"), \(formatBytes(chain.changeBytes))"
        var line = "\(window.location) \(chain.database): "
        if description.spans.isEmpty {
            line += "\(objects) of full backup \(chain.baseID), which is not on the target: nothing can be restored from them"
            return line
        }
        line += "restorable from " + description.spans.map { "\(formatMoment($0.start)) to \(formatMoment($0.end))" }
            .joined(separator: ", and from ") + " UTC (\(chain.baseID) and \(objects))"
        if let gap = description.missingLink {
            line += gap.reason == .ambiguous ? "; more than one change object numbered \(gap.sequence)"
                : "; change object \(gap.sequence) is missing"
        }
        return line
    }

    /// `2026-12-03 12:41:07.512` (UTC).
    static func formatMoment(_ milliseconds: Int64) -> String {
        formatInstant(milliseconds).dropLast().replacingOccurrences(of: "T", with: " ")
    }

    static func printTable(_ rows: [Row]) {
        guard !rows.isEmpty else {
            print("no backups")
            return
        }
        let showsReasons = rows.contains { $0.reason != nil }
        let table = [["TARGET", "DATABASE", "ID", "TIME (UTC)", "KIND", "SIZE"] + (showsReasons ? ["REASON"] : [])] + rows.map { row in
            [row.location, row.isFileSet ? "\(row.name) (files)" : row.name, row.id.description,
             formatUTC(row.id.date).replacingOccurrences(of: " UTC", with: ""), row.id.kind.rawValue, formatBytes(row.size)]
                + (showsReasons ? [row.reason ?? ""] : [])
        }
        let widths = (0..<table[0].count).map { column in table.map { $0[column].count }.max() ?? 0 }
        for line in table {
            print(line.enumerated().map { column, cell in
                column == line.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
    }

    static func printJSON(_ rows: [Row], windows: [Window]) {
        let formatter = ISO8601DateFormatter()
        var chains: [String: Window] = [:]
        for window in windows { chains["\(window.location)/\(window.chain.database)/\(window.chain.baseID)"] = window }
        var objects: [[String: Any]] = rows.map { row in
            var object: [String: Any] = [
                "object": row.isFileSet ? "files" : "backup", "target": row.location, "id": row.id.description,
                "time": formatter.string(from: row.id.date), "kind": row.id.kind.rawValue, "size": row.size,
            ]
            object[row.isFileSet ? "files" : "database"] = row.name
            if let encrypted = row.encrypted { object["encrypted"] = encrypted }
            if let reason = row.reason { object["reason"] = reason }
            if !row.isFileSet, let window = chains["\(row.location)/\(row.name)/\(row.id)"]?.chain.window, let end = window.end {
                // The moments this full backup and its change objects restore.
                object["restorable"] = window.spans.map { ["from": formatInstant($0.start), "to": formatInstant($0.end)] }
                object["restorableTo"] = formatInstant(end)
                if let gap = window.missingLink { object["missingChange"] = gap.sequence }
            }
            return object
        }
        for window in windows {
            for change in window.chain.changes + window.chain.compacted {
                var object: [String: Any] = [
                    "target": window.location, "database": change.database, "base": change.name.base.description,
                    "first": formatInstant(change.name.firstCommit), "last": formatInstant(change.name.lastCommit),
                    "size": change.size, "key": change.key, "encrypted": change.name.format == .encrypted,
                ]
                switch change.name.kind {
                case let .change(sequence):
                    object["object"] = "change"
                    object["sequence"] = sequence
                case let .compacted(from, to):
                    object["object"] = "compacted"
                    object["from"] = from
                    object["to"] = to
                }
                objects.append(object)
            }
        }
        let data = (try? JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys])) ?? Data("[]".utf8)
        print(String(decoding: data, as: UTF8.self))
    }
}
