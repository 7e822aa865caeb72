import Foundation

// What a file set's backups remember between runs, in the local folder (`LOCALDIR/.offsite-files/
// NAME/`, 0700; files 0600): the lock, the journals of runs, per target the last snapshot made
// there (its base for the next run), plain copies of those manifests, and the pack lists of
// snapshots (immutable by id). The host cannot decrypt what it shipped: this is what it knows.

/// Why a file set operation could not run.
public enum FileSetError: UserFacingError, Equatable {
    /// The set's folder is missing or not a folder.
    case rootMissing(set: String, path: String)
    /// Another process holds the set's lock.
    case busy(set: String, holder: String)
    /// No file set of that name is configured.
    case unknownSet(String)
    /// The snapshot needs a pack that the target does not hold (any more).
    case packMissing(set: String, target: String, pack: String)
    /// The snapshot's pack list is missing or unreadable.
    case packListUnreadable(set: String, target: String, id: String)
    /// A blob's content is not what its name says, or the blob is missing from its pack.
    case contentMismatch(set: String, detail: String)
    /// A path in a manifest that restore refuses to write.
    case unsafePath(set: String, path: String)
    /// The restore's destination is in the way.
    case destinationExists(path: String)
    /// No entry at the path `--path` names.
    case pathNotInSnapshot(set: String, id: String, path: String)

    public var message: String {
        switch self {
        case let .rootMissing(set, path): return "file set \(set): \(path) is not a folder"
        case let .busy(set, holder): return "file set \(set) is being backed up or pruned by \(holder)"
        case let .unknownSet(name): return "no file set named \(name)"
        case let .packMissing(set, target, pack): return "file set \(set) on target \(target): \(pack) is missing"
        case let .packListUnreadable(set, target, id): return "file set \(set) on target \(target): the pack list of \(id) is missing or unreadable"
        case let .contentMismatch(set, detail): return "file set \(set): \(detail)"
        case let .unsafePath(set, path): return "file set \(set): the manifest holds the unsafe path \(path)"
        case let .destinationExists(path): return "\(path) already exists and is not an empty folder"
        case let .pathNotInSnapshot(set, id, path): return "file set \(set): snapshot \(id) has nothing at \(path)"
        }
    }

    public var hint: String? {
        switch self {
        case .rootMissing: return "check files[].path in the configuration"
        case .busy: return "wait for it to finish, then try again"
        case .unknownSet: return "run `offsite list` to see the file sets, or check files[] in the configuration"
        case .packMissing, .contentMismatch: return "the snapshot is damaged; restore an older one and run `offsite verify --files NAME`"
        case .packListUnreadable: return "retention keeps every pack until the list is readable; `offsite verify` checks the snapshots"
        case .unsafePath: return "the manifest was not written by offsite; do not restore it"
        case .destinationExists: return "choose a new --output folder"
        case .pathNotInSnapshot: return "paths are relative to the set's folder, such as invoices/2026"
        }
    }
}

/// The local memory of one file set.
final class FileSetCache {
    /// The set's folder in the cache.
    let folder: String
    /// The set's name.
    let set: String
    private var lockDescriptor: Int32 = -1

    /// Opens (creating) `root/set`.
    init(root: String, set: String) throws {
        self.set = set
        folder = "\(root)/\(set)"
        try makePrivateDirectory(root)
        for sub in ["", "/bases", "/manifests", "/packlists", "/journals"] { try makePrivateDirectory(folder + sub) }
    }

    deinit {
        unlock()
    }

    /// Takes the set's lock (one backup or prune of a set at a time per local folder); throws
    /// `FileSetError.busy` naming the holder when another process has it.
    func lock() throws {
        guard lockDescriptor < 0 else { return }
        let path = "\(folder)/lock"
        let descriptor = try openDescriptor(path, O_RDWR | O_CREAT, 0o600, operation: "open")
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            let holder = (try? readPrefix(of: path, count: 64)).map { String(decoding: $0, as: UTF8.self) }?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(descriptor)
            if code == EWOULDBLOCK {
                throw FileSetError.busy(set: set, holder: holder.isEmpty ? "another process" : "process \(holder)")
            }
            throw FileIOError(operation: "lock", path: path, code: code)
        }
        ftruncate(descriptor, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }
        lockDescriptor = descriptor
    }

    /// Releases the lock.
    func unlock() {
        if lockDescriptor >= 0 {
            close(lockDescriptor)
            lockDescriptor = -1
        }
    }

    /// The short key a target is known by here: a hash of its location (not its name, which a
    /// configuration may change, nor its URL, which may carry a user name).
    static func key(of target: any Target) -> String {
        let digest = Array(target.location.utf8).withUnsafeBytes { ContentHasher.digest(of: $0) }
        return digest.prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// The last snapshot made on the target with `key`, if remembered, with the name of its plain
    /// manifest in the cache (`ID`, or `ID~VARIANT` when targets with different bases got different
    /// manifests for one id).
    func base(forTarget key: String) -> (id: BackupID, file: String)? {
        guard let bytes = try? readPrefix(of: "\(folder)/bases/\(key)", count: 128) else { return nil }
        let file = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let id = BackupID(file.split(separator: "~", maxSplits: 1)[0]), !file.contains("/") else { return nil }
        return (id, file)
    }

    /// Remembers the snapshot whose plain manifest is `file` as the last one made on the target with `key`.
    func setBase(file: String, forTarget key: String) throws {
        try writeDurably(Data("\(file)\n".utf8), to: "\(folder)/bases/\(key)")
    }

    /// The path of the plain manifest named `file` in the cache (it may not exist).
    func manifestPath(_ file: String) -> String {
        "\(folder)/manifests/\(file)"
    }

    /// The cached plain manifests of snapshot `id` (its variants included).
    func manifestFiles(of id: BackupID) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(folder)/manifests")) ?? []).filter {
            $0 == id.description || $0.hasPrefix("\(id)~")
        }.sorted()
    }

    /// Removes the plain manifests no target's base is.
    func removeUnusedManifests() {
        let bases = Set(((try? FileManager.default.contentsOfDirectory(atPath: "\(folder)/bases")) ?? [])
            .compactMap { base(forTarget: $0)?.file })
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "\(folder)/manifests")) ?? []
        where !bases.contains(name) {
            unlink("\(folder)/manifests/\(name)")
        }
    }

    /// The remembered pack list of snapshot `id`, if any.
    func packList(_ id: BackupID) -> [String]? {
        guard let data = FileManager.default.contents(atPath: "\(folder)/packlists/\(id)") else { return nil }
        return parsePackList(data)
    }

    /// Remembers snapshot `id`'s pack list.
    func rememberPackList(_ packs: [String], of id: BackupID) {
        try? writeDurably(Data(packListText(packs).utf8), to: "\(folder)/packlists/\(id)")
    }

    /// Forgets the pack lists of snapshots not in `ids`.
    func forgetPackLists(except ids: Set<BackupID>) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "\(folder)/packlists")) ?? [] {
            if let id = BackupID(name), ids.contains(id) { continue }
            unlink("\(folder)/packlists/\(name)")
        }
    }

    /// Removes the working folders (`scratch-…`) runs that died left; call with the lock held.
    func removeStaleScratch() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix("scratch-") {
            try? FileManager.default.removeItem(atPath: "\(folder)/\(name)")
        }
    }

    /// The journals runs left behind (with the lock held: runs that died).
    func leftoverJournals() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(folder)/journals")) ?? []).sorted()
            .filter { !$0.hasPrefix(".") }.map { "\(folder)/journals/\($0)" }
    }

    /// A new journal for a run of snapshot `id`.
    func makeJournal(for id: BackupID) throws -> FileSetJournal {
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return try FileSetJournal(creating: "\(folder)/journals/\(id)-\(suffix)", id: id)
    }
}

/// Writes `data` to `path` through a temporary file, fsync and rename: the file is old or new.
func writeDurably(_ data: Data, to path: String) throws {
    let file = try AtomicFile(beside: path)
    do {
        try data.withUnsafeBytes { try file.write($0) }
        try file.commit(as: path)
    } catch {
        file.discard()
        throw error
    }
}

/// What a run did on the targets, written before it does it, so that the next run can undo what a
/// run that died left: `run ID`, then `pack TARGETKEY NAME` before each pack upload starts, and
/// `done TARGETKEY` once the snapshot is published there. Every line is fsynced.
final class FileSetJournal {
    /// The journal file.
    let path: String
    private let descriptor: Int32

    /// Creates the journal file of a run of snapshot `id`.
    init(creating path: String, id: BackupID) throws {
        self.path = path
        descriptor = try openDescriptor(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0o600, operation: "create")
        try append("run \(id)")
        try fsyncDirectory(parentDirectory(of: path))
    }

    deinit {
        close(descriptor)
    }

    /// Appends `line` and fsyncs it.
    func append(_ line: String) throws {
        let bytes = Array((line + "\n").utf8)
        try bytes.withUnsafeBytes { try writeFully(descriptor, $0.baseAddress!, $0.count, path: path) }
        while fsync(descriptor) != 0 {
            if errno == EINTR { continue }
            throw FileIOError(operation: "fsync", path: path, code: errno)
        }
    }

    /// Removes the journal file.
    func remove() {
        unlink(path)
        // A journal that comes back after a crash only makes the next run check again.
        try? fsyncDirectory(parentDirectory(of: path))
    }

    /// What a journal file says: the run's snapshot id and, per target key, the packs it started
    /// and whether the snapshot was published there.
    struct Contents {
        var id: BackupID?
        var packs: [String: [String]] = [:]
        var done: Set<String> = []
    }

    /// Reads a journal file; lines it does not know (a torn last line) are ignored.
    static func read(_ path: String) -> Contents {
        var contents = Contents()
        guard let data = FileManager.default.contents(atPath: path) else { return contents }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ")
            switch (parts.first, parts.count) {
            case ("run", 2): contents.id = BackupID(parts[1])
            case ("pack", 3): contents.packs[String(parts[1]), default: []].append(String(parts[2]))
            case ("done", 2): contents.done.insert(String(parts[1]))
            default: break
            }
        }
        return contents
    }

    /// Rewrites the journal at `path` to hold only `contents` (or removes it when nothing is left).
    static func rewrite(_ path: String, with contents: Contents) throws {
        let open = contents.packs.filter { !contents.done.contains($0.key) && !$0.value.isEmpty }
        guard let id = contents.id, !open.isEmpty else {
            unlink(path)
            try fsyncDirectory(parentDirectory(of: path))
            return
        }
        var lines = ["run \(id)"]
        for (key, packs) in open.sorted(by: { $0.key < $1.key }) {
            lines += packs.map { "pack \(key) \($0)" }
        }
        try writeDurably(Data((lines.joined(separator: "\n") + "\n").utf8), to: path)
    }
}

/// Undoes what runs that died left on `targets` (already listed: `listings` by target key): for
/// each leftover journal, a target where the run's snapshot is listed keeps it (and its cached
/// manifest becomes that target's base); elsewhere its packs and pack list are deleted, with the
/// temporaries and open uploads in the set's folder. What cannot be done now (a target not given
/// or not reachable, a failed delete) stays in the journal. Returns what was done, for the log.
func recoverLeftoverJournals(cache: FileSetCache, targets: [(key: String, target: any Target, listing: FileSetListing)]) -> [String] {
    var done: [String] = []
    for path in cache.leftoverJournals() {
        var contents = FileSetJournal.read(path)
        guard let id = contents.id else {
            unlink(path)
            continue
        }
        for (key, packs) in contents.packs where !contents.done.contains(key) {
            guard let entry = targets.first(where: { $0.key == key }) else { continue }
            if entry.listing.snapshot(id) != nil {
                // It died after publishing: the snapshot stands, and becomes the base when the
                // cache holds its manifest.
                let files = cache.manifestFiles(of: id)
                if let file = files.first(where: { $0.hasSuffix("~\(key)") }) ?? files.first(where: { !$0.contains("~") }) {
                    try? cache.setBase(file: file, forTarget: key)
                }
                contents.done.insert(key)
                done.append("\(entry.target.name): snapshot \(id) of a run that stopped was complete; kept")
                continue
            }
            var left: [String] = []
            for pack in packs {
                do { try entry.target.delete(key: "\(cache.set)/\(pack)") } catch { left.append(pack) }
            }
            try? entry.target.delete(key: FileSetLayout.packListKey(set: cache.set, id: id))
            if let cleaning = entry.target as? LeftoverCleaning {
                _ = try? cleaning.removeLeftovers(of: cache.set, olderThan: 0)
            }
            contents.packs[key] = left
            done.append("\(entry.target.name): removed \(packs.count - left.count) pack(s) of snapshot \(id), which a run that stopped left unpublished")
        }
        try? FileSetJournal.rewrite(path, with: contents)
    }
    return done
}
