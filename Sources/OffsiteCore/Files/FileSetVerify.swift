import Foundation

/// The restore drill for a file set: each snapshot `scope` names on `target` is checked. With
/// keys: its manifest is downloaded and read, every pack it needs is downloaded, decrypted and
/// decompressed, every blob in it is hashed against its name, and every blob the manifest needs
/// must be in the pack it names. Without keys: the manifest, its pack list and every pack in the
/// list must be on the target (status `not decrypted`). Throws when the listing fails or names
/// nothing; one outcome per snapshot otherwise (the set's name in `database`).
public func verifyFileSet(named set: String, on target: any Target, scope: VerifyScope, keys: DecryptionKeys?,
                          temporaryFolder: String? = nil) throws -> [VerifyOutcome] {
    let listing = try FileSetListing(target: target, set: set)
    let snapshots: [RemoteFileSnapshot]
    switch scope {
    case .all:
        snapshots = listing.snapshots
    case .latest:
        snapshots = listing.snapshots.last.map { [$0] } ?? []
    case let .id(id):
        guard let match = listing.snapshot(id) else {
            throw FileSetSelectionError.notFound(set: set, target: target.name, id: id.description)
        }
        snapshots = [match]
    }
    guard !snapshots.isEmpty else { throw FileSetSelectionError.noSnapshots(set: set, target: target.name) }
    return snapshots.map { snapshot in
        let outcome: (VerifyOutcome.Status, String)
        do {
            if let keys, !keys.isEmpty {
                outcome = (.ok, try verifyFully(snapshot, listing: listing, target: target, keys: keys, folder: temporaryFolder))
            } else {
                outcome = (.notDecrypted, try verifyPresence(snapshot, listing: listing, target: target))
            }
        } catch {
            outcome = (.failed, (error as? UserFacingError)?.message ?? "\(error)")
        }
        return VerifyOutcome(database: set, target: target.name, backupID: snapshot.id.description, status: outcome.0,
                             detail: outcome.1)
    }
}

/// Checks, without reading anything encrypted, that what the snapshot needs is on the target.
private func verifyPresence(_ snapshot: RemoteFileSnapshot, listing: FileSetListing, target: any Target) throws -> String {
    guard let object = listing.packLists[snapshot.id.description] else {
        throw FileSetError.packListUnreadable(set: snapshot.set, target: target.name, id: snapshot.id.description)
    }
    let sink = DataSink()
    try target.download(key: object.key, into: sink)
    guard let packs = parsePackList(sink.data) else {
        throw FileSetError.packListUnreadable(set: snapshot.set, target: target.name, id: snapshot.id.description)
    }
    if let missing = packs.first(where: { listing.packs[$0] == nil }) {
        throw FileSetError.packMissing(set: snapshot.set, target: target.name, pack: missing)
    }
    return "the manifest and its \(packs.count) pack(s) are there; no identity or passphrase to decrypt them"
}

/// Reads the whole snapshot back and checks every blob; returns what was checked.
private func verifyFully(_ snapshot: RemoteFileSnapshot, listing: FileSetListing, target: any Target, keys: DecryptionKeys,
                         folder: String?) throws -> String {
    let base = folder ?? FileManager.default.temporaryDirectory.path
    try makePrivateDirectory(base)
    let path = "\(base)/.offsite-verify-\(UUID().uuidString)"
    defer { unlink(path) }
    try fetchManifest(snapshot, from: target, keys: keys, to: path)
    let reader = try ManifestReader(path: path)
    let header = reader.header
    var needed: [BlobHash: Int] = [:]
    var files = 0
    var bytes: Int64 = 0
    while let entry = try reader.next() {
        guard entry.type == .file else { continue }
        files += 1
        bytes += entry.size
        for blob in entry.blobs { needed[blob.hash] = blob.pack }
    }
    let checker = BlobChecker(needed: needed, set: snapshot.set)
    for pack in header.packs where listing.packs[pack] == nil {
        throw FileSetError.packMissing(set: snapshot.set, target: target.name, pack: pack)
    }
    checker.packs = header.packs
    try readPacks(header.packs.map { "\(snapshot.set)/\($0)" }, from: target, format: snapshot.format, keys: keys,
                  into: checker, progress: nil)
    if let (hash, pack) = checker.needed.first {
        throw FileSetError.contentMismatch(set: snapshot.set, detail: "blob \(hash) is missing from \(header.packs[pack])")
    }
    return "\(files) files, \(formatBytes(bytes)), \(header.packs.count) pack(s): every blob's content matches its hash"
}

/// Hashes every member of a pack against its name and ticks off the blobs a manifest needs there.
private final class BlobChecker: TarMemberHandler {
    var needed: [BlobHash: Int]
    let set: String
    var packs: [String] = []
    private let hasher = ContentHasher()
    private var current: BlobHash?

    init(needed: [BlobHash: Int], set: String) {
        self.needed = needed
        self.set = set
    }

    func beginMember(name: [UInt8], size: Int64) throws -> Bool {
        guard name.count == 67, name[2] == UInt8(ascii: "/"), let hash = BlobHash(hex: name[3...]) else {
            throw FileSetError.contentMismatch(set: set, detail: "a pack holds \(String(decoding: name, as: UTF8.self)), which is not a blob")
        }
        current = hash
        hasher.reset()
        return true
    }

    func memberBytes(_ bytes: UnsafeRawBufferPointer) throws { hasher.update(bytes) }

    func endMember() throws {
        guard let hash = current else { return }
        current = nil
        guard BlobHash(digest: hasher.finish()) == hash else {
            let pack = needed[hash].map { packs[$0] } ?? "a pack"
            throw FileSetError.contentMismatch(set: set, detail: "blob \(hash) (in \(pack)) does not have that hash: the pack is damaged")
        }
        needed[hash] = nil
    }
}
