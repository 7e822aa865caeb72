import Foundation

/// What retention decides for one database's full backups and change objects together
/// (docs/CONTINUOUS.md §5): the full-backup plan, in which every base of a chain with a change
/// object inside `keep` is kept (reason `base of changes`), and the change and compacted objects
/// to keep and remove, each with why.
public struct ContinuousRetentionPlan: Sendable, Equatable {
    /// A change or compacted object and why it is kept or removed.
    public struct Decision: Sendable, Equatable {
        /// The object.
        public var object: RemoteChangeObject
        /// Why.
        public var reason: String
    }

    /// The full backups' plan.
    public var backups: RetentionPlan
    /// The change and compacted objects kept, by base then sequence.
    public var keepChanges: [Decision]
    /// The change and compacted objects to remove, in the order to remove them: per chain its
    /// compacted objects, then its change objects from the newest back (so that a prune cut short
    /// leaves chains that still link from their base), before any full backup.
    public var removeChanges: [Decision]
}

/// The reason a base is kept for its chain.
public let baseOfChangesReason = "base of changes"

/// How long change objects are kept when nothing else is said: 24 hours.
public let defaultChangeKeep: Duration = .seconds(24 * 3600)

/// The decisions as a few lines: consecutive change objects of one chain with the same fate and
/// reason on one line (`20261203T120000Z-scheduled c00000001–c00000042 (42)  within 1d`),
/// compacted objects each on their own.
public func summarizeChangeDecisions(_ decisions: [ContinuousRetentionPlan.Decision]) -> [String] {
    var lines: [String] = []
    var run: (base: BackupID, first: Int, last: Int, count: Int, reason: String)?
    func flush() {
        guard let current = run else { return }
        let range = current.first == current.last ? "c\(eightDigits(current.first))"
            : "c\(eightDigits(current.first))–c\(eightDigits(current.last))"
        lines.append("\(current.base) \(range) (\(current.count))  \(current.reason)")
        run = nil
    }
    for decision in decisions {
        let name = decision.object.name
        switch name.kind {
        case let .change(sequence):
            if let current = run, current.base == name.base, current.reason == decision.reason,
               sequence == current.last + 1 || sequence == current.first - 1 {
                run = (current.base, min(current.first, sequence), max(current.last, sequence), current.count + 1, current.reason)
            } else {
                flush()
                run = (name.base, sequence, sequence, 1, decision.reason)
            }
        case let .compacted(from, to):
            flush()
            lines.append("\(name.base) k\(eightDigits(from))-\(eightDigits(to))  \(decision.reason)")
        }
    }
    flush()
    return lines
}

private func eightDigits(_ value: Int) -> String {
    let text = String(value)
    return String(repeating: "0", count: max(8 - text.count, 0)) + text
}

/// Decides retention for one database's listing: `policy` for the full backups, `keep` (measured
/// back from `now`) for change objects:
/// - a change object is kept while its last commit is within `keep`, and so is every object before
///   a kept one (a chain is only ever cut whole from its end back, never left with a hole);
/// - a compacted object goes with the last change object it covers (or, when that one is not
///   listed, is judged by its own last commit and successor like a change object);
/// - a full backup that is the base of a chain with a kept object is kept (`base of changes`);
/// - a change object never outlives its base: when the full-backup plan removes a base, its
///   objects go with it; objects whose base is not listed at all are judged by `keep` alone (a
///   chain's first objects can land before its base's upload finishes).
/// Nothing depends on the clock but `now`. Nothing is decided here about failed listings: call it
/// with a complete listing only.
public func planContinuousRetention(_ listing: ContinuousListing, database: String, policy: RetentionPolicy, keep: Duration,
                                    now: Date, timeZone: TimeZone = TimeZone(identifier: "UTC")!) -> ContinuousRetentionPlan {
    let mine = listing.of(database: database)
    let cutoff = milliseconds(of: now) - Int64(keep.timeInterval * 1000)
    let keepText = "within \(keep.configText)"
    let chains = findChains(in: mine, database: database)

    // Which sequence numbers of each chain are kept, from the newest back.
    var keptSequences: [BackupID: Set<Int>] = [:]
    var basesWithKeptChanges = Set<BackupID>()
    var decisions: [BackupID: [(ContinuousRetentionPlan.Decision, Bool)]] = [:]
    for chain in chains {
        var kept = Set<Int>()
        var reasons: [Int: String] = [:]
        let sequences = Set(chain.changes.map { $0.name.kind.sequences.lowerBound })
        var lastBySequence: [Int: Int64] = [:]
        for object in chain.changes {
            let sequence = object.name.kind.sequences.lowerBound
            lastBySequence[sequence] = max(lastBySequence[sequence] ?? .min, object.name.lastCommit)
        }
        for sequence in sequences.sorted(by: >) {
            if lastBySequence[sequence]! >= cutoff {
                kept.insert(sequence)
                reasons[sequence] = keepText
            } else if kept.contains(sequence + 1) {
                kept.insert(sequence)
                reasons[sequence] = "before a kept change"
            }
        }
        var chainDecisions: [(ContinuousRetentionPlan.Decision, Bool)] = []
        for object in chain.changes {
            let sequence = object.name.kind.sequences.lowerBound
            let isKept = kept.contains(sequence)
            chainDecisions.append((.init(object: object, reason: isKept ? reasons[sequence]! : "older than \(keep.configText)"), isKept))
        }
        for object in chain.compacted {
            let to = object.name.kind.sequences.upperBound
            let isKept: Bool
            let reason: String
            if sequences.contains(to) {
                isKept = kept.contains(to)
                reason = isKept ? "covers kept changes" : "its changes are removed"
            } else {
                isKept = object.name.lastCommit >= cutoff || kept.contains(to + 1)
                reason = isKept ? (object.name.lastCommit >= cutoff ? keepText : "before a kept change") : "older than \(keep.configText)"
            }
            chainDecisions.append((.init(object: object, reason: reason), isKept))
        }
        keptSequences[chain.baseID] = kept
        if chainDecisions.contains(where: \.1) { basesWithKeptChanges.insert(chain.baseID) }
        decisions[chain.baseID] = chainDecisions
    }

    // The full backups: the policy, then every base with kept changes.
    var backupPlan = planRetention(backups: mine.backups.map { RetainedBackup(id: $0.id, key: $0.key) }, policy: policy,
                                   timeZone: timeZone)
    for index in backupPlan.keep.indices where basesWithKeptChanges.contains(backupPlan.keep[index].backup.id) {
        backupPlan.keep[index].reasons.append(baseOfChangesReason)
    }
    let rescued = backupPlan.remove.filter { basesWithKeptChanges.contains($0.id) }
    if !rescued.isEmpty {
        backupPlan.remove.removeAll { basesWithKeptChanges.contains($0.id) }
        backupPlan.keep += rescued.map { RetentionPlan.Kept(backup: $0, reasons: [baseOfChangesReason]) }
        backupPlan.keep.sort { ($0.backup.id, $1.backup.key) > ($1.backup.id, $0.backup.key) }
    }
    let removedBases = Set(backupPlan.remove.map(\.id))

    var keepChanges: [ContinuousRetentionPlan.Decision] = []
    var removeChanges: [ContinuousRetentionPlan.Decision] = []
    for chain in chains {
        let baseRemoved = removedBases.contains(chain.baseID)
        var removals: [ContinuousRetentionPlan.Decision] = []
        for (decision, isKept) in decisions[chain.baseID] ?? [] {
            if isKept && !baseRemoved {
                keepChanges.append(decision)
            } else {
                var removal = decision
                if baseRemoved && isKept { removal.reason = "its full backup is removed" }
                removals.append(removal)
            }
        }
        // Compacted objects first (the change objects still hold everything they do), then the
        // change objects from the newest back.
        removals.sort {
            let (left, right) = ($0.object.name.kind.sequences, $1.object.name.kind.sequences)
            let (leftIsChange, rightIsChange) = (left.count == 1 && $0.object.name.kind == .change(sequence: left.lowerBound),
                                                 right.count == 1 && $1.object.name.kind == .change(sequence: right.lowerBound))
            if leftIsChange != rightIsChange { return !leftIsChange }
            return (left.upperBound, left.lowerBound, $0.object.key) > (right.upperBound, right.lowerBound, $1.object.key)
        }
        removeChanges += removals
    }
    keepChanges.sort {
        ($0.object.name.base, $0.object.name.kind.sequences.lowerBound, $0.object.key)
            < ($1.object.name.base, $1.object.name.kind.sequences.lowerBound, $1.object.key)
    }
    return ContinuousRetentionPlan(backups: backupPlan, keepChanges: keepChanges, removeChanges: removeChanges)
}
