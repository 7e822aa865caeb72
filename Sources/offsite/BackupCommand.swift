import Foundation
import OffsiteCore

/// `offsite backup`: one backup now, kind `manual`, to every target or one.
enum BackupCommand {
    static let help = """
    usage: offsite backup [--db NAME|PATH] [--files NAME|PATH] [--target NAME|URL] [--config FILE]
                          [--recipient age1…]… [--passphrase-file FILE] [--identity FILE]

    Takes one consistent snapshot of each database (or the one --db names), checks it, keeps it in
    the local rotation when one is configured, and ships it gzip-compressed and age-encrypted to
    every target (or the one --target names). Manual backups are never removed by retention.

    Then backs up every file set (files[] in the configuration; or the one --files names): only
    the files that changed since the last snapshot on each target are read, and only content the
    target does not hold yet is uploaded. --db alone backs up databases only, --files alone that
    file set only. A file that cannot be read, or keeps changing while it is read, is left out
    and reported (exit status 1); the rest is backed up. With --identity, a file set whose local
    memory (in the local folder) is gone is compared with the target's newest snapshot instead of
    being uploaded whole.

    Without a configuration, flags are enough:
      offsite backup --db /data/crm.db --target file:///mnt/usb/offsite --recipient age1…
      offsite backup --files /data/uploads --target file:///mnt/usb/offsite --recipient age1…
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: commonOptions, flags: [])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        let selectsDatabases = parsed.value("db") != nil
        let selectsFiles = parsed.value("files") != nil
        let fileSets = selectsDatabases && !selectsFiles ? [] : try setup.fileSets()
        let databases: [DatabaseRef]
        if selectsFiles && !selectsDatabases {
            databases = []
        } else if !selectsDatabases && !fileSets.isEmpty && (setup.config?.databases.isEmpty ?? true) && setup.config?.watch == nil {
            databases = []
        } else {
            databases = try setup.databases()
        }
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
        let keys = try? setup.decryptionKeys()
        for set in fileSets {
            let job = FileSetBackupJob(set: set, kind: .manual, targets: targets, encryption: encryption,
                                       compressionLevel: setup.compressionLevel, cacheFolder: setup.fileSetCacheFolder,
                                       leftOut: setup.fileSetLeftOut(), keys: keys)
            failures += backUp(job, recorder: recorder)
        }
        return failures == 0 ? 0 : 1
    }

    /// Runs one file set backup and prints what it did; returns the number of failures.
    static func backUp(_ job: FileSetBackupJob, recorder: OutcomeRecorder) -> Int {
        let name = job.set.name
        let report: FileSetBackupReport
        do {
            report = try runFileSetBackup(job)
        } catch {
            reportFailure(error, prefix: "file set \(name)")
            recorder.fileSetBackupFailed(set: name, targets: job.targets.map(\.name), error: error)
            return 1
        }
        recorder.fileSetBackupFinished(report)
        var failures = 0
        for line in report.recovered { print("\(name): \(line)") }
        print("\(name): snapshot \(report.id): \(report.files) files (\(formatBytes(report.totalBytes))), \(report.folders) folders, "
              + "\(report.links) links; read \(report.filesRead) changed files (\(formatBytes(report.bytesRead))), "
              + "\(formatBytes(report.newContentBytes)) of new content")
        for upload in report.uploads {
            if let error = upload.error {
                reportFailure(error, prefix: "\(name) → \(upload.target)")
                failures += 1
            } else {
                let mode = upload.base.map { "incremental to \($0)" } ?? "full"
                print("\(name) → \(upload.target): \(upload.key) (shipped \(formatBytes(upload.bytesShipped)) in "
                      + "\(upload.packsUploaded) new pack(s); \(mode))")
            }
        }
        var standardError = FileHandle.standardError
        for skipped in report.skipped {
            if case .unsupported = skipped.reason {
                print("warning: \(name): \(skipped.description)", to: &standardError)
            } else {
                print("error: \(name): \(skipped.description)", to: &standardError)
                failures += 1
            }
        }
        return failures
    }

    /// Prints a failure of one database or target, keeping going with the rest.
    static func reportFailure(_ error: Error, prefix: String) {
        var standardError = FileHandle.standardError
        let message = (error as? UserFacingError)?.message ?? "\(error)"
        print("error: \(prefix): \(message)", to: &standardError)
        if let hint = (error as? UserFacingError)?.hint { print("hint: \(hint)", to: &standardError) }
    }
}
