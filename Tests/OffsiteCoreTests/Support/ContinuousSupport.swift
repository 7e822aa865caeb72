import Foundation
import Testing
@testable import OffsiteCore

/// One committed transaction captured from a live database's `-wal`: its frames (page number,
/// commit size or 0, page bytes), a commit time, and the table content after it.
struct CapturedTransaction {
    var frames: [(pageNumber: UInt32, commitSize: UInt32, page: [UInt8])]
    var commitTime: Int64
    var content: String
}

/// A database in WAL mode whose `-wal` the test reads as it grows: the autocheckpoint is off and
/// the connection stays open, so every committed frame stays in the file and frames are numbered
/// from 1 for the whole test. `auto_vacuum = FULL` makes deletions shrink the file, so commit sizes
/// go down as well as up. Transactions insert, update and delete rows of random blobs.
final class WALWorkload {
    let path: String
    let database: SQLiteDatabase
    private(set) var pageSize = 0
    private var random: SplitMix64
    private var nextID: Int64 = 1
    private var liveIDs: [Int64] = []
    /// Frames already handed out by `capture`.
    private(set) var cursor = 0

    init(path: String, seed: UInt64 = 7, pageSize: Int = 4096) throws {
        self.path = path
        random = SplitMix64(seed: seed)
        database = try SQLiteDatabase(path: path, mode: .create)
        try database.execute("PRAGMA page_size = \(pageSize); PRAGMA auto_vacuum = FULL; PRAGMA journal_mode = WAL; "
                             + "PRAGMA wal_autocheckpoint = 0; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        self.pageSize = Int(try database.scalarInt("PRAGMA page_size") ?? 0)
        // Everything so far into the main file, so a plain copy of it is the state before the first capture.
        _ = try database.column("PRAGMA wal_checkpoint(TRUNCATE)")
    }

    /// Runs one transaction of a few random inserts, updates and deletes.
    func runTransaction(big: Bool = false) throws {
        try database.execute("BEGIN")
        let operations = big ? 40 : Int(random.next() % 4) + 1
        for _ in 0..<operations {
            let choice = random.next() % 10
            if choice < 6 || liveIDs.isEmpty {
                let size = big ? 3000 : Int(random.next() % 1500) + 10
                try insert(id: nextID, size: size)
                liveIDs.append(nextID)
                nextID += 1
            } else if choice < 8 {
                let id = liveIDs[Int(random.next() % UInt64(liveIDs.count))]
                try database.prepare("UPDATE t SET v = ? WHERE id = ?").run([.blob(randomBytes(Int(random.next() % 2000) + 10)), .integer(id)])
            } else {
                let index = Int(random.next() % UInt64(liveIDs.count))
                try database.prepare("DELETE FROM t WHERE id = ?").run([.integer(liveIDs[index])])
                liveIDs.remove(at: index)
            }
        }
        try database.execute("COMMIT")
    }

    /// Deletes most rows in one transaction: the file shrinks.
    func runShrinkingTransaction() throws {
        try database.execute("BEGIN")
        let keep = liveIDs.count / 5
        for id in liveIDs.dropFirst(keep) {
            try database.prepare("DELETE FROM t WHERE id = ?").run([.integer(id)])
        }
        liveIDs = Array(liveIDs.prefix(keep))
        try database.execute("COMMIT")
    }

    private func insert(id: Int64, size: Int) throws {
        try database.prepare("INSERT INTO t(id, v) VALUES (?, ?)").run([.integer(id), .blob(randomBytes(size))])
    }

    private func randomBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    /// The table's content as text (ids and a hash of every value), as seen by this connection.
    func content() throws -> String {
        try WALWorkload.content(of: database)
    }

    /// The table's content of the database at `path`, read by a fresh read-only connection.
    static func content(ofFileAt path: String) throws -> String {
        try content(of: SQLiteDatabase(path: path, mode: .readOnly))
    }

    private static func content(of database: SQLiteDatabase) throws -> String {
        try database.scalarText("SELECT count(*) || ':' || coalesce(group_concat(id || '=' || length(v) || '/' || hex(substr(v, 1, 4)) || hex(substr(v, -4)), ','), '') FROM (SELECT id, v FROM t ORDER BY id)") ?? ""
    }

    /// The committed frames added to the `-wal` since the last capture, grouped by transaction, each
    /// given a commit time from `times` and the content after it (`contents`, one per transaction).
    func capture(times: [Int64], contents: [String]) throws -> [CapturedTransaction] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path + "-wal"))
        var frames: [(pageNumber: UInt32, commitSize: UInt32, page: [UInt8])] = []
        var transactions: [CapturedTransaction] = []
        let start = cursor
        let reader = WALReader(strictness: .likeSQLite) { frame, page in
            guard frame.number > start else { return }
            frames.append((frame.pageNumber, frame.commitSize, Array(page)))
            if frame.isCommit {
                let index = transactions.count
                transactions.append(CapturedTransaction(frames: frames, commitTime: index < times.count ? times[index] : 0,
                                                        content: index < contents.count ? contents[index] : ""))
                frames = []
            }
        }
        try data.withUnsafeBytes { try reader.write($0) }
        try reader.finish()
        cursor = reader.lastCommitFrame
        return transactions
    }
}

/// Writes `transactions` as one WAL file (fresh salts) at `path`; returns the byte offset after each
/// transaction's commit frame.
@discardableResult
func writeWAL(_ transactions: [CapturedTransaction], pageSize: Int, to path: String, bigEndian: Bool = false) throws -> [Int64] {
    let sink = try FileSink(creating: path)
    let writer = try WALWriter(header: try WALHeader(pageSize: pageSize, bigEndianChecksums: bigEndian), into: sink)
    var ends: [Int64] = []
    for transaction in transactions {
        for frame in transaction.frames {
            try frame.page.withUnsafeBytes { try writer.append(pageNumber: frame.pageNumber, commitSize: frame.commitSize, page: $0) }
        }
        ends.append(writer.byteCount)
    }
    try writer.finish()
    return ends
}

/// Writes one change object of `transactions` with `ChangeObjectWriter`; returns its bytes and the digest.
func makeChangeObject(_ transactions: [CapturedTransaction], metadata: ChangeObjectMetadata, encryption: PayloadEncryption,
                      level: Int = 6) throws -> (data: Data, digest: ChainDigest) {
    let sink = DataSink()
    let writer = try ChangeObjectWriter(metadata: metadata, compressionLevel: level, encryption: encryption, into: sink)
    for transaction in transactions {
        for frame in transaction.frames {
            try frame.page.withUnsafeBytes { try writer.append(pageNumber: frame.pageNumber, commitSize: frame.commitSize, page: $0) }
        }
    }
    let digest = try writer.finish()
    return (sink.data, digest)
}

/// The transaction list of `transactions` for an object's metadata.
func transactionList(_ transactions: [CapturedTransaction]) -> [ChangeTransaction] {
    ChangeTransaction.list(transactions.map { (frames: $0.frames.count, commitTime: $0.commitTime) })
}
