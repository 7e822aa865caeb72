import Foundation
import Testing
@testable import OffsiteCore

/// What a restore refuses to do with a hostile or damaged object: inflate without end (a gzip
/// bomb anyone with write access to the bucket can encrypt to the public recipient), fill the disk,
/// take a backup dated years ahead for the latest, or spend gigabytes on scrypt.
@Suite struct RestoreBoundsTests {
    /// The first 100 bytes of a real database, whose header says how big it is.
    static func realHeader(in folder: ScratchFolder) throws -> (header: [UInt8], size: Int64) {
        let path = folder.file("small.db")
        let database = try SQLiteDatabase(path: path, mode: .create)
        try database.execute("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(5000))")
        let header = try readPrefix(of: path, count: 100)
        return (header, try fileSize(at: path))
    }

    @Test func theHeaderGivesTheSizeAndABombStopsRightAfterIt() throws {
        let folder = try ScratchFolder("bounds")
        let (header, size) = try Self.realHeader(in: folder)
        #expect(databaseSize(fromHeader: header) == size)
        let output = DataSink()
        let sink = BoundedDatabaseSink(next: output, folder: folder.path, freeSpace: { _ in 1 << 40 })
        try sink.write(header)
        try sink.write([UInt8](repeating: 0, count: Int(size) - 100))
        #expect(throws: RestoreError.payloadTooLarge(limit: size)) { try sink.write([0]) }
        #expect(output.data.count == Int(size), "nothing past the limit was passed on")
    }

    @Test func aPayloadThatIsNotADatabaseOrWouldFillTheDiskStopsAtOnce() throws {
        let folder = try ScratchFolder("bounds-disk")
        let notADatabase = BoundedDatabaseSink(next: DataSink(), folder: folder.path, freeSpace: { _ in 1 << 40 })
        #expect(throws: RestoreError.verificationFailed(detail: "the payload is not a SQLite database")) {
            try notADatabase.write(Array("PK\u{3}\u{4} a zip file, not a database".utf8))
        }
        // A header announcing 4 GiB on a disk with 1 GiB free: refused before the first page is written.
        var header = try Self.realHeader(in: folder).header
        let pages = UInt32((4 << 30) / 4096)
        for (index, byte) in withUnsafeBytes(of: pages.bigEndian, Array.init).enumerated() { header[28 + index] = byte }
        let output = DataSink()
        let sink = BoundedDatabaseSink(next: output, folder: folder.path, freeSpace: { _ in 1 << 30 })
        do {
            try sink.write(header)
            Issue.record("a restore that cannot fit must stop")
        } catch let error as RestoreError {
            guard case let .diskFull(_, needed, free) = error else { throw error }
            #expect(needed == (4 << 30) - 100 && free == 1 << 30)
            #expect(error.message.contains("must stay free"))
        }
        #expect(output.data.isEmpty)
    }

    @Test func aGzipBombEncryptedToTheRecipientIsStoppedAndLeavesNothing() throws {
        let folder = try ScratchFolder("bomb")
        let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
        let recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        // A real header, then 256 MiB of zeros: a few hundred KiB once gzipped, encrypted with the real age CLI.
        let header = try Self.realHeader(in: folder).header
        try Data(header).write(to: URL(fileURLWithPath: folder.file("header.bin")))
        try FileManager.default.createDirectory(atPath: folder.file("remote/crm"), withIntermediateDirectories: true)
        let object = folder.file("remote/crm/20261201T000000Z-manual.sqlite3.gz.age")
        let made = try runTool("sh", ["-c", "{ cat header.bin; head -c 268435456 /dev/zero; } | gzip -1 | age -r \(recipient) > '\(object)'"],
                               in: folder)
        try #require(made.status == 0, "\(made.standardError)")
        #expect(try fileSize(at: object) < 8 << 20)
        let started = Date()
        let restore = try offsite(["restore", "--target", "file://\(folder.file("remote"))", "--db", "crm",
                                   "--identity", "identity.txt", "--output", "restored.db"], in: folder)
        expectOneLineError(restore, containing: "inflates to more than")
        #expect(Date().timeIntervalSince(started) < 20, "stopped early, not after inflating 256 MiB")
        let names = try folder.names()
        #expect(names.filter { $0.contains("restore") }.isEmpty, "no temporary and no output left: \(names)")
    }

    @Test func latestPassesOverABackupDatedYearsAheadAndSaysSo() throws {
        let folder = try ScratchFolder("future")
        try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
        let database = folder.file("data/crm.db")
        let setup = try SQLiteDatabase(path: database, mode: .create)
        try setup.execute("CREATE TABLE t(x); INSERT INTO t VALUES ('ours')")
        let keygen = try offsite(["keygen", "--output", "identity.txt"], in: folder)
        let recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let target = "file://\(folder.file("remote"))"
        let backup = try offsite(["backup", "--db", database, "--target", target, "--recipient", recipient], in: folder)
        try #require(backup.status == 0, "\(backup.standardError)")
        let ours = try #require(try listBackups(on: FileTarget(name: "r", root: folder.file("remote")), database: "crm").first)
        // A planted object far in the future, holding another database.
        try setup.execute("UPDATE t SET x = 'planted'")
        let planted = try offsite(["backup", "--db", database, "--target", target, "--recipient", recipient], in: folder)
        try #require(planted.status == 0)
        let plantedID = try #require(try listBackups(on: FileTarget(name: "r", root: folder.file("remote")), database: "crm").last)
        try FileManager.default.moveItem(atPath: folder.file("remote/\(plantedID.key)"),
                                         toPath: folder.file("remote/crm/20991231T000000Z-scheduled.sqlite3.gz.age"))

        let restore = try offsite(["restore", "--target", target, "--db", "crm", "--identity", "identity.txt",
                                   "--output", "restored.db"], in: folder)
        #expect(restore.status == 0, "\(restore.standardError)")
        #expect(restore.standardOutput.contains(ours.id.description), "\(restore.standardOutput)")
        #expect(restore.standardError.contains("warning: crm/20991231T000000Z-scheduled.sqlite3.gz.age"), "\(restore.standardError)")
        #expect(try sqlite3(folder.file("restored.db"), "SELECT x FROM t", in: folder) == "ours")
        // Named explicitly, it is still restorable.
        let explicit = try offsite(["restore", "--target", target, "--db", "crm", "--identity", "identity.txt",
                                    "--backup", "20991231T000000Z-scheduled", "--output", "explicit.db"], in: folder)
        #expect(explicit.status == 0, "\(explicit.standardError)")
    }

    @Test func aPassphraseObjectAskingMoreScryptWorkThanConfiguredIsRefused() throws {
        // Encrypted at work factor 12; a restore allowing 11 refuses before computing anything.
        let encrypted = DataSink()
        let encryptor = try makeEncryptor(encryption: .passphrase("correct horse", workFactor: 12), into: encrypted)
        try encryptor.write(Array("payload".utf8))
        try encryptor.finish()
        for (maximum, accepted) in [(11, false), (12, true), (18, true)] {
            let plain = DataSink()
            do {
                let decryptor = try makeAgeDecryptor(keys: DecryptionKeys(passphrase: "correct horse", maximumWorkFactor: maximum), next: plain)
                try decryptor.write(encrypted.data)
                try decryptor.finish()
                #expect(accepted, "maximum \(maximum)")
                #expect(plain.data == Data("payload".utf8))
            } catch let error as AgeError {
                #expect(!accepted, "maximum \(maximum): \(error)")
                #expect(error == .workFactorTooLarge(found: 12, maximum: maximum))
            }
        }
        #expect(DecryptionKeys(passphrase: "x").maximumWorkFactor == 18, "age's default unless configured")
    }
}
