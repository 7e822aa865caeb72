import Foundation

/// What to restore of a file set and how to read it.
public struct FileSetRestoreJob {
    /// Where the snapshots are.
    public var target: any Target
    /// The set's name.
    public var set: String
    /// Which snapshot.
    public var selection: BackupSelection
    /// What decrypts it.
    public var keys: DecryptionKeys
    /// Only this path (relative to the set's folder, a file or a folder) and what is under it; nil: all.
    public var subpath: String?
    /// Shows the download's progress on a terminal; nil: silent.
    public var progress: ProgressMeter?

    /// Creates a job.
    public init(target: any Target, set: String, selection: BackupSelection, keys: DecryptionKeys,
                subpath: String? = nil, progress: ProgressMeter? = nil) {
        self.target = target
        self.set = set
        self.selection = selection
        self.keys = keys
        self.subpath = subpath
        self.progress = progress
    }
}

/// What a file set restore did.
public struct FileSetRestoreReport {
    /// The snapshot restored.
    public var snapshot: RemoteFileSnapshot
    /// The folder the tree was restored into.
    public var destination: String
    /// Regular files written.
    public var files = 0
    /// Folders.
    public var folders = 0
    /// Symbolic links.
    public var links = 0
    /// Bytes of file content written.
    public var bytes: Int64 = 0
    /// Packs downloaded.
    public var packs = 0
    /// In place: entries removed because the snapshot does not have them.
    public var removed = 0
    /// In place: the `pre-restore` snapshot of the tree that was replaced.
    public var preRestore: FileSetBackupReport?
}

/// The snapshot of `set` on `target` that `selection` names, from one listing.
public func chooseFileSnapshot(on target: any Target, set: String, selection: BackupSelection) throws -> RemoteFileSnapshot {
    try selectFileSnapshot(from: listFileSetSnapshots(on: target, set: set), set: set, selection: selection, target: target.name)
}

/// Picks the snapshot `selection` names from a listing.
public func selectFileSnapshot(from snapshots: [RemoteFileSnapshot], set: String, selection: BackupSelection,
                               target: String) throws -> RemoteFileSnapshot {
    let candidates = snapshots.sorted { $0.id < $1.id }
    guard let newest = candidates.last else { throw FileSetSelectionError.noSnapshots(set: set, target: target) }
    switch selection {
    case .latest:
        return newest
    case let .id(id):
        guard let match = candidates.last(where: { $0.id == id }) else {
            throw FileSetSelectionError.notFound(set: set, target: target, id: id.description)
        }
        return match
    case let .at(date):
        let limit = Int64(date.timeIntervalSince1970.rounded(.down))
        guard let match = candidates.last(where: { $0.id.seconds <= limit }) else {
            throw FileSetSelectionError.nothingBefore(set: set, target: target, time: date, oldest: candidates[0].id)
        }
        return match
    }
}

/// Why no snapshot could be picked.
public enum FileSetSelectionError: UserFacingError, Equatable {
    /// The target holds no snapshot of the set.
    case noSnapshots(set: String, target: String)
    /// No snapshot has the id asked for.
    case notFound(set: String, target: String, id: String)
    /// Every snapshot is younger than the time asked for.
    case nothingBefore(set: String, target: String, time: Date, oldest: BackupID)

    public var message: String {
        switch self {
        case let .noSnapshots(set, target): return "no snapshots of file set \(set) on target \(target)"
        case let .notFound(set, target, id): return "no snapshot \(id) of file set \(set) on target \(target)"
        case let .nothingBefore(set, target, time, oldest):
            return "no snapshot of file set \(set) on target \(target) at or before \(formatUTC(time)); the oldest is \(oldest)"
        }
    }

    public var hint: String? { "run `offsite list --files NAME` to see the snapshots and their ids" }
}

/// Restores into a new folder `output` (which must not exist, or be an empty folder): the tree is
/// built and checked in a staging folder beside it, then renamed into place.
public func restoreFileSet(_ job: FileSetRestoreJob, toNewFolder output: String) throws -> FileSetRestoreReport {
    let destination = output.count > 1 && output.hasSuffix("/") ? String(output.dropLast()) : output
    try checkEmptyDestination(destination)
    let snapshot = try chooseFileSnapshot(on: job.target, set: job.set, selection: job.selection)
    let parent = parentDirectory(of: destination)
    try makePrivateDirectory(parent)
    removeStaleStaging(in: parent, prefix: ".\((destination as NSString).lastPathComponent).offsite-restore-")
    let staging = try StagingFolder(in: parent, prefix: ".\((destination as NSString).lastPathComponent).offsite-restore-")
    defer { staging.remove() }
    var report = try staging.build(job: job, snapshot: snapshot)
    try checkEmptyDestination(destination)
    if rename(staging.tree, destination) != 0 {
        throw FileIOError(operation: "rename \(staging.tree) to", path: destination, code: errno)
    }
    // Moving the folder may touch its own times: set them again.
    if let root = staging.folders.first(where: { $0.path == FileEntry.rootPath }) {
        applyMetadata(root, in: destination)
    }
    try fsyncDirectory(parent)
    report.destination = destination
    return report
}

/// Restores into the live folder `root` of the set: the tree (or `job.subpath`) is built and checked
/// in a staging folder inside `root`, then, after `preRestore` (a snapshot of the current tree)
/// was shipped, merged in entry by entry with `rename`, and what the snapshot does not have there is
/// removed — except what `leftOut` says is not the set's (excludes, databases, staging folders).
/// Every file is replaced whole; a failure before the merge changes nothing.
public func restoreFileSetInPlace(_ job: FileSetRestoreJob, root: String, exclude: ExcludePatterns = .none,
                                  leftOut paths: [String] = [], preRestore: FileSetBackupJob? = nil) throws -> FileSetRestoreReport {
    let live = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    try makePrivateDirectory(live)
    let snapshot = try chooseFileSnapshot(on: job.target, set: job.set, selection: job.selection)
    // The staging folder lives in the root and touches its time; a restore of a deeper path puts it back.
    var rootStatus = stat()
    _ = lstat(live, &rootStatus)
    removeStaleStaging(in: live, prefix: ".offsite-restore-")
    let staging = try StagingFolder(in: live, prefix: ".offsite-restore-")
    defer { staging.remove() }
    var report = try staging.build(job: job, snapshot: snapshot)
    if let preRestore {
        let backup = try runFileSetBackup(preRestore)
        if let failure = backup.uploads.first(where: { $0.error != nil })?.error { throw failure }
        report.preRestore = backup
    }
    let leftOut = LeftOutPaths(root: live, exclude: exclude, paths: paths)
    var merger = TreeMerger(staged: staging.tree, live: live, trash: staging.trash, leftOut: leftOut)
    let parts = staging.subpathParts
    try merger.merge(along: parts)
    // Gone before the folders' times are set: removing it touches the root's.
    staging.remove()
    if parts.count > 1 && merger.created.isEmpty {
        let omit = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)  // UTIME_OMIT
        var times = [omit, rootStatus.st_mtim]
        _ = utimensat(AT_FDCWD, live, &times, AT_SYMLINK_NOFOLLOW)
    }
    // Folders' permissions and times, deepest first, for the restored path and below (and the
    // folders on the way that had to be made).
    for folder in staging.folders.reversed() {
        let isWithin = parts.isEmpty || folder.path.split(separator: UInt8(ascii: "/")).count >= parts.count
            || merger.created.contains(folder.path)
        if isWithin { applyMetadata(folder, in: live) }
    }
    report.removed = merger.removed
    report.destination = live
    return report
}

/// `root/path` as text for system calls (`.` is the root itself).
func livePath(_ root: String, _ path: [UInt8]) -> String {
    path == FileEntry.rootPath ? root : root + "/" + String(decoding: path, as: UTF8.self)
}

/// A C path for `root` joined with the relative byte path `path`, for system calls on names that
/// need not be UTF-8.
func withFilePath<T>(_ root: String, _ path: [UInt8], _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
    var bytes = Array(root.utf8)
    if path != FileEntry.rootPath {
        bytes.append(UInt8(ascii: "/"))
        bytes.append(contentsOf: path)
    }
    bytes.append(0)
    return try bytes.withUnsafeBufferPointer { buffer in
        try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
    }
}

/// Throws when `path` exists and is anything but an empty folder.
private func checkEmptyDestination(_ path: String) throws {
    var status = stat()
    guard lstat(path, &status) == 0 else { return }
    guard (status.st_mode & S_IFMT) == S_IFDIR,
          ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? ["?"]).isEmpty else {
        throw FileSetError.destinationExists(path: path)
    }
}

/// Removes staging folders in `folder` named `prefix…` whose restore is no longer running (their
/// lock is free): a restore that died leaves one.
private func removeStaleStaging(in folder: String, prefix: String) {
    for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(prefix) {
        let path = "\(folder)/\(name)"
        let descriptor = open("\(path)/lock", O_RDWR | O_CLOEXEC)
        if descriptor >= 0 {
            defer { close(descriptor) }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { continue }
        }
        removeTree(path)
    }
}

/// Removes a file, link or whole folder at `path` without following links; best effort.
func removeTree(_ path: String) {
    var status = stat()
    guard lstat(path, &status) == 0 else { return }
    if (status.st_mode & S_IFMT) == S_IFDIR {
        chmod(path, 0o700)  // a read-only folder's entries could not be removed
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] { removeTree("\(path)/\(name)") }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// Sets an entry's owner (when running as root), permissions and modification time at its path
/// under `root`, without following a link.
func applyMetadata(_ entry: FileEntry, in root: String) {
    withFilePath(root, entry.path) { path in
        if geteuid() == 0 { _ = lchown(path, entry.uid, entry.gid) }
        if entry.type != .symlink { chmod(path, mode_t(entry.mode)) }
        let omit = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)  // UTIME_OMIT: the access time stays
        var times = [omit, entry.modified.timespec]
        _ = utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
    }
}

/// A private folder where a restore builds the tree (`tree/`) from the snapshot's manifest
/// (`manifest`), locked while in use so that a later restore can tell it from one that died.
final class StagingFolder {
    let path: String
    var tree: String { "\(path)/tree" }
    var trash: String { "\(path)/trash" }
    var manifest: String { "\(path)/manifest" }
    private var lockDescriptor: Int32 = -1
    /// The selected folders, in manifest order (their metadata is applied last).
    private(set) var folders: [FileEntry] = []
    /// The restored subpath's parts (empty: all).
    private(set) var subpathParts: [[UInt8]] = []

    init(in folder: String, prefix: String) throws {
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        path = "\(folder)/\(prefix)\(suffix)"
        guard mkdir(path, 0o700) == 0 else { throw FileIOError(operation: "create folder", path: path, code: errno) }
        lockDescriptor = try openDescriptor("\(path)/lock", O_RDWR | O_CREAT, 0o600, operation: "create")
        _ = flock(lockDescriptor, LOCK_EX | LOCK_NB)
        try makePrivateDirectory(trash)
    }

    /// Removes the staging folder and everything left in it.
    func remove() {
        removeTree(path)
        if lockDescriptor >= 0 {
            close(lockDescriptor)
            lockDescriptor = -1
        }
    }

    /// Downloads the manifest and the packs needed, writes the selected entries into `tree`
    /// checking every blob's hash, and sets files' and links' metadata; folders' metadata is left
    /// to the caller (`folders`).
    func build(job: FileSetRestoreJob, snapshot: RemoteFileSnapshot) throws -> FileSetRestoreReport {
        try fetchManifest(snapshot, from: job.target, keys: job.keys, to: manifest)
        var report = FileSetRestoreReport(snapshot: snapshot, destination: tree)
        let subpath: [UInt8]? = try job.subpath.flatMap { text in
            var parts = Array(text.utf8).split(separator: UInt8(ascii: "/")).map(Array.init)
            parts.removeAll { $0 == [UInt8(ascii: ".")] }
            guard !parts.contains([UInt8(ascii: "."), UInt8(ascii: ".")]) else {
                throw RestoreError.invalidArgument("--path \(text): must stay inside the set (no ..)")
            }
            subpathParts = parts
            return parts.isEmpty ? nil : Array(parts.joined(separator: [UInt8(ascii: "/")]))
        }
        func isSelected(_ path: [UInt8]) -> Bool {
            guard let subpath else { return true }
            if path == FileEntry.rootPath { return true }
            if path == subpath { return true }
            if path.count > subpath.count, path.starts(with: subpath), path[subpath.count] == UInt8(ascii: "/") { return true }
            // A folder on the way to the subpath.
            return subpath.count > path.count && subpath.starts(with: path) && subpath[path.count] == UInt8(ascii: "/")
        }

        // Pass 1: check every path, make folders and empty files, and note where each blob goes.
        let reader = try ManifestReader(path: manifest)
        let header = reader.header
        let placer = BlobPlacer(root: tree, set: job.set, chunkSize: header.chunkSize)
        placer.packs = header.packs
        var folderPaths = Set<[UInt8]>()
        var previous: [UInt8]?
        var found = subpath == nil
        var neededPacks = Set<Int>()
        while let entry = try reader.next() {
            try checkSafe(entry, folders: folderPaths, previous: previous, set: job.set)
            previous = entry.path
            if entry.type == .directory { folderPaths.insert(entry.path) }
            guard isSelected(entry.path) else { continue }
            if entry.path == subpath { found = true }
            switch entry.type {
            case .directory:
                let made = withFilePath(tree, entry.path) { mkdir($0, 0o700) }
                if made != 0 && !(entry.path == FileEntry.rootPath && errno == EEXIST) {
                    throw FileIOError(operation: "create folder", path: livePath(tree, entry.path), code: errno)
                }
                folders.append(entry)
                report.folders += 1
            case .file:
                try placer.addFile(entry)
                for blob in entry.blobs { neededPacks.insert(blob.pack) }
                report.files += 1
                report.bytes += entry.size
            case .symlink:
                report.links += 1
            }
        }
        guard found else {
            throw FileSetError.pathNotInSnapshot(set: job.set, id: snapshot.id.description, path: job.subpath ?? "")
        }

        // Pass 2: each needed pack once, its blobs written where they go and checked.
        let listing = neededPacks.isEmpty ? [] : try job.target.list(prefix: "\(job.set)/\(FileSetLayout.packFolder)/")
        let sizes = Dictionary(listing.map { ($0.key, $0.size) }, uniquingKeysWith: { first, _ in first })
        let keys = neededPacks.sorted().map { "\(job.set)/\(header.packs[$0])" }
        if let missing = keys.first(where: { sizes[$0] == nil }) {
            throw FileSetError.packMissing(set: job.set, target: job.target.name, pack: String(missing.dropFirst(job.set.count + 1)))
        }
        job.progress?.total = keys.reduce(0) { $0 + (sizes[$1] ?? 0) }
        defer { job.progress?.end() }
        try readPacks(keys, from: job.target, format: snapshot.format, keys: job.keys, into: placer, progress: job.progress)
        report.packs = keys.count
        try placer.finish()

        // Pass 3: files' and links' metadata; links are made now, after every write.
        let again = try ManifestReader(path: manifest)
        while let entry = try again.next() {
            guard isSelected(entry.path) else { continue }
            switch entry.type {
            case .file:
                applyMetadata(entry, in: tree)
            case .symlink:
                let made = withFilePath(tree, entry.path) { target in
                    (entry.linkTarget + [0]).withUnsafeBufferPointer { bytes in
                        bytes.withMemoryRebound(to: CChar.self) { symlink($0.baseAddress!, target) }
                    }
                }
                guard made == 0 else { throw FileIOError(operation: "create link", path: livePath(tree, entry.path), code: errno) }
                applyMetadata(entry, in: tree)
            case .directory:
                break
            }
        }
        // Folders too (the caller sets them again where the tree lands).
        for folder in folders.reversed() { applyMetadata(folder, in: tree) }
        return report
    }

    /// Refuses paths that could write outside the tree: absolute, `.`/`..`/empty parts, out of
    /// manifest order, or under something that is not a folder of the manifest.
    private func checkSafe(_ entry: FileEntry, folders: Set<[UInt8]>, previous: [UInt8]?, set: String) throws {
        let path = entry.path
        if path == FileEntry.rootPath {
            guard previous == nil, entry.type == .directory else { throw FileSetError.unsafePath(set: set, path: ".") }
            return
        }
        let parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard previous != nil, path.first != UInt8(ascii: "/"), !parts.contains(where: {
            $0.isEmpty || $0 == [UInt8(ascii: ".")] || $0 == [UInt8(ascii: "."), UInt8(ascii: ".")]
        }) else {
            throw FileSetError.unsafePath(set: set, path: entry.displayPath)
        }
        if let previous, !manifestPathPrecedes(previous, path) {
            throw FileSetError.unsafePath(set: set, path: entry.displayPath)
        }
        let parent = parts.count == 1 ? FileEntry.rootPath : Array(path[..<path.lastIndex(of: UInt8(ascii: "/"))!])
        guard folders.contains(parent) else { throw FileSetError.unsafePath(set: set, path: entry.displayPath) }
    }
}

/// Writes blobs, as the packs' tar streams deliver them, at their offsets in every file that uses
/// them, hashing each on the way and refusing one whose hash is not its name. Its index is compact
/// (about 60 bytes a blob and the path's bytes): one sorted table of blob uses, one buffer of paths.
final class BlobPlacer: TarMemberHandler {
    /// One use of a blob: chunk `chunk` of file `file`, found in pack `pack` (-1 once written).
    private struct Use {
        var hash: BlobHash
        var file: Int32
        var chunk: Int32
        var pack: Int32
    }

    private let root: String
    private let set: String
    private let chunkSize: Int64
    private var uses: [Use] = []
    private var isSorted = false
    private var pathBytes: [UInt8] = []
    private var pathStarts: [Int] = [0]
    private var sizes: [Int64] = []
    private var remaining: [Int64] = []
    private let hasher = ContentHasher()
    private var current: (hash: BlobHash, uses: Range<Int>, descriptors: [Int32], written: Int64)?
    /// The pack names by number, for messages.
    var packs: [String] = []

    init(root: String, set: String, chunkSize: Int) {
        self.root = root
        self.set = set
        self.chunkSize = Int64(chunkSize)
    }

    private func path(_ file: Int32) -> [UInt8] {
        Array(pathBytes[pathStarts[Int(file)]..<pathStarts[Int(file) + 1]])
    }

    /// Creates `entry`'s file (empty) in the tree and notes where its blobs go.
    func addFile(_ entry: FileEntry) throws {
        let descriptor = withFilePath(root, entry.path) { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600) }
        guard descriptor >= 0 else { throw FileIOError(operation: "create", path: livePath(root, entry.path), code: errno) }
        close(descriptor)
        let expectedBlobs = entry.size == 0 ? 0 : Int((entry.size + chunkSize - 1) / chunkSize)
        guard entry.blobs.count == expectedBlobs else {
            throw ManifestError(line: 0, detail: "\(entry.displayPath): \(entry.blobs.count) blobs for \(entry.size) bytes")
        }
        let file = Int32(sizes.count)
        pathBytes.append(contentsOf: entry.path)
        pathStarts.append(pathBytes.count)
        sizes.append(entry.size)
        remaining.append(entry.size)
        for (index, blob) in entry.blobs.enumerated() {
            uses.append(Use(hash: blob.hash, file: file, chunk: Int32(index), pack: Int32(blob.pack)))
        }
        isSorted = false
    }

    /// The uses of `hash`, by binary search in the sorted table.
    private func usesOf(_ hash: BlobHash) -> Range<Int> {
        if !isSorted {
            uses.sort { $0.hash < $1.hash }
            isSorted = true
        }
        var low = 0
        var high = uses.count
        while low < high {
            let middle = (low + high) / 2
            if uses[middle].hash < hash { low = middle + 1 } else { high = middle }
        }
        var end = low
        while end < uses.count && uses[end].hash == hash { end += 1 }
        return low..<end
    }

    private func size(of use: Use) -> Int64 {
        min(chunkSize, sizes[Int(use.file)] - Int64(use.chunk) * chunkSize)
    }

    func beginMember(name: [UInt8], size: Int64) throws -> Bool {
        guard name.count == 67, name[2] == UInt8(ascii: "/"), let hash = BlobHash(hex: name[3...]) else { return false }
        let range = usesOf(hash)
        guard !range.isEmpty, uses[range.lowerBound].pack >= 0 else { return false }  // not needed, or written already
        if let wrong = uses[range].first(where: { self.size(of: $0) != size }) {
            throw FileSetError.contentMismatch(set: set, detail: "blob \(hash) has \(size) bytes, the manifest expects \(self.size(of: wrong))")
        }
        var descriptors: [Int32] = []
        for use in uses[range] {
            let descriptor = withFilePath(root, path(use.file)) { open($0, O_WRONLY | O_CLOEXEC | O_NOFOLLOW) }
            guard descriptor >= 0 else {
                let code = errno
                for open in descriptors { close(open) }
                throw FileIOError(operation: "open", path: livePath(root, path(use.file)), code: code)
            }
            descriptors.append(descriptor)
        }
        hasher.reset()
        current = (hash, range, descriptors, 0)
        return true
    }

    func memberBytes(_ bytes: UnsafeRawBufferPointer) throws {
        guard var member = current else { return }
        hasher.update(bytes)
        for (use, descriptor) in zip(uses[member.uses], member.descriptors) {
            let offset = Int64(use.chunk) * chunkSize + member.written
            var done = 0
            while done < bytes.count {
                let count = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + Int64(done)))
                if count < 0 {
                    if errno == EINTR { continue }
                    throw FileIOError(operation: "write", path: livePath(root, path(use.file)), code: errno)
                }
                done += count
            }
        }
        member.written += Int64(bytes.count)
        current = member
    }

    func endMember() throws {
        guard let member = current else { return }
        current = nil
        for descriptor in member.descriptors { close(descriptor) }
        guard BlobHash(digest: hasher.finish()) == member.hash else {
            let pack = packs.indices.contains(Int(uses[member.uses.lowerBound].pack)) ? packs[Int(uses[member.uses.lowerBound].pack)] : "its pack"
            throw FileSetError.contentMismatch(set: set, detail: "blob \(member.hash) (in \(pack)) does not have that hash: the pack is damaged")
        }
        for index in member.uses {
            remaining[Int(uses[index].file)] -= size(of: uses[index])
            uses[index].pack = -1
        }
    }

    /// Throws when a blob was not in any pack read, naming the pack the manifest said.
    func finish() throws {
        if let missing = uses.first(where: { $0.pack >= 0 }) {
            let pack = packs.indices.contains(Int(missing.pack)) ? packs[Int(missing.pack)] : "its pack"
            throw FileSetError.contentMismatch(set: set, detail: "blob \(missing.hash) is missing from \(pack)")
        }
        if let index = remaining.firstIndex(where: { $0 != 0 }) {
            throw FileSetError.contentMismatch(set: set, detail: "\(String(decoding: path(Int32(index)), as: UTF8.self)) is incomplete")
        }
    }
}

/// Reads `packs` (object keys) of a snapshot in `format` one after another through one chain —
/// decryption on the downloading thread, then one parallel gunzip and one tar reader for all, as
/// the packs' gzip and tar streams concatenate — into `handler`. One chain for all packs keeps the
/// memory of a restore that of one download, however many packs it reads.
func readPacks(_ packs: [String], from target: any Target, format: PayloadFormat, keys: DecryptionKeys,
               into handler: any TarMemberHandler, progress: ProgressMeter?) throws {
    let tar = TarReader(handler: handler, concatenated: true)
    let toDecompressor = ThreadedSink(next: try ParallelGzipDecompressor(next: tar), name: "offsite-restore-gunzip")
    do {
        for key in packs {
            let held = HeldFinishSink(toDecompressor)
            var head: any ByteSink = format == .encrypted ? try makeAgeDecryptor(keys: keys, next: held) : held
            if let progress { head = ProgressSink(next: head, meter: progress) }
            try target.download(key: key, into: head)
            try head.finish()
        }
        try toDecompressor.finish()
    } catch {
        toDecompressor.abandon()
        throw error
    }
}

/// Passes bytes on but not the end of the stream: several objects feed one chain.
final class HeldFinishSink: ByteSink {
    let next: any ByteSink

    init(_ next: any ByteSink) { self.next = next }

    func write(_ bytes: UnsafeRawBufferPointer) throws { try next.write(bytes) }

    func finish() throws {}
}

/// Merges a staged tree into the live one, entry by entry with `rename` (see
/// `restoreFileSetInPlace`).
struct TreeMerger {
    let staged: String
    let live: String
    let trash: String
    let leftOut: LeftOutPaths
    /// Entries removed from the live tree.
    private(set) var removed = 0
    /// Folders on the way to the subpath that had to be made.
    private(set) var created = Set<[UInt8]>()
    private var trashCount = 0

    init(staged: String, live: String, trash: String, leftOut: LeftOutPaths) {
        self.staged = staged
        self.live = live
        self.trash = trash
        self.leftOut = leftOut
    }

    /// Merges the entry at `parts` (empty: the root), making the folders on the way when missing.
    mutating func merge(along parts: [[UInt8]]) throws {
        var path: [UInt8] = []
        for part in parts.dropLast() {
            path = path.isEmpty ? part : path + [UInt8(ascii: "/")] + part
            var status = stat()
            let exists = withFilePath(live, path) { lstat($0, &status) } == 0
            if exists && (status.st_mode & S_IFMT) == S_IFDIR { continue }
            // Missing, or not a folder: the staged folder (holding only the way down) takes its place.
            try replace(path)
            created.insert(path)
            return
        }
        guard let last = parts.last else {
            try mergeFolder(FileEntry.rootPath)
            return
        }
        let target = path.isEmpty ? last : path + [UInt8(ascii: "/")] + last
        try mergeEntry(target)
    }

    private mutating func mergeEntry(_ path: [UInt8]) throws {
        var stagedStatus = stat()
        guard withFilePath(staged, path, { lstat($0, &stagedStatus) }) == 0 else { return }
        var liveStatus = stat()
        let liveExists = withFilePath(live, path) { lstat($0, &liveStatus) } == 0
        if (stagedStatus.st_mode & S_IFMT) == S_IFDIR && liveExists && (liveStatus.st_mode & S_IFMT) == S_IFDIR {
            try mergeFolder(path)
        } else {
            try replace(path)
        }
    }

    private mutating func mergeFolder(_ path: [UInt8]) throws {
        let stagedNames = try names(staged, path)
        for name in stagedNames { try mergeEntry(child(path, name)) }
        let kept = Set(stagedNames)
        for name in try names(live, path) where !kept.contains(name) {
            let childPath = child(path, name)
            var status = stat()
            guard withFilePath(live, childPath, { lstat($0, &status) }) == 0 else { continue }
            if leftOut.contains(childPath, isFolder: (status.st_mode & S_IFMT) == S_IFDIR) { continue }
            try moveToTrash(childPath)
            removed += 1
        }
    }

    /// Puts the staged entry at `path` in place of the live one: a file or link over a file or
    /// link in one atomic rename; a live folder (or a file where a folder goes) is moved aside first.
    private mutating func replace(_ path: [UInt8]) throws {
        var stagedStatus = stat()
        guard withFilePath(staged, path, { lstat($0, &stagedStatus) }) == 0 else { return }
        var liveStatus = stat()
        if withFilePath(live, path, { lstat($0, &liveStatus) }) == 0 {
            let liveIsFolder = (liveStatus.st_mode & S_IFMT) == S_IFDIR
            let stagedIsFolder = (stagedStatus.st_mode & S_IFMT) == S_IFDIR
            if liveIsFolder || stagedIsFolder { try moveToTrash(path) }
        }
        let moved = withFilePath(staged, path) { from in withFilePath(live, path) { to in rename(from, to) } }
        guard moved == 0 else { throw FileIOError(operation: "rename into", path: livePath(live, path), code: errno) }
    }

    private mutating func moveToTrash(_ path: [UInt8]) throws {
        trashCount += 1
        let destination = "\(trash)/\(trashCount)"
        let moved = withFilePath(live, path) { rename($0, destination) }
        guard moved == 0 else { throw FileIOError(operation: "move aside", path: livePath(live, path), code: errno) }
        removeTree(destination)
    }

    private func child(_ path: [UInt8], _ name: [UInt8]) -> [UInt8] {
        path == FileEntry.rootPath ? name : path + [UInt8(ascii: "/")] + name
    }

    private func names(_ root: String, _ path: [UInt8]) throws -> [[UInt8]] {
        let descriptor = withFilePath(root, path) { open($0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        guard descriptor >= 0 else { throw FileIOError(operation: "open folder", path: livePath(root, path), code: errno) }
        defer { close(descriptor) }
        return try TreeWalker.names(in: descriptor)
    }
}
