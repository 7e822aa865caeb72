import Foundation
import OffsiteCore

/// `offsite prune`: applies each target's retention now, saying what is kept and why.
enum PruneCommand {
    static let help = """
    usage: offsite prune [--target NAME] [--db NAME | --files NAME] [--dry-run] [--config FILE]

    Applies each target's retention policy (targets[].retention: last, hourly, daily, weekly,
    monthly, yearly, within) to the backups on it, per database of the configuration (configured,
    in watch.dir, or remembered by the local state; or the one --db names) — only PREFIX/DBNAME/ID… at exactly that depth: another host's backups at a deeper
    prefix are never touched — and prints every backup with the reason it is kept or that it is
    removed. With --dry-run nothing is deleted. The newest
    backup, manual and pre-restore backups are never removed, and nothing is removed when the
    listing fails.

    Change objects (continuous protection) are kept while their last commit is within the keep
    span (continuous.keep, default 24h) of now, together with every change object before a kept
    one, and never outlive their full backup; a full backup with kept change objects is kept
    ("base of changes"). A compacted object goes with the last change object it covers.

    File sets (files[]; or the one --files names; --db alone: databases only) get the same rules
    per target, then their packs that no kept snapshot needs are deleted once they are older than
    24 hours (a backup elsewhere may still be writing younger ones); none when a kept snapshot's
    pack list cannot be read. What a backup killed midway left is removed at once.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["config", "target", "db", "files"], flags: ["dry-run", "json"])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        let dryRun = parsed.has("dry-run")
        // Only this configuration's own databases: another host may share the prefix with others.
        let databases: [String]? = parsed.value("db") != nil ? [try setup.databaseName().name]
            : setup.config != nil ? try setup.ownDatabaseNames() : nil
        let changeKeep = changeKeep(setup)
        let recorder = OutcomeRecorder(setup)
        defer { recorder.finish() }
        var failures = 0
        let selectsFiles = parsed.value("files") != nil
        let selectsDatabases = parsed.value("db") != nil
        for (target, policy) in try setup.targetsWithRetention() where !(selectsFiles && !selectsDatabases) {
            if policy.isEmpty { print("\(target.name): no retention policy: every backup is kept") }
            var listings: [(database: String, listing: ContinuousListing)] = []
            do {
                if let databases {
                    for database in databases { listings.append((database, try listBackupsAndChanges(on: target, database: database))) }
                } else {
                    let all = try listBackupsAndChanges(on: target)
                    listings = all.databases.map { name in (name, all.of(database: name)) }
                }
            } catch {
                BackupCommand.reportFailure(error, prefix: "\(target.name): listing failed, nothing removed")
                recorder.pruneFailed(database: databases?.count == 1 ? databases?.first : nil, target: target.name, error: error)
                failures += 1
                continue
            }
            for (database, listing) in listings where !listing.backups.isEmpty || !listing.changes.isEmpty {
                let plan = planContinuousRetention(listing, database: database, policy: policy, keep: changeKeep, now: Date())
                print("\(target.name) \(database): keep \(plan.backups.keep.count), remove \(plan.backups.remove.count) (\(policy.summary))")
                for kept in plan.backups.keep.sorted(by: { $0.backup.id > $1.backup.id }) {
                    print("  keep    \(kept.backup.id)  \(kept.reasons.joined(separator: ", "))")
                }
                if !listing.changes.isEmpty {
                    print("\(target.name) \(database) changes: keep \(plan.keepChanges.count), remove \(plan.removeChanges.count) "
                          + "(within \(changeKeep.configText), and every change before a kept one)")
                    for line in summarizeChangeDecisions(plan.keepChanges) { print("  keep    \(line)") }
                }
                // Change objects first, each chain from its newest object back, then the full
                // backups: a prune cut short leaves chains that still link from their base.
                var failedBases = Set<BackupID>()
                if dryRun {
                    for line in summarizeChangeDecisions(plan.removeChanges) { print("  remove  \(line)  (dry run)") }
                } else {
                    var removed: [ContinuousRetentionPlan.Decision] = []
                    for decision in plan.removeChanges where !failedBases.contains(decision.object.name.base) {
                        do {
                            try target.delete(key: decision.object.key)
                            removed.append(decision)
                        } catch {
                            BackupCommand.reportFailure(error, prefix: "\(target.name) \(database): removing \(decision.object.name)")
                            recorder.pruneFailed(database: database, target: target.name, error: error)
                            failures += 1
                            failedBases.insert(decision.object.name.base)
                        }
                    }
                    for line in summarizeChangeDecisions(removed) { print("  removed \(line)") }
                }
                for removed in plan.backups.remove.sorted(by: { $0.id > $1.id }) {
                    if dryRun {
                        print("  remove  \(removed.id)  (dry run)")
                        continue
                    }
                    if failedBases.contains(removed.id) {
                        print("  kept    \(removed.id)  (removing its change objects failed)")
                        continue
                    }
                    do {
                        try target.delete(key: removed.key)
                        print("  removed \(removed.id)")
                    } catch {
                        BackupCommand.reportFailure(error, prefix: "\(target.name) \(database): removing \(removed.id)")
                        recorder.pruneFailed(database: database, target: target.name, error: error)
                        failures += 1
                    }
                }
            }
        }
        if !(selectsDatabases && !selectsFiles) {
            failures += try pruneFileSets(setup: setup, dryRun: dryRun, recorder: recorder)
        }
        return failures == 0 ? 0 : 1
    }

    /// How long change objects are kept: the configuration's `continuous.keep`, else
    /// `defaultChangeKeep` (24 hours; change objects may stay on a target after `continuous` is
    /// taken out of the configuration, and go with their age then).
    static func changeKeep(_ setup: Setup) -> Duration {
        setup.config?.continuous?.keep ?? defaultChangeKeep
    }

    /// Applies retention to the file sets and collects their unneeded packs; returns the failures.
    static func pruneFileSets(setup: Setup, dryRun: Bool, recorder: OutcomeRecorder) throws -> Int {
        var failures = 0
        for (target, policy) in try setup.targetsWithRetention() {
            var names: [String]
            if setup.arguments.value("files") != nil {
                names = [try setup.fileSetName().name]
            } else if let config = setup.config {
                names = config.files.map(\.name)
            } else {
                do {
                    names = Set(try target.list(prefix: "").compactMap(RemoteFileSnapshot.init(object:)).map(\.set)).sorted()
                } catch {
                    BackupCommand.reportFailure(error, prefix: "\(target.name): listing failed, nothing removed")
                    failures += 1
                    continue
                }
            }
            for name in names {
                let report: FileSetPruneReport
                do {
                    report = try pruneFileSet(named: name, on: target, policy: policy, cacheFolder: setup.fileSetCacheFolder,
                                              dryRun: dryRun, timeZone: setup.config?.schedule.timeZone ?? TimeZone(identifier: "UTC")!)
                } catch {
                    BackupCommand.reportFailure(error, prefix: "\(target.name) \(name) (files): nothing removed")
                    recorder.pruneFailed(database: name, target: target.name, error: error)
                    failures += 1
                    continue
                }
                for line in report.recovered { print("\(target.name) \(name) (files): \(line)") }
                let plan = report.plan
                guard !plan.keep.isEmpty || !plan.remove.isEmpty else { continue }
                print("\(target.name) \(name) (files): keep \(plan.keep.count), remove \(plan.remove.count) (\(policy.summary))")
                for kept in plan.keep.sorted(by: { $0.backup.id > $1.backup.id }) {
                    print("  keep    \(kept.backup.id)  \(kept.reasons.joined(separator: ", "))")
                }
                for removed in plan.remove.sorted(by: { $0.id > $1.id }) {
                    print("  \(dryRun ? "remove " : "removed") \(removed.id)\(dryRun ? "  (dry run)" : "")")
                }
                let verb = dryRun ? "would delete" : "deleted"
                print("  packs: \(report.keptPacks) kept (\(formatBytes(report.keptPackBytes))), \(verb) \(report.deletedPacks.count) "
                      + "(\(formatBytes(report.deletedPackBytes)))"
                      + (report.youngUnneededPacks > 0 ? ", \(report.youngUnneededPacks) unneeded but younger than 24 h kept" : "")
                      + (report.collectedPacks ? "" : "; no pack deleted this time"))
                for problem in report.problems {
                    BackupCommand.reportFailure(UsageError(problem), prefix: "\(target.name) \(name) (files)")
                    recorder.pruneFailed(database: name, target: target.name, error: UsageError(problem))
                    failures += 1
                }
            }
        }
        return failures
    }
}
