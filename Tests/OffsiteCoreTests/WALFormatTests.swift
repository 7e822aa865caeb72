import Foundation
import Testing
@testable import OffsiteCore

/// The WAL format: what we write, the real `sqlite3` applies; what SQLite writes, we read.
@Suite struct WALFormatTests {
    /// A base file (the state before the workload) and the workload's transactions, with the
    /// content after each.
    struct Fixture {
        let folder: ScratchFolder
        let base: String
        let pageSize: Int
        let transactions: [CapturedTransaction]
    }

    static func makeFixture(_ label: String, count: Int = 60, pageSize: Int = 4096) throws -> Fixture {
        let folder = try ScratchFolder(label)
        let workload = try WALWorkload(path: folder.file("live.db"), pageSize: pageSize)
        try FileManager.default.copyItem(atPath: folder.file("live.db"), toPath: folder.file("base.db"))
        var contents: [String] = []
        for index in 0..<count {
            if index == count / 2 {
                try workload.runShrinkingTransaction()
            } else {
                try workload.runTransaction(big: index % 7 == 3)
            }
            contents.append(try workload.content())
        }
        let transactions = try workload.capture(times: (0..<count).map { Int64($0) }, contents: contents)
        try #require(transactions.count == count)
        return Fixture(folder: folder, base: folder.file("base.db"), pageSize: workload.pageSize, transactions: transactions)
    }

    /// Copies the base to `name`, puts `wal` beside it as its `-wal`, and lets the sqlite3 CLI apply
    /// it; returns the content and the integrity check.
    static func applyWithSQLite(_ fixture: Fixture, wal: String, name: String) throws -> (content: String, integrity: String) {
        let database = fixture.folder.file(name)
        try FileManager.default.copyItem(atPath: fixture.base, toPath: database)
        try FileManager.default.copyItem(atPath: wal, toPath: database + "-wal")
        let checkpoint = try runTool("sqlite3", [database, "PRAGMA wal_checkpoint(TRUNCATE)"], in: fixture.folder)
        #expect(checkpoint.status == 0, "\(checkpoint.standardError)")
        #expect(checkpoint.standardOutput.hasPrefix("0|"), "checkpoint: \(checkpoint.standardOutput)")
        let integrity = try sqlite3(database, "PRAGMA integrity_check", in: fixture.folder)
        return (try WALWorkload.content(ofFileAt: database), integrity)
    }

    @Test(arguments: [(4096, false), (4096, true), (1024, false), (65536, false)])
    func sqliteAppliesAWALWeWrote(pageSize: Int, bigEndian: Bool) throws {
        let fixture = try Self.makeFixture("wal-apply", count: pageSize == 65536 ? 20 : 60, pageSize: pageSize)
        let wal = fixture.folder.file("ours.wal")
        try writeWAL(fixture.transactions, pageSize: fixture.pageSize, to: wal, bigEndian: bigEndian)
        let header = try readPrefix(of: wal, count: 4)
        #expect(header == (bigEndian ? [0x37, 0x7f, 0x06, 0x83] : [0x37, 0x7f, 0x06, 0x82]))
        let applied = try Self.applyWithSQLite(fixture, wal: wal, name: "applied.db")
        #expect(applied.integrity == "ok")
        #expect(applied.content == fixture.transactions.last!.content)
        #expect(applied.content != (try WALWorkload.content(ofFileAt: fixture.base)), "the workload changed nothing")
    }

    @Test func aWALCutAfterTransactionKStopsThere() throws {
        let fixture = try Self.makeFixture("wal-cut")
        let wal = fixture.folder.file("ours.wal")
        let ends = try writeWAL(fixture.transactions, pageSize: fixture.pageSize, to: wal)
        let whole = try Data(contentsOf: URL(fileURLWithPath: wal))
        let frameSize = Int64(24 + fixture.pageSize)
        #expect(fixture.transactions.contains { $0.frames.count > 2 })
        for k in [1, 7, fixture.transactions.count / 2, fixture.transactions.count / 2 + 1, fixture.transactions.count - 1] {
            // Cut right after transaction k's commit frame, and inside transaction k + 1 (after
            // all but its commit frame).
            let inside = frameSize * Int64(fixture.transactions[k].frames.count - 1)
            for extra in Set([Int64(0), inside]).sorted() {
                let cut = fixture.folder.file("cut-\(k)-\(extra).wal")
                try whole.prefix(Int(ends[k - 1] + extra)).write(to: URL(fileURLWithPath: cut))
                let applied = try Self.applyWithSQLite(fixture, wal: cut, name: "cut-\(k)-\(extra).db")
                #expect(applied.integrity == "ok", "cut after transaction \(k) + \(extra) bytes")
                #expect(applied.content == fixture.transactions[k - 1].content, "cut after transaction \(k) + \(extra) bytes")
            }
        }
    }

    @Test func ourReaderReadsOurWriterAndRefusesDamage() throws {
        let fixture = try Self.makeFixture("wal-read", count: 20)
        let wal = fixture.folder.file("ours.wal")
        try writeWAL(fixture.transactions, pageSize: fixture.pageSize, to: wal)
        let data = try Data(contentsOf: URL(fileURLWithPath: wal))
        let expected = fixture.transactions.flatMap { $0.frames.map { ($0.pageNumber, $0.commitSize) } }

        func read(_ data: Data, _ strictness: WALReader.Strictness) throws -> (frames: [(UInt32, UInt32)], reader: WALReader) {
            var frames: [(UInt32, UInt32)] = []
            let reader = WALReader(strictness: strictness) { frame, page in
                #expect(page.count == fixture.pageSize)
                frames.append((frame.pageNumber, frame.commitSize))
            }
            try write(data, to: reader, splitting: [1, 31, 5000, 3, 70_000])
            try reader.finish()
            return (frames, reader)
        }
        let (frames, reader) = try read(data, .strict)
        #expect(frames.elementsEqual(expected, by: { $0 == $1 }))
        #expect(reader.lastCommitFrame == expected.count)

        // One flipped byte in the middle of a page: strict refuses that frame; like SQLite, reading
        // stops before it.
        let victim = 32 + 5 * (24 + fixture.pageSize) + 24 + 100
        var damaged = data
        damaged[victim] ^= 0x01
        #expect(throws: WALFormatError.frameChecksum(frame: 6)) { try read(damaged, .strict) }
        let lenient = try read(damaged, .likeSQLite)
        #expect(lenient.frames.count == 5)
        #expect(lenient.reader.stoppedAtInvalidFrame)
        // A cut inside a frame is truncation for strict.
        #expect(throws: WALFormatError.truncated(frame: 3)) { try read(data.prefix(32 + 2 * (24 + fixture.pageSize) + 10), .strict) }
        // A damaged header.
        var badHeader = data
        badHeader[12] ^= 0x01
        #expect(throws: WALFormatError.headerChecksum) { try read(badHeader, .strict) }
        var badMagic = data
        badMagic[3] = 0x99
        #expect(throws: WALFormatError.badMagic(0x377f_0699)) { try read(badMagic, .strict) }
    }

    /// Reading a growing WAL from a cursor: the frames after frame N, with the checksum of frame N,
    /// give the same frames and the same final checksum as reading the whole file.
    @Test func aReaderContinuesFromACursor() throws {
        let fixture = try Self.makeFixture("wal-cursor", count: 20)
        let wal = fixture.folder.file("ours.wal")
        try writeWAL(fixture.transactions, pageSize: fixture.pageSize, to: wal)
        let data = try Data(contentsOf: URL(fileURLWithPath: wal))
        var whole: [WALFrame] = []
        var checksums: [WALChecksum] = []
        var reader: WALReader!
        reader = WALReader { frame, _ in
            whole.append(frame)
            checksums.append(reader.checksum)
        }
        try data.withUnsafeBytes { try reader.write($0) }
        try reader.finish()
        let header = try #require(reader.header)
        // In the callback of frame i (from 1), `checksum` is frame i's.
        #expect(checksums.last == reader.checksum)
        for cursor in [0, 1, 7, whole.count - 1] {
            var rest: [WALFrame] = []
            let start = cursor == 0 ? header.checksum : checksums[cursor - 1]
            let continuing = WALReader(continuingAfter: cursor, header: header, checksum: start) { frame, _ in rest.append(frame) }
            try data.suffix(from: Int(header.offset(ofFrame: cursor + 1))).withUnsafeBytes { try continuing.write($0) }
            try continuing.finish()
            #expect(rest == Array(whole[cursor...]), "cursor \(cursor)")
            #expect(continuing.checksum == reader.checksum, "cursor \(cursor)")
            #expect(continuing.lastCommitFrame == whole.count)
        }
        // A wrong checksum for the cursor fails the next frame.
        let wrong = WALReader(continuingAfter: 3, header: header, checksum: WALChecksum(1, 2)) { _, _ in }
        #expect(throws: WALFormatError.frameChecksum(frame: 4)) {
            try data.suffix(from: Int(header.offset(ofFrame: 4))).withUnsafeBytes { try wrong.write($0) }
        }
    }

    /// A WAL SQLite itself wrote (python3's sqlite3 module, killed with os._exit so the `-wal`
    /// stays), with a restart in the middle so stale frames of the older generation follow the
    /// live ones: we read every live frame and commit, and stop where SQLite's recovery stops.
    @Test func weReadAWALSQLiteWrote() throws {
        let folder = try ScratchFolder("wal-python")
        let script = """
        import os, sqlite3
        db = sqlite3.connect('live.db', isolation_level=None)
        db.execute('PRAGMA journal_mode=WAL')
        db.execute('PRAGMA wal_autocheckpoint=0')
        db.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)')
        for i in range(80):
            db.execute('BEGIN')
            for j in range(i % 5 + 1):
                db.execute('INSERT INTO t(v) VALUES (randomblob(?))', (200 + 37 * ((i * 7 + j) % 50),))
            db.execute('COMMIT')
        db.execute('PRAGMA wal_checkpoint(RESTART)')
        for i in range(23):
            db.execute('UPDATE t SET v = randomblob(300) WHERE id = ?', (i * 3 + 1,))
        print(db.execute('SELECT count(*) FROM t').fetchone()[0], flush=True)
        os._exit(0)
        """
        try Data(script.utf8).write(to: URL(fileURLWithPath: folder.file("writer.py")))
        let run = try runTool("python3", ["writer.py"], in: folder)
        try #require(run.status == 0, "\(run.standardError)")
        let data = try Data(contentsOf: URL(fileURLWithPath: folder.file("live.db-wal")))

        var frames: [WALFrame] = []
        let reader = WALReader(strictness: .likeSQLite) { frame, _ in frames.append(frame) }
        try data.withUnsafeBytes { try reader.write($0) }
        try reader.finish()
        let header = try #require(reader.header)
        // The newer generation is 23 one-page-or-more commits, and the file still holds older frames after it.
        #expect(frames.filter(\.isCommit).count == 23)
        #expect(reader.lastCommitFrame == frames.count)
        #expect(reader.stoppedAtInvalidFrame)
        #expect(Int64(data.count) > header.offset(ofFrame: frames.count + 1))
        #expect(frames.allSatisfy { $0.pageNumber >= 1 })

        // SQLite's own count of valid frames, from a copy it recovers: `wal_checkpoint` says how many.
        try FileManager.default.createDirectory(atPath: folder.file("copy"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: folder.file("live.db"), toPath: folder.file("copy/live.db"))
        try FileManager.default.copyItem(atPath: folder.file("live.db-wal"), toPath: folder.file("copy/live.db-wal"))
        let checkpoint = try sqlite3(folder.file("copy/live.db"), "PRAGMA wal_checkpoint", in: folder)
        #expect(checkpoint == "0|\(frames.count)|\(frames.count)")
        #expect(try sqlite3(folder.file("copy/live.db"), "PRAGMA integrity_check", in: folder) == "ok")
    }
}
