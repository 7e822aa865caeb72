import Foundation
import Testing
@testable import OffsiteCore

/// Retention of change objects (pure, fixed times): `keep` from now, never a hole, never beyond the
/// base, bases kept for their changes, compacted objects with the changes they cover.
@Suite struct ChangeRetentionTests {
    static let t0 = ChainTests.t0
    static let hour: Int64 = 3_600_000
    static let now = Date(timeIntervalSince1970: TimeInterval(t0 + 48 * hour) / 1000)

    static func base(_ hours: Int64, _ kind: BackupKind = .scheduled) -> RemoteBackup { ChainTests.base(hours * 3600, kind: kind) }
    /// Change object `sequence` of `base` whose last commit is `hours` after t0.
    static func change(_ base: RemoteBackup, _ sequence: Int, _ hours: Int64) -> RemoteChangeObject {
        ChainTests.change(base, sequence, hours * hour - 500, hours * hour)
    }

    static func plan(_ backups: [RemoteBackup], _ changes: [RemoteChangeObject], policy: RetentionPolicy = RetentionPolicy(last: 1),
                     keep: Duration = .seconds(24 * 3600)) -> ContinuousRetentionPlan {
        planContinuousRetention(ContinuousListing(backups: backups, changes: changes), database: "crm", policy: policy, keep: keep, now: now)
    }

    static func sequences(_ decisions: [ContinuousRetentionPlan.Decision]) -> [String] {
        decisions.map { decision in
            switch decision.object.name.kind {
            case let .change(sequence): return "\(decision.object.name.base.timestamp.prefix(11)):c\(sequence)"
            case let .compacted(from, to): return "\(decision.object.name.base.timestamp.prefix(11)):k\(from)-\(to)"
            }
        }
    }

    @Test func changesWithinKeepAndEverythingBeforeThemStay() {
        // Base at t0 (48 h ago); objects at 10 h, 20 h, 30 h, 40 h: keep 24 h → after t0+24h are 30 and 40,
        // and 10 and 20 come before a kept one: the whole chain stays, and its base.
        let old = Self.base(0)
        let newer = Self.base(45)
        let changes = [Self.change(old, 1, 10), Self.change(old, 2, 20), Self.change(old, 3, 30), Self.change(old, 4, 40)]
        let plan = Self.plan([old, newer], changes)
        #expect(plan.removeChanges.isEmpty)
        #expect(plan.keepChanges.map(\.reason) == ["before a kept change", "before a kept change", "within 1d", "within 1d"])
        #expect(plan.backups.remove.isEmpty)
        let oldKept = plan.backups.keep.first { $0.backup.id == old.id }
        #expect(oldKept?.reasons == [baseOfChangesReason])
        #expect(plan.backups.keep.first { $0.backup.id == newer.id }?.reasons == ["newest", "last 1"])
    }

    @Test func aChainWhollyOutsideKeepGoesWithItsBaseNewestFirst() {
        let old = Self.base(0)
        let newer = Self.base(30)
        let changes = [Self.change(old, 1, 5), Self.change(old, 2, 10), Self.change(old, 3, 20),
                       Self.change(newer, 1, 31), Self.change(newer, 2, 47)]
        let compacted = ChainTests.compacted(old, 1, 2, 5 * Self.hour - 500, 10 * Self.hour)
        let plan = Self.plan([old, newer], changes + [compacted])
        #expect(Self.sequences(plan.removeChanges) == ["20261203T12:k1-2", "20261203T12:c3", "20261203T12:c2", "20261203T12:c1"])
        #expect(plan.removeChanges.map(\.reason) == ["its changes are removed", "older than 1d", "older than 1d", "older than 1d"])
        #expect(plan.backups.remove.map(\.id) == [old.id])
        #expect(Self.sequences(plan.keepChanges) == ["20261204T18:c1", "20261204T18:c2"])
        #expect(plan.backups.keep.map(\.backup.id) == [newer.id])
        #expect(plan.backups.keep[0].reasons.contains(baseOfChangesReason))
    }

    @Test func aBaseTheFullBackupPolicyKeepsLosesOnlyItsOldChanges() {
        // Policy keeps everything within 3 days; the chain's changes are older than keep.
        let old = Self.base(0)
        let changes = [Self.change(old, 1, 1), Self.change(old, 2, 2)]
        let plan = Self.plan([old], changes, policy: RetentionPolicy(within: .seconds(3 * 86400)))
        #expect(plan.backups.remove.isEmpty)
        #expect(plan.backups.keep.first?.reasons.contains(baseOfChangesReason) == false)
        #expect(Self.sequences(plan.removeChanges) == ["20261203T12:c2", "20261203T12:c1"])
    }

    @Test func compactedObjectsGoWithTheLastChangeTheyCover() {
        let base = Self.base(0)
        let changes = (1...6).map { Self.change(base, $0, Int64($0) * 5) }     // 5 h … 30 h
        let early = ChainTests.compacted(base, 1, 3, 5 * Self.hour - 500, 15 * Self.hour)
        let late = ChainTests.compacted(base, 4, 6, 20 * Self.hour - 500, 30 * Self.hour)
        let plan = Self.plan([base], changes + [early, late], keep: .seconds(20 * 3600))
        // Keep 20 h from 48 h: 30 h (object 6) is within, the rest before it.
        #expect(plan.removeChanges.isEmpty)
        #expect(plan.keepChanges.first { $0.object == late }?.reason == "covers kept changes")
        #expect(plan.keepChanges.first { $0.object == early }?.reason == "covers kept changes")
        // Object 6 not listed (only the compacted one ending there): judged by its own time.
        let withoutSix = Self.plan([base], Array(changes.prefix(5)) + [early, late], keep: .seconds(20 * 3600))
        #expect(withoutSix.keepChanges.first { $0.object == late }?.reason == "within 20h")
        #expect(Self.sequences(withoutSix.removeChanges) == ["20261203T12:k1-3", "20261203T12:c5", "20261203T12:c4",
                                                              "20261203T12:c3", "20261203T12:c2", "20261203T12:c1"])
    }

    @Test func objectsWhoseBaseIsNotListedAreJudgedByKeepAlone() {
        let gone = Self.base(0)
        let recent = Self.base(40)
        let plan = Self.plan([], [Self.change(gone, 1, 5), Self.change(recent, 1, 47)])
        #expect(Self.sequences(plan.removeChanges) == ["20261203T12:c1"])
        #expect(Self.sequences(plan.keepChanges) == ["20261205T04:c1"])
    }

    @Test func pinnedAndPolicyDecisionsStayAndEveryInputIsDecidedOnce() {
        let manual = Self.base(1, .manual)
        let old = Self.base(2)
        let newest = Self.base(46)
        let changes = [Self.change(manual, 1, 3), Self.change(old, 1, 4), Self.change(old, 2, 30), Self.change(newest, 1, 47)]
        let plan = Self.plan([manual, old, newest], changes)
        #expect(Set(plan.backups.keep.map(\.backup.id)) == [manual.id, old.id, newest.id])
        #expect(plan.keepChanges.count + plan.removeChanges.count == changes.count)
        #expect(Self.sequences(plan.removeChanges) == ["20261203T13:c1"])
        #expect(plan.backups.keep.first { $0.backup.id == manual.id }?.reasons == ["manual"])
    }
}

extension ChangeRetentionTests {
    @Test func decisionsAreSummarizedInRuns() {
        let base = Self.base(0)
        let changes = (1...5).map { Self.change(base, $0, Int64($0)) } + [Self.change(base, 7, 7), Self.change(base, 8, 40)]
        let compacted = ChainTests.compacted(base, 1, 5, Self.hour - 500, 5 * Self.hour)
        let plan = Self.plan([base], changes + [compacted])
        let kept = summarizeChangeDecisions(plan.keepChanges)
        let removed = summarizeChangeDecisions(plan.removeChanges)
        #expect(kept == ["20261203T120000Z-scheduled c00000007 (1)  before a kept change", "20261203T120000Z-scheduled c00000008 (1)  within 1d"])
        #expect(removed == ["20261203T120000Z-scheduled k00000001-00000005  its changes are removed",
                            "20261203T120000Z-scheduled c00000001–c00000005 (5)  older than 1d"])
    }
}
