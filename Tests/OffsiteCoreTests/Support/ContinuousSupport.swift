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

/// A database (`data/crm.db`, a `WALWorkload`) protected the continuous way by hand: full backups
/// with `runBackup`, change objects written from the frames its `-wal` gained and uploaded with the
/// target API, as the agent will. Commit times are made up, one `step` apart, starting after the
/// base's second, so restores to any moment can be checked against the content recorded then.
/// Also a configuration (`offsite.json`) naming the database and one target `remote`.
final class ChainWorkspace {
    let folder: ScratchFolder
    let kind: RemoteKind
    let target: any Target
    let identity: AgeX25519Identity
    let configPath: String
    let workload: WALWorkload
    var databasePath: String { folder.file("data/crm.db") }
    var encryption: PayloadEncryption { .recipients([identity.recipient]) }
    var keys: DecryptionKeys { DecryptionKeys(identities: [identity]) }

    /// One chain being written.
    struct ChainState {
        var base: RemoteBackup
        /// Object 1's `prev`: the base's CRC-32 and length.
        var baseLink: ChainLink
        var link: ChainLink
        var nextSequence = 1
        var objects: [RemoteChangeObject] = []
        var digests: [ChainDigest] = []
        /// Per object, its transactions as captured.
        var transactions: [[CapturedTransaction]] = []
    }

    private(set) var chains: [ChainState] = []
    /// Every moment with the content from then on: bases (at their second) and transactions.
    private(set) var history: [(time: Int64, content: String)] = []
    private var pending: [(time: Int64, content: String)] = []
    private(set) var clock: Int64

    init(_ kind: RemoteKind, label: String = "chain", start: Date = Date().addingTimeInterval(-3600)) throws {
        self.kind = kind
        folder = try ScratchFolder("\(label)-\(kind)")
        try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
        identity = AgeX25519Identity.generate()
        try Data(AgeIdentityFile.render(identity: identity, created: Date()).utf8)
            .write(to: URL(fileURLWithPath: folder.file("identity.txt")))
        let targetJSON: String
        switch kind {
        case .folder:
            targetJSON = #"{ "name": "remote", "url": "file://\#(folder.file("remote"))" }"#
            target = FileTarget(name: "remote", root: folder.file("remote"))
        case .s3:
            let server = try S3TestServer.shared(.rclone)
            let prefix = "chain-\(UUID().uuidString.prefix(8))"
            try Data((S3TestServer.secretAccessKey + "\n").utf8).write(to: URL(fileURLWithPath: folder.file("s3-secret")))
            targetJSON = """
            { "name": "remote", "url": "s3://\(S3TestServer.bucket)/\(prefix)", "endpoint": "\(server.endpoint.absoluteString)",
              "region": "us-east-1", "accessKeyId": "\(S3TestServer.accessKeyId)", "secretAccessKeyFile": "\(folder.file("s3-secret"))" }
            """
            target = try server.makeTarget(prefix: prefix)
        case .webdav:
            let server = try WebDAVTestServer.shared(.rclone)
            let path = "chain-\(UUID().uuidString.prefix(8))"
            try Data((WebDAVTestServer.password + "\n").utf8).write(to: URL(fileURLWithPath: folder.file("dav-secret")))
            targetJSON = """
            { "name": "remote", "url": "\(server.url(path: path))", "username": "\(WebDAVTestServer.username)",
              "passwordFile": "\(folder.file("dav-secret"))" }
            """
            target = try server.makeTarget(path: path)
        }
        let config = """
        {
          "databases": [{ "path": "\(folder.file("data/crm.db"))" }],
          "local": { "dir": "\(folder.file("local"))" },
          "encryption": { "recipients": ["\(identity.recipient)"], "identityFile": "\(folder.file("identity.txt"))" },
          "targets": [\(targetJSON)]
        }
        """
        configPath = folder.file("offsite.json")
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
        workload = try WALWorkload(path: folder.file("data/crm.db"))
        clock = Int64(start.timeIntervalSince1970.rounded(.down)) * 1000
    }

    /// Runs `offsite` with the workspace's configuration.
    func run(_ arguments: [String]) throws -> ToolResult {
        try offsite(arguments + ["--config", configPath], in: folder)
    }

    /// Takes a full backup `seconds` after the clock's second (everything committed so far is in
    /// it), which starts a new chain; the clock moves past it. What was committed since the last
    /// object is shipped first, unless `shipFirst` is false (then it is in the base alone).
    @discardableResult
    func takeBase(kind: BackupKind = .scheduled, afterSeconds seconds: Int64 = 2, shipFirst: Bool = true) throws -> RemoteBackup {
        if shipFirst {
            try ship()
        } else {
            history += pending
            pending = []
        }
        _ = try workload.capture(times: [], contents: [])
        let second = (clock / 1000) + seconds
        let job = BackupJob(database: DatabaseRef(path: databasePath), kind: kind, targets: [target], encryption: encryption,
                            compressionLevel: 1)
        let report = try runBackup(job, now: { Date(timeIntervalSince1970: TimeInterval(second)) })
        try #require(report.succeeded, "\(report.uploads)")
        let checksum = try #require(report.shippedChecksum)
        let base = try #require(try listBackups(on: target, database: "crm").first { $0.id == report.id })
        chains.append(ChainState(base: base, baseLink: ChainLink(base: checksum), link: ChainLink(base: checksum)))
        history.append((second * 1000, try workload.content()))
        clock = second * 1000 + 1000
        return base
    }

    /// Moves the made-up clock forward to `milliseconds` (never back).
    func advanceClock(to milliseconds: Int64) {
        clock = max(clock, milliseconds)
    }

    /// Commits `count` transactions, `step` milliseconds apart.
    func commit(_ count: Int, step: Int64 = 40) throws {
        for _ in 0..<count {
            clock += step
            try workload.runTransaction(big: pending.count % 9 == 4)
            pending.append((clock, try workload.content()))
        }
    }

    /// Ships what was committed since the last object as change object(s) of the newest chain.
    func ship(encryption override: PayloadEncryption? = nil) throws {
        guard !pending.isEmpty else { return }
        guard !chains.isEmpty else {
            // Before the first base: in it, and in no change object.
            history += pending
            pending = []
            return
        }
        let transactions = try workload.capture(times: pending.map(\.time), contents: pending.map(\.content))
        try #require(transactions.count == pending.count)
        history += pending
        pending = []
        var chain = chains.removeLast()
        let metadata = ChangeObjectMetadata.change(database: "crm", base: chain.base.id, sequence: chain.nextSequence,
                                                   previous: chain.link, pageSize: workload.pageSize,
                                                   transactions: transactionList(transactions))
        let format: PayloadFormat = (override ?? encryption).format
        let object = try makeChangeObject(transactions, metadata: metadata, encryption: override ?? encryption, level: 1)
        let remote = RemoteChangeObject(database: "crm", name: metadata.objectName(format: format), size: Int64(object.data.count))
        try upload(object.data, key: remote.key)
        chain.objects.append(remote)
        chain.digests.append(object.digest)
        chain.transactions.append(transactions)
        chain.link = .object(object.digest)
        chain.nextSequence += 1
        chains.append(chain)
    }

    /// Commits and ships `objects` objects of `transactions` transactions each.
    func commitAndShip(objects: Int, transactions: Int, step: Int64 = 40) throws {
        for _ in 0..<objects {
            try commit(transactions, step: step)
            try ship()
            clock += 200
        }
    }

    /// Writes and uploads the compacted object of objects `from`…`to` (1-based) of chain `index`.
    @discardableResult
    func compact(chain index: Int, from: Int, to: Int) throws -> RemoteChangeObject {
        let chain = chains[index]
        let compactor = try ChangeCompactor(pageSize: workload.pageSize, scratchFolder: folder.path)
        for transactions in chain.transactions[(from - 1)...(to - 1)] {
            for transaction in transactions {
                for frame in transaction.frames {
                    try frame.page.withUnsafeBytes { try compactor.append(pageNumber: frame.pageNumber, commitSize: frame.commitSize, page: $0) }
                }
            }
        }
        let previous = from == 1 ? chain.baseLink : ChainLink.object(chain.digests[from - 2])
        let metadata = compactor.metadata(database: "crm", base: chain.base.id, from: from, to: to, previous: previous,
                                          last: chain.digests[to - 1], commitTime: chain.objects[to - 1].name.lastCommit)
        let sink = DataSink()
        _ = try compactor.write(metadata: metadata, compressionLevel: 1, encryption: encryption, into: sink)
        let name = metadata.objectName(format: .encrypted, firstCommit: chain.objects[from - 1].name.firstCommit)
        let remote = RemoteChangeObject(database: "crm", name: name, size: Int64(sink.data.count))
        try upload(sink.data, key: remote.key)
        return remote
    }

    /// Stores `data` under `key` on the target.
    func upload(_ data: Data, key: String) throws {
        let upload = try target.makeUpload(key: key)
        try upload.write(data)
        try upload.finish()
        try upload.commit()
    }

    /// The content the database had at `time` (milliseconds): after the last transaction (or base)
    /// at or before it.
    func content(at time: Int64) -> String? {
        history.last { $0.time <= time }?.content
    }

    /// The moments recorded: bases and transactions.
    var moments: [Int64] { history.map(\.time) }

    /// Restores `selection` into `name` in the workspace with the library; returns the report.
    func restore(_ selection: BackupSelection, to name: String, check: IntegrityCheck = .full,
                 warn: @escaping (String) -> Void = { _ in }) throws -> RestoreReport {
        let job = RestoreJob(target: target, database: "crm", selection: selection, keys: keys, check: check, warn: warn)
        return try OffsiteCore.restore(job, toNewFile: folder.file(name), overwrite: true)
    }
}

/// `.at` for milliseconds since 1970.
func moment(_ milliseconds: Int64) -> BackupSelection {
    .at(Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000))
}
