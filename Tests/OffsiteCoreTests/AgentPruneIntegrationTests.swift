import Foundation
import Testing
@testable import OffsiteCore

/// `offsite prune` on real targets: it keeps exactly what `planRetention` plans, `--dry-run`
/// removes nothing and prints the plan with reasons, and a failed listing removes nothing.
@Suite struct AgentPruneIntegrationTests {
    static let policy = RetentionPolicy(last: 2, daily: 3, weekly: 2)
    static var policyJSON: [String: Any] { ["last": 2, "daily": 3, "weekly": 2] }

    /// Backups over three weeks of 2025 (UTC), with a manual and a pre-restore one among them.
    static let crmIDs: [String] = [
        "20250301T020000Z-scheduled", "20250302T020000Z-scheduled", "20250302T143000Z-change",
        "20250305T020000Z-manual", "20250308T020000Z-scheduled", "20250309T020000Z-scheduled",
        "20250309T120000Z-startup", "20250310T020000Z-scheduled", "20250311T020000Z-pre-restore",
        "20250311T090000Z-change", "20250312T020000Z-scheduled", "20250312T180000Z-shutdown",
        "20250313T020000Z-scheduled", "20250313T020500Z-change",
    ]
    static let otherIDs: [String] = ["20250301T020000Z-scheduled", "20250302T020000Z-scheduled", "20250303T020000Z-scheduled"]

    /// Writes one small object per id for `crm` and `other`, named as the SPEC names them.
    static func seed(_ target: any Target) throws {
        for (database, ids) in [("crm", crmIDs), ("other", otherIDs)] {
            for text in ids {
                let id = try #require(BackupID(text))
                let upload = try target.makeUpload(key: RemoteBackup.key(database: database, id: id, format: .encrypted))
                try upload.write(Data("payload of \(database) \(text)".utf8))
                try upload.finish()
                try upload.commit()
            }
        }
    }

    /// What `planRetention` plans for each database on `target`.
    static func plans(on target: any Target) throws -> [String: RetentionPlan] {
        var plans: [String: RetentionPlan] = [:]
        for database in ["crm", "other"] {
            let backups = try listBackups(on: target, database: database)
            plans[database] = planRetention(backups: backups.map { RetainedBackup(id: $0.id, key: $0.key) },
                                            policy: policy)
        }
        return plans
    }

    @Test(arguments: AgentTargetKind.allCases)
    func pruneKeepsExactlyThePlannedSetAndDryRunRemovesNothing(kind: AgentTargetKind) throws {
        let workspace = try AgentWorkspace("prune", kind: kind)
        // The configuration's own databases: prune considers no other folder on the target.
        for database in ["crm", "other"] { try workspace.addDatabase(database) }
        try workspace.writeConfig(target: ["retention": Self.policyJSON])
        let target = try workspace.makeTestTarget()
        try Self.seed(target)
        let before = try target.list(prefix: "").map(\.key)
        #expect(before.count == Self.crmIDs.count + Self.otherIDs.count)
        let plans = try Self.plans(on: target)
        let crmPlan = try #require(plans["crm"])
        try #require(!crmPlan.remove.isEmpty, "the policy must remove something for the test to mean anything")

        let dryRun = try workspace.offsite(["prune", "--dry-run"])
        #expect(dryRun.status == 0, "\(dryRun.standardError)")
        #expect(try target.list(prefix: "").map(\.key) == before, "a dry run removes nothing")
        let lines = dryRun.standardOutput.split(separator: "\n").map { String($0) }
        for (_, plan) in plans {
            for kept in plan.keep {
                #expect(lines.contains("  keep    \(kept.backup.id)  \(kept.reasons.joined(separator: ", "))"),
                        "\(kept.backup.id) in:\n\(dryRun.standardOutput)")
            }
            for removed in plan.remove {
                #expect(lines.contains("  remove  \(removed.id)  (dry run)"), "\(removed.id) in:\n\(dryRun.standardOutput)")
            }
        }
        #expect(dryRun.standardOutput.contains("manual"), "the manual backup is kept for being manual")

        let prune = try workspace.offsite(["prune"])
        #expect(prune.status == 0, "\(prune.standardError)")
        let expected = plans.values.flatMap { $0.keep.map(\.backup.key) }.sorted()
        #expect(try target.list(prefix: "").map(\.key) == expected)
        for (_, plan) in plans {
            for removed in plan.remove {
                #expect(prune.standardOutput.contains("  removed \(removed.id)"))
            }
        }
        // Pinned kinds and the newest survive whatever the rules say.
        let remaining = try listBackups(on: target, database: "crm").map(\.id.description)
        #expect(remaining.contains("20250305T020000Z-manual"))
        #expect(remaining.contains("20250311T020000Z-pre-restore"))
        #expect(remaining.last == "20250313T020500Z-change")

        // A second prune finds nothing more to remove.
        let again = try workspace.offsite(["prune"])
        #expect(again.status == 0)
        #expect(try target.list(prefix: "").map(\.key) == expected)
    }

    @Test func aListingThatFailsRemovesNothing() throws {
        let workspace = try AgentWorkspace("prunefail")
        // The configuration's own databases: prune considers no other folder on the target.
        for database in ["crm", "other"] { try workspace.addDatabase(database) }
        try workspace.writeConfig(target: ["retention": Self.policyJSON])
        let target = try workspace.makeTestTarget()
        try Self.seed(target)
        try #require(!(try Self.plans(on: target)["crm"]?.remove.isEmpty ?? true))
        // An entry the listing cannot stat (a symbolic link pointing at itself) makes it fail part way.
        try FileManager.default.createSymbolicLink(atPath: "\(workspace.remoteFolder)/crm/loop", withDestinationPath: "loop")
        func names() throws -> [String] {
            try ["crm", "other"].flatMap { database in
                try FileManager.default.contentsOfDirectory(atPath: "\(workspace.remoteFolder)/\(database)").map { "\(database)/\($0)" }
            }.sorted()
        }
        let before = try names()
        #expect(before.count == Self.crmIDs.count + Self.otherIDs.count + 1)

        let prune = try workspace.offsite(["prune"])
        #expect(prune.status != 0)
        #expect(prune.standardError.contains("listing failed, nothing removed"), "\(prune.standardError)")
        #expect(try names() == before)
    }
}
