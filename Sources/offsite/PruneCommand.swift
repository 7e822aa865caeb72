import Foundation
import OffsiteCore

/// `offsite prune`: applies each target's retention now, saying what is kept and why.
enum PruneCommand {
    static let help = """
    usage: offsite prune [--target NAME] [--db NAME] [--dry-run] [--config FILE]

    Applies each target's retention policy (targets[].retention: last, hourly, daily, weekly,
    monthly, yearly, within) to the backups on it, per database, and prints every backup with
    the reason it is kept or that it is removed. With --dry-run nothing is deleted. The newest
    backup, manual and pre-restore backups are never removed, and nothing is removed when the
    listing fails.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["config", "target", "db"], flags: ["dry-run", "json"])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        let dryRun = parsed.has("dry-run")
        let databaseFilter = parsed.value("db")
        var failures = 0
        for (target, policy) in try setup.targetsWithRetention() {
            let backups: [RemoteBackup]
            do {
                backups = try listBackups(on: target, database: databaseFilter)
            } catch {
                BackupCommand.reportFailure(error, prefix: "\(target.name): listing failed, nothing removed")
                failures += 1
                continue
            }
            if policy.isEmpty { print("\(target.name): no retention policy: every backup is kept") }
            for database in Set(backups.map(\.database)).sorted() {
                let mine = backups.filter { $0.database == database }
                let plan = planRetention(backups: mine.map { RetainedBackup(id: $0.id, key: $0.key) }, policy: policy, now: Date())
                print("\(target.name) \(database): keep \(plan.keep.count), remove \(plan.remove.count) (\(policy.summary))")
                for kept in plan.keep.sorted(by: { $0.backup.id > $1.backup.id }) {
                    print("  keep    \(kept.backup.id)  \(kept.reasons.joined(separator: ", "))")
                }
                for removed in plan.remove.sorted(by: { $0.id > $1.id }) {
                    if dryRun {
                        print("  remove  \(removed.id)  (dry run)")
                        continue
                    }
                    do {
                        try target.delete(key: removed.key)
                        print("  removed \(removed.id)")
                    } catch {
                        BackupCommand.reportFailure(error, prefix: "\(target.name) \(database): removing \(removed.id)")
                        failures += 1
                    }
                }
            }
        }
        return failures == 0 ? 0 : 1
    }
}
