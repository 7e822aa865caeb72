import Foundation
import OffsiteCore

/// `offsite verify`: the restore drill, without touching the live database.
enum VerifyCommand {
    static let help = """
    usage: offsite verify [--target NAME|URL] [--db NAME | --files NAME] [--backup ID|latest|all]
                          [--identity FILE]… [--passphrase-file FILE] [--config FILE]

    The restore drill: downloads each backup named (default: the latest of every database on every
    target), decrypts and decompresses it into a temporary file (in the local folder, or the
    system's temporary folder), runs PRAGMA integrity_check, compares the size and page count with
    what was recorded when the backup was taken, and deletes the file. A full backup that change
    objects follow (continuous protection) is checked with its chain: every object is downloaded,
    every link checked (the base's CRC-32, each object's digest of the one before), all of it
    applied, then integrity_check; a missing link fails. The live database is never touched.
    Prints one line per backup, "ok" or what failed; exits 1 when any failed.

    File sets are checked too (--files NAME: that set only; --db alone: databases only): the
    manifest and every pack the snapshot needs are downloaded, decrypted and decompressed, every
    file's content is checked against its hash, and every piece the manifest names must be in its
    pack. Nothing is written but a temporary copy of the manifest.

    Without an identity or passphrase it checks what it can — the object exists and its size
    matches the upload; for file sets, the manifest and every pack it needs are there — and says
    that it could not decrypt.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: commonOptions.union(["backup"]), flags: [])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let scope = try parsed.value("backup").map(VerifyScope.parse) ?? .latest
        let setup = try Setup(parsed)
        let targets = try setup.targets()
        let keys = try setup.decryptionKeys()
        let state = setup.localFolder.map { StateStore(folder: $0).load().state } ?? AgentState()
        let temporaryFolder = setup.localFolder

        var failures = 0
        let selectsFiles = parsed.value("files") != nil
        let selectsDatabases = parsed.value("db") != nil
        for target in targets where !(selectsFiles && !selectsDatabases) {
            let names: [String]
            if parsed.value("db") != nil {
                names = [try setup.databaseName().name]
            } else {
                do {
                    names = Array(Set(try listBackups(on: target).map(\.database))).sorted()
                } catch {
                    BackupCommand.reportFailure(error, prefix: "target \(target.name)")
                    failures += 1
                    continue
                }
                if names.isEmpty { print("\(target.name): no backups") }
            }
            for name in names {
                let outcomes: [VerifyOutcome]
                do {
                    outcomes = try verifyBackups(
                        of: name, on: target, scope: scope, keys: keys,
                        records: state.backupRecords(database: name, target: target.name), temporaryFolder: temporaryFolder,
                        progress: { ProgressMeter.forTerminal(label: "verifying \($0.id)") })
                } catch {
                    BackupCommand.reportFailure(error, prefix: "\(name) on \(target.name)")
                    failures += 1
                    continue
                }
                for outcome in outcomes {
                    let line = "\(outcome.target) \(outcome.database) \(outcome.backupID): \(outcome.status.rawValue): \(outcome.detail)"
                    if outcome.isFailure {
                        var standardError = FileHandle.standardError
                        print("error: \(line)", to: &standardError)
                        failures += 1
                    } else {
                        print(line)
                    }
                }
            }
        }
        if !(selectsDatabases && !selectsFiles) {
            failures += try verifyFileSets(setup: setup, targets: targets, scope: scope, keys: keys, temporaryFolder: temporaryFolder)
        }
        return failures == 0 ? 0 : 1
    }

    /// Verifies the file sets `--files` names, or every configured one (without a configuration,
    /// every one found on the targets); returns the number of failures.
    static func verifyFileSets(setup: Setup, targets: [any Target], scope: VerifyScope, keys: DecryptionKeys,
                               temporaryFolder: String?) throws -> Int {
        var failures = 0
        for target in targets {
            var names: [String]
            if setup.arguments.value("files") != nil {
                names = [try setup.fileSetName().name]
            } else if let config = setup.config {
                names = config.files.map(\.name)
            } else {
                do {
                    names = Set(try target.list(prefix: "").compactMap(RemoteFileSnapshot.init(object:)).map(\.set)).sorted()
                } catch {
                    BackupCommand.reportFailure(error, prefix: "target \(target.name)")
                    failures += 1
                    continue
                }
            }
            for name in names {
                let outcomes: [VerifyOutcome]
                do {
                    outcomes = try verifyFileSet(named: name, on: target, scope: scope, keys: keys.isEmpty ? nil : keys,
                                                 temporaryFolder: temporaryFolder)
                } catch {
                    BackupCommand.reportFailure(error, prefix: "file set \(name) on \(target.name)")
                    failures += 1
                    continue
                }
                for outcome in outcomes {
                    let line = "\(outcome.target) \(outcome.database) (files) \(outcome.backupID): \(outcome.status.rawValue): \(outcome.detail)"
                    if outcome.isFailure {
                        var standardError = FileHandle.standardError
                        print("error: \(line)", to: &standardError)
                        failures += 1
                    } else {
                        print(line)
                    }
                }
            }
        }
        return failures
    }
}
