import Foundation

/// What a prune of one file set on one target did (or, in a dry run, would do).
public struct FileSetPruneReport {
    /// The set's name.
    public var set: String
    /// The target's name.
    public var target: String
    /// What retention decided for the snapshots, with the reasons.
    public var plan: RetentionPlan
    /// Snapshots removed (dry run: to remove).
    public var removedSnapshots: [BackupID] = []
    /// Packs deleted (dry run: to delete), by name.
    public var deletedPacks: [String] = []
    /// Their bytes.
    public var deletedPackBytes: Int64 = 0
    /// Packs kept because a kept snapshot needs them.
    public var keptPacks = 0
    /// Their bytes.
    public var keptPackBytes: Int64 = 0
    /// Packs no snapshot needs that are younger than the safe age (a backup may be writing them).
    public var youngUnneededPacks = 0
    /// Whether packs were collected at all (false when a kept snapshot's pack list could not be
    /// read, or a deletion failed: then no pack is deleted).
    public var collectedPacks = true
    /// What undoing a run that died did, for the log.
    public var recovered: [String] = []
    /// What went wrong without stopping the prune: failed deletions, unreadable lists.
    public var problems: [String] = []
}

/// The default safe age of packs no snapshot needs: younger ones may belong to a backup in
/// progress elsewhere (docs/FILESETS.md, "Concurrency: the safe age").
public let fileSetPackSafeAge: Duration = .seconds(24 * 3600)

/// Applies `policy` to the snapshots of file set `set` on `target`, then deletes the packs no kept
/// snapshot needs that are older than `safeAge` (docs/FILESETS.md, "Retention and garbage
/// collection"). One listing; nothing is deleted when it fails (this throws), and no pack is
/// deleted when a kept snapshot's pack list cannot be read or a snapshot could not be removed.
/// With `cacheFolder`, takes the set's lock (throws when busy) and first undoes a run that died.
public func pruneFileSet(named set: String, on target: any Target, policy: RetentionPolicy, cacheFolder: String?,
                         dryRun: Bool = false, safeAge: Duration = fileSetPackSafeAge, keys: DecryptionKeys? = nil,
                         timeZone: TimeZone = TimeZone(identifier: "UTC")!, now: () -> Date = Date.init) throws -> FileSetPruneReport {
    let cache = try cacheFolder.map { try FileSetCache(root: $0, set: set) }
    try cache?.lock()
    defer { cache?.unlock() }
    var listing = try FileSetListing(target: target, set: set)
    var recovered: [String] = []
    if let cache, !dryRun, !cache.leftoverJournals().isEmpty {
        recovered = recoverLeftoverJournals(cache: cache, targets: [(FileSetCache.key(of: target), target, listing)])
        listing = try FileSetListing(target: target, set: set)
    }
    let plan = planRetention(backups: listing.snapshots.map { RetainedBackup(id: $0.id, key: $0.key) }, policy: policy,
                             timeZone: timeZone)
    var report = FileSetPruneReport(set: set, target: target.name, plan: plan, recovered: recovered)

    // The packs every kept snapshot needs.
    var needed = Set<String>()
    for kept in plan.keep {
        if let packs = packList(of: kept.backup.id, set: set, target: target, listing: listing, cache: cache, keys: keys) {
            needed.formUnion(packs)
        } else {
            report.collectedPacks = false
            report.problems.append(FileSetError.packListUnreadable(set: set, target: target.name, id: kept.backup.id.description).message)
        }
    }

    // The snapshots retention removes: manifest first (the snapshot is gone), then its pack list.
    for removed in plan.remove {
        report.removedSnapshots.append(removed.id)
        guard !dryRun else { continue }
        do {
            try target.delete(key: removed.key)
            try target.delete(key: FileSetLayout.packListKey(set: set, id: removed.id))
        } catch {
            report.collectedPacks = false
            report.problems.append("removing snapshot \(removed.id): \((error as? UserFacingError)?.message ?? "\(error)")")
        }
    }

    // Pack lists left without a manifest (a run that died elsewhere), once old enough.
    let cutoff = now().addingTimeInterval(-safeAge.timeInterval)
    let removedIDs = Set(plan.remove.map(\.id.description))
    for (id, object) in listing.packLists where listing.snapshots.allSatisfy({ $0.id.description != id }) && !removedIDs.contains(id) {
        guard let parsed = BackupID(id), parsed.date <= cutoff, (object.modified ?? .distantPast) <= cutoff else { continue }
        if !dryRun { try? target.delete(key: object.key) }
    }

    // Packs no kept snapshot needs, once older than the safe age by their name and their date.
    for (name, object) in listing.packs.sorted(by: { $0.key < $1.key }) {
        if needed.contains(name) {
            report.keptPacks += 1
            report.keptPackBytes += object.size
            continue
        }
        guard report.collectedPacks else { continue }
        let written = Date(timeIntervalSince1970: TimeInterval(FileSetLayout.packTime(Substring(name)) ?? Int64.max / 2))
        guard written <= cutoff, (object.modified ?? .distantPast) <= cutoff else {
            report.youngUnneededPacks += 1
            continue
        }
        if !dryRun {
            do {
                try target.delete(key: object.key)
            } catch {
                report.problems.append("deleting \(name): \((error as? UserFacingError)?.message ?? "\(error)")")
                continue
            }
        }
        report.deletedPacks.append(name)
        report.deletedPackBytes += object.size
    }
    if !dryRun { cache?.forgetPackLists(except: Set(plan.keep.map(\.backup.id))) }
    return report
}

/// The pack names snapshot `id` needs: from the cache, else its pack list on the target, else
/// (with keys) its manifest; nil when none can be read.
private func packList(of id: BackupID, set: String, target: any Target, listing: FileSetListing, cache: FileSetCache?,
                      keys: DecryptionKeys?) -> [String]? {
    if let packs = cache?.packList(id) { return packs }
    if let object = listing.packLists[id.description] {
        let sink = DataSink()
        if (try? target.download(key: object.key, into: sink)) != nil, let packs = parsePackList(sink.data) {
            cache?.rememberPackList(packs, of: id)
            return packs
        }
    }
    guard let keys, !keys.isEmpty, let snapshot = listing.snapshot(id) else { return nil }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("offsite-manifest-\(UUID().uuidString)").path
    defer { unlink(path) }
    guard (try? fetchManifest(snapshot, from: target, keys: keys, to: path)) != nil,
          let reader = try? ManifestReader(path: path) else { return nil }
    return reader.header.packs
}
