import Foundation
import Testing
@testable import OffsiteCore

/// Change and compacted objects: names, metadata, the writer and the reader, compaction.
@Suite struct ChangeObjectTests {
    static let base = BackupID("20261203T120000Z-scheduled")!

    // MARK: Names

    @Test(arguments: [
        ("20261203T120000Z-scheduled.c00000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",
         ChangeObjectKind.change(sequence: 42), Int64(1_796_299_513_125), Int64(1_796_299_514_002), PayloadFormat.encrypted),
        ("20261203T120000Z-change.c00000001.20261203T120000.000Z.20261203T120000.000Z.wal.gz",
         .change(sequence: 1), 1_796_299_200_000, 1_796_299_200_000, .plain),
        ("20261203T120000Z-scheduled.k00000001-00000600.20261203T120001.999Z.20261203T121000.000Z.wal.gz.age",
         .compacted(from: 1, to: 600), 1_796_299_201_999, 1_796_299_800_000, .encrypted),
        ("20261203T120000Z-manual.k00000007-00000007.20261203T120001.000Z.20261203T120001.000Z.wal.gz",
         .compacted(from: 7, to: 7), 1_796_299_201_000, 1_796_299_201_000, .plain),
        ("20261203T120000Z-scheduled.c99999999.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",
         .change(sequence: 99_999_999), 1_796_299_513_125, 1_796_299_514_002, .encrypted),
    ] as [(String, ChangeObjectKind, Int64, Int64, PayloadFormat)])
    func namesParseAndFormat(text: String, kind: ChangeObjectKind, first: Int64, last: Int64, format: PayloadFormat) throws {
        let name = try #require(ChangeObjectName(fileName: text))
        #expect(name.kind == kind)
        #expect(name.firstCommit == first)
        #expect(name.lastCommit == last)
        #expect(name.format == format)
        #expect(name.fileName == text)
        let object = try #require(RemoteChangeObject(object: RemoteObject(key: "crm/\(text)", size: 123)))
        #expect(object.database == "crm" && object.size == 123 && object.name == name)
        // A change object is never taken for a full backup, nor a full backup for one.
        #expect(RemoteBackup(object: RemoteObject(key: "crm/\(text)", size: 1)) == nil)
    }

    @Test(arguments: [
        "20261203T120000Z-scheduled.c0000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",    // 7 digits
        "20261203T120000Z-scheduled.c000000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",  // 9 digits
        "20261203T120000Z-scheduled.c00000000.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",   // sequence 0
        "20261203T120000Z-scheduled.C00000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",   // capital C
        "20261203T120000Z-scheduled.c0000004x.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",
        "20261203T120000Z-scheduled.c00000042.20261203T120513.12Z.20261203T120514.002Z.wal.gz.age",    // 2-digit ms
        "20261203T120000Z-scheduled.c00000042.20261203T120513Z.20261203T120514.002Z.wal.gz.age",       // no ms
        "20261203T120000Z-scheduled.c00000042.20261203T120514.002Z.20261203T120513.125Z.wal.gz.age",   // first after last
        "20261203T120000Z-scheduled.c00000042.20261303T120513.125Z.20261203T120514.002Z.wal.gz.age",   // month 13
        "20261203T120000Z-scheduled.c00000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age.tmp",
        "20261203T120000Z-scheduled.c00000042.20261203T120513.125Z.20261203T120514.002Z.wal",
        "20261203T120000Z-scheduled.c00000042.20261203T120513.125Z.wal.gz.age",                         // one time
        "20261203T120000Z-weekly.c00000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",      // unknown kind
        "20261203T120000Z-scheduled.k00000002-00000001.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age", // from > to
        "20261203T120000Z-scheduled.k00000000-00000001.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",
        "20261203T120000Z-scheduled.k00000001_00000002.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",
        "20261203T120000Z-scheduled.k0000001-00000002.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",
        "20261203T120000Z-scheduled.sqlite3.gz.age",
        ".20261203T120000Z-scheduled.c00000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",
        "20261203T120000Z-scheduled..c00000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age",
    ])
    func namesOfAnyOtherShapeAreNotChangeObjects(text: String) {
        #expect(ChangeObjectName(fileName: text) == nil)
    }

    @Test func onlyKeysDirectlyUnderADatabaseFolderAreChangeObjects() {
        let name = "20261203T120000Z-scheduled.c00000042.20261203T120513.125Z.20261203T120514.002Z.wal.gz.age"
        #expect(RemoteChangeObject(object: RemoteObject(key: "crm/\(name)", size: 1)) != nil)
        #expect(RemoteChangeObject(object: RemoteObject(key: "site-b/crm/\(name)", size: 1)) == nil)
        #expect(RemoteChangeObject(object: RemoteObject(key: name, size: 1)) == nil)
        #expect(RemoteChangeObject(object: RemoteObject(key: "/\(name)", size: 1)) == nil)
    }

    @Test(arguments: [(Int64(0), "19700101T000000.000Z"), (1_796_299_513_125, "20261203T120513.125Z"),
                      (1_796_299_513_999, "20261203T120513.999Z"), (951_782_400_001, "20000229T000000.001Z")])
    func commitTimesFormatAndParse(milliseconds: Int64, text: String) {
        #expect(ChangeObjectName.formatCommitTime(milliseconds) == text)
        #expect(ChangeObjectName.parseCommitTime(text) == milliseconds)
    }

    // MARK: Metadata

    @Test func metadataIsTheDesignedJSONAndReadsBack() throws {
        let digest = ChainDigest(bytes: Array(0..<32))!
        let change = ChangeObjectMetadata.change(database: "crm", base: Self.base, sequence: 42, previous: .object(digest), pageSize: 4096,
                                                 transactions: [ChangeTransaction(lastFrame: 3, commitTime: 1_764_763_513_125),
                                                                ChangeTransaction(lastFrame: 5, commitTime: 1_764_763_513_140)])
        let text = String(decoding: change.encodedJSON(), as: UTF8.self)
        #expect(text == #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":42,"prev":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","page":4096,"tx":[[3,1764763513125],[5,1764763513140]]}"#)
        #expect(try ChangeObjectMetadata(json: change.encodedJSON()) == change)
        #expect(try ChangeObjectMetadata(extraField: try change.extraField()) == change)

        let first = ChangeObjectMetadata.change(database: "a \"b\"\\c", base: Self.base, sequence: 1,
                                                previous: .base(crc: 0x00ab_cdef, length: 209_715_200), pageSize: 65536,
                                                transactions: [ChangeTransaction(lastFrame: 1, commitTime: 0)])
        #expect(String(decoding: first.encodedJSON(), as: UTF8.self).contains(#""prev":"crc32:00abcdef:209715200""#))
        #expect(try ChangeObjectMetadata(json: first.encodedJSON()) == first)

        // Object 1 may name the moment its base stands for; its name carries it too.
        let seamed = ChangeObjectMetadata.change(database: "crm", base: Self.base, sequence: 1, previous: .base(crc: 1, length: 2),
                                                 pageSize: 4096, transactions: [ChangeTransaction(lastFrame: 2, commitTime: 1_764_763_513_125)],
                                                 since: 1_764_763_510_000)
        #expect(String(decoding: seamed.encodedJSON(), as: UTF8.self).contains(#""since":1764763510000,"page""#))
        #expect(try ChangeObjectMetadata(json: seamed.encodedJSON()) == seamed)
        #expect(seamed.objectName(format: .encrypted).since == 1_764_763_510_000)

        let compacted = ChangeObjectMetadata.compacted(database: "crm", base: Self.base, from: 1, to: 600,
                                                       previous: .base(crc: 1, length: 2), last: digest, pageSize: 4096,
                                                       frames: 812, commitTime: 1_764_763_513_140)
        #expect(String(decoding: compacted.encodedJSON(), as: UTF8.self)
            == #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","from":1,"to":600,"prev":"crc32:00000001:2","last":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","page":4096,"tx":[[812,1764763513140]]}"#)
        #expect(try ChangeObjectMetadata(json: compacted.encodedJSON()) == compacted)
        // Other subfields around ours are skipped.
        let field = [UInt8(ascii: "X"), UInt8(ascii: "Y"), 2, 0, 9, 9] + (try compacted.extraField())
        #expect(try ChangeObjectMetadata(extraField: field) == compacted)
    }

    @Test(arguments: [
        #"{"v":2,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"yesterday","seq":1,"prev":"crc32:00000001:2","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":0,"prev":"crc32:00000001:2","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1.5,"prev":"crc32:00000001:2","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:0001:2","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"sha:abc","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4000,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4096,"tx":[]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4096,"tx":[[2,5],[2,6]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4096,"tx":[[0,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4096,"tx":[[1,5,7]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"from":1,"to":2,"prev":"crc32:00000001:2","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","from":1,"to":2,"prev":"crc32:00000001:2","page":4096,"tx":[[1,5]]}"#,
        // "since" only on object 1, never after its first commit
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":2,"prev":"crc32:00000001:2","since":1,"page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","since":6,"page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","from":3,"to":2,"prev":"crc32:00000001:2","last":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","page":4096,"tx":[[1,5]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4096,"tx":[[1,true]]}"#,
        #"{"v":1,"db":"crm","base":"20261203T120000Z-scheduled","seq":1,"prev":"crc32:00000001:2","page":4096}"#,
        #"[1,2,3]"#,
        #"{"v":1,"db":"crm""#,
    ])
    func malformedMetadataIsRefused(json: String) {
        #expect(throws: ChangeObjectError.self) { try ChangeObjectMetadata(json: Array(json.utf8)) }
    }

    @Test func metadataThatDoesNotFitTheGzipHeaderIsRefused() {
        let transactions = (1...4000).map { ChangeTransaction(lastFrame: $0 * 3, commitTime: 1_764_763_513_125 + Int64($0)) }
        let metadata = ChangeObjectMetadata.change(database: "crm", base: Self.base, sequence: 1, previous: .base(crc: 0, length: 0),
                                                   pageSize: 4096, transactions: transactions)
        #expect(throws: ChangeObjectError.metadataTooLarge(bytes: metadata.encodedJSON().count)) { try metadata.extraField() }
        let fitting = ChangeObjectMetadata.change(database: "crm", base: Self.base, sequence: 1, previous: .base(crc: 0, length: 0),
                                                  pageSize: 4096, transactions: Array(transactions.prefix(2500)))
        #expect(throws: Never.self) { try fitting.extraField() }
    }

    // MARK: Writer and reader

    static func fixture(_ label: String, count: Int = 30) throws -> WALFormatTests.Fixture {
        try WALFormatTests.makeFixture(label, count: count)
    }

    @Test(arguments: [false, true])
    func gunzipAndSQLiteReadAnObjectWeWrote(encrypted: Bool) throws {
        let fixture = try Self.fixture("change-object-tools")
        let identity = AgeX25519Identity.generate()
        let metadata = ChangeObjectMetadata.change(database: "live", base: Self.base, sequence: 1, previous: .base(crc: 7, length: 8),
                                                   pageSize: fixture.pageSize, transactions: transactionList(fixture.transactions))
        let object = try makeChangeObject(fixture.transactions, metadata: metadata,
                                          encryption: encrypted ? .recipients([identity.recipient]) : .none)
        let name = metadata.objectName(format: encrypted ? .encrypted : .plain)
        #expect(name.fileName.hasSuffix(encrypted ? ".wal.gz.age" : ".wal.gz"))
        #expect(name.firstCommit == fixture.transactions.first!.commitTime && name.lastCommit == fixture.transactions.last!.commitTime)
        let stored = fixture.folder.file(name.fileName)
        try object.data.write(to: URL(fileURLWithPath: stored))
        var compressed = stored
        if encrypted {
            try Data(identity.encoded.utf8).write(to: URL(fileURLWithPath: fixture.folder.file("id.txt")))
            let decrypt = try runTool("age", ["-d", "-i", "id.txt", "-o", "object.gz", stored], in: fixture.folder)
            try #require(decrypt.status == 0, "\(decrypt.standardError)")
            compressed = fixture.folder.file("object.gz")
        }
        // The header carries FEXTRA (flag bit 2) with subfield OF, and gunzip does not mind.
        let header = try readPrefix(of: compressed, count: 16)
        #expect(header[3] & 0x04 != 0 && header[12] == UInt8(ascii: "O") && header[13] == UInt8(ascii: "F"))
        let gunzip = try runTool("gzip", ["-dc", compressed], in: fixture.folder)
        try #require(gunzip.status == 0, "\(gunzip.standardError)")
        try gunzip.standardOutputData.write(to: URL(fileURLWithPath: fixture.folder.file("object.wal")))
        #expect(SHA256Hasher.digest(of: gunzip.standardOutputData.withUnsafeBytes { UnsafeRawBufferPointer($0) }) == object.digest.bytes)
        let applied = try WALFormatTests.applyWithSQLite(fixture, wal: fixture.folder.file("object.wal"), name: "applied.db")
        #expect(applied.integrity == "ok")
        #expect(applied.content == fixture.transactions.last!.content)

        // Our reader: the same metadata, frames and digest.
        var frames: [(UInt32, UInt32)] = []
        let reader = try ChangeObjectReader(format: encrypted ? .encrypted : .plain, keys: DecryptionKeys(identities: [identity])) { frame, _ in
            frames.append((frame.pageNumber, frame.commitSize))
        }
        try write(object.data, to: reader, splitting: [1, 17, 4000, 100_000])
        try reader.finish()
        #expect(reader.metadata == metadata)
        #expect(reader.digest == object.digest)
        #expect(frames.elementsEqual(fixture.transactions.flatMap { $0.frames.map { ($0.pageNumber, $0.commitSize) } }, by: { $0 == $1 }))
    }

    @Test func theReaderHandsOnOnlyTheFramesAskedForButChecksThemAll() throws {
        let fixture = try Self.fixture("change-object-limit", count: 10)
        let metadata = ChangeObjectMetadata.change(database: "live", base: Self.base, sequence: 3, previous: .base(crc: 7, length: 8),
                                                   pageSize: fixture.pageSize, transactions: transactionList(fixture.transactions))
        let object = try makeChangeObject(fixture.transactions, metadata: metadata, encryption: .none)
        let limit = metadata.transactions[3].lastFrame
        var delivered = 0
        let reader = try ChangeObjectReader(format: .plain, keys: DecryptionKeys(), onMetadata: { _ in limit }) { _, _ in delivered += 1 }
        try reader.write(object.data)
        try reader.finish()
        #expect(delivered == limit)
        #expect(reader.digest == object.digest)
    }

    @Test func framesThatDoNotMatchTheMetadataAreRefused() throws {
        let page = [UInt8](repeating: 7, count: 4096)
        func writer(_ frames: [Int]) throws -> ChangeObjectWriter {
            let metadata = ChangeObjectMetadata.change(database: "crm", base: Self.base, sequence: 1, previous: .base(crc: 0, length: 0),
                                                       pageSize: 4096, transactions: ChangeTransaction.list(frames.map { ($0, 1) }))
            return try ChangeObjectWriter(metadata: metadata, encryption: .none, into: DataSink())
        }
        // A commit too early, a frame that does not commit where the transaction ends, a frame too many, one too few.
        let early = try writer([2])
        #expect(throws: ChangeObjectError.self) { try page.withUnsafeBytes { try early.append(pageNumber: 1, commitSize: 1, page: $0) } }
        let late = try writer([1])
        #expect(throws: ChangeObjectError.self) { try page.withUnsafeBytes { try late.append(pageNumber: 1, commitSize: 0, page: $0) } }
        let extra = try writer([1])
        try page.withUnsafeBytes { try extra.append(pageNumber: 1, commitSize: 1, page: $0) }
        #expect(throws: ChangeObjectError.self) { try page.withUnsafeBytes { try extra.append(pageNumber: 2, commitSize: 0, page: $0) } }
        let short = try writer([1, 2])
        try page.withUnsafeBytes { try short.append(pageNumber: 1, commitSize: 1, page: $0) }
        #expect(throws: ChangeObjectError.self) { _ = try short.finish() }
        // A page of the wrong size.
        let wrongSize = try writer([1])
        #expect(throws: WALFormatError.pageLength(expected: 4096, got: 100)) {
            try Array(page.prefix(100)).withUnsafeBytes { try wrongSize.append(pageNumber: 1, commitSize: 1, page: $0) }
        }
    }

    @Test func theReaderRefusesAnObjectWhoseMetadataListsOtherFrames() throws {
        // Build a plain gzip object by hand whose metadata claims 2 transactions over a WAL holding 1.
        let page = [UInt8](repeating: 1, count: 4096)
        let metadata = ChangeObjectMetadata.change(database: "crm", base: Self.base, sequence: 1, previous: .base(crc: 0, length: 0),
                                                   pageSize: 4096, transactions: ChangeTransaction.list([(1, 1), (1, 2)]))
        let sink = DataSink()
        let compressor = try GzipCompressor(extraField: try metadata.extraField(), next: sink)
        let wal = try WALWriter(pageSize: 4096, into: compressor)
        try page.withUnsafeBytes { try wal.append(pageNumber: 1, commitSize: 1, page: $0) }
        try wal.finish()
        let reader = try ChangeObjectReader(format: .plain, keys: DecryptionKeys()) { _, _ in }
        try reader.write(sink.data)
        #expect(throws: ChangeObjectError.self) { try reader.finish() }
        // And one with no metadata at all.
        let bare = DataSink()
        let plain = try GzipCompressor(next: bare)
        let bareWAL = try WALWriter(pageSize: 4096, into: plain)
        try page.withUnsafeBytes { try bareWAL.append(pageNumber: 1, commitSize: 1, page: $0) }
        try bareWAL.finish()
        let second = try ChangeObjectReader(format: .plain, keys: DecryptionKeys()) { _, _ in }
        #expect(throws: ChangeObjectError.self) { try second.write(bare.data) }
    }

    // MARK: From the capture side's spool

    @Test func objectsWrittenFromASpoolApply() throws {
        let fixture = try Self.fixture("spool-objects", count: 40)
        let spool = try ChangeSpool(path: fixture.folder.file("spool"), pageSize: fixture.pageSize, framesPerSegment: 64)
        let start = Date(timeIntervalSince1970: 1_796_299_300)
        for (index, transaction) in fixture.transactions.enumerated() {
            for frame in transaction.frames {
                try frame.page.withUnsafeBytes { try spool.append(page: frame.pageNumber, content: $0) }
            }
            spool.commit(pageCount: transaction.frames.last!.commitSize, at: start.addingTimeInterval(Double(index) * 0.125))
        }
        let transactions = spool.transactions
        let first = DataSink()
        let one = try spool.writeChangeObject(transactions.prefix(25), database: "live", base: Self.base, sequence: 1,
                                              previous: .base(crc: 1, length: 2), compressionLevel: 1, encryption: .none, into: first)
        #expect(one.name.kind == .change(sequence: 1))
        #expect(one.name.firstCommit == milliseconds(of: start) && one.name.lastCommit == milliseconds(of: start) + 24 * 125)
        #expect(first.isFinished)
        let second = DataSink()
        let two = try spool.writeChangeObject(transactions.dropFirst(25), database: "live", base: Self.base, sequence: 2,
                                              previous: .object(one.digest), compressionLevel: 1, encryption: .none, into: second)
        // Both applied by sqlite3 in turn give the last content; the second's metadata links to the first.
        let database = fixture.folder.file("applied.db")
        try FileManager.default.copyItem(atPath: fixture.base, toPath: database)
        var lastWAL = Data()
        for (data, expectedPrevious) in [(first.data, ChainLink.base(crc: 1, length: 2)), (second.data, .object(one.digest))] {
            let reader = try ChangeObjectReader(format: .plain, keys: DecryptionKeys()) { _, _ in }
            try reader.write(data)
            try reader.finish()
            #expect(reader.metadata?.previous == expectedPrevious)
            let bytes = DataSink()
            let gunzip = try GzipDecompressor(next: bytes)
            try gunzip.write(data)
            try gunzip.finish()
            lastWAL = bytes.data
            try lastWAL.write(to: URL(fileURLWithPath: database + "-wal"))
            #expect(try sqlite3(database, "PRAGMA wal_checkpoint(TRUNCATE)", in: fixture.folder).hasPrefix("0|"))
        }
        #expect(try WALWorkload.content(ofFileAt: database) == fixture.transactions.last!.content)
        #expect(two.digest.bytes == SHA256Hasher.digest(of: lastWAL.withUnsafeBytes { UnsafeRawBufferPointer($0) }))
        // The compactor from the same spool.
        let compactor = try ChangeCompactor(pageSize: fixture.pageSize, scratchFolder: fixture.folder.path)
        try spool.feed(transactions, to: compactor)
        #expect(compactor.transactionCount == 40 && compactor.databaseSize == fixture.transactions.last!.frames.last!.commitSize)
        let metadata = compactor.metadata(database: "live", base: Self.base, from: 1, to: 2, previous: .base(crc: 1, length: 2),
                                          last: two.digest, commitTime: two.name.lastCommit)
        let compacted = DataSink()
        _ = try compactor.write(metadata: metadata, compressionLevel: 1, encryption: .none, into: compacted)
        try compacted.data.write(to: URL(fileURLWithPath: fixture.folder.file("compacted.wal.gz")))
        let inflated = try runTool("gzip", ["-dc", fixture.folder.file("compacted.wal.gz")], in: fixture.folder)
        try inflated.standardOutputData.write(to: URL(fileURLWithPath: fixture.folder.file("compacted.wal")))
        let applied = try WALFormatTests.applyWithSQLite(fixture, wal: fixture.folder.file("compacted.wal"), name: "compacted.db")
        #expect(applied.integrity == "ok" && applied.content == fixture.transactions.last!.content)
    }

    // MARK: Compaction

    @Test func aCompactedObjectHoldsTheNewestPagesAndSQLiteAppliesIt() throws {
        let fixture = try Self.fixture("compaction", count: 80)
        let compactor = try ChangeCompactor(pageSize: fixture.pageSize, scratchFolder: fixture.folder.path)
        var newest: [UInt32: [UInt8]] = [:]
        for transaction in fixture.transactions {
            for frame in transaction.frames {
                try frame.page.withUnsafeBytes { try compactor.append(pageNumber: frame.pageNumber, commitSize: frame.commitSize, page: $0) }
                newest[frame.pageNumber] = frame.page
            }
        }
        let finalSize = fixture.transactions.last!.frames.last!.commitSize
        #expect(compactor.databaseSize == finalSize)
        let expectedPages = newest.filter { $0.key <= finalSize }
        #expect(compactor.compactedFrameCount == expectedPages.count)
        #expect(expectedPages.count < fixture.transactions.reduce(0) { $0 + $1.frames.count }, "nothing was compacted away")

        let last = ChainDigest(bytes: [UInt8](repeating: 9, count: 32))!
        let metadata = compactor.metadata(database: "live", base: Self.base, from: 1, to: 12, previous: .base(crc: 1, length: 2),
                                          last: last, commitTime: fixture.transactions.last!.commitTime)
        let sink = DataSink()
        let digest = try compactor.write(metadata: metadata, encryption: .none, into: sink)
        let inflated = DataSink()
        let decompressor = try GzipDecompressor(next: inflated)
        try decompressor.write(sink.data)
        try decompressor.finish()
        #expect(digest.bytes == inflated.data.withUnsafeBytes { SHA256Hasher.digest(of: UnsafeRawBufferPointer($0)) })

        var frames: [WALFrame] = []
        var pages: [UInt32: [UInt8]] = [:]
        let reader = try ChangeObjectReader(format: .plain, keys: DecryptionKeys()) { frame, page in
            frames.append(frame)
            pages[frame.pageNumber] = Array(page)
        }
        try reader.write(sink.data)
        try reader.finish()
        #expect(reader.digest == nil, "nothing links to a compacted object's bytes: the reader does not hash them")
        #expect(reader.metadata == metadata)
        #expect(frames.map(\.pageNumber) == expectedPages.keys.sorted())
        #expect(frames.filter(\.isCommit).map(\.number) == [frames.count])
        #expect(frames.last?.commitSize == finalSize)
        #expect(pages == expectedPages)

        // gunzip + sqlite3 give the state after the last transaction.
        try sink.data.write(to: URL(fileURLWithPath: fixture.folder.file("compacted.wal.gz")))
        let gunzip = try runTool("gzip", ["-dc", fixture.folder.file("compacted.wal.gz")], in: fixture.folder)
        try gunzip.standardOutputData.write(to: URL(fileURLWithPath: fixture.folder.file("compacted.wal")))
        let applied = try WALFormatTests.applyWithSQLite(fixture, wal: fixture.folder.file("compacted.wal"), name: "applied.db")
        #expect(applied.integrity == "ok")
        #expect(applied.content == fixture.transactions.last!.content)
    }

    @Test func aCompactionMustEndOnACommit() throws {
        let folder = try ScratchFolder("compaction-open")
        let compactor = try ChangeCompactor(pageSize: 4096, scratchFolder: folder.path)
        let page = [UInt8](repeating: 3, count: 4096)
        try page.withUnsafeBytes { try compactor.append(pageNumber: 1, commitSize: 1, page: $0) }
        try page.withUnsafeBytes { try compactor.append(pageNumber: 2, commitSize: 0, page: $0) }
        let metadata = compactor.metadata(database: "crm", base: Self.base, from: 1, to: 1, previous: .base(crc: 0, length: 0),
                                          last: ChainDigest(bytes: [UInt8](repeating: 0, count: 32))!, commitTime: 5)
        #expect(throws: ChangeObjectError.self) { _ = try compactor.write(metadata: metadata, encryption: .none, into: DataSink()) }
        #expect(try folder.names().isEmpty, "the scratch file is unlinked from the start")
    }
}
