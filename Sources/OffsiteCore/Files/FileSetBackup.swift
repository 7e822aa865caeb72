import Foundation

/// Sizes of a file set's content pieces.
enum FileSetSizes {
    /// Files up to this size are one blob; larger ones are cut into chunks of it.
    static let chunk = 8 << 20
    /// A pack is closed once this much tar data is in it.
    static let pack = 32 << 20
    /// How often a file that changes while it is read is read.
    static let readAttempts = 3
    /// A file whose ctime or mtime is this close to the time it is read gets no change key: the
    /// next backup reads it again (timestamps are coarser than the clock).
    static let racyWindow: Int64 = 2
}

/// Everything one backup of a file set needs.
public struct FileSetBackupJob {
    /// The set: name, folder, excludes.
    public var set: FileSetConfig
    /// Why the backup is taken.
    public var kind: BackupKind
    /// Where to ship it.
    public var targets: [any Target]
    /// How to encrypt it.
    public var encryption: PayloadEncryption
    /// gzip level 0–9.
    public var compressionLevel: Int
    /// Where the set's local memory lives (`LOCALDIR/.offsite-files`): the base of incremental
    /// backups, the lock and the journal of crashes. Without one every backup ships everything and
    /// a crash's leftovers wait for the safe age of retention.
    public var cacheFolder: String?
    /// Absolute paths never part of the set: the databases offsite protects (with their `-wal`,
    /// `-shm`, `-journal`), the local folder. The cache folder is always left out.
    public var leftOut: [String]
    /// Keys to read the target's newest snapshot when the cache has no base for it (an `offsite
    /// backup` by hand with `--identity`); the agent has none.
    public var keys: DecryptionKeys?
    /// Raised to stop the backup between chunks; nil: never.
    public var cancellation: Cancellation?
    /// Called after a file's bytes were read and before it is checked for changes, with its path
    /// and the attempt (from 0): tests change the file there.
    var afterRead: ((String, Int) -> Void)?

    /// Creates a job.
    public init(set: FileSetConfig, kind: BackupKind, targets: [any Target], encryption: PayloadEncryption,
                compressionLevel: Int = 6, cacheFolder: String? = nil, leftOut: [String] = [],
                keys: DecryptionKeys? = nil, cancellation: Cancellation? = nil) {
        self.set = set
        self.kind = kind
        self.targets = targets
        self.encryption = encryption
        self.compressionLevel = compressionLevel
        self.cacheFolder = cacheFolder
        self.leftOut = leftOut
        self.keys = keys
        self.cancellation = cancellation
    }
}

/// How one target's part of a file set backup went.
public struct FileSetUploadResult {
    /// The target's name.
    public var target: String
    /// The manifest's key.
    public var key: String
    /// Why it failed, when it did; nothing of this backup is visible there then.
    public var error: Error?
    /// Bytes sent: new packs, the pack list and the manifest.
    public var bytesShipped: Int64 = 0
    /// New packs uploaded.
    public var packsUploaded = 0
    /// The manifest object's size.
    public var manifestBytes: Int64 = 0
    /// The snapshot this one was incremental to; nil when everything was read and shipped.
    public var base: BackupID?
}

/// What a file set backup did.
public struct FileSetBackupReport {
    /// The set's name.
    public var set: String
    /// The snapshot's id.
    public var id: BackupID
    /// One result per target, in the job's order.
    public var uploads: [FileSetUploadResult]
    /// Regular files in the snapshot.
    public var files = 0
    /// Folders in the snapshot (the root included).
    public var folders = 0
    /// Symbolic links in the snapshot.
    public var links = 0
    /// The sum of the files' sizes.
    public var totalBytes: Int64 = 0
    /// Files read this time (the others were unchanged since the base).
    public var filesRead = 0
    /// Bytes read this time.
    public var bytesRead: Int64 = 0
    /// Bytes of new content packed (before compression).
    public var newContentBytes: Int64 = 0
    /// Entries left out, and why: to log, count in `status` and send.
    public var skipped: [SkippedEntry] = []
    /// What undoing a run that died (kill -9) did, one line each, for the log.
    public var recovered: [String] = []

    /// Whether every target got the snapshot.
    public var succeeded: Bool { uploads.allSatisfy { $0.error == nil } }
}

/// Takes one snapshot of a file set and ships it to every target: only content a target does not
/// hold yet is read and uploaded, in packs, then the pack list and last the manifest
/// (docs/FILESETS.md, "A backup, step by step"). A failing target does not stop the others; its
/// error is in the report, and nothing of the snapshot is visible there. Throws when the set's
/// folder cannot be read at all, another process holds the set's lock, or the local cache fails.
public func runFileSetBackup(_ job: FileSetBackupJob, now: @escaping () -> Date = Date.init) throws -> FileSetBackupReport {
    var isFolder = stat()
    guard stat(job.set.path, &isFolder) == 0, (isFolder.st_mode & S_IFMT) == S_IFDIR else {
        throw FileSetError.rootMissing(set: job.set.name, path: job.set.path)
    }
    let cache = try job.cacheFolder.map { try FileSetCache(root: $0, set: job.set.name) }
    try cache?.lock()
    defer { cache?.unlock() }
    let name = job.set.name

    var results = job.targets.map { FileSetUploadResult(target: $0.name, key: "") }
    var members: [PassMember] = []
    for (index, target) in job.targets.enumerated() {
        do {
            members.append(PassMember(index: index, key: FileSetCache.key(of: target), target: target,
                                      listing: try FileSetListing(target: target, set: name)))
        } catch {
            results[index].error = error
        }
    }
    var report = FileSetBackupReport(set: name, id: BackupID(date: now(), kind: job.kind), uploads: [])
    if let cache {
        report.recovered = recoverLeftoverJournals(cache: cache, targets: members.map { ($0.key, $0.target, $0.listing) })
    }
    let id = chooseFileSetID(kind: job.kind, listings: members.map(\.listing), now: now)
    report.id = id
    for member in members { results[member.index].key = FileSetLayout.manifestKey(set: name, id: id, format: job.encryption.format) }

    // The base of each target, and the targets that share one.
    // Working files (the new manifest while it is written) live beside the cache, on its disk, so
    // the finished manifest is renamed into it; without a cache, in the system's temporary folder.
    let scratchParent = cache?.folder ?? FileManager.default.temporaryDirectory.path
    cache?.removeStaleScratch()
    let scratch = "\(scratchParent)/scratch-\(UUID().uuidString)"
    try makePrivateDirectory(scratch)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    var groups: [(base: FileSetBase?, members: [PassMember])] = []
    for member in members {
        let base = chooseBase(for: member, job: job, cache: cache, scratch: scratch)
        if let position = groups.firstIndex(where: { $0.base?.id == base?.id && $0.base?.path == base?.path }) {
            groups[position].members.append(member)
        } else {
            groups.append((base, [member]))
        }
    }

    let journal = try cache?.makeJournal(for: id)
    var journalLeft = FileSetJournal.Contents(id: id)
    var first = true
    for group in groups {
        let pass = FileSetPass(job: job, id: id, base: group.base, members: group.members, journal: journal,
                               scratch: scratch, now: now)
        do {
            let outcome = try pass.run()
            if first {
                report.files = outcome.files
                report.folders = outcome.folders
                report.links = outcome.links
                report.totalBytes = outcome.totalBytes
                report.skipped = outcome.skipped
                first = false
            }
            report.filesRead += outcome.filesRead
            report.bytesRead += outcome.bytesRead
            report.newContentBytes += outcome.newContentBytes
            let file = groups.count == 1 ? id.description : "\(id)~\(group.members[0].key)"
            let manifest = try installManifest(outcome.manifestPath, as: file, cache: cache)
            for member in group.members {
                results[member.index].base = group.base?.id
                results[member.index].packsUploaded = outcome.committed[member.index]?.count ?? 0
                results[member.index].bytesShipped = outcome.shippedBytes[member.index] ?? 0
                if let failure = outcome.failures[member.index] {
                    results[member.index].error = failure
                    continue
                }
                do {
                    let bytes = try publish(manifest: manifest, packs: outcome.packs, id: id, member: member, job: job)
                    results[member.index].manifestBytes = bytes.manifest
                    results[member.index].bytesShipped += bytes.manifest + bytes.packList
                    try journal?.append("done \(member.key)")
                    if let cache {
                        try cache.setBase(file: file, forTarget: member.key)
                        cache.rememberPackList(outcome.packs, of: id)
                    }
                } catch {
                    results[member.index].error = error
                }
            }
            // Packs shipped to targets that did not get the snapshot are nobody's: delete them.
            for member in group.members where results[member.index].error != nil {
                let committed = outcome.committed[member.index] ?? []
                let left = deletePacks(committed, of: name, on: member.target)
                if !left.isEmpty { journalLeft.packs[member.key] = left }
            }
        } catch {
            for member in group.members {
                results[member.index].error = error
                let left = deletePacks(pass.committedSoFar[member.index] ?? [], of: name, on: member.target)
                if !left.isEmpty { journalLeft.packs[member.key] = left }
            }
            // A target's failure is that target's; anything else (the folder, the local disk,
            // cancellation) is the backup's.
            if !(error is TargetError) {
                if let journal { try? FileSetJournal.rewrite(journal.path, with: journalLeft) }
                throw error
            }
        }
    }
    if let journal { try? FileSetJournal.rewrite(journal.path, with: journalLeft) }
    cache?.removeUnusedManifests()
    report.uploads = results
    return report
}

/// What a file set never includes besides its excludes: the databases offsite protects with their
/// `-wal`, `-shm` and `-journal` files, and the local folder (pass it as `FileSetBackupJob.leftOut`).
public func fileSetLeftOutPaths(databases: [DatabaseRef], localFolder: String?) -> [String] {
    var paths = databases.flatMap { database in ["", "-wal", "-shm", "-journal"].map { database.path + $0 } }
    if let localFolder { paths.append(localFolder) }
    return paths
}

/// A target in a pass: its position in the job, its key in the cache, and its listing.
struct PassMember {
    var index: Int
    var key: String
    var target: any Target
    var listing: FileSetListing
}

/// The snapshot a target's backup is incremental to, and its plain manifest.
struct FileSetBase {
    var id: BackupID
    var path: String
}

/// An id for a snapshot taken now that collides with none on the targets and sorts after them:
/// when the newest listed is this second or a second ahead, it waits for the next one.
func chooseFileSetID(kind: BackupKind, listings: [FileSetListing], now: () -> Date) -> BackupID {
    let newest = listings.compactMap { $0.snapshots.last?.id.seconds }.max() ?? Int64.min
    var id = BackupID(date: now(), kind: kind)
    if newest >= id.seconds && newest - id.seconds <= 2 {
        let wait = Double(newest + 1) - now().timeIntervalSince1970
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
        id = BackupID(date: max(now(), Date(timeIntervalSince1970: Double(newest + 1))), kind: kind)
    }
    return id
}

/// The base of `member`: the cache's last snapshot there when it is listed with every pack it
/// needs; else, with keys, the target's newest snapshot read from the target; else none.
private func chooseBase(for member: PassMember, job: FileSetBackupJob, cache: FileSetCache?, scratch: String) -> FileSetBase? {
    func usable(_ id: BackupID, _ path: String) -> Bool {
        guard member.listing.snapshot(id) != nil, let reader = try? ManifestReader(path: path) else { return false }
        return reader.header.packs.allSatisfy { member.listing.packs[$0] != nil }
    }
    if let cache, let base = cache.base(forTarget: member.key), usable(base.id, cache.manifestPath(base.file)) {
        return FileSetBase(id: base.id, path: cache.manifestPath(base.file))
    }
    guard let keys = job.keys, !keys.isEmpty, let newest = member.listing.snapshots.last else { return nil }
    let path = "\(scratch)/base-\(member.key)-\(newest.id)"
    do {
        try fetchManifest(newest, from: member.target, keys: keys, to: path)
    } catch {
        unlink(path)
        return nil
    }
    return usable(newest.id, path) ? FileSetBase(id: newest.id, path: path) : nil
}

/// Moves the finished manifest into the cache as `file` (it becomes the next base, and a run that
/// dies after publishing finds it there); returns where it is.
private func installManifest(_ path: String, as file: String, cache: FileSetCache?) throws -> String {
    guard let cache else { return path }
    let destination = cache.manifestPath(file)
    if path == destination { return path }
    unlink(destination)
    try moveFile(from: path, to: destination)
    try? fsyncFile(destination)
    return destination
}

/// Publishes the snapshot on one target: checks every pack it needs is listed, uploads the pack
/// list, then the manifest (gzip, age). Returns the bytes of both objects.
private func publish(manifest: String, packs: [String], id: BackupID, member: PassMember,
                     job: FileSetBackupJob) throws -> (manifest: Int64, packList: Int64) {
    let name = job.set.name
    let listed = Set(try member.target.list(prefix: "\(name)/\(FileSetLayout.packFolder)/").map { String($0.key.dropFirst(name.count + 1)) })
    if let missing = packs.first(where: { !listed.contains($0) }) {
        throw FileSetError.packMissing(set: name, target: member.target.name, pack: missing)
    }
    let listData = Data(packListText(packs).utf8)
    let listUpload = try member.target.makeUpload(key: FileSetLayout.packListKey(set: name, id: id), expectedSize: Int64(listData.count))
    do {
        try listUpload.write(listData)
        try listUpload.finish()
        try listUpload.commit()
    } catch {
        listUpload.abort()
        throw error
    }
    CrashPoint.reach("files.pack-list-published")
    let key = FileSetLayout.manifestKey(set: name, id: id, format: job.encryption.format)
    let size = (try? fileSize(at: manifest)) ?? 0
    let upload = try member.target.makeUpload(key: key, expectedSize: size + size / 100 + (64 << 10))
    let counter = CountingSink(next: upload)
    do {
        let encoder = try makeBackupEncoder(level: job.compressionLevel, encryption: job.encryption, into: counter)
        try readFile(at: manifest, into: encoder)
        try encoder.finish()
        try upload.commit()
    } catch {
        upload.abort()
        throw error
    }
    CrashPoint.reach("files.manifest-published")
    return (counter.count, Int64(listData.count))
}

/// Deletes `packs` of `set` from `target`; returns those that could not be deleted.
func deletePacks(_ packs: [String], of set: String, on target: any Target) -> [String] {
    packs.filter { pack in (try? target.delete(key: "\(set)/\(pack)")) == nil }
}

/// Downloads, decrypts and decompresses a snapshot's manifest into a new plain file at `path`
/// (0600), streaming; checks it starts as a manifest.
func fetchManifest(_ snapshot: RemoteFileSnapshot, from target: any Target, keys: DecryptionKeys, to path: String) throws {
    let file = try FileSink(creating: path, syncsOnFinish: false)
    let stages = try makeRestorePipeline(format: snapshot.format, keys: keys, into: file)
    do {
        try target.download(key: snapshot.key, into: stages.head)
        try stages.head.finish()
    } catch {
        for stage in stages.handOffs { stage.abandon() }
        file.discard()
        throw error
    }
    do {
        _ = try ManifestReader(path: path)
    } catch {
        unlink(path)
        throw error
    }
}

/// What one pass did.
struct PassOutcome {
    var manifestPath: String
    var packs: [String]
    var committed: [Int: [String]]
    var shippedBytes: [Int: Int64]
    var failures: [Int: Error]
    var files = 0, folders = 0, links = 0
    var totalBytes: Int64 = 0
    var filesRead = 0
    var bytesRead: Int64 = 0
    var newContentBytes: Int64 = 0
    var skipped: [SkippedEntry] = []
}

/// One walk of the tree for targets that share a base: compares with the base, reads what
/// changed, packs what is new, and writes the new manifest.
final class FileSetPass {
    let job: FileSetBackupJob
    let id: BackupID
    let base: FileSetBase?
    let members: [PassMember]
    let journal: FileSetJournal?
    let scratch: String
    let now: () -> Date
    private var shipper: PackShipper?

    init(job: FileSetBackupJob, id: BackupID, base: FileSetBase?, members: [PassMember], journal: FileSetJournal?,
         scratch: String, now: @escaping () -> Date) {
        self.job = job
        self.id = id
        self.base = base
        self.members = members
        self.journal = journal
        self.scratch = scratch
        self.now = now
    }

    /// The packs committed so far, by target index (for cleaning up after a failure).
    var committedSoFar: [Int: [String]] { shipper?.committed ?? [:] }

    func run() throws -> PassOutcome {
        try JoinableThread.run(name: "offsite-files", background: true) { try body() }.get()
    }

    private func body() throws -> PassOutcome {
        // Pack names by number: the base's first (the base manifest's numbers), then new ones.
        var packNames: [String] = []
        var packNumbers: [String: Int32] = [:]
        var index: [BlobHash: Int32] = [:]
        var baseStream: ManifestReader?
        if let base {
            let reader = try ManifestReader(path: base.path)
            packNames = reader.header.packs
            for (number, name) in packNames.enumerated() { packNumbers[name] = Int32(number) }
            while let entry = try reader.next() {
                for blob in entry.blobs { index[blob.hash] = Int32(blob.pack) }
            }
            baseStream = try ManifestReader(path: base.path)
        }
        let shipper = PackShipper(set: job.set.name, members: members, encryption: job.encryption,
                                  level: job.compressionLevel, journal: journal, now: now)
        self.shipper = shipper
        defer { shipper.abandon() }

        var outcome = PassOutcome(manifestPath: "", packs: [], committed: [:], shippedBytes: [:], failures: [:])
        let bodyPath = "\(scratch)/body-\(members.first?.key ?? "none")"
        let body = try FileSink(creating: bodyPath, syncsOnFinish: false)
        var newNumbers: [Int32: Int] = [:]
        var newPacks: [String] = []
        var line: [UInt8] = []
        func write(_ entry: FileEntry) throws {
            var entry = entry
            for position in entry.blobs.indices {
                let global = Int32(entry.blobs[position].pack)
                if let number = newNumbers[global] {
                    entry.blobs[position].pack = number
                } else {
                    newNumbers[global] = newPacks.count
                    entry.blobs[position].pack = newPacks.count
                    newPacks.append(packNames[Int(global)])
                }
            }
            line = encodeManifestLine(entry)
            line.append(UInt8(ascii: "\n"))
            try body.write(line)
        }

        var pendingBase = try baseStream?.next()
        func baseEntry(for path: [UInt8]) throws -> FileEntry? {
            while let candidate = pendingBase, manifestPathPrecedes(candidate.path, path) {
                pendingBase = try baseStream?.next()
            }
            guard let candidate = pendingBase, candidate.path == path else { return nil }
            return candidate
        }

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FileSetSizes.chunk, alignment: 64)
        defer { buffer.deallocate() }
        let leftOut = LeftOutPaths(root: job.set.path, exclude: job.set.exclude,
                                   paths: job.leftOut + (job.cacheFolder.map { [$0] } ?? []))
        let skipped = SkipLog()
        let walker = TreeWalker(root: job.set.path, isLeftOut: leftOut.contains, skip: { skipped.add($0) },
                                checkpoint: { [job] in try job.cancellation?.check() })
        try walker.walk { walked in
            switch walked.entry.type {
            case .directory:
                outcome.folders += 1
                try write(walked.entry)
            case .symlink:
                outcome.links += 1
                try write(walked.entry)
            case .file:
                var entry = walked.entry
                if let previous = try baseEntry(for: entry.path), previous.type == .file, previous.size == entry.size,
                   previous.modified == entry.modified, let change = previous.change, change == entry.change {
                    entry.blobs = previous.blobs
                } else {
                    guard let read = try readConsistently(walked, buffer: buffer, index: &index, packNames: &packNames,
                                                          packNumbers: &packNumbers, shipper: shipper,
                                                          skipped: skipped) else { return }
                    entry = read
                    outcome.filesRead += 1
                    outcome.bytesRead += entry.size
                }
                outcome.files += 1
                outcome.totalBytes += entry.size
                try write(entry)
            }
        }
        try shipper.finish()
        try body.finish()
        outcome.newContentBytes = shipper.newContentBytes

        // The manifest: header (with the pack table) then the entries.
        let manifestPath = "\(scratch)/manifest-\(members.first?.key ?? "none")"
        let manifest = try FileSink(creating: manifestPath, syncsOnFinish: false)
        do {
            let header = ManifestHeader(set: job.set.name, id: id.description, chunkSize: FileSetSizes.chunk, packs: newPacks)
            try manifest.write(Data(header.text.utf8))
            try readFile(at: bodyPath, into: manifest)
            try manifest.finish()
        } catch {
            manifest.discard()
            throw error
        }
        unlink(bodyPath)
        outcome.manifestPath = manifestPath
        outcome.packs = newPacks
        outcome.committed = shipper.committed
        outcome.shippedBytes = shipper.shippedBytes
        outcome.failures = shipper.failures
        outcome.skipped = skipped.entries
        return outcome
    }

    /// Reads a file in chunks, packing the chunks the targets do not hold, and checks it did not
    /// change meanwhile (`fstat` before and after); reads again up to `FileSetSizes.readAttempts`
    /// times. Returns the entry with its blobs, or nil when it is left out (reported in `skipped`,
    /// or gone since the walk).
    private func readConsistently(_ walked: WalkedEntry, buffer: UnsafeMutableRawBufferPointer, index: inout [BlobHash: Int32],
                                  packNames: inout [String], packNumbers: inout [String: Int32], shipper: PackShipper,
                                  skipped: SkipLog) throws -> FileEntry? {
        let display = walked.entry.displayPath
        for attempt in 0..<FileSetSizes.readAttempts {
            let descriptor = TreeWalker.openAt(walked.parent, walked.name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK)
            guard descriptor >= 0 else {
                if errno == ENOENT { return nil }
                if errno == ELOOP { return nil }  // replaced by a link since the walk: the next backup sees it
                skipped.add(SkippedEntry(path: display, reason: .unreadable(String(cString: strerror(errno)))))
                return nil
            }
            defer { close(descriptor) }
            var before = stat()
            guard fstat(descriptor, &before) == 0, (before.st_mode & S_IFMT) == S_IFREG else {
                skipped.add(SkippedEntry(path: display, reason: .unsupported("no longer a regular file")))
                return nil
            }
            _ = posix_fadvise(descriptor, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
            var blobs: [BlobRef] = []
            var total: Int64 = 0
            while true {
                try job.cancellation?.check()
                var filled = 0
                while filled < buffer.count {
                    let count = read(descriptor, buffer.baseAddress! + filled, buffer.count - filled)
                    if count < 0 {
                        if errno == EINTR { continue }
                        skipped.add(SkippedEntry(path: display, reason: .unreadable(String(cString: strerror(errno)))))
                        return nil
                    }
                    if count == 0 { break }
                    filled += count
                }
                if filled == 0 { break }
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<filled])
                let hash = BlobHash.of(bytes)
                let pack: Int32
                if let known = index[hash] {
                    pack = known
                } else {
                    let name = try shipper.add(hash: hash, bytes: bytes)
                    if let number = packNumbers[name] {
                        pack = number
                    } else {
                        pack = Int32(packNames.count)
                        packNames.append(name)
                        packNumbers[name] = pack
                    }
                    index[hash] = pack
                }
                blobs.append(BlobRef(hash: hash, pack: Int(pack)))
                total += Int64(filled)
                if filled < buffer.count { continue }
            }
            job.afterRead?(display, attempt)
            var after = stat()
            guard fstat(descriptor, &after) == 0 else { continue }
            let unchanged = after.st_size == before.st_size && total == Int64(before.st_size)
                && FileTime(after.st_mtim) == FileTime(before.st_mtim) && FileTime(after.st_ctim) == FileTime(before.st_ctim)
            guard unchanged else { continue }
            var entry = TreeWalker.entry(path: walked.entry.path, status: before, type: .file)
            entry.blobs = blobs
            var clock = timespec()
            clock_gettime(CLOCK_REALTIME, &clock)
            let readAt = FileTime(clock)
            func isRecent(_ time: FileTime) -> Bool {
                let nanoseconds = (readAt.seconds - time.seconds) * 1_000_000_000 + Int64(readAt.nanoseconds - time.nanoseconds)
                return nanoseconds < FileSetSizes.racyWindow * 1_000_000_000
            }
            if isRecent(FileTime(before.st_ctim)) || isRecent(FileTime(before.st_mtim)) { entry.change = nil }
            return entry
        }
        skipped.add(SkippedEntry(path: display, reason: .changedWhileRead))
        return nil
    }
}

/// The entries a pass leaves out because they cannot be read.
final class SkipLog {
    private(set) var entries: [SkippedEntry] = []

    func add(_ entry: SkippedEntry) { entries.append(entry) }
}

/// What a set leaves out: its exclude patterns, paths given absolutely (databases, the local
/// folder) and restore staging folders in its root.
struct LeftOutPaths {
    let exclude: ExcludePatterns
    let relative: Set<[UInt8]>
    static let stagingPrefix = Array(".offsite-restore-".utf8)

    init(root: String, exclude: ExcludePatterns, paths: [String]) {
        self.exclude = exclude
        var roots = [root]
        if let resolved = realpath(root, nil) {
            roots.append(String(cString: resolved))
            free(resolved)
        }
        var relative = Set<[UInt8]>()
        for path in paths {
            var candidates = [path]
            if let resolved = realpath(path, nil) {
                candidates.append(String(cString: resolved))
                free(resolved)
            }
            for candidate in candidates {
                for root in roots where candidate.hasPrefix(root + "/") {
                    relative.insert(Array(candidate.dropFirst(root.count + 1).utf8))
                }
            }
        }
        self.relative = relative
    }

    /// Whether `path` (relative to the root) is left out.
    func contains(_ path: [UInt8], isFolder: Bool) -> Bool {
        if relative.contains(path) { return true }
        if isFolder, !path.contains(UInt8(ascii: "/")), path.starts(with: LeftOutPaths.stagingPrefix) { return true }
        return exclude.excludes(path, isFolder: isFolder)
    }
}

/// Writes new blobs into packs and ships each pack to every target of a pass at once: a pack is
/// a tar stream, compressed on every core, encrypted on a thread of its own and streamed to the
/// uploads; when it is full it is finished, and committed on the committer's thread while the next
/// pack fills (at most one waits). A target whose upload fails drops out of the pass.
final class PackShipper: @unchecked Sendable {
    // @unchecked: `state` is shared with the committer thread under `condition`; the rest is used
    // by the pass's thread only.
    private let set: String
    private let members: [PassMember]
    private let encryption: PayloadEncryption
    private let level: Int
    private let journal: FileSetJournal?
    private let now: () -> Date
    private var current: OpenPack?
    private let condition = NSCondition()
    private var queue: [(name: String, uploads: [(index: Int, upload: any TargetUpload)])] = []
    private var committing = false
    private var stopped = false
    private var state = SharedState()
    private var thread: Thread?
    /// Bytes of blobs packed.
    private(set) var newContentBytes: Int64 = 0

    private struct SharedState {
        var committed: [Int: [String]] = [:]
        var failures: [Int: Error] = [:]
        var shippedBytes: [Int: Int64] = [:]
    }

    /// One pack being written.
    private final class OpenPack {
        let name: String
        let uploads: [(index: Int, upload: any TargetUpload)]
        let fanOut: FanOutSink
        let counter: CountingSink
        let compressor: ParallelGzipCompressor
        let handOff: ThreadedSink
        let tar: TarWriter

        init(name: String, uploads: [(index: Int, upload: any TargetUpload)], fanOut: FanOutSink, counter: CountingSink,
             compressor: ParallelGzipCompressor, handOff: ThreadedSink) {
            self.name = name
            self.uploads = uploads
            self.fanOut = fanOut
            self.counter = counter
            self.compressor = compressor
            self.handOff = handOff
            self.tar = TarWriter(next: compressor)
        }
    }

    init(set: String, members: [PassMember], encryption: PayloadEncryption, level: Int, journal: FileSetJournal?,
         now: @escaping () -> Date) {
        self.set = set
        self.members = members
        self.encryption = encryption
        self.level = level
        self.journal = journal
        self.now = now
    }

    /// Packs committed, by target index.
    var committed: [Int: [String]] { condition.withLock { state.committed } }
    /// Why targets dropped out, by target index.
    var failures: [Int: Error] { condition.withLock { state.failures } }
    /// Encrypted pack bytes sent, by target index.
    var shippedBytes: [Int: Int64] { condition.withLock { state.shippedBytes } }

    /// Adds a blob to the open pack (opening one when needed); returns the pack's name.
    func add(hash: BlobHash, bytes: UnsafeRawBufferPointer) throws -> String {
        let pack = try current ?? open()
        do {
            try pack.tar.writeMember(name: hash.memberName, bytes: bytes, modified: Int64(now().timeIntervalSince1970))
        } catch {
            try failPack(pack, error)
        }
        newContentBytes += Int64(bytes.count)
        let name = pack.name
        if pack.tar.byteCount >= Int64(FileSetSizes.pack) { try close(pack) }
        return name
    }

    /// Closes the open pack and waits until every pack is committed (or failed).
    func finish() throws {
        if let pack = current { try close(pack) }
        condition.lock()
        while !queue.isEmpty || committing { condition.wait() }
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// Stops everything in flight after a failure: the open pack's uploads are aborted and the
    /// committer stops after the pack it is at.
    func abandon() {
        if let pack = current {
            current = nil
            pack.handOff.abandon()
            for entry in pack.uploads { entry.upload.abort() }
        }
        condition.lock()
        let waiting = queue
        queue.removeAll()
        while committing { condition.wait() }
        stopped = true
        condition.broadcast()
        condition.unlock()
        for pack in waiting { for entry in pack.uploads { entry.upload.abort() } }
    }

    private func active() -> [PassMember] {
        let failed = failures
        return members.filter { failed[$0.index] == nil }
    }

    private func open() throws -> OpenPack {
        let targets = active()
        guard !targets.isEmpty else {
            throw failures.sorted { $0.key < $1.key }.first?.value ?? FileSetError.unknownSet(set)
        }
        let name = FileSetLayout.newPackName(at: now(), format: encryption.format)
        var uploads: [(index: Int, upload: any TargetUpload)] = []
        for member in targets {
            do {
                try journal?.append("pack \(member.key) \(name)")
                uploads.append((member.index, try member.target.makeUpload(
                    key: "\(set)/\(name)", expectedSize: Int64(FileSetSizes.pack + FileSetSizes.chunk + (1 << 20)))))
            } catch {
                if error is FileIOError { throw error }  // the journal: the local disk is failing
                condition.withLock { state.failures[member.index] = error }
            }
        }
        guard !uploads.isEmpty else { return try open() }
        let fanOut = FanOutSink(uploads.map { HeldFinish($0.upload) })
        let counter = CountingSink(next: fanOut)
        let encrypted = try makeEncryptor(encryption: encryption, into: counter)
        let handOff = ThreadedSink(next: encrypted, name: "offsite-files-encrypt", background: true)
        let compressor = try ParallelGzipCompressor(level: level, background: true, next: handOff)
        let pack = OpenPack(name: name, uploads: uploads, fanOut: fanOut, counter: counter, compressor: compressor,
                            handOff: handOff)
        current = pack
        if thread == nil { startCommitter() }
        return pack
    }

    /// Ends the pack's tar stream and its compression, and hands its uploads to the committer.
    private func close(_ pack: OpenPack) throws {
        current = nil
        do {
            try pack.tar.writeEnd()
            try pack.compressor.finish()
        } catch {
            try failPack(pack, error)
        }
        var survivors: [(index: Int, upload: any TargetUpload)] = []
        for (position, entry) in pack.uploads.enumerated() {
            if let failure = pack.fanOut.failures[position] {
                entry.upload.abort()
                condition.withLock { state.failures[entry.index] = failure }
            } else {
                survivors.append(entry)
                let bytes = pack.counter.count
                condition.withLock { state.shippedBytes[entry.index, default: 0] += bytes }
            }
        }
        CrashPoint.reach("files.pack-written")
        condition.lock()
        while !queue.isEmpty && !stopped { condition.wait() }
        queue.append((pack.name, survivors))
        condition.broadcast()
        condition.unlock()
    }

    /// A pack's stream failed: every target that was still writing it fails with `error`, unless
    /// the fan-out knows a target's own failure. Throws when no target is left.
    private func failPack(_ pack: OpenPack, _ error: Error) throws -> Never {
        current = nil
        pack.handOff.abandon()
        for (position, entry) in pack.uploads.enumerated() {
            entry.upload.abort()
            let failure = pack.fanOut.failures[position] ?? error
            condition.withLock { state.failures[entry.index] = failure }
        }
        throw pack.fanOut.failures.sorted { $0.key < $1.key }.first?.value ?? error
    }

    private func startCommitter() {
        let thread = Thread { [self] in
            yieldToTheApplication()
            while true {
                condition.lock()
                while queue.isEmpty && !stopped { condition.wait() }
                if queue.isEmpty && stopped {
                    condition.unlock()
                    return
                }
                let pack = queue.removeFirst()
                committing = true
                condition.broadcast()
                condition.unlock()
                for entry in pack.uploads {
                    do {
                        try entry.upload.finish()
                        try entry.upload.commit()
                        CrashPoint.reach("files.pack-committed")
                        condition.withLock { state.committed[entry.index, default: []].append(pack.name) }
                    } catch {
                        entry.upload.abort()
                        condition.withLock { state.failures[entry.index] = error }
                    }
                }
                condition.lock()
                committing = false
                condition.broadcast()
                condition.unlock()
            }
        }
        thread.name = "offsite-files-commit"
        self.thread = thread
        thread.start()
    }
}

/// Passes bytes to an upload but leaves its `finish()` to whoever commits it, so that a pack's
/// stream can end without waiting for its upload's last part or fsync.
private final class HeldFinish: ByteSink {
    let upload: any TargetUpload

    init(_ upload: any TargetUpload) { self.upload = upload }

    func write(_ bytes: UnsafeRawBufferPointer) throws { try upload.write(bytes) }

    func finish() throws {}
}
