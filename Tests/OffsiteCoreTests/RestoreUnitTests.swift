import Foundation
import Testing
@testable import OffsiteCore

/// Progress, the backup menu and the per-backup records, without I/O.
@Suite struct RestoreUnitTests {
    final class FakeClock: @unchecked Sendable {
        var seconds = 100.0
    }

    @Test func progressIsSilentForTheFirstSecondThenRedrawsAtMostFourTimesASecond() throws {
        let clock = FakeClock()
        var lines: [String] = []
        let meter = ProgressMeter(label: "downloading crm", total: 100 << 20, now: { clock.seconds }, draw: { lines.append($0) })
        let sink = ProgressSink(next: DataSink(), meter: meter)
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        // 10 MiB/s for 0.9 s: nothing shown.
        for _ in 0..<9 {
            try sink.write(chunk)
            clock.seconds += 0.1
        }
        #expect(lines.isEmpty)
        // Another 2 s in steps of 0.1 s: at most one redraw per 0.25 s.
        for _ in 0..<20 {
            try sink.write(chunk)
            clock.seconds += 0.1
        }
        #expect((5...8).contains(lines.count), "\(lines.count) redraws")
        #expect(lines.allSatisfy { $0.hasPrefix("\r") && !$0.contains("\n") })
        let last = try #require(lines.last)
        #expect(last.contains("of 100.0 MiB") && last.contains("MiB/s") && last.contains("left"), "\(last)")
        meter.end()
        #expect(lines.last?.hasSuffix("\n") == true)
        #expect(lines.filter { $0.contains("\n") }.count == 1)
    }

    @Test func aShortTransferShowsNothingAtAll() throws {
        let clock = FakeClock()
        var lines: [String] = []
        let meter = ProgressMeter(label: "x", total: 10, now: { clock.seconds }, draw: { lines.append($0) })
        meter.advance(by: 5)
        clock.seconds += 0.5
        meter.advance(by: 5)
        meter.end()
        #expect(lines.isEmpty)
    }

    @Test func progressLinesGiveBytesRateAndTimeLeft() {
        let line = formatProgress(label: "crm", bytes: 256 << 20, total: 1 << 30, elapsed: 4)
        #expect(line == "crm  256.0 MiB of 1.0 GiB  25%  64.0 MiB/s  0:12 left", "\(line)")
        #expect(formatClock(3725) == "1:02:05")
        #expect(!formatProgress(label: "crm", bytes: 5, total: nil, elapsed: 1).contains("left"))
    }

    @Test func theMenuListsTheNewestFirstAndEnterTakesTheNewest() {
        let backups = ["crm/20261120T020000Z-scheduled.sqlite3.gz.age", "crm/20261122T031700Z-manual.sqlite3.gz.age",
                       "crm/20261121T020000Z-pre-restore.sqlite3.gz.age"]
            .compactMap { RemoteBackup(object: RemoteObject(key: $0, size: 5 << 20)) }
        let menu = backupMenu(backups)
        #expect(menu.choices.map(\.id.description) == ["20261122T031700Z-manual", "20261121T020000Z-pre-restore",
                                                       "20261120T020000Z-scheduled"])
        #expect(menu.lines[0] == "  1  2026-11-22 03:17:00 UTC  manual       5.0 MiB", "\(menu.lines[0])")
        #expect(menu.lines[2].hasPrefix("  3  2026-11-20 02:00:00 UTC  scheduled"))
        #expect(backupMenu(backups, limit: 2).choices.count == 2)
        let answers: [(String, Int?)] = [("", 0), ("1", 0), (" 3 ", 2), ("4", nil), ("0", nil), ("two", nil), ("-1", nil)]
        for (answer, expected) in answers { #expect(menuChoice(answer, count: 3) == expected, "\(answer)") }
        #expect(menuChoice("", count: 0) == nil)
    }

    @Test func recordsAreBoundedPerTargetAndOldStateFilesStillLoad() throws {
        var state = AgentState()
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        for index in 0..<(AgentState.recentBackupLimit + 20) {
            let id = BackupID(date: start.addingTimeInterval(Double(index * 60)), kind: .scheduled).description
            state.recordBackup(database: "crm", target: "s3", BackupRecord(
                backupID: id, time: start.addingTimeInterval(Double(index * 60)), snapshotBytes: 4096, pageCount: 1,
                pageSize: 4096, objectBytes: Int64(index)))
        }
        let records = try #require(state.target("s3", of: "crm")?.recentBackups)
        #expect(records.count == AgentState.recentBackupLimit)
        #expect(records.first?.objectBytes == 20 && records.last?.objectBytes == Int64(AgentState.recentBackupLimit + 19))
        #expect(state.backupRecords(database: "crm", target: "s3").count == AgentState.recentBackupLimit)
        #expect(state.backupRecords(database: "crm", target: "usb").isEmpty)
        #expect(try StateStore.decode(try StateStore.encode(state)) == state)

        // A state file written before records existed has none.
        var old = AgentState()
        old.recordListing(database: "crm", target: "s3", TargetListing(time: start, objectCount: 1, storedBytes: 5))
        let json = String(decoding: try StateStore.encode(old), as: UTF8.self)
        #expect(!json.contains("recentBackups"))
        #expect(try StateStore.decode(Data(json.utf8)).target("s3", of: "crm")?.recentBackups == nil)
    }

    @Test func pathsWithURICharactersOpen() throws {
        let folder = try ScratchFolder("uri")
        let path = folder.file("a?b#c%d.db")
        _ = try SQLiteDatabase(path: path, mode: .create).execute("CREATE TABLE t(x)")
        let info = try verifyDatabaseFile(at: path, check: .quick)
        #expect(info.pageCount == 2)
        #expect(checkDatabaseHealth(at: path) == .healthy)
    }
}
