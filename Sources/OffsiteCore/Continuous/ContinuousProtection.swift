import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A commit time as change objects carry it: milliseconds since 1970, rounded up. The agent sees
/// a commit after it was made, so its stamp is never before the commit; rounding down could put it
/// before, and a restore to a moment within the same millisecond would then hold a commit made
/// after that moment.
func commitMilliseconds(_ date: Date) -> Int64 {
    Int64((date.timeIntervalSince1970 * 1000).rounded(.up))
}

/// What continuous protection tells the agent, from its own threads.
public enum ContinuousEvent: Sendable {
    /// The chain broke or grew long: a full backup (a new base) is needed at once.
    case baseNeeded(database: String, reason: String)
    /// Something to record in the state (replication lag, chain length, a gap).
    case record([StateChange])
    /// Something to log: level, event name, fields.
    case log(LogConfig.Level, String, [(String, String)])
}

/// Continuous protection of one WAL-mode database (docs/CONTINUOUS.md): a capture thread copies
/// every committed transaction into the spool as it is committed; a shipping thread turns what was
/// committed since the last object into a change object every `interval`, written to the outbox;
/// one upload thread per target that takes changes sends the outbox in order. None of them ever
/// waits behind a full backup.
///
/// The agent drives the chains: before the snapshot of a full backup it calls `prepareBase()` (the
/// chain boundary: what is captured from then on belongs to the next chain), hands the ticket to
/// the snapshot as its `readMark` (which moves the boundary to exactly where the snapshot's read
/// transaction began, when it can tell), then calls `confirmBase` or `abandonBase` with how the
/// backup went.
public final class ContinuousProtection: @unchecked Sendable {
    /// How it works.
    public struct Settings: Sendable {
        /// How often committed changes are shipped.
        public var interval: Duration
        /// When a chain has grown enough for a new base.
        public var maxChain: ContinuousConfig.ChainLimit
        /// The gzip level.
        public var compressionLevel: Int
        /// How objects are encrypted.
        public var encryption: PayloadEncryption
        /// The folder of this database in the local folder (`LOCALDIR/DBNAME`): spool and outbox.
        public var folder: String
        /// The raw frame bytes of change objects after which a compacted object is written; nil: a
        /// quarter of the database, at least 16 MiB.
        public var compactAfterBytes: Int64?

        /// Creates settings.
        public init(interval: Duration, maxChain: ContinuousConfig.ChainLimit, compressionLevel: Int,
                    encryption: PayloadEncryption, folder: String, compactAfterBytes: Int64? = nil) {
            self.interval = interval
            self.maxChain = maxChain
            self.compressionLevel = compressionLevel
            self.encryption = encryption
            self.folder = folder
            self.compactAfterBytes = compactAfterBytes
        }
    }

    /// The chain objects are shipped in.
    struct Chain {
        var base: BackupID
        var nextSequence = 1
        var previous: ChainLink
        /// Compressed bytes and objects shipped in it.
        var shippedBytes: Int64 = 0
        var objects = 0
        /// What a restore of its newest moment reads besides the base, for `maxChain`: the
        /// compacted objects, then the change objects after the newest of them.
        var compactedBytes: Int64 = 0
        var bytesSinceCompaction: Int64 = 0
        var restoreBytes: Int64 { compactedBytes + bytesSinceCompaction }
        /// The base's object size on the targets.
        var baseBytes: Int64
        /// Whether `maxChain` was reported.
        var reportedLong = false
        /// The newest version of each page since the last compacted object, and from which change
        /// object on (with that object's `prev` and first commit).
        var compactor: ChangeCompactor?
        var compactFrom = 1
        var compactPrevious: ChainLink
        var compactFirstCommit: Int64 = 0
        /// Raw frame bytes in the change objects since the last compacted object.
        var compactRawBytes: Int64 = 0
        /// The moment from which the base is the database's state, when it is known exactly:
        /// change object 1 names it.
        var since: Int64?
    }

    /// A base being taken: captured transactions from `boundary` on wait for it. Handed to the
    /// snapshot as its read mark. Its fields are guarded by the protection's `lock`.
    public final class BaseTicket: SnapshotReadMark, @unchecked Sendable {
        let serial: Int
        fileprivate var boundary: Int64
        /// Set when the snapshot's read transaction began exactly at `boundary`: the moment from
        /// which the base is the database's state.
        fileprivate var since: Int64?
        fileprivate weak var protection: ContinuousProtection?

        fileprivate init(serial: Int, boundary: Int64, protection: ContinuousProtection) {
            self.serial = serial
            self.boundary = boundary
            self.protection = protection
        }

        public func beginningRead(_ beginRead: () throws -> Void) throws -> Bool {
            guard let protection else {
                try beginRead()
                return false
            }
            return try protection.markBase(self, beginRead)
        }
    }

    /// The database.
    public let database: DatabaseRef
    /// The settings.
    public let settings: Settings
    private let targets: [(name: String, target: any Target)]
    private let report: @Sendable (ContinuousEvent) -> Void
    private let cancellation: Cancellation

    /// Guards the capture, the base handshake's ticket and boundary, `stopping` and `uploaded`:
    /// held only for short steps, so capture never waits behind a change object being compressed,
    /// encrypted and compacted (a commit's time is when capture copied it: a capture held up
    /// behind shipping stamped commits seconds late, and a restore to a moment in between returned
    /// an older state).
    private let lock = NSLock()
    /// Serializes shipping and guards the chain and `orphanedBefore`; taken before `lock`, never
    /// while holding it.
    private let shipLock = NSLock()
    private let wake = NSCondition()
    private var capture: WALCapture?
    private var spool: ChangeSpool?
    private var chain: Chain?
    /// The spool frame from which captured transactions wait for a base (nil: none is being taken).
    private var pendingBoundary: Int64?
    private var ticketSerial = 0
    /// Transactions before this frame belong to no chain (captured before the first base).
    private var orphanedBefore: Int64 = 0
    /// The spool's frame count when capture last (re)started: transactions from it on are all
    /// that was committed since.
    private var captureStartFrame: Int64 = 0
    private var stopping = false
    private var threads: [JoinableThread<Void>] = []
    private let outbox: String
    /// Per target, the names uploaded (oldest first is not needed: objects go in order).
    private var uploaded: [String: Set<String>] = [:]
    private let outboxChanged = NSCondition()

    /// Prepares protection of `database` shipping to `targets` (those that take changes). Nothing
    /// runs before `start()`.
    public init(database: DatabaseRef, settings: Settings, targets: [(name: String, target: any Target)],
                cancellation: Cancellation, report: @escaping @Sendable (ContinuousEvent) -> Void) {
        self.database = database
        self.settings = settings
        self.targets = targets
        self.cancellation = cancellation
        self.report = report
        outbox = "\(settings.folder)/.outbox"
        for target in targets { uploaded[target.name] = [] }
    }

    /// Opens the capture at the log's current end (what is committed now goes into the next base)
    /// and starts the threads. Throws `CaptureGap` when the database is not in WAL mode.
    public func start() throws {
        try makePrivateDirectory(settings.folder)
        try makePrivateDirectory(outbox)
        let capture = try WALCapture(path: database.path)
        try capture.startAtCurrentEnd()
        let spool = try ChangeSpool(path: "\(settings.folder)/.spool", pageSize: capture.pageSize)
        lock.withLock {
            self.capture = capture
            self.spool = spool
        }
        threads.append(JoinableThread(name: "offsite-capture-\(database.name)") { [self] in captureLoop() })
        threads.append(JoinableThread(name: "offsite-ship-\(database.name)", background: true) { [self] in shipLoop() })
        for target in targets {
            threads.append(JoinableThread(name: "offsite-changes-\(target.name)", background: true) { [self] in
                uploadLoop(target.name, target.target)
            })
        }
    }

    /// Stops the threads after a last capture and shipment (what is in the outbox is uploaded on the
    /// next start if not now).
    public func stop() {
        lock.withLock { stopping = true }
        wake.lock(); wake.broadcast(); wake.unlock()
        outboxChanged.lock(); outboxChanged.broadcast(); outboxChanged.unlock()
        for thread in threads { _ = thread.join() }
        threads = []
    }

    // MARK: Bases

    /// Catches up with what is committed and marks the chain boundary: transactions captured from
    /// now on wait for the base whose snapshot the caller takes next.
    public func prepareBase() -> BaseTicket {
        // Not while an object is being made: it takes every transaction captured meanwhile, and
        // those after the boundary belong to the next chain.
        shipLock.withLock {
            lock.withLock {
                if let capture, let spool { _ = try? capture.step(into: spool) }
                ticketSerial += 1
                let boundary = spool?.frameCount ?? 0
                pendingBoundary = boundary
                return BaseTicket(serial: ticketSerial, boundary: boundary, protection: self)
            }
        }
    }

    /// Runs `beginRead` (the base's snapshot begins its read transaction) between two looks at
    /// the log: caught up just before, and the log's end unchanged just after, the snapshot holds
    /// exactly the transactions captured so far, so the boundary moves there and the ticket learns
    /// the moment from which the base is the database's state — the commit time of the last of
    /// them, or, when none was committed since capture started, the moment just before the read
    /// began. False (and no moment) when a commit came in between or capture could not catch up.
    /// The lock is not held while the read transaction begins: a snapshot on a background thread
    /// must never hold up capture.
    fileprivate func markBase(_ ticket: BaseTicket, _ beginRead: () throws -> Void) throws -> Bool {
        typealias Mark = (capture: WALCapture, salt: [UInt8], maxFrame: UInt32, frames: Int64, lastCommit: Int64?)
        let mark: Mark? = lock.withLock {
            ticket.since = nil
            guard ticket.serial == ticketSerial, pendingBoundary != nil, let capture, let spool,
                  (try? capture.step(into: spool)) != nil, let header = capture.header(),
                  capture.hasCopiedEverything(of: header) else { return nil }
            let newest = spool.newestTransaction
            let lastCommit = newest.flatMap { $0.endFrame > captureStartFrame ? commitMilliseconds($0.committedAt) : nil }
            return (capture, header.salt, header.maxFrame, spool.frameCount, lastCommit)
        }
        let readAt = commitMilliseconds(Date())
        try beginRead()
        guard let mark else { return false }
        return lock.withLock {
            guard ticket.serial == ticketSerial, let pending = pendingBoundary, capture === mark.capture,
                  let after = capture?.header(), after.salt == mark.salt, after.maxFrame == mark.maxFrame,
                  mark.frames >= pending else { return false }
            pendingBoundary = mark.frames
            ticket.boundary = mark.frames
            ticket.since = mark.lastCommit ?? readAt
            return true
        }
    }

    /// The base of `ticket` reached the targets as backup `id`, its uncompressed file having
    /// `checksum`, `bytes` stored: the chain before it ends, the next one starts.
    public func confirmBase(_ ticket: BaseTicket, id: BackupID, checksum: PlaintextChecksum, bytes: Int64) {
        let started: Bool = shipLock.withLock {
            guard lock.withLock({ ticket.serial == ticketSerial && pendingBoundary == ticket.boundary }) else { return false }
            shipLocked(upTo: ticket.boundary)
            let link = ChainLink(base: checksum)
            chain = Chain(base: id, previous: link, baseBytes: max(bytes, 1), compactPrevious: link,
                          since: lock.withLock { ticket.since })
            orphanedBefore = ticket.boundary
            lock.withLock { pendingBoundary = nil }
            return true
        }
        if started { report(.record([.chain(database.name, base: id.description, objects: 0, bytes: 0)])) }
    }

    /// The base of `ticket` was not taken: what waited for it continues the current chain.
    public func abandonBase(_ ticket: BaseTicket) {
        lock.withLock {
            if ticket.serial == ticketSerial { pendingBoundary = nil }
        }
    }

    // MARK: Capture

    private func captureLoop() {
        var lastChange = Date.distantPast
        var lastHeader: WALIndexHeader?
        while true {
            let active = Date().timeIntervalSince(lastChange) < 1
            wake.lock()
            if !lock.withLock({ stopping }) { _ = wake.wait(until: Date().addingTimeInterval(active ? 0.003 : 0.05)) }
            wake.unlock()
            let stop = lock.withLock { stopping }
            lock.lock()
            do {
                if let capture, let spool {
                    let header = capture.header()
                    if header != lastHeader || !active {
                        try capture.step(into: spool)
                        if header != lastHeader { lastChange = Date() }
                        lastHeader = header
                    }
                }
                lock.unlock()
            } catch let gap as CaptureGap {
                lock.unlock()
                restartCapture(after: gap.reason)
            } catch {
                lock.unlock()
                restartCapture(after: describe(error))
            }
            if stop { return }
        }
    }

    /// A gap: what was captured before it is still shipped in the current chain, which ends there;
    /// capture starts again at the log's current end and a new base is asked for.
    private func restartCapture(after reason: String) {
        report(.log(.error, "changes.gap", [("db", database.name), ("reason", reason)]))
        report(.record([.problem("changes-gap", item: database.name, target: nil, reason: reason, at: Date())]))
        var restarted = false
        shipLock.withLock {
            let end = spool?.frameCount ?? 0
            shipLocked(upTo: end)
            chain = nil
            orphanedBefore = end
            captureStartFrame = end
            lock.withLock {
                pendingBoundary = nil
                capture = nil
                do {
                    let fresh = try WALCapture(path: database.path)
                    try fresh.startAtCurrentEnd()
                    capture = fresh
                    restarted = true
                } catch {
                    report(.log(.error, "changes.failed", [("db", database.name), ("reason", describe(error))]))
                }
            }
        }
        report(.baseNeeded(database: database.name, reason: "the chain of changes broke: \(reason)"))
        if !restarted { usleep(500_000) }
    }

    // MARK: Shipping

    private func shipLoop() {
        let interval = settings.interval.timeInterval
        while true {
            let stop = lock.withLock { stopping }
            shipLock.withLock { shipLocked(upTo: lock.withLock { pendingBoundary } ?? Int64.max) }
            if stop { return }
            wake.lock()
            _ = wake.wait(until: Date().addingTimeInterval(interval))
            wake.unlock()
        }
    }

    /// Makes change objects of the committed transactions of the current chain that end at or
    /// before frame `end`, and drops from the spool what no chain will ship. Holds `shipLock`.
    private func shipLocked(upTo end: Int64) {
        guard let spool else { return }
        let waiting = spool.transactions.filter { $0.endFrame <= end }
        guard !waiting.isEmpty else { return }
        guard chain != nil else {
            // Captured before any base: the next base holds it.
            spool.discard(upTo: min(end, orphanedBefore == 0 ? end : orphanedBefore))
            return
        }
        var batch: [ChangeSpool.Transaction] = []
        var frames = 0
        for transaction in waiting where transaction.firstFrame >= orphanedBefore {
            if !batch.isEmpty && (batch.count >= 4000 || frames + transaction.frameCount > (64 << 20) / spool.pageSize) {
                guard writeObject(batch, from: spool) else { return }
                batch = []
                frames = 0
            }
            batch.append(transaction)
            frames += transaction.frameCount
        }
        if !batch.isEmpty { guard writeObject(batch, from: spool) else { return } }
        spool.discard(upTo: waiting.last!.endFrame)
    }

    /// Writes one change object of `transactions` into the outbox; false when it failed (logged;
    /// the transactions stay in the spool and are tried again).
    private func writeObject(_ transactions: [ChangeSpool.Transaction], from spool: ChangeSpool) -> Bool {
        guard var chain else { return false }
        var frame = 0
        let listed = transactions.map { transaction -> ChangeTransaction in
            frame += transaction.frameCount
            return ChangeTransaction(lastFrame: frame, commitTime: commitMilliseconds(transaction.committedAt))
        }
        // Object 1 names the moment its base stands for (never after its first commit: a clock
        // set back would make that claim wrong, and then it is left out).
        let since = chain.nextSequence == 1 ? chain.since.flatMap { $0 <= listed[0].commitTime ? $0 : nil } : nil
        let metadata = ChangeObjectMetadata.change(database: database.name, base: chain.base, sequence: chain.nextSequence,
                                                   previous: chain.previous, pageSize: spool.pageSize, transactions: listed,
                                                   since: since)
        let name = metadata.objectName(format: settings.encryption.format).fileName
        let temporary = "\(outbox)/.\(name).tmp"
        do {
            let file = try AtomicFile(temporaryPath: temporary)
            let counter = CountingSink(next: file)
            do {
                let writer = try ChangeObjectWriter(metadata: metadata, compressionLevel: settings.compressionLevel,
                                                    encryption: settings.encryption, into: counter)
                if chain.compactor == nil {
                    chain.compactor = try ChangeCompactor(pageSize: spool.pageSize, scratchFolder: settings.folder)
                    chain.compactFrom = chain.nextSequence
                    chain.compactPrevious = chain.previous
                    chain.compactFirstCommit = listed.first?.commitTime ?? 0
                }
                var page = [UInt8](repeating: 0, count: spool.pageSize)
                for transaction in transactions {
                    for number in transaction.firstFrame..<transaction.endFrame {
                        let pageNumber = try page.withUnsafeMutableBytes { try spool.readFrame(number, into: $0) }
                        let commit = number == transaction.endFrame - 1 ? transaction.pageCount : 0
                        try page.withUnsafeBytes { bytes in
                            try writer.append(pageNumber: pageNumber, commitSize: commit, page: bytes)
                            try chain.compactor!.append(pageNumber: pageNumber, commitSize: commit, page: bytes)
                        }
                    }
                }
                let digest = try writer.finish()
                try file.commit(as: "\(outbox)/\(name)")
                chain.previous = .object(digest)
                chain.nextSequence += 1
                chain.objects += 1
                chain.shippedBytes += counter.count
                chain.bytesSinceCompaction += counter.count
                chain.compactRawBytes += Int64(frame) * Int64(spool.pageSize)
                let databaseBytes = Int64(transactions.last!.pageCount) * Int64(spool.pageSize)
                if chain.compactRawBytes >= settings.compactAfterBytes ?? max(16 << 20, databaseBytes / 4) {
                    writeCompacted(&chain, lastDigest: digest, lastCommit: listed.last!.commitTime)
                }
            } catch {
                file.discard()
                throw error
            }
        } catch {
            report(.log(.error, "changes.failed", [("db", database.name), ("stage", "object"), ("reason", describe(error))]))
            return false
        }
        self.chain = chain
        report(.record([.chain(database.name, base: chain.base.description, objects: chain.objects, bytes: chain.shippedBytes)]))
        if !chain.reportedLong && isLong(chain) {
            self.chain?.reportedLong = true
            report(.baseNeeded(database: database.name, reason: "the chain of changes reached maxChain"))
        }
        outboxChanged.lock(); outboxChanged.broadcast(); outboxChanged.unlock()
        return true
    }

    /// Writes the compacted object of the change objects since the last one (the newest version of
    /// each page, one transaction) into the outbox, so a restore reads it instead of them; a failure
    /// is logged and costs restore speed only.
    private func writeCompacted(_ chain: inout Chain, lastDigest: ChainDigest, lastCommit: Int64) {
        guard let compactor = chain.compactor else { return }
        chain.compactor = nil
        chain.compactRawBytes = 0
        let metadata = compactor.metadata(database: database.name, base: chain.base, from: chain.compactFrom,
                                          to: chain.nextSequence - 1, previous: chain.compactPrevious, last: lastDigest,
                                          commitTime: lastCommit)
        let name = metadata.objectName(format: settings.encryption.format, firstCommit: chain.compactFirstCommit).fileName
        let temporary = "\(outbox)/.\(name).tmp"
        do {
            let file = try AtomicFile(temporaryPath: temporary)
            do {
                _ = try compactor.write(metadata: metadata, compressionLevel: settings.compressionLevel,
                                        encryption: settings.encryption, into: file)
                let written = file.byteCount
                try file.commit(as: "\(outbox)/\(name)")
                // A restore reads this object instead of the change objects it covers.
                chain.compactedBytes += written
                chain.bytesSinceCompaction = 0
            } catch {
                file.discard()
                throw error
            }
        } catch {
            report(.log(.warn, "changes.compaction.failed", [("db", database.name), ("reason", describe(error))]))
        }
    }

    private func isLong(_ chain: Chain) -> Bool {
        switch settings.maxChain {
        case let .share(share): return Double(chain.restoreBytes) >= share * Double(chain.baseBytes)
        case let .count(count): return chain.objects >= count
        }
    }

    // MARK: Uploading

    /// The outbox's objects, in chain order (names sort by base, then sequence).
    private func outboxObjects() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: outbox)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    private func uploadLoop(_ name: String, _ target: any Target) {
        var failures = 0
        var oldestWaiting: Date?
        while true {
            let stop = lock.withLock { stopping }
            let pending = outboxObjects().filter { object in !lock.withLock { uploaded[name]!.contains(object) } }
            let oldest = pending.first.flatMap { ChangeObjectName(fileName: $0) }.map { Date(timeIntervalSince1970: Double($0.firstCommit) / 1000) }
            if oldest != oldestWaiting {
                oldestWaiting = oldest
                report(.record([.replication(database.name, target: name, oldestWaiting: oldest)]))
            }
            guard let object = pending.first else {
                if stop { return }
                waitForObjects(seconds: 1)
                continue
            }
            do {
                try upload(object, to: target)
                if let parsed = ChangeObjectName(fileName: object) {
                    report(.log(.debug, "changes.shipped", [("db", database.name), ("target", name), ("object", object),
                                                            ("firstCommit", String(parsed.firstCommit)),
                                                            ("lastCommit", String(parsed.lastCommit)),
                                                            ("shippedAt", String(milliseconds(of: Date())))]))
                }
                failures = 0
                lock.withLock { uploaded[name]!.insert(object) }
                removeIfEverywhere(object)
            } catch {
                failures += 1
                report(.log(.error, "changes.upload.failed", [("db", database.name), ("target", name), ("object", object),
                                                              ("reason", describe(error)), ("failures", String(failures))]))
                if stop || cancellation.isCancelled { return }
                waitForObjects(seconds: min(pow(2, Double(failures - 1)), 60))
            }
        }
    }

    private func waitForObjects(seconds: TimeInterval) {
        outboxChanged.lock()
        _ = outboxChanged.wait(until: Date().addingTimeInterval(seconds))
        outboxChanged.unlock()
    }

    private func upload(_ object: String, to target: any Target) throws {
        let path = "\(outbox)/\(object)"
        let upload = try target.makeUpload(key: "\(database.name)/\(object)", expectedSize: try? fileSize(at: path))
        do {
            try readFile(at: path, into: CancellableSink(next: upload, cancellation: cancellation))
            try upload.finish()
            try upload.commit()
        } catch {
            upload.abort()
            throw error
        }
    }

    /// Removes `object` from the outbox once every target holds it.
    private func removeIfEverywhere(_ object: String) {
        let everywhere = lock.withLock { uploaded.values.allSatisfy { $0.contains(object) } }
        guard everywhere else { return }
        unlink("\(outbox)/\(object)")
        lock.withLock { for key in uploaded.keys { uploaded[key]!.remove(object) } }
    }
}
