import Foundation
import OffsiteCore

/// `offsite backup`: one backup now, kind `manual`, to every target or one.
enum BackupCommand {
    static let help = """
    usage: offsite backup [--db NAME|PATH] [--target NAME|URL] [--config FILE]
                          [--recipient age1…]… [--passphrase-file FILE]

    Takes one consistent snapshot of each database (or the one --db names), checks it, keeps it in
    the local rotation when one is configured, and ships it gzip-compressed and age-encrypted to
    every target (or the one --target names). Manual backups are never removed by retention.

    Without a configuration, flags are enough:
      offsite backup --db /data/crm.db --target file:///mnt/usb/offsite --recipient age1…
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: commonOptions, flags: [])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        let databases = try setup.databases()
        let targets = try setup.targets()
        let encryption = try setup.encryption()
        let recorder = OutcomeRecorder(setup)
        defer { recorder.finish() }
        var failures = 0
        for database in databases {
            let job = BackupJob(database: database, kind: .manual, targets: targets, encryption: encryption,
                                compressionLevel: setup.compressionLevel, check: setup.integrityCheck,
                                localFolder: setup.localFolder, localKeep: setup.localKeep)
            let report: BackupReport
            do {
                report = try runBackup(job)
            } catch {
                reportFailure(error, prefix: database.name)
                recorder.backupFailed(database: database.name, targets: targets.map(\.name), error: error)
                failures += 1
                continue
            }
            recorder.backupFinished(report, database: database.name)
            print("\(database.name): snapshot \(report.id) (\(formatBytes(report.snapshot.byteCount)), \(report.snapshot.pageCount) pages)")
            for upload in report.uploads {
                if let error = upload.error {
                    reportFailure(error, prefix: "\(database.name) → \(upload.target)")
                    failures += 1
                } else {
                    print("\(database.name) → \(upload.target): \(upload.key) (\(formatBytes(upload.size ?? 0)))")
                }
            }
            for reason in report.localPruneFailures {
                reportFailure(UsageError("local rotation: \(reason)"), prefix: database.name)
                failures += 1
            }
        }
        return failures == 0 ? 0 : 1
    }

    /// Prints a failure of one database or target, keeping going with the rest.
    static func reportFailure(_ error: Error, prefix: String) {
        var standardError = FileHandle.standardError
        let message = (error as? UserFacingError)?.message ?? "\(error)"
        print("error: \(prefix): \(message)", to: &standardError)
        if let hint = (error as? UserFacingError)?.hint { print("hint: \(hint)", to: &standardError) }
    }
}
