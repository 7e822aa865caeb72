import Foundation
import Testing
@testable import OffsiteCore

/// Chains from a listing: windows, missing links, which objects a restore to a moment reads, and
/// the choice between full backups and chains. Pure functions, tables, fixed times.
@Suite struct ChainTests {
    /// 2026-12-03 12:00:00 UTC in milliseconds.
    static let t0: Int64 = 1_796_299_200_000

    static func base(_ secondsAfter: Int64, kind: BackupKind = .scheduled, database: String = "crm", size: Int64 = 1000) -> RemoteBackup {
        let id = BackupID(seconds: t0 / 1000 + secondsAfter, kind: kind)
        return RemoteBackup(object: RemoteObject(key: RemoteBackup.key(database: database, id: id, format: .encrypted), size: size))!
    }

    /// Change object `sequence` of `base`, its transactions from `first` to `last` (milliseconds after t0).
    static func change(_ base: RemoteBackup, _ sequence: Int, _ first: Int64, _ last: Int64, size: Int64 = 100) -> RemoteChangeObject {
        RemoteChangeObject(database: base.database, name: ChangeObjectName(base: base.id, kind: .change(sequence: sequence),
                                                                           firstCommit: t0 + first, lastCommit: t0 + last,
                                                                           format: .encrypted), size: size)
    }

    static func compacted(_ base: RemoteBackup, _ from: Int, _ to: Int, _ first: Int64, _ last: Int64, size: Int64 = 150) -> RemoteChangeObject {
        RemoteChangeObject(database: base.database, name: ChangeObjectName(base: base.id, kind: .compacted(from: from, to: to),
                                                                           firstCommit: t0 + first, lastCommit: t0 + last,
                                                                           format: .encrypted), size: size)
    }

    static func chain(_ base: RemoteBackup?, _ objects: [RemoteChangeObject], baseID: BackupID? = nil) -> Chain {
        let listing = ContinuousListing(backups: base.map { [$0] } ?? [], changes: objects)
        let chains = findChains(in: listing, database: "crm")
        return chains.first { $0.baseID == (baseID ?? base!.id) }!
    }

    static let b = base(0)
    // Change objects every second: object n holds transactions from n·1000+100 to n·1000+900.
    static func c(_ n: Int, size: Int64 = 100) -> RemoteChangeObject { change(b, n, Int64(n) * 1000 + 100, Int64(n) * 1000 + 900, size: size) }
    static func end(_ n: Int) -> Int64 { t0 + Int64(n) * 1000 + 900 }

    // MARK: Windows

    @Test func windowsAndMissingLinks() {
        let duplicate = Self.change(Self.b, 2, 2100, 2950)
        let cases: [(String, [RemoteChangeObject], [RestorableSpan], [MissingLink])] = [
            ("base alone", [], [RestorableSpan(start: Self.t0, end: Self.t0)], []),
            ("1…3", [Self.c(1), Self.c(2), Self.c(3)], [RestorableSpan(start: Self.t0, end: Self.end(3))], []),
            ("listed out of order", [Self.c(3), Self.c(1), Self.c(2)], [RestorableSpan(start: Self.t0, end: Self.end(3))], []),
            ("3 missing", [Self.c(1), Self.c(2), Self.c(4)], [RestorableSpan(start: Self.t0, end: Self.end(2))],
             [MissingLink(sequence: 3, reason: .absent, pointBefore: Self.end(2))]),
            ("1 missing", [Self.c(2), Self.c(3)], [RestorableSpan(start: Self.t0, end: Self.t0)],
             [MissingLink(sequence: 1, reason: .absent, pointBefore: Self.t0)]),
            ("2 twice", [Self.c(1), Self.c(2), duplicate, Self.c(3)], [RestorableSpan(start: Self.t0, end: Self.end(1))],
             [MissingLink(sequence: 2, reason: .ambiguous, pointBefore: Self.end(1))]),
            ("3 missing, bridged by 1–4", [Self.c(1), Self.c(2), Self.c(4), Self.c(5), Self.compacted(Self.b, 1, 4, 1100, 4900)],
             [RestorableSpan(start: Self.t0, end: Self.end(2)), RestorableSpan(start: Self.end(4), end: Self.end(5))],
             [MissingLink(sequence: 3, reason: .absent, pointBefore: Self.end(2))]),
            ("compacted alone", [Self.compacted(Self.b, 1, 4, 1100, 4900)],
             [RestorableSpan(start: Self.t0, end: Self.t0), RestorableSpan(start: Self.end(4), end: Self.end(4))],
             [MissingLink(sequence: 1, reason: .absent, pointBefore: Self.t0)]),
            ("compacted beside all its objects", [Self.c(1), Self.c(2), Self.compacted(Self.b, 1, 2, 1100, 2900), Self.c(3)],
             [RestorableSpan(start: Self.t0, end: Self.end(3))], []),
        ]
        for (label, objects, spans, gaps) in cases {
            let window = Self.chain(Self.b, objects).window
            // With change objects, the window starts a second after the base's id: the base may
            // hold commits of that second (restore refuses it unless an older chain reaches it).
            var expected = spans
            if !objects.isEmpty {
                expected[0].start = Self.t0 + 1000
                expected[0].end = max(expected[0].end, expected[0].start)
            }
            #expect(window.spans == expected, "\(label)")
            #expect(window.gaps == gaps, "\(label)")
        }
        // Objects whose base is gone: nothing restorable.
        let orphan = Self.chain(nil, [Self.c(1)], baseID: Self.b.id)
        #expect(orphan.window.spans.isEmpty)
        #expect(orphan.window.missingLink == MissingLink(sequence: 0, reason: .baseGone, pointBefore: nil))
    }

    @Test func chainsAreGroupedByBaseAndDatabase() {
        let second = Self.base(3600)
        let other = Self.base(0, database: "other")
        let listing = ContinuousListing(backups: [Self.b, second, other],
                                        changes: [Self.c(1), Self.c(2), Self.change(second, 1, 3_600_100, 3_600_200),
                                                  Self.change(other, 1, 100, 200)])
        let chains = findChains(in: listing, database: "crm")
        #expect(chains.map(\.baseID) == [Self.b.id, second.id])
        #expect(chains[0].changes.map(\.name.kind) == [.change(sequence: 1), .change(sequence: 2)])
        #expect(chains[1].changes.count == 1)
        #expect(findChains(in: listing, database: "other").map { $0.changes.count } == [1])
    }

    // MARK: Resolving a moment

    @Test func momentsResolveToTheObjectsNeeded() {
        let chain = Self.chain(Self.b, [Self.c(1), Self.c(2), Self.c(3), Self.c(5)])
        let t0 = Self.t0
        func exact(_ steps: [ChainStep], _ point: Int64) -> ChainResolution { .exact(ChainRestorePlan(base: Self.b, steps: steps, point: point)) }
        let cases: [(Int64, ChainResolution)] = [
            (t0 - 1, .outside),
            (t0, exact([], t0)),
            (t0 + 1099, exact([], t0)),
            (t0 + 1100, exact([.applyUntil(Self.c(1), time: t0 + 1100)], t0 + 1100)),
            (t0 + 1500, exact([.applyUntil(Self.c(1), time: t0 + 1500)], t0 + 1500)),
            (Self.end(1), exact([.apply(Self.c(1))], Self.end(1))),
            (t0 + 2000, exact([.apply(Self.c(1))], Self.end(1))),
            (t0 + 2500, exact([.apply(Self.c(1)), .applyUntil(Self.c(2), time: t0 + 2500)], t0 + 2500)),
            (Self.end(3), exact([.apply(Self.c(1)), .apply(Self.c(2)), .apply(Self.c(3))], Self.end(3))),
            (Self.end(3) + 1, .missing(MissingLink(sequence: 4, reason: .absent, pointBefore: Self.end(3)))),
            (Self.end(5) + 10_000, .missing(MissingLink(sequence: 4, reason: .absent, pointBefore: Self.end(3)))),
        ]
        for (time, expected) in cases {
            #expect(chain.resolve(time) == expected, "at t0 + \(time - t0) ms")
        }
        // After the newest object, with nothing missing: the end.
        let whole = Self.chain(Self.b, [Self.c(1), Self.c(2)])
        #expect(whole.resolve(Self.end(2) + 60_000)
            == .afterEnd(ChainRestorePlan(base: Self.b, steps: [.apply(Self.c(1)), .apply(Self.c(2))], point: Self.end(2))))
        // A full backup alone: its own moment, and after it.
        let alone = Self.chain(Self.b, [])
        #expect(alone.resolve(Self.t0) == exact([], Self.t0))
        #expect(alone.resolve(Self.t0 + 5000) == .afterEnd(ChainRestorePlan(base: Self.b, steps: [], point: Self.t0)))
    }

    @Test func compactedObjectsCarryTheBulk() {
        let k = Self.compacted(Self.b, 1, 4, 1100, 4900, size: 150)
        let objects = (1...6).map { Self.c($0) } + [k]
        let chain = Self.chain(Self.b, objects)
        #expect(chain.planToEnd()?.steps == [.apply(k), .apply(Self.c(5)), .apply(Self.c(6))])
        #expect(chain.resolve(Self.t0 + 5500)
            == .exact(ChainRestorePlan(base: Self.b, steps: [.apply(k), .applyUntil(Self.c(5), time: Self.t0 + 5500)], point: Self.t0 + 5500)))
        // Inside the compacted stretch, the change objects.
        #expect(chain.resolve(Self.t0 + 3500)
            == .exact(ChainRestorePlan(base: Self.b, steps: [.apply(Self.c(1)), .apply(Self.c(2)), .applyUntil(Self.c(3), time: Self.t0 + 3500)],
                                       point: Self.t0 + 3500)))
        // A compacted object larger than what it replaces is not used.
        let big = Self.compacted(Self.b, 1, 2, 1100, 2900, size: 10_000_000)
        let withBig = Self.chain(Self.b, [Self.c(1), Self.c(2), big])
        #expect(withBig.planToEnd()?.steps == [.apply(Self.c(1)), .apply(Self.c(2))])
        // A bridged hole: after it, through the compacted object; inside it, refused.
        let bridged = Self.chain(Self.b, [Self.c(1), Self.c(2), Self.c(4), Self.c(5), k])
        #expect(bridged.resolve(Self.t0 + 5500)
            == .exact(ChainRestorePlan(base: Self.b, steps: [.apply(k), .applyUntil(Self.c(5), time: Self.t0 + 5500)], point: Self.t0 + 5500)))
        #expect(bridged.resolve(Self.t0 + 3500) == .missing(MissingLink(sequence: 3, reason: .absent, pointBefore: Self.end(2))))
    }

    // MARK: Choosing what to restore

    @Test func theChoiceBetweenFullBackupsAndChains() throws {
        let first = Self.b
        let second = Self.base(3600, kind: .change)
        let objects = [Self.c(1), Self.c(2), Self.c(3)]
        let listing = ContinuousListing(backups: [first, second], changes: objects)
        let now = Date(timeIntervalSince1970: TimeInterval(Self.t0 / 1000 + 7200))
        func choose(_ selection: BackupSelection, in listing: ContinuousListing = listing) throws -> (RestoreSource, [String]) {
            var warnings: [String] = []
            let source = try chooseRestoreSource(from: listing, database: "crm", selection: selection, target: "s3", now: now) { warnings.append($0) }
            return (source, warnings)
        }
        func at(_ milliseconds: Int64) -> BackupSelection { .at(Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000)) }

        // --backup ID: the full backup as it was, chain or not.
        #expect(try choose(.id(first.id)).0 == .backup(first))
        // latest: the newest full backup, newer than the first chain's end.
        #expect(try choose(.latest).0 == .backup(second))
        // latest: the second chain's end once it has changes.
        let secondChange = Self.change(second, 1, 3_600_500, 3_601_000)
        let withSecond = ContinuousListing(backups: [first, second], changes: objects + [secondChange])
        #expect(try choose(.latest, in: withSecond).0
            == .chain(ChainRestorePlan(base: second, steps: [.apply(secondChange)], point: Self.t0 + 3_601_000)))
        // latest: a chain whose end is newer than every full backup.
        let onlyFirst = ContinuousListing(backups: [first], changes: objects)
        #expect(try choose(.latest, in: onlyFirst).0
            == .chain(ChainRestorePlan(base: first, steps: objects.map { .apply($0) }, point: Self.end(3))))
        // --at inside the first chain.
        #expect(try choose(at(Self.t0 + 2500)).0
            == .chain(ChainRestorePlan(base: first, steps: [.apply(Self.c(1)), .applyUntil(Self.c(2), time: Self.t0 + 2500)],
                                       point: Self.t0 + 2500)))
        // --at after the first chain's end, before the second base: nothing on the target says
        // what was committed in between (the agent may have been down), so it is refused, naming
        // the moments on either side that are known.
        do {
            _ = try choose(at(Self.t0 + 60_000))
            Issue.record("a moment between two chains was not refused")
        } catch let error as ChainError {
            #expect(error == .unknownMoment(database: "crm", target: "s3", time: Self.t0 + 60_000, why: error.whyText,
                                            before: Self.end(3), after: Self.t0 + 3_601_000))
            #expect(error.hint?.contains(formatInstant(Self.end(3))) == true)
            #expect(error.hint?.contains(formatInstant(Self.t0 + 3_601_000)) == true)
        }
        // After the newest chain's end, with no full backup after it: its end, with a warning.
        let (late, warnings) = try choose(at(Self.t0 + 60_000), in: onlyFirst)
        #expect(late == .chain(ChainRestorePlan(base: first, steps: objects.map { .apply($0) }, point: Self.end(3))))
        #expect(warnings.count == 1 && warnings[0].contains(formatInstant(Self.end(3))))
        // Within the second the first base was taken in, with no chain before it: refused too.
        #expect(throws: ChainError.self) { try choose(at(Self.t0 + 400)) }
        // --at after the second base, which has no changes: that full backup, as before.
        #expect(try choose(at(Self.t0 + 4_000_000)).0 == .backup(second))
        // --at before any backup.
        #expect(throws: RestoreError.self) { try choose(at(Self.t0 - 1)) }
        // --at after a missing link: refused, naming it and the moment before it.
        let holed = ContinuousListing(backups: [first], changes: [Self.c(1), Self.c(3)])
        do {
            _ = try choose(at(Self.t0 + 3500), in: holed)
            Issue.record("a moment after a missing link was not refused")
        } catch let error as ChainError {
            #expect(error == .missingLink(database: "crm", target: "s3", base: first.id,
                                          link: MissingLink(sequence: 2, reason: .absent, pointBefore: Self.end(1)), time: Self.t0 + 3500))
            #expect(error.message.contains("change object 2"))
            #expect(error.hint?.contains(formatInstant(Self.end(1))) == true)
        }
        // latest with a missing link: the moment before it, with a warning naming it.
        let (holedLatest, holedWarnings) = try choose(.latest, in: holed)
        #expect(holedLatest == .chain(ChainRestorePlan(base: first, steps: [.apply(Self.c(1))], point: Self.end(1))))
        #expect(holedWarnings.count == 1 && holedWarnings[0].contains("change object 2"))
    }

    /// A base's id keeps only its second: within that second the older chain, which reaches the
    /// moment exactly, is the safer source.
    @Test func withinTheSecondOfANewBaseTheOlderChainIsPreferred() throws {
        let first = Self.b
        let second = Self.base(10, kind: .change)
        let older = [Self.c(1), Self.change(first, 2, 9_900, 10_700)]
        let newer = [Self.change(second, 1, 10_600, 11_200)]
        let listing = ContinuousListing(backups: [first, second], changes: older + newer)
        let time = Self.t0 + 10_500
        let source = try chooseRestoreSource(from: listing, database: "crm", selection: .at(Date(timeIntervalSince1970: TimeInterval(time) / 1000)),
                                             target: "s3", now: Date())
        #expect(source == .chain(ChainRestorePlan(base: first, steps: [.apply(older[0]), .applyUntil(older[1], time: time)], point: time)))
        // A full second later, the newer chain.
        let later = Self.t0 + 11_100
        let laterSource = try chooseRestoreSource(from: listing, database: "crm", selection: .at(Date(timeIntervalSince1970: TimeInterval(later) / 1000)),
                                                  target: "s3", now: Date())
        #expect(laterSource.base == second)
    }

    /// Change object 1 names the moment from which its base is the database's state (the last
    /// commit the base holds): the chain's window starts there, the moments between the older
    /// chain's end and the new base restore, and none of them is refused.
    @Test func aChainWhoseFirstObjectNamesWhereItsBaseBeginsJoinsTheOneBefore() throws {
        let first = Self.b
        let second = Self.base(10, kind: .change)
        // The older chain's last commit, 9 900 ms after t0, is the last one the new base holds.
        let older = [Self.c(1), Self.change(first, 2, 2_100, 9_900)]
        func seamed(_ since: Int64?, first commit: Int64 = 10_600) -> RemoteChangeObject {
            RemoteChangeObject(database: "crm", name: ChangeObjectName(base: second.id, kind: .change(sequence: 1),
                                                                       firstCommit: Self.t0 + commit, lastCommit: Self.t0 + 11_200,
                                                                       since: since.map { Self.t0 + $0 }, format: .encrypted), size: 100)
        }
        let newer = seamed(9_900)
        let listing = ContinuousListing(backups: [first, second], changes: older + [newer])
        let chain = findChains(in: listing, database: "crm")[1]
        #expect(chain.since == Self.t0 + 9_900)
        #expect(chain.window.spans == [RestorableSpan(start: Self.t0 + 9_900, end: Self.t0 + 11_200)])
        func source(_ offset: Int64, in listing: ContinuousListing = listing) throws -> RestoreSource {
            try chooseRestoreSource(from: listing, database: "crm", selection: .at(Date(timeIntervalSince1970: TimeInterval(Self.t0 + offset) / 1000)),
                                    target: "s3", now: Date())
        }
        let cases: [(String, Int64, RestoreSource)] = [
            ("inside the older chain", 9_000,
             .chain(ChainRestorePlan(base: first, steps: [.apply(older[0]), .applyUntil(older[1], time: Self.t0 + 9_000)], point: Self.t0 + 9_000))),
            // At the seam both chains are exact; the newer one is the base alone, checked against object 1.
            ("at the seam", 9_900,
             .chain(ChainRestorePlan(base: second, steps: [.applyUntil(newer, time: Self.t0 + 9_900)], point: Self.t0 + 9_900))),
            ("after the older chain's end, before the new base's second", 9_950,
             .chain(ChainRestorePlan(base: second, steps: [.applyUntil(newer, time: Self.t0 + 9_950)], point: Self.t0 + 9_900))),
            ("within the new base's second, before its first change", 10_500,
             .chain(ChainRestorePlan(base: second, steps: [.applyUntil(newer, time: Self.t0 + 10_500)], point: Self.t0 + 9_900))),
            ("inside the new chain's first object", 11_000,
             .chain(ChainRestorePlan(base: second, steps: [.applyUntil(newer, time: Self.t0 + 11_000)], point: Self.t0 + 11_000))),
        ]
        for (label, offset, expected) in cases {
            #expect(try source(offset) == expected, "\(label)")
        }

        // The base's id second comes before the seam (a base whose read began late in its second):
        // moments between them are before what the base stands for, and the older chain reaches them.
        let late = seamed(10_300)
        let lateListing = ContinuousListing(backups: [first, second], changes: [Self.c(1), Self.change(first, 2, 2_100, 10_300), late])
        #expect(try source(10_100, in: lateListing).base == first)
        // Without the older chain, such a moment is refused (the base holds later commits), naming the seam.
        let alone = ContinuousListing(backups: [second], changes: [late])
        do {
            _ = try source(10_100, in: alone)
            Issue.record("a moment before the seam was restored from a base that holds later commits")
        } catch let error as ChainError {
            #expect(error.whyText.contains(formatInstant(Self.t0 + 10_300)))
        }
        // An object 1 without the seam keeps the older rule: the new base's first second is refused.
        let unseamed = ContinuousListing(backups: [first, second], changes: older + [seamed(nil)])
        #expect(throws: ChainError.self) { try source(9_950, in: unseamed) }
    }

    @Test func theSeamIsOnlyInChangeObjectOnesName() throws {
        let name = ChangeObjectName(base: Self.b.id, kind: .change(sequence: 1), firstCommit: Self.t0 + 500, lastCommit: Self.t0 + 900,
                                    since: Self.t0 - 3_000, format: .encrypted)
        #expect(name.fileName == "20261203T120000Z-scheduled.c00000001.20261203T120000.500Z.20261203T120000.900Z.s20261203T115957.000Z.wal.gz.age")
        #expect(ChangeObjectName(fileName: name.fileName) == name)
        let rejected = [
            // on object 2
            "20261203T120000Z-scheduled.c00000002.20261203T120000.500Z.20261203T120000.900Z.s20261203T115957.000Z.wal.gz.age",
            // after the first commit
            "20261203T120000Z-scheduled.c00000001.20261203T120000.500Z.20261203T120000.900Z.s20261203T120000.600Z.wal.gz.age",
            // on a compacted object
            "20261203T120000Z-scheduled.k00000001-00000002.20261203T120000.500Z.20261203T120000.900Z.s20261203T115957.000Z.wal.gz.age",
            // not marked
            "20261203T120000Z-scheduled.c00000001.20261203T120000.500Z.20261203T120000.900Z.20261203T115957.000Z.wal.gz.age",
        ]
        for text in rejected { #expect(ChangeObjectName(fileName: text) == nil, "\(text)") }
    }

    @Test func instantsFormatForAt() throws {
        #expect(formatInstant(Self.t0 + 59_123) == "2026-12-03T12:00:59.123Z")
        let parsed = try #require(BackupSelection.parseTime(formatInstant(Self.t0 + 59_123)))
        #expect(milliseconds(of: parsed) == Self.t0 + 59_123)
        for offset in stride(from: Int64(0), to: 1000, by: 7) {
            let date = try #require(BackupSelection.parseTime(formatInstant(Self.t0 + offset)))
            #expect(milliseconds(of: date) == Self.t0 + offset)
        }
    }
}
