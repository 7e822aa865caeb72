import Foundation

/// A database offsite protects: its name (file name without extension) and path.
public struct DatabaseRef: Sendable, Equatable {
    /// `crm` for `/data/crm.db`.
    public var name: String
    /// The live database file.
    public var path: String

    /// Creates a reference; the name defaults to the file name without its extension.
    public init(path: String, name: String? = nil) {
        self.path = path
        self.name = name ?? DatabaseRef.name(forPath: path)
    }

    /// The file name without its extension: `/data/crm.db` → `crm`.
    public static func name(forPath path: String) -> String {
        let file = (path as NSString).lastPathComponent
        let stem = (file as NSString).deletingPathExtension
        return stem.isEmpty ? file : stem
    }
}

/// Everything one backup needs: what to snapshot, how to encode it, where to ship it.
public struct BackupJob {
    /// The database to back up.
    public var database: DatabaseRef
    /// Why the backup is taken.
    public var kind: BackupKind
    /// Where to ship it; may be empty for a local-only snapshot.
    public var targets: [any Target]
    /// How to encrypt it.
    public var encryption: PayloadEncryption
    /// gzip level 0–9.
    public var compressionLevel: Int
    /// The check the snapshot must pass before it is shipped.
    public var check: IntegrityCheck
    /// The local rotation folder (`LOCALDIR`); the snapshot is kept there as `DBNAME/ID.sqlite3`.
    /// Without one the snapshot goes to a temporary folder and is deleted afterwards.
    public var localFolder: String?
    /// What the local rotation keeps; nil keeps the default, the last 24 hourly.
    public var localKeep: RetentionPolicy?
    /// Raised to stop the backup between chunks (the agent is stopping); nil: never.
    public var cancellation: Cancellation?
    /// Told why the backup was taken again without reading the copy while it was made (rare: the
    /// copy started over, or what was shipped differed from the checked copy); nil: not told.
    public var onRetake: ((String) -> Void)?
    /// Tests only: flips the first byte compressed while the copy is being made, standing for a page
    /// SQLite rewrote after it was read; the check of the shipped bytes must catch it.
    var flipsFirstStreamedByte = false
    /// Told the backup's id as soon as it is chosen, before the snapshot starts (a manual backup
    /// requested over HTTP answers with it); nil: nobody asks.
    public var onIDChosen: (@Sendable (BackupID) -> Void)?
    /// Told when the snapshot's read transaction begins (WAL mode), so continuous protection can
    /// tell exactly which commits the base holds; nil: nobody asks.
    public var readMark: (any SnapshotReadMark)?

    /// Creates a job.
    public init(database: DatabaseRef, kind: BackupKind, targets: [any Target], encryption: PayloadEncryption,
                compressionLevel: Int = 6, check: IntegrityCheck = .quick, localFolder: String? = nil,
                localKeep: RetentionPolicy? = nil, cancellation: Cancellation? = nil) {
        self.database = database
        self.kind = kind
        self.targets = targets
        self.encryption = encryption
        self.compressionLevel = compressionLevel
        self.check = check
        self.localFolder = localFolder
        self.localKeep = localKeep
        self.cancellation = cancellation
    }
}

/// How one target's upload went.
public struct UploadResult {
    /// The target's name.
    public var target: String
    /// The object's key.
    public var key: String
    /// Bytes stored, when it succeeded.
    public var size: Int64?
    /// Why it failed, when it did.
    public var error: Error?
}

/// What a backup did.
public struct BackupReport {
    /// The backup's id.
    public var id: BackupID
    /// The snapshot it shipped.
    public var snapshot: SnapshotInfo
    /// Where the snapshot stays in the local rotation, if there is one.
    public var localPath: String?
    /// One result per target, in the job's order.
    public var uploads: [UploadResult]
    /// Local rotation files removed by `local.keep`.
    public var prunedLocal: [String]
    /// Local rotation files `local.keep` removes that could not be removed, each with why.
    public var localPruneFailures: [String] = []
    /// The CRC-32 and length of the uncompressed database file shipped (nil without targets): what
    /// the first change object of a chain on this backup names as its `prev`.
    public var shippedChecksum: PlaintextChecksum?

    /// Whether every upload succeeded.
    public var succeeded: Bool { uploads.allSatisfy { $0.error == nil } }
}

/// Takes one backup: a consistent snapshot checked by `job.check`, kept in the local rotation,
/// compressed and encrypted once, and streamed to every target at the same time. A failing target
/// does not stop the others; its error is in the report. Throws when the snapshot itself fails.
///
/// The stages overlap: the copy is made on a thread of its own, and read behind it as its steps
/// land (`SnapshotProgress`), compressed on every core (`ParallelGzipCompressor`) and encrypted and
/// uploaded on another thread (`ThreadedSink`); as soon as the copy is complete, its integrity
/// check starts on the copying thread while compression finishes. Nothing becomes visible before
/// the check has passed: only then does the snapshot get its final name in the local rotation and
/// are the uploads committed; when it fails, every upload is aborted and the copy removed.
public func runBackup(_ job: BackupJob, now: () -> Date = Date.init) throws -> BackupReport {
    try runBackup(job, now: now, streaming: true)
}

/// `runBackup`; with `streaming`, the copy is compressed while it is being made, else only once
/// it is complete.
func runBackup(_ job: BackupJob, now: () -> Date, streaming: Bool) throws -> BackupReport {
    let keepsLocal = job.localFolder != nil
    let folder: String
    if let local = job.localFolder {
        folder = "\(local)/\(job.database.name)"
        try makePrivateDirectory(local)
        try makePrivateDirectory(folder)
    } else {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("offsite-\(UUID().uuidString)").path
        try makePrivateDirectory(folder)
    }
    defer { if !keepsLocal { try? FileManager.default.removeItem(atPath: folder) } }

    let id = chooseBackupID(job: job, folder: folder, now: now)
    job.onIDChosen?(id)
    var snapshotter = Snapshotter()
    snapshotter.durable = keepsLocal
    snapshotter.readMark = job.readMark
    let snapshotJob = BackgroundSnapshot(snapshotter: snapshotter, database: job.database.path,
                                         finalPath: "\(folder)/\(id).sqlite3", check: job.check, streaming: streaming,
                                         checksums: !job.targets.isEmpty)
    let expectedCopySize: Int64
    do {
        expectedCopySize = try snapshotJob.progress.waitForStart()
    } catch {
        _ = try? snapshotJob.result()
        throw error
    }

    let key = RemoteBackup.key(database: job.database.name, id: id, format: job.encryption.format)
    var uploads: [UploadResult] = job.targets.map { UploadResult(target: $0.name, key: key) }
    var started: [(index: Int, upload: any TargetUpload)] = []
    // The object is about the compressed size; the snapshot's size (plus gzip's and age's worst
    // case of a few per mille on incompressible data) bounds it, so S3 can pick small parts.
    let expectedSize: Int64? = expectedCopySize > 0 ? expectedCopySize + expectedCopySize / 100 + (1 << 20) : nil
    for (index, target) in job.targets.enumerated() {
        do { started.append((index, try target.makeUpload(key: key, expectedSize: expectedSize))) } catch { uploads[index].error = error }
    }
    var streamError: Error?
    var shipped: PlaintextChecksum?
    var fanOut: FanOutSink?
    var counter: CountingSink?
    if !started.isEmpty {
        let fan = FanOutSink(started.map(\.upload))
        let count = CountingSink(next: fan)
        fanOut = fan
        counter = count
        // Reading, like compressing and encrypting, only takes CPU time the application leaves:
        // of the whole backup, only the copy runs at the application's own priority.
        let streamed = JoinableThread.run(name: "offsite-read", background: true) {
            try streamSnapshot(snapshotJob.progress, job: job, spillFolder: folder, into: count)
        }
        switch streamed {
        case let .success(checksum): shipped = checksum
        case let .failure(error): streamError = error
        }
    }

    // Nothing is visible yet; the check decides whether anything ever will be.
    let snapshot: SnapshotInfo
    var shippedChecksum: PlaintextChecksum?
    do {
        let (copy, checked, copied) = try snapshotJob.result()
        shippedChecksum = shipped ?? copied
        do {
            // What was shipped was read while SQLite wrote the copy: it must be, byte for byte, the
            // copy that passed the check.
            if let shipped, let copied, streamError == nil, copied != shipped {
                throw SnapshotError.shippedDiffers(shipped: shipped, copy: copied)
            }
            snapshot = try snapshotter.install(copy, checked: checked)
        } catch {
            snapshotter.discard(copy)
            throw error
        }
    } catch {
        for entry in started { entry.upload.abort() }
        if streaming, let reason = error as? SnapshotError, reason.isRetakenWithoutOverlap {
            // The copy changed under the reader; take it again, reading it only once it is whole.
            job.onRetake?(reason.message)
            var again = job
            again.flipsFirstStreamedByte = false
            return try runBackup(again, now: now, streaming: false)
        }
        throw error
    }

    if let fanOut, let counter {
        for (position, entry) in started.enumerated() {
            if let failure = fanOut.failures[position] ?? streamError {
                entry.upload.abort()
                uploads[entry.index].error = failure
                continue
            }
            do {
                try entry.upload.commit()
                uploads[entry.index].size = counter.count
            } catch {
                entry.upload.abort()
                uploads[entry.index].error = error
            }
        }
    }

    var pruned = (removed: [String](), failures: [String]())
    if keepsLocal {
        pruned = pruneLocalRotation(folder: folder, keep: job.localKeep ?? LocalConfig.defaultKeep)
    }
    return BackupReport(id: id, snapshot: snapshot, localPath: keepsLocal ? snapshot.path : nil, uploads: uploads,
                        prunedLocal: pruned.removed, localPruneFailures: pruned.failures, shippedChecksum: shippedChecksum)
}

/// Streams the snapshot copy, as it is being made, through compression (every core) and, on a
/// thread of its own, encryption into `sink`; returns the checksum of the plaintext it
/// compressed, or throws what stopped it. When it returns, no thread touches `sink` any more.
private func streamSnapshot(_ progress: SnapshotProgress, job: BackupJob, spillFolder: String,
                            into sink: any ByteSink) throws -> PlaintextChecksum {
    let encrypted = try makeEncryptor(encryption: job.encryption, into: sink)
    // Encryption and upload never hold up compression, up to the queue's capacity.
    let handOff = ThreadedSink(next: encrypted, name: "offsite-encrypt-upload", background: true)
    do {
        let compressor = try ParallelGzipCompressor(level: job.compressionLevel, background: true, next: handOff)
        var encoder: any ByteSink = compressor
        if job.flipsFirstStreamedByte { encoder = FirstByteFlipper(next: encoder) }
        if let cancellation = job.cancellation { encoder = CancellableSink(next: encoder, cancellation: cancellation) }
        // The first page of a copy in progress is final only at its end: the first block is then
        // compressed last and the members after it wait (in order, bounded) to follow it.
        let firstBlock = Int64(compressor.blockSize)
        var start: Int64 = 0
        if try progress.waitForStart() > firstBlock, !progress.hasEnded, !progress.isStable(from: 0) {
            compressor.deferFirstBlock(spillFolder: spillFolder, isReady: { progress.hasEnded },
                                       source: { try progress.finalPrefix(count: Int(firstBlock)) })
            start = firstBlock
        }
        _ = try progress.read(into: encoder, from: start)
        try encoder.finish()
        return compressor.plaintextChecksum
    } catch {
        handOff.abandon()
        throw error
    }
}

/// Tests only: passes bytes on with the very first one flipped.
private final class FirstByteFlipper: ByteSink {
    let next: any ByteSink
    var flipped = false
    init(next: any ByteSink) { self.next = next }
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !flipped, bytes.count > 0 else { return try next.write(bytes) }
        flipped = true
        var copy = [UInt8](bytes)
        copy[0] ^= 0xff
        try copy.withUnsafeBytes { try next.write($0) }
    }
    func finish() throws { try next.finish() }
}

/// The snapshot of one backup, taken on a thread of its own: the copy (at the caller's priority,
/// so the read transaction on the live database is as short as the copy allows), then its
/// integrity check (in the background, as it only competes with compression) and, at the same
/// time on another thread, the checksum of the finished copy, to compare with what was shipped.
private final class BackgroundSnapshot: @unchecked Sendable {
    let progress = SnapshotProgress()
    private let thread: JoinableThread<(SnapshotCopy, SnapshotCheckResult, PlaintextChecksum?)>

    init(snapshotter: Snapshotter, database: String, finalPath: String, check: IntegrityCheck, streaming: Bool,
         checksums: Bool) {
        let progress = self.progress
        thread = JoinableThread(name: "offsite-snapshot") {
            let copied = Result {
                try snapshotter.copy(of: database, to: finalPath, progress: streaming ? progress : nil)
            }
            progress.finish(copied)
            let copy = try copied.get()
            do {
                let checksum = checksums
                    ? JoinableThread(name: "offsite-checksum", background: true) { try PlaintextChecksum.of(fileAt: copy.temporaryPath) }
                    : nil
                yieldToTheApplication()
                let checked = Result { try snapshotter.check(copy, using: check) }
                return (copy, try checked.get(), try checksum?.join().get())
            } catch {
                snapshotter.discard(copy)
                throw error
            }
        }
    }

    /// Waits for the copy, its check and its checksum; returns them, or throws why the copy is
    /// unusable (it is removed then).
    func result() throws -> (SnapshotCopy, SnapshotCheckResult, PlaintextChecksum?) {
        try thread.join().get()
    }
}

/// An id for a backup taken now that sorts after every backup of the database in the local
/// rotation and collides with no object on the targets: two backups in one second must not
/// collide, and the newest must sort last (`latest`, retention's "newest"). On a clash it waits
/// for the next second.
///
/// The id's second must also be the second the snapshot begins in: a continuous chain's window
/// starts at its base's id (docs/CONTINUOUS.md §6), so an id older than the snapshot would make
/// restores to the moments in between apply change objects to a base that already holds later
/// commits. Listing a target that is down takes its retries (seconds): when the clock passed into
/// another second while the targets were listed, the id is taken again from the clock.
func chooseBackupID(job: BackupJob, folder: String, now: () -> Date) -> BackupID {
    let newestLocal = localBackups(inFolder: folder).last?.id.seconds ?? Int64.min
    var id = BackupID(date: now(), kind: job.kind)
    for _ in 0..<5 {
        let localClash = id.seconds <= newestLocal
        let remoteClash = !localClash && job.targets.contains { target in
            let existing = (try? target.list(prefix: "\(job.database.name)/\(id).")) ?? []
            return !existing.isEmpty
        }
        if !localClash && !remoteClash {
            let current = BackupID(date: now(), kind: job.kind)
            guard current.seconds > id.seconds else { return id }
            // The listing took the clock into a later second: check that second's id instead.
            id = current
            continue
        }
        let next = Double(max(id.seconds, newestLocal) + 1)
        let wait = next - now().timeIntervalSince1970
        if wait > 0 { Thread.sleep(forTimeInterval: min(wait, 1.1)) }
        id = BackupID(date: max(now(), Date(timeIntervalSince1970: next)), kind: job.kind)
    }
    // Still no settled id (targets slow to list, or clashing): the clock's second, never an older
    // one; it sorts after the local rotation, and the last listings found nothing under the older ids.
    let current = BackupID(date: now(), kind: job.kind)
    return current.seconds > id.seconds && current.seconds > newestLocal ? current : id
}

/// The local rotation's snapshots of one database: `FOLDER/ID.sqlite3`.
public func localBackups(inFolder folder: String) -> [(id: BackupID, path: String, size: Int64)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    return names.compactMap { name -> (BackupID, String, Int64)? in
        guard name.hasSuffix(".sqlite3"), let id = BackupID(name.dropLast(".sqlite3".count)) else { return nil }
        let path = "\(folder)/\(name)"
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0
        return (id, path, size)
    }.sorted { $0.0 < $1.0 }
}

/// Applies `keep` to the local rotation folder of one database; returns the removed paths and,
/// for each file that could not be removed, why.
func pruneLocalRotation(folder: String, keep: RetentionPolicy) -> (removed: [String], failures: [String]) {
    let backups = localBackups(inFolder: folder)
    let plan = planRetention(backups: backups.map { RetainedBackup(id: $0.id, key: $0.path) }, policy: keep)
    var removed: [String] = []
    var failures: [String] = []
    for item in plan.remove {
        if unlink(item.key) == 0 || errno == ENOENT {
            removed.append(item.key)
        } else {
            failures.append(FileIOError(operation: "remove", path: item.key, code: errno).message)
        }
    }
    if !removed.isEmpty {
        do { try fsyncDirectory(folder) } catch { failures.append(describe(error)) }
    }
    return (removed, failures)
}

/// Counts the bytes passing through to the next sink.
public final class CountingSink: ByteSink {
    /// Bytes written so far.
    public private(set) var count: Int64 = 0
    let next: any ByteSink

    /// Creates a counter in front of `next`.
    public init(next: any ByteSink) { self.next = next }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try next.write(bytes)
        count += Int64(bytes.count)
    }

    public func finish() throws { try next.finish() }
}

