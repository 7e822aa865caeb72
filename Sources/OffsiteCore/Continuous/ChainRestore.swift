import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Restore to a moment (docs/CONTINUOUS.md §6): choose the chain and its objects from one listing,
// download the base with the restore pipeline, then every object in order, checking each link, and
// write the pages into the restored file in one pass.

/// `2026-12-03T12:04:59.123Z` for milliseconds since 1970: what `--at` accepts back.
public func formatInstant(_ milliseconds: Int64) -> String {
    let text = ChangeObjectName.formatCommitTime(milliseconds)
    let bytes = Array(text.utf8)
    func part(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
    return "\(part(0..<4))-\(part(4..<6))-\(part(6..<8))T\(part(9..<11)):\(part(11..<13)):\(part(13..<15)).\(part(16..<19))Z"
}

/// Milliseconds since 1970 of `date`, rounded down (after rounding to the microsecond, so that a
/// time parsed from `…59.123Z` is not taken for `…59.122999`).
public func milliseconds(of date: Date) -> Int64 {
    let microseconds = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    return microseconds >= 0 ? microseconds / 1000 : (microseconds - 999) / 1000
}

/// A chain that cannot be followed to the moment asked for.
public enum ChainError: UserFacingError, Equatable {
    /// The listing shows a missing link before the moment.
    case missingLink(database: String, target: String, base: BackupID, link: MissingLink, time: Int64)
    /// An object did not follow its chain when it was read: the wrong link, the wrong metadata, damage.
    case brokenLink(database: String, target: String, object: String, detail: String, pointBefore: Int64)
    /// No chain says what the database held at the moment: it falls after the end of one chain
    /// and before the next full backup (the agent may have been down, or the capture broken), or
    /// within the second a full backup was taken in, which may hold later commits.
    case unknownMoment(database: String, target: String, time: Int64, why: String, before: Int64?, after: Int64?)

    public var message: String {
        switch self {
        case let .missingLink(database, target, base, link, time):
            let what: String
            switch link.reason {
            case .absent: what = "change object \(link.sequence) of the chain of \(base) is missing"
            case .ambiguous: what = "the chain of \(base) has more than one change object numbered \(link.sequence)"
            case .baseGone: what = "the full backup \(base) that the chain starts from is missing"
            }
            let after = link.pointBefore.map { " after \(formatInstant($0))" } ?? ""
            return "cannot restore \(database) to \(formatInstant(time)) from target \(target): \(what), so no moment\(after) in that chain can be restored"
        case let .brokenLink(database, target, object, detail, _):
            return "cannot restore \(database) from target \(target): \(object) does not follow its chain: \(detail)"
        case let .unknownMoment(database, target, time, why, _, _):
            return "cannot restore \(database) to \(formatInstant(time)) from target \(target) exactly: \(why)"
        }
    }

    /// Why an unknown moment is not known (empty for the other cases).
    public var whyText: String {
        if case let .unknownMoment(_, _, _, why, _, _) = self { return why }
        return ""
    }

    public var hint: String? {
        let before: Int64?
        switch self {
        case let .missingLink(_, _, _, link, _): before = link.pointBefore
        case let .brokenLink(_, _, _, _, point): before = point
        case let .unknownMoment(_, _, _, _, earlier, later):
            let choices = [earlier.map { "--at \(formatInstant($0)) (the newest moment before it that is known)" },
                           later.map { "--at \(formatInstant($0)) (the first moment after it that is known)" }].compactMap { $0 }
            return (choices.isEmpty ? "" : "restore " + choices.joined(separator: " or ") + "; ")
                + "`offsite list --db NAME` shows the windows"
        }
        guard let before else { return "run `offsite list --db NAME` to see the moments that can be restored" }
        return "restore --at \(formatInstant(before)) (the newest moment before it), or a moment after the next full backup; "
            + "`offsite list --db NAME` shows the windows"
    }
}

/// What a restore reads: a full backup as it was, or a base and change objects up to a moment.
public enum RestoreSource: Sendable, Equatable {
    /// A full backup alone.
    case backup(RemoteBackup)
    /// A base and the change objects after it.
    case chain(ChainRestorePlan)

    /// The full backup downloaded first.
    public var base: RemoteBackup {
        switch self {
        case let .backup(backup): return backup
        case let .chain(plan): return plan.base
        }
    }
}

/// Chooses what to restore of `database` from one listing of `target`:
/// - `--backup ID`: that full backup as it was;
/// - `--at TIME`: the chain whose base is the newest at or before TIME, up to the last transaction
///   committed at or before TIME (within the second of a base's id, whose exact moment is not known,
///   an older chain that reaches TIME exactly is preferred); after the chain's newest transaction,
///   its end (and `warn` says so); after a missing link, an error naming it and the newest moment
///   before it; with no change objects, the full backup as before;
/// - `latest`: the newest moment any chain reaches, when it is newer than the newest full backup.
/// `latest` never takes a base more than a day in the future (see `futureBackups`).
public func chooseRestoreSource(from listing: ContinuousListing, database: String, selection: BackupSelection,
                                target: String, now: Date = Date(), warn: (String) -> Void = { _ in }) throws -> RestoreSource {
    let mine = listing.of(database: database)
    switch selection {
    case .id:
        return .backup(try selectBackup(from: mine.backups, database: database, selection: selection, target: target, now: now))
    case .latest:
        let newest = try selectBackup(from: mine.backups, database: database, selection: .latest, target: target, now: now)
        let future = Set(futureBackups(mine.backups, now: now).map(\.id))
        var best: (plan: ChainRestorePlan, chain: Chain)?
        for chain in findChains(in: mine, database: database) where chain.base != nil && !future.contains(chain.baseID) {
            guard let plan = chain.planToEnd() else { continue }
            if best == nil || (plan.point, chain.baseID) > (best!.plan.point, best!.chain.baseID) { best = (plan, chain) }
        }
        guard let best, !best.plan.steps.isEmpty, best.plan.point > newest.id.seconds * 1000 else { return .backup(newest) }
        if let gap = best.chain.window.gaps.last(where: { $0.pointBefore == best.plan.point }) {
            warn(missingLinkWarning(database: database, target: target, base: best.chain.baseID, link: gap))
        }
        return .chain(best.plan)
    case let .at(date):
        let time = milliseconds(of: date)
        let chains = findChains(in: mine, database: database).filter { $0.base != nil }
        let candidates = chains.filter { $0.earliest <= time }.sorted { $0.baseID > $1.baseID }
        guard var chain = candidates.first else {
            return .backup(try selectBackup(from: mine.backups, database: database, selection: selection, target: target, now: now))
        }
        // With change objects on the target, a moment is restored only when a chain says what the
        // database held then; with full backups alone, --at means the newest one before it.
        let continuous = chains.contains(where: \.hasChanges)
        let next = chains.filter { $0.earliest > time }.min { $0.baseID < $1.baseID }
        var resolution = chain.resolve(time)
        if continuous {
            // Any chain that reaches the moment says exactly what the database held then (a full
            // backup taken by hand beside the agent starts no chain of its own; the agent's older
            // chain goes on past it). Unless change object 1 says from which moment on the base
            // stands for the database, the newest chain's base is left out within the second it
            // was taken in: it may hold commits made after `time`.
            let reaching = candidates.lazy.compactMap { candidate -> (Chain, ChainRestorePlan)? in
                guard case let .exact(plan) = candidate.resolve(time),
                      candidate.since != nil || candidate.baseID != chain.baseID || time >= candidate.baseTime + 1000 else { return nil }
                return (candidate, plan)
            }.first
            if let (reached, plan) = reaching {
                chain = reached
                resolution = .exact(plan)
            } else if let since = chain.since, time < since {
                throw ChainError.unknownMoment(
                    database: database, target: target, time: time,
                    why: "the full backup \(chain.baseID) holds the commits made until \(formatInstant(since)), after that moment",
                    before: candidates.count > 1 ? candidates[1].planToEnd()?.point : nil, after: since)
            } else if chain.since == nil && time < chain.baseTime + 1000 {
                throw ChainError.unknownMoment(
                    database: database, target: target, time: time,
                    why: "the full backup \(chain.baseID) was taken during that second and may hold later commits",
                    before: candidates.count > 1 ? candidates[1].planToEnd()?.point : nil, after: chain.baseTime + 1000)
            }
        }
        switch resolution {
        case let .exact(plan):
            return plan.steps.isEmpty ? .backup(plan.base) : .chain(plan)
        case let .afterEnd(plan):
            if continuous, let next {
                throw ChainError.unknownMoment(
                    database: database, target: target, time: time,
                    why: "the chain of \(chain.baseID) ends at its last change, \(formatInstant(plan.point)), and the next full "
                        + "backup, \(next.baseID), came later; what was committed in between (if anything) is not on the target",
                    before: plan.point, after: next.since ?? next.baseTime + 1000)
            }
            if chain.hasChanges {
                warn("the newest change of \(database) on target \(target) in the chain of \(chain.baseID) was committed at "
                     + "\(formatInstant(plan.point)), before \(formatInstant(time)); restoring that moment")
            }
            return plan.steps.isEmpty ? .backup(plan.base) : .chain(plan)
        case let .missing(link):
            throw ChainError.missingLink(database: database, target: target, base: chain.baseID, link: link, time: time)
        case .outside:
            return .backup(try selectBackup(from: mine.backups, database: database, selection: selection, target: target, now: now))
        }
    }
}

/// One line saying that a chain stops at a missing link.
func missingLinkWarning(database: String, target: String, base: BackupID, link: MissingLink) -> String {
    let what = link.reason == .ambiguous ? "has more than one change object numbered \(link.sequence)"
        : "misses change object \(link.sequence)"
    return "the chain of \(base) of \(database) on target \(target) \(what): the changes after "
        + "\(link.pointBefore.map(formatInstant) ?? "its base") cannot be restored"
}

/// What applying a chain did.
public struct ChainApplication: Sendable, Equatable {
    /// Objects applied (whole or in part).
    public var objects: Int
    /// Of those, compacted objects (each one transaction standing for many).
    public var compactedObjects = 0
    /// Transactions applied.
    public var transactions: Int
    /// Frames written into the file.
    public var frames: Int
    /// The moment restored: the commit time of the last transaction applied (or the base's time).
    public var point: Int64
}

/// Writes the frames of a chain's objects into a restored base file, checking every link on the
/// way: object 1 (or a compaction from 1) must name the base's CRC-32 and length, every later
/// object the SHA-256 of the WAL bytes of the one before, with its sequence number next, its
/// metadata matching its name, the database, the base and the page size. Each frame's page goes to
/// its place in the file (the work of a checkpoint, in one pass) through a 4 MiB cache of the
/// newest pages, and at the end the file is cut to the size the last transaction applied gives.
/// Memory is that cache and one frame per object read.
final class ChainApplier {
    private let path: String
    private let folder: String
    private let descriptor: Int32
    private let database: String
    private let base: BackupID
    private let target: String
    private let pageSize: Int
    private var link: ChainLink
    private var nextSequence = 1
    private var databaseSize: UInt32?
    private var fileEnd: Int64
    private var nextSpaceCheck: Int64
    private let pages: PageCache
    private(set) var application: ChainApplication

    /// Opens the restored base at `path`, whose uncompressed bytes have `baseChecksum` and stand
    /// for the database at moment `start` (milliseconds).
    init(path: String, base: RemoteBackup, baseChecksum: PlaintextChecksum, target: String, start: Int64) throws {
        self.path = path
        folder = parentDirectory(of: path)
        database = base.database
        self.base = base.id
        self.target = target
        link = ChainLink(base: baseChecksum)
        let header = try readPrefix(of: path, count: 100)
        guard header.count == 100 else { throw RestoreError.verificationFailed(detail: "the base is not a SQLite database") }
        let rawPageSize = Int(header[16]) << 8 | Int(header[17])
        pageSize = rawPageSize == 1 ? 65536 : rawPageSize
        pages = PageCache(pageSize: pageSize)
        descriptor = try openDescriptor(path, O_RDWR, operation: "open")
        fileEnd = try fileSize(at: path)
        nextSpaceCheck = fileEnd
        application = ChainApplication(objects: 0, transactions: 0, frames: 0, point: start)
    }

    deinit {
        close(descriptor)
    }

    /// Downloads the object of `step` from `target` and applies it (all its transactions, or those
    /// committed at or before the step's time).
    func apply(_ step: ChainStep, from target: any Target, keys: DecryptionKeys, progress: ProgressMeter?,
               cancellation: Cancellation?) throws {
        let object = step.object
        let before = application.point
        func broken(_ detail: String) -> ChainError {
            .brokenLink(database: database, target: self.target, object: object.key, detail: detail, pointBefore: before)
        }
        var limit: Int?
        var appliedTransactions: [ChangeTransaction] = []
        var transactionIndex = 0
        // Decryption and decompression here, hashing, checking and writing on a second thread.
        let reader = try ChangeObjectReader(format: object.name.format, keys: keys, pipelined: true, onMetadata: { [self] metadata in
            try check(metadata, of: object, broken: broken)
            if case let .applyUntil(_, time) = step {
                let last = metadata.transactions.lastIndex { $0.commitTime <= time }
                appliedTransactions = last.map { Array(metadata.transactions[...$0]) } ?? []
            } else {
                appliedTransactions = metadata.transactions
            }
            limit = appliedTransactions.last?.lastFrame ?? 0
            return limit!
        }, onFrame: { [self] frame, page in
            try write(page, as: frame.pageNumber)
            application.frames += 1
            if frame.isCommit {
                databaseSize = frame.commitSize
                application.transactions += 1
                application.point = appliedTransactions[transactionIndex].commitTime
                transactionIndex += 1
            }
        })
        var head: any ByteSink = reader
        if let progress { head = ProgressSink(next: head, meter: progress) }
        if let cancellation { head = CancellableSink(next: head, cancellation: cancellation) }
        do {
            defer { reader.abandon() }
            try target.download(key: object.key, into: head)
            try head.finish()
        } catch let error as ChainError {
            throw error
        } catch let error as TargetError {
            if case .notFound = error { throw broken("it is not on the target any more") }
            throw error
        } catch let error as OperationCancelled {
            throw error
        } catch let error as RestoreError {
            throw error
        } catch let error as FileIOError {
            throw error
        } catch let error as UserFacingError {
            throw broken(error.message)
        }
        guard let metadata = reader.metadata else { throw broken("it could not be read whole") }
        application.objects += 1
        switch metadata.kind {
        case .change:
            guard let digest = reader.digest else { throw broken("it could not be read whole") }
            link = .object(digest)
        case .compacted:
            link = .object(metadata.last!)
            application.compactedObjects += 1
        }
        nextSequence = metadata.kind.sequences.upperBound + 1
    }

    /// Cuts the file to the size the last transaction applied gives.
    func finish() throws {
        try flushPages()
        guard let databaseSize else { return }
        let size = Int64(databaseSize) * Int64(pageSize)
        while ftruncate(descriptor, off_t(size)) != 0 {
            if errno != EINTR { throw FileIOError(operation: "truncate", path: path, code: errno) }
        }
    }

    /// Throws unless `metadata` is that of the object the chain expects next.
    private func check(_ metadata: ChangeObjectMetadata, of object: RemoteChangeObject,
                       broken: (String) -> ChainError) throws {
        guard metadata.database == database else { throw broken("it belongs to database \(metadata.database)") }
        guard metadata.base == base else { throw broken("it belongs to the chain of \(metadata.base)") }
        guard metadata.kind == object.name.kind else { throw broken("its metadata covers other objects than its name says") }
        guard metadata.kind.sequences.lowerBound == nextSequence else {
            throw broken("it starts at object \(metadata.kind.sequences.lowerBound), the chain is at \(nextSequence)")
        }
        guard metadata.pageSize == pageSize else { throw broken("its page size \(metadata.pageSize) is not the base's \(pageSize)") }
        guard metadata.previous == link else {
            switch link {
            case .base: throw broken("it does not link to the base as it was downloaded (\(metadata.previous) expected \(link))")
            case .object: throw broken("it does not link to the object before it (its digest differs)")
            }
        }
        let times = (metadata.transactions.first?.commitTime, metadata.transactions.last?.commitTime)
        switch metadata.kind {
        case .change:
            guard times.0 == object.name.firstCommit, times.1 == object.name.lastCommit else {
                throw broken("its commit times are not those of its name")
            }
            guard metadata.since == object.name.since else {
                throw broken("the moment its name says the base stands for is not that of its metadata")
            }
        case .compacted:
            guard times.1 == object.name.lastCommit else { throw broken("its last commit time is not that of its name") }
        }
    }

    /// Puts one page at its place (through the page cache), checking the disk keeps
    /// `restoreFreeSpaceMargin` free as the file grows.
    private func write(_ page: UnsafeRawBufferPointer, as pageNumber: UInt32) throws {
        let end = Int64(pageNumber) * Int64(pageSize)
        if end > fileEnd {
            if end >= nextSpaceCheck {
                let needed = end - fileEnd
                if let free = freeSpace(of: folder), free - needed < restoreFreeSpaceMargin {
                    throw RestoreError.diskFull(folder: folder, needed: needed, free: free)
                }
                nextSpaceCheck = end + (8 << 20)
            }
            fileEnd = end
        }
        if !pages.store(page, as: pageNumber) {
            try flushPages()
            _ = pages.store(page, as: pageNumber)
        }
    }

    /// Writes the cached pages into the file, in page order, and empties the cache.
    private func flushPages() throws {
        try pages.drain { pageNumber, page in
            let offset = Int64(pageNumber - 1) * Int64(pageSize)
            var written = 0
            while written < page.count {
                let result = pwrite(descriptor, page.baseAddress! + written, page.count - written, off_t(offset + Int64(written)))
                if result < 0 {
                    if errno == EINTR { continue }
                    throw FileIOError(operation: "write", path: path, code: errno)
                }
                written += result
            }
        }
    }
}

/// The newest version of up to a fixed number of pages (4 MiB) waiting to be written: the hot
/// pages of a database (a table's last leaf, its indexes, a counter) are rewritten by nearly every
/// transaction, and through the cache each is written once per flush instead of once per frame.
private final class PageCache {
    private let pageSize: Int
    private let capacity: Int
    private let arena: UnsafeMutableRawPointer
    private var slots: [UInt32: Int] = [:]

    init(pageSize: Int, bytes: Int = 4 << 20) {
        self.pageSize = pageSize
        capacity = max(bytes / pageSize, 1)
        arena = .allocate(byteCount: capacity * pageSize, alignment: 16)
        slots.reserveCapacity(capacity)
    }

    deinit {
        arena.deallocate()
    }

    /// Keeps `page` as page `pageNumber`; false when the cache is full (and it is not kept).
    func store(_ page: UnsafeRawBufferPointer, as pageNumber: UInt32) -> Bool {
        let slot: Int
        if let existing = slots[pageNumber] {
            slot = existing
        } else {
            guard slots.count < capacity else { return false }
            slot = slots.count
            slots[pageNumber] = slot
        }
        (arena + slot * pageSize).copyMemory(from: page.baseAddress!, byteCount: pageSize)
        return true
    }

    /// Hands every page to `body` in page order, then empties the cache.
    func drain(_ body: (UInt32, UnsafeRawBufferPointer) throws -> Void) throws {
        for (pageNumber, slot) in slots.sorted(by: { $0.key < $1.key }) {
            try body(pageNumber, UnsafeRawBufferPointer(start: arena + slot * pageSize, count: pageSize))
        }
        slots.removeAll(keepingCapacity: true)
    }
}

/// Restores `plan` into a new temporary file in `folder`: the base through the restore pipeline
/// (its uncompressed CRC-32 and length counted as it inflates, for object 1's link), then every
/// object applied in order, then the check. Nothing is left behind on failure.
func fetchChainVerified(_ plan: ChainRestorePlan, from target: any Target, keys: DecryptionKeys, check: IntegrityCheck,
                        folder: String, progress: ProgressMeter?, cancellation: Cancellation? = nil)
    throws -> (file: RestoredFile, application: ChainApplication) {
    progress?.total = plan.downloadBytes
    var application: ChainApplication?
    let file = try fetchVerified(plan.base, from: target, keys: keys, check: check, folder: folder, progress: progress,
                                 cancellation: cancellation) { path, checksum in
        let applier = try ChainApplier(path: path, base: plan.base, baseChecksum: checksum, target: target.name,
                                       start: plan.steps.first?.object.name.since ?? plan.base.id.seconds * 1000)
        for step in plan.steps {
            try applier.apply(step, from: target, keys: keys, progress: progress, cancellation: cancellation)
        }
        try applier.finish()
        application = applier.application
    }
    return (file, application!)
}

/// Restores `source` into a new temporary file in `folder` and checks it.
func fetchVerified(_ source: RestoreSource, from target: any Target, keys: DecryptionKeys, check: IntegrityCheck,
                   folder: String, progress: ProgressMeter?, cancellation: Cancellation? = nil)
    throws -> (file: RestoredFile, application: ChainApplication?) {
    switch source {
    case let .backup(backup):
        return (try fetchVerified(backup, from: target, keys: keys, check: check, folder: folder, progress: progress,
                                  cancellation: cancellation), nil)
    case let .chain(plan):
        let result = try fetchChainVerified(plan, from: target, keys: keys, check: check, folder: folder, progress: progress,
                                            cancellation: cancellation)
        return (result.file, result.application)
    }
}
