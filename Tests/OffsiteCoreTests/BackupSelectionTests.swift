import Foundation
import Testing
@testable import OffsiteCore

@Suite struct BackupSelectionTests {
    static let backups: [RemoteBackup] = [
        "crm/20261120T020000Z-scheduled.sqlite3.gz.age",
        "crm/20261121T020000Z-scheduled.sqlite3.gz.age",
        "crm/20261121T093015Z-manual.sqlite3.gz.age",
        "crm/20261122T020000Z-scheduled.sqlite3.gz.age",
        "other/20261123T020000Z-scheduled.sqlite3.gz.age",
    ].compactMap { RemoteBackup(object: RemoteObject(key: $0, size: 10)) }

    static func time(_ text: String) -> Date { BackupSelection.parseTime(text)! }

    @Test(arguments: [
        ("2026-11-21T02:00:00Z", "20261121T020000Z-scheduled"),      // exact match
        ("2026-11-21 09:30", "20261121T020000Z-scheduled"),          // between two (09:30:15 is later)
        ("2026-11-21T09:30:15Z", "20261121T093015Z-manual"),          // exact second
        ("2026-11-21T10:30:15+01:00", "20261121T093015Z-manual"),     // offset
        ("2026-11-21T09:30:14.999Z", "20261121T020000Z-scheduled"),  // fractional, just before
        ("2030-01-01 00:00", "20261122T020000Z-scheduled"),          // after the last
    ])
    func picksTheNewestAtOrBefore(at: String, expected: String) throws {
        let chosen = try selectBackup(from: Self.backups, database: "crm", selection: .at(Self.time(at)), target: "t")
        #expect(chosen.id.description == expected)
    }

    @Test func beforeTheFirstIsAClearError() throws {
        #expect(throws: RestoreError.nothingBefore(database: "crm", target: "t", time: Self.time("2026-11-19 00:00"),
                                                   oldest: BackupID("20261120T020000Z-scheduled")!)) {
            try selectBackup(from: Self.backups, database: "crm", selection: .at(Self.time("2026-11-19 00:00")), target: "t")
        }
    }

    @Test func latestAndByID() throws {
        #expect(try selectBackup(from: Self.backups, database: "crm", selection: .latest, target: "t").id.description
                == "20261122T020000Z-scheduled")
        #expect(try selectBackup(from: Self.backups, database: "other", selection: .latest, target: "t").id.description
                == "20261123T020000Z-scheduled")
        let byID = try BackupSelection.parse(backup: "20261121T093015Z-manual.sqlite3.gz.age")
        #expect(try selectBackup(from: Self.backups, database: "crm", selection: byID, target: "t").key
                == "crm/20261121T093015Z-manual.sqlite3.gz.age")
        #expect(throws: RestoreError.self) {
            try selectBackup(from: Self.backups, database: "crm", selection: .id(BackupID("20261121T093016Z-manual")!), target: "t")
        }
        #expect(throws: RestoreError.noBackups(database: "nope", target: "t")) {
            try selectBackup(from: Self.backups, database: "nope", selection: .latest, target: "t")
        }
    }

    @Test func rejectsMalformedInput() {
        #expect(throws: RestoreError.self) { try BackupSelection.parse(at: "yesterday") }
        #expect(throws: RestoreError.self) { try BackupSelection.parse(at: "2026-13-01 00:00") }
        #expect(throws: RestoreError.self) { try BackupSelection.parse(backup: "20261121-manual") }
        #expect(throws: RestoreError.self) { try BackupSelection.parse(backup: "20261121T093015Z-weekly") }
    }

    @Test func backupNamesRoundTrip() {
        let id = BackupID(seconds: 1_795_000_000, kind: .preRestore)
        #expect(BackupID(id.description) == id)
        #expect(BackupID("20260230T000000Z-manual") == nil, "February 30 is not a date")
        let object = RemoteObject(key: "crm/\(id).sqlite3.gz", size: 5)
        #expect(RemoteBackup(object: object)?.format == .plain)
        #expect(RemoteBackup(object: RemoteObject(key: "crm/.x.offsite-tmp", size: 1)) == nil)
    }
}
