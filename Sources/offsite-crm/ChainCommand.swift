import CRMSim
import Foundation
import OffsiteCore

/// `offsite-crm chain`: a full backup of a CRM database and a chain of change objects after it, made
/// the way the agent ships them (frames read from the `-wal` after each commit, one object per
/// `--per-object` transactions, encrypted to `--recipient`), into a folder target: test data for
/// restores to a moment and their benchmark.
enum ChainCommand {
    static let usage = """
        usage: offsite-crm chain --db PATH --target FOLDER --recipient age1… --transactions N
                                 [--per-object M] [--compact-every K] [--level L] [--seed S]

        Takes a full backup of the CRM database at PATH into FOLDER (a folder target: FOLDER/DBNAME/…),
        then writes N application transactions and ships them as change objects of M transactions
        each (default 50), compressed at level L (default 6) and encrypted to the recipient; with
        --compact-every K, also a compacted object for every K change objects. Prints what it made.
        """

    static func run(_ options: Options) throws -> Int32 {
        let path = try options.string("db")
        let target = FileTarget(name: "chain", root: try options.string("target"))
        let recipient = try AgeX25519Recipient(parsing: try options.string("recipient"))
        let total = try options.integer("transactions")
        let perObject = max(try options.integer("per-object", default: 50), 1)
        let compactEvery = try options.integer("compact-every", default: 0)
        let level = try options.integer("level", default: 6)
        let encryption = PayloadEncryption.recipients([recipient])
        let database = DatabaseRef(path: path)

        // This connection stays open, so no other connection's close checkpoints the `-wal`; it
        // empties the `-wal` after each object is read.
        let holder = try SQLiteDatabase(path: path, mode: .readWrite)
        try holder.execute("PRAGMA journal_mode = WAL")
        _ = try holder.column("PRAGMA wal_checkpoint(TRUNCATE)")
        let started = Date()
        let report = try runBackup(BackupJob(database: database, kind: .scheduled, targets: [target], encryption: encryption,
                                             compressionLevel: level))
        guard report.succeeded, let checksum = report.shippedChecksum else {
            throw UsageError(message: "the full backup failed: \(report.uploads.compactMap(\.error).map { "\($0)" }.joined(separator: "; "))")
        }
        print("base \(report.id): \(formatBytes(report.snapshot.byteCount)) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")

        let pageSize = Int(try holder.scalarInt("PRAGMA page_size") ?? 4096)
        var link = ChainLink(base: checksum)
        var sequence = 1
        var times: [Int64] = []
        var objectBytes: Int64 = 0
        var frameCount = 0
        var compactor: ChangeCompactor?
        var compaction = (from: 1, previous: link, firstCommit: Int64(0))
        var compactedCount = 0
        let writer = try CRMWriter(path: path, rate: 1, seed: try options.seed())
        try writer.writeWithoutCheckpoints(total) { number in
            times.append(milliseconds(of: Date()))
            guard number % perObject == 0 || number == total else { return }
            // The frames of the transactions since the last object, grouped by transaction.
            var transactions: [[(pageNumber: UInt32, commitSize: UInt32, page: [UInt8])]] = []
            var current: [(pageNumber: UInt32, commitSize: UInt32, page: [UInt8])] = []
            let reader = WALReader(strictness: .likeSQLite) { frame, page in
                current.append((frame.pageNumber, frame.commitSize, Array(page)))
                if frame.isCommit {
                    transactions.append(current)
                    current = []
                }
            }
            try readFile(at: path + "-wal", into: reader)
            try reader.finish()
            guard transactions.count == times.count else {
                throw UsageError(message: "read \(transactions.count) transactions from the -wal, \(times.count) were committed")
            }
            let metadata = ChangeObjectMetadata.change(
                database: database.name, base: report.id, sequence: sequence, previous: link, pageSize: pageSize,
                transactions: ChangeTransaction.list(zip(transactions, times).map { (frames: $0.0.count, commitTime: $0.1) }))
            if compactEvery > 0 && compactor == nil {
                compactor = try ChangeCompactor(pageSize: pageSize, scratchFolder: target.root)
                compaction = (sequence, link, times[0])
            }
            let name = metadata.objectName(format: .encrypted)
            let upload = try target.makeUpload(key: RemoteChangeObject.key(database: database.name, name: name))
            let counter = ByteCounter(next: upload)
            let objectWriter = try ChangeObjectWriter(metadata: metadata, compressionLevel: level, encryption: encryption, into: counter)
            for frame in transactions.joined() {
                try frame.page.withUnsafeBytes { try objectWriter.append(pageNumber: frame.pageNumber, commitSize: frame.commitSize, page: $0) }
                try frame.page.withUnsafeBytes { try compactor?.append(pageNumber: frame.pageNumber, commitSize: frame.commitSize, page: $0) }
                frameCount += 1
            }
            let digest = try objectWriter.finish()
            try upload.commit()
            objectBytes += counter.count
            link = .object(digest)
            if let active = compactor, sequence - compaction.from + 1 == compactEvery {
                let compactedMetadata = active.metadata(database: database.name, base: report.id, from: compaction.from, to: sequence,
                                                        previous: compaction.previous, last: digest, commitTime: times.last!)
                let compactedName = compactedMetadata.objectName(format: .encrypted, firstCommit: compaction.firstCommit)
                let compactedUpload = try target.makeUpload(key: RemoteChangeObject.key(database: database.name, name: compactedName))
                _ = try active.write(metadata: compactedMetadata, compressionLevel: level, encryption: encryption, into: compactedUpload)
                try compactedUpload.commit()
                compactor = nil
                compactedCount += 1
            }
            sequence += 1
            times = []
            let emptied = try holder.column("PRAGMA wal_checkpoint(TRUNCATE)")
            guard emptied.first == "0" else { throw UsageError(message: "could not empty the -wal (busy)") }
        }
        print("\(sequence - 1) change objects (\(total) transactions, \(frameCount) frames, \(formatBytes(objectBytes)))"
              + (compactedCount > 0 ? " and \(compactedCount) compacted objects" : "")
              + " in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        return 0
    }
}

/// Counts the bytes passed on to `next`.
private final class ByteCounter: ByteSink {
    let next: any ByteSink
    private(set) var count: Int64 = 0

    init(next: any ByteSink) {
        self.next = next
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        count += Int64(bytes.count)
        try next.write(bytes)
    }

    func finish() throws { try next.finish() }
}
