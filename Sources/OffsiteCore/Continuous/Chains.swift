import Foundation

// Chains as a listing shows them (docs/CONTINUOUS.md §2, §6): which objects follow which base,
// which moments can be restored, and which objects a restore to a moment reads. Pure functions of
// one listing: nothing here reads an object.

/// What one listing of a target shows of one database (or all): full backups and change objects.
public struct ContinuousListing: Sendable, Equatable {
    /// The full backups, oldest first.
    public var backups: [RemoteBackup]
    /// The change and compacted objects.
    public var changes: [RemoteChangeObject]

    /// Creates a listing.
    public init(backups: [RemoteBackup], changes: [RemoteChangeObject]) {
        self.backups = backups
        self.changes = changes
    }

    /// The part of the listing of `database`.
    public func of(database: String) -> ContinuousListing {
        ContinuousListing(backups: backups.filter { $0.database == database }, changes: changes.filter { $0.database == database })
    }

    /// The database names that have full backups or change objects, sorted.
    public var databases: [String] { Set(backups.map(\.database) + changes.map(\.database)).sorted() }
}

/// Every full backup and change object on `target`, optionally of one database: one listing, no reads.
public func listBackupsAndChanges(on target: any Target, database: String? = nil) throws -> ContinuousListing {
    ContinuousListing(objects: try target.list(prefix: database.map { "\($0)/" } ?? ""), database: database)
}

extension ContinuousListing {
    /// The full backups and change objects among `objects` (a target's listing), optionally of one
    /// database only.
    public init(objects: [RemoteObject], database: String? = nil) {
        backups = objects.compactMap(RemoteBackup.init(object:))
            .filter { database == nil || $0.database == database }
            .sorted { ($0.database, $0.id) < ($1.database, $1.id) }
        changes = objects.compactMap(RemoteChangeObject.init(object:))
            .filter { database == nil || $0.database == database }
    }
}

/// A stretch of time every moment of which a chain restores exactly, in milliseconds since 1970
/// (both ends included).
public struct RestorableSpan: Sendable, Equatable {
    /// The first moment.
    public var start: Int64
    /// The last moment: the commit time of the newest transaction reached.
    public var end: Int64

    /// Creates a span.
    public init(start: Int64, end: Int64) {
        self.start = start
        self.end = end
    }

    /// Whether `time` lies in the span.
    public func contains(_ time: Int64) -> Bool { start <= time && time <= end }
}

/// A place where a chain cannot be followed: an object that is missing, or more than one object
/// under the same sequence number, or the base gone.
public struct MissingLink: Sendable, Equatable {
    /// Why the link is missing.
    public enum Reason: Sendable, Equatable {
        /// No object has this sequence number.
        case absent
        /// Several objects have it: which one belongs is unknown.
        case ambiguous
        /// The chain's full backup is not on the target.
        case baseGone
    }

    /// The sequence number of the change object that cannot be applied (0: the base).
    public var sequence: Int
    /// Why.
    public var reason: Reason
    /// The newest moment restorable before it (milliseconds), nil when the base is gone.
    public var pointBefore: Int64?
}

/// A full backup and the change objects that follow it.
public struct Chain: Sendable, Equatable {
    /// The database.
    public var database: String
    /// The base's id.
    public var baseID: BackupID
    /// The base, nil when it is not on the target.
    public var base: RemoteBackup?
    /// The change objects, by sequence number.
    public var changes: [RemoteChangeObject]
    /// The compacted objects, by the first sequence number they cover.
    public var compacted: [RemoteChangeObject]

    /// The base's snapshot time in milliseconds (its id's second).
    public var baseTime: Int64 { baseID.seconds * 1000 }

    /// The moment from which the base is the database's state, when the chain's change object 1
    /// names it (`ChangeObjectName.since`): the chain then restores every moment from it on, and
    /// the chain before, when it reaches that moment, ends exactly where this one begins.
    public var since: Int64? {
        let first = changes.filter { $0.name.kind == .change(sequence: 1) }
        return first.count == 1 ? first[0].name.since : nil
    }

    /// The earliest moment this chain could stand for: `since`, or the base's second.
    var earliest: Int64 { min(since ?? baseTime, baseTime) }

    /// Whether the chain has change objects at all (a full backup alone has none).
    public var hasChanges: Bool { !changes.isEmpty || !compacted.isEmpty }

    /// All its objects' bytes.
    public var changeBytes: Int64 { (changes + compacted).reduce(0) { $0 + $1.size } }

    /// The moments it restores exactly, and its first missing link.
    public var window: ChainWindow { ChainGraph(self).window }
}

/// The moments a chain restores: stretches of time (more than one only when a compacted object
/// bridges a missing link) and the first missing link, if any.
public struct ChainWindow: Sendable, Equatable {
    /// The restorable stretches, oldest first; empty when the base is gone.
    public var spans: [RestorableSpan]
    /// Every place the chain cannot be followed, oldest first.
    public var gaps: [MissingLink]

    /// The first restorable moment (the base's time).
    public var start: Int64? { spans.first?.start }
    /// The newest restorable moment.
    public var end: Int64? { spans.last?.end }
    /// The first missing link.
    public var missingLink: MissingLink? { gaps.first }

    /// Whether `time` is restorable exactly.
    public func covers(_ time: Int64) -> Bool { spans.contains { $0.contains(time) } }
}

/// Groups one database's listing into chains, one per full backup (a full backup without change
/// objects is a chain of its base alone) plus one per base that is gone but has objects; oldest base first.
public func findChains(in listing: ContinuousListing, database: String) -> [Chain] {
    let mine = listing.of(database: database)
    var chains: [BackupID: Chain] = [:]
    for backup in mine.backups {
        // The same id twice (encrypted and not): the first listed stands, as `selectBackup` would pick either.
        if chains[backup.id] == nil {
            chains[backup.id] = Chain(database: database, baseID: backup.id, base: backup, changes: [], compacted: [])
        }
    }
    for object in mine.changes {
        let id = object.name.base
        if chains[id] == nil { chains[id] = Chain(database: database, baseID: id, base: nil, changes: [], compacted: []) }
        switch object.name.kind {
        case .change: chains[id]!.changes.append(object)
        case .compacted: chains[id]!.compacted.append(object)
        }
    }
    return chains.values.map { chain in
        var sorted = chain
        sorted.changes.sort { ($0.name.kind.sequences.lowerBound, $0.key) < ($1.name.kind.sequences.lowerBound, $1.key) }
        sorted.compacted.sort { ($0.name.kind.sequences.lowerBound, $0.name.kind.sequences.upperBound, $0.key)
            < ($1.name.kind.sequences.lowerBound, $1.name.kind.sequences.upperBound, $1.key) }
        return sorted
    }.sorted { $0.baseID < $1.baseID }
}

/// One step of a restore along a chain.
public enum ChainStep: Sendable, Equatable {
    /// Apply the whole object.
    case apply(RemoteChangeObject)
    /// Apply the object's transactions committed at or before `time` (milliseconds).
    case applyUntil(RemoteChangeObject, time: Int64)

    /// The object read.
    public var object: RemoteChangeObject {
        switch self {
        case let .apply(object), let .applyUntil(object, _): return object
        }
    }
}

/// How to restore one moment of a chain: the base, then the objects in order.
public struct ChainRestorePlan: Sendable, Equatable {
    /// The chain's base.
    public var base: RemoteBackup
    /// The objects to apply, in order (compacted objects for the bulk, change objects for the rest).
    public var steps: [ChainStep]
    /// The moment restored, in milliseconds: the end of the last whole object (or the base's time),
    /// or, when the last step stops inside an object, the moment asked for (the restore reports the
    /// commit time of the last transaction it applied).
    public var point: Int64

    /// Bytes to download: the base and every object.
    public var downloadBytes: Int64 { steps.reduce(base.size) { $0 + $1.object.size } }
}

/// Where a moment falls in one chain.
public enum ChainResolution: Sendable, Equatable {
    /// Restorable exactly by `plan`.
    case exact(ChainRestorePlan)
    /// After the chain's newest transaction, with nothing missing: `plan` restores its end.
    case afterEnd(ChainRestorePlan)
    /// After a missing link (and before anything that bridges it).
    case missing(MissingLink)
    /// Before the base, or the base is gone.
    case outside
}

/// The sequence-number graph of one chain: states 0 (the base) … N (after object N), which of them
/// can be reached from the base, and at what moment each ends.
struct ChainGraph {
    let chain: Chain
    /// The largest sequence number any object covers.
    let last: Int
    /// The change object of each sequence number, when there is exactly one.
    let usable: [Int: RemoteChangeObject]
    /// Sequence numbers with more than one change object.
    let ambiguous: Set<Int>
    /// Compacted objects by the sequence number they end at (ambiguous ranges left out).
    let compactedEnding: [Int: [RemoteChangeObject]]
    /// Whether state n is reached from the base.
    private(set) var reached: [Bool]
    /// The moment state n stands for (the base's time, or the last commit of the object ending at n).
    private(set) var point: [Int64]

    init(_ chain: Chain) {
        self.chain = chain
        var bySequence: [Int: [RemoteChangeObject]] = [:]
        for object in chain.changes { bySequence[object.name.kind.sequences.lowerBound, default: []].append(object) }
        usable = bySequence.compactMapValues { $0.count == 1 ? $0[0] : nil }
        ambiguous = Set(bySequence.filter { $0.value.count > 1 }.keys)
        var byRange: [ClosedRange<Int>: [RemoteChangeObject]] = [:]
        for object in chain.compacted { byRange[object.name.kind.sequences, default: []].append(object) }
        var ending: [Int: [RemoteChangeObject]] = [:]
        for (range, objects) in byRange where objects.count == 1 { ending[range.upperBound, default: []].append(objects[0]) }
        compactedEnding = ending
        last = max(bySequence.keys.max() ?? 0, byRange.keys.map(\.upperBound).max() ?? 0)
        reached = [Bool](repeating: false, count: last + 1)
        point = [Int64](repeating: 0, count: last + 1)
        guard chain.base != nil else { return }
        reached[0] = true
        point[0] = chain.since ?? chain.baseTime
        if last == 0 { return }
        for n in 1...last {
            if reached[n - 1], let object = usable[n] {
                reached[n] = true
                point[n] = object.name.lastCommit
            }
            for object in compactedEnding[n] ?? [] where reached[object.name.kind.sequences.lowerBound - 1] {
                if !reached[n] { point[n] = object.name.lastCommit }
                reached[n] = true
            }
        }
    }

    /// The restorable spans and the gaps.
    var window: ChainWindow {
        guard chain.base != nil else {
            return ChainWindow(spans: [], gaps: chain.hasChanges ? [MissingLink(sequence: 0, reason: .baseGone, pointBefore: nil)] : [])
        }
        var spans = [RestorableSpan(start: point[0], end: point[0])]
        var gaps: [MissingLink] = []
        if last > 0 {
            for n in 1...last {
                if reached[n - 1] && usable[n] != nil {
                    spans[spans.count - 1].end = max(spans[spans.count - 1].end, point[n])
                } else {
                    if reached[n - 1] {
                        gaps.append(MissingLink(sequence: n, reason: ambiguous.contains(n) ? .ambiguous : .absent,
                                                pointBefore: point[n - 1]))
                    }
                    if reached[n] { spans.append(RestorableSpan(start: point[n], end: point[n])) }
                }
            }
        }
        // Without `since`, the base keeps only the second it was taken in, and may hold commits
        // made during it: moments in that second are not this chain's to restore (restore refuses
        // them unless an older chain reaches them).
        if chain.hasChanges && chain.since == nil {
            spans[0].start = point[0] + 1000
            spans[0].end = max(spans[0].end, spans[0].start)
        }
        return ChainWindow(spans: spans, gaps: gaps)
    }

    /// The cheapest way from the base to state `target` (fewest bytes, each object counted with
    /// 64 KiB more for its request): compacted objects where they save, change objects elsewhere.
    func path(to target: Int) -> [RemoteChangeObject] {
        let overhead: Int64 = 64 << 10
        var cost = [Int64?](repeating: nil, count: target + 1)
        var via = [RemoteChangeObject?](repeating: nil, count: target + 1)
        cost[0] = 0
        if target > 0 {
            for n in 1...target {
                if let before = cost[n - 1], let object = usable[n] {
                    cost[n] = before + object.size + overhead
                    via[n] = object
                }
                for object in compactedEnding[n] ?? [] {
                    guard let before = cost[object.name.kind.sequences.lowerBound - 1] else { continue }
                    let candidate = before + object.size + overhead
                    if cost[n] == nil || candidate < cost[n]! {
                        cost[n] = candidate
                        via[n] = object
                    }
                }
            }
        }
        var steps: [RemoteChangeObject] = []
        var state = target
        while state > 0, let object = via[state] {
            steps.append(object)
            state = object.name.kind.sequences.lowerBound - 1
        }
        return steps.reversed()
    }

    /// Where `time` (milliseconds) falls in the chain.
    func resolve(_ time: Int64) -> ChainResolution {
        guard let base = chain.base, time >= point[0] else { return .outside }
        // The newest reached state that ended at or before `time`.
        var state = 0
        for n in 0...last where reached[n] && point[n] <= time { state = n }
        func plan(to state: Int, then step: ChainStep? = nil, point moment: Int64) -> ChainRestorePlan {
            ChainRestorePlan(base: base, steps: path(to: state).map { .apply($0) } + (step.map { [$0] } ?? []), point: moment)
        }
        if state == last {
            let ending = plan(to: state, point: point[state])
            return time == point[state] ? .exact(ending) : .afterEnd(ending)
        }
        guard let next = usable[state + 1] else {
            if time == point[state] { return .exact(plan(to: state, point: point[state])) }
            return .missing(MissingLink(sequence: state + 1, reason: ambiguous.contains(state + 1) ? .ambiguous : .absent,
                                        pointBefore: point[state]))
        }
        if time < next.name.firstCommit {
            if state == 0 && chain.since != nil {
                // The base stands for this moment because change object 1 says so: the restore
                // reads that object (and applies none of it) to check what its name says.
                return .exact(plan(to: 0, then: .applyUntil(next, time: time), point: point[0]))
            }
            return .exact(plan(to: state, point: point[state]))
        }
        return .exact(plan(to: state, then: .applyUntil(next, time: time), point: time))
    }

    /// The plan to the chain's newest reachable state.
    func planToEnd() -> ChainRestorePlan? {
        guard let base = chain.base else { return nil }
        let state = reached.lastIndex(of: true) ?? 0
        return ChainRestorePlan(base: base, steps: path(to: state).map { .apply($0) }, point: point[state])
    }
}

extension Chain {
    /// Where `time` (milliseconds) falls in this chain.
    public func resolve(_ time: Int64) -> ChainResolution { ChainGraph(self).resolve(time) }

    /// The plan to the newest moment reached from the base without a hole; nil when the base is gone.
    public func planToEnd() -> ChainRestorePlan? { ChainGraph(self).planToEnd() }
}
