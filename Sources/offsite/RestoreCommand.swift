import Foundation
import OffsiteCore

/// `offsite restore`: pick a backup, download, decrypt, decompress, verify, put it in place.
enum RestoreCommand {
    static let help = """
    usage: offsite restore [--target NAME|URL] --db NAME [--backup ID|latest | --at TIME]
                           (--output PATH [--force] | --in-place [--yes]) [--if-db-not-exists]
                           [--full-check] [--identity FILE]… [--passphrase-file FILE] [--config FILE]
           offsite restore [--target NAME|URL] --files NAME [--backup ID|latest | --at TIME]
                           (--output DIR | --in-place [--yes]) [--path SUBPATH]
                           [--identity FILE]… [--passphrase-file FILE] [--config FILE]

    Restores the newest state of a database, the full backup --backup names (as it was), or the
    state as of --at TIME (RFC 3339 with seconds and optional fraction, or YYYY-MM-DD HH:MM[:SS],
    in UTC). With continuous protection, --at restores the last transaction committed at or before
    TIME from a full backup and the change objects after it, and the newest state is the newest
    change shipped; otherwise --at takes the newest full backup at or before TIME. Everything is
    downloaded into a temporary file and checked (PRAGMA quick_check; --full-check runs
    integrity_check) before anything is put in place.

      --output PATH        write a new file; an existing one is replaced only with --force
      --in-place           replace the live database: refused while another process holds it open;
                           asks you to type the database name unless --yes; ships a pre-restore
                           backup of the current database first; removes stale -wal/-shm/-journal
      --if-db-not-exists   restore only when the database file is missing; exit 0 when it exists
                           or there is no backup yet (an init container before the application)

    On a terminal, without --backup or --at, it lists the recent backups to choose from (Enter
    takes the newest) and shows the download's progress. An in-place restore keeps the replaced
    file as DBNAME.replaced-TIMESTAMP.sqlite3 (mode 0600) in the local folder, or beside the
    database when none is configured.

    A file set (--files) is restored as the snapshot had it: files (content checked against its
    hash), folders, links, permissions, modification times (and owners when run as root).
      --output DIR   a new folder (it must not exist, or be empty); built beside it, then renamed
      --in-place     the set's own folder: asks you to type the set's name unless --yes, ships a
                     pre-restore snapshot of it first, then replaces each file whole and removes
                     what the snapshot does not have (excluded files and the databases stay)
      --path SUB     only SUB (a file or folder, relative to the set's folder) and what is under it
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: commonOptions.union(["backup", "at", "output", "path"]),
                                   flags: ["in-place", "yes", "force", "if-db-not-exists", "full-check"])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        if parsed.value("files") != nil { return try restoreFileSet(parsed) }
        if parsed.value("path") != nil { throw UsageError("--path is for file sets: give --files NAME") }
        let output = parsed.value("output")
        let inPlace = parsed.has("in-place")
        guard (output != nil) != inPlace else {
            throw UsageError("give exactly one of --output PATH and --in-place")
        }
        if parsed.value("backup") != nil && parsed.value("at") != nil {
            throw UsageError("give --backup or --at, not both")
        }
        var selection: BackupSelection = try parsed.value("backup").map { try BackupSelection.parse(backup: $0) }
            ?? parsed.value("at").map { try BackupSelection.parse(at: $0) } ?? .latest
        let named = parsed.value("backup") != nil || parsed.value("at") != nil

        let setup = try Setup(parsed)
        let database = try setup.databaseName()
        let destination: String
        if let output {
            destination = output
        } else {
            guard let path = database.path else {
                throw UsageError("--in-place needs the database's path", hint: "give --db PATH, or configure the database")
            }
            destination = path
        }
        if parsed.has("if-db-not-exists") && pathExists(destination) {
            print("\(destination) exists; nothing restored")
            return 0
        }
        let target = try setup.singleTarget()
        let keys = try setup.decryptionKeys()
        if !named && !parsed.has("if-db-not-exists") && isatty(STDIN_FILENO) != 0 && isatty(STDERR_FILENO) != 0 {
            selection = try choose(database: database.name, target: target)
        }
        let job = RestoreJob(target: target, database: database.name, selection: selection, keys: keys,
                             check: parsed.has("full-check") ? .full : .quick,
                             progress: ProgressMeter.forTerminal(label: "downloading \(database.name)"),
                             warn: { warning in
                                 var standardError = FileHandle.standardError
                                 print("warning: \(warning)", to: &standardError)
                             })

        let report: RestoreReport
        do {
            if inPlace {
                let exists = FileManager.default.fileExists(atPath: destination)
                if exists && !parsed.has("yes") { try confirm(database: database.name, path: destination) }
                let preRestore = exists ? BackupJob(
                    database: DatabaseRef(path: destination, name: database.name), kind: .preRestore, targets: [target],
                    encryption: try preRestoreEncryption(setup: setup, keys: keys), compressionLevel: setup.compressionLevel,
                    check: .quick, localFolder: setup.localFolder, localKeep: setup.localKeep) : nil
                report = try restoreInPlace(job, databasePath: destination, preRestore: preRestore,
                                            localFolder: setup.localFolder)
            } else {
                report = try restore(job, toNewFile: destination, overwrite: parsed.has("force"))
            }
        } catch RestoreError.noBackups(let name, let targetName) where parsed.has("if-db-not-exists") {
            print("\(destination) is missing, but there is no backup yet of \(name) on target \(targetName); nothing restored")
            return 0
        }
        if let preRestore = report.preRestore {
            print("kept the current database as backup \(preRestore.id) on \(target.name)")
        }
        if let skipped = report.preRestoreSkipped {
            var standardError = FileHandle.standardError
            print("warning: no pre-restore backup was shipped: \(skipped)", to: &standardError)
        }
        if let replaced = report.replacedPath {
            print("kept the replaced database as \(replaced)")
        }
        if let changes = report.changes {
            let plain = changes.objects - changes.compactedObjects
            let objects = (changes.compactedObjects > 0 ? "\(changes.compactedObjects) compacted and " : "")
                + "\(plain) change object\(plain == 1 ? "" : "s")"
            print("restored \(database.name) as of \(formatInstant(changes.point)): \(report.backup.id) and \(objects) "
                  + "from \(target.name) to \(report.path) (\(formatBytes(report.size)))")
        } else {
            print("restored \(report.backup.id) of \(database.name) from \(target.name) to \(report.path) (\(formatBytes(report.size)))")
        }
        return 0
    }

    /// `offsite restore --files NAME …`.
    static func restoreFileSet(_ parsed: Arguments) throws -> Int32 {
        if parsed.value("db") != nil { throw UsageError("give --db or --files, not both") }
        for flag in ["if-db-not-exists", "full-check", "force"] where parsed.has(flag) {
            throw UsageError("--\(flag) is for databases, not file sets")
        }
        let output = parsed.value("output")
        let inPlace = parsed.has("in-place")
        guard (output != nil) != inPlace else { throw UsageError("give exactly one of --output DIR and --in-place") }
        if parsed.value("backup") != nil && parsed.value("at") != nil { throw UsageError("give --backup or --at, not both") }
        let selection: BackupSelection = try parsed.value("backup").map { try BackupSelection.parse(backup: $0) }
            ?? parsed.value("at").map { try BackupSelection.parse(at: $0) } ?? .latest
        let setup = try Setup(parsed)
        let (name, set) = try setup.fileSetName()
        let target = try setup.singleTarget()
        let keys = try setup.decryptionKeys()
        let job = FileSetRestoreJob(target: target, set: name, selection: selection, keys: keys, subpath: parsed.value("path"),
                                    progress: ProgressMeter.forTerminal(label: "downloading \(name)"))
        let report: FileSetRestoreReport
        if let output {
            report = try OffsiteCore.restoreFileSet(job, toNewFolder: output)
        } else {
            guard let set else {
                throw UsageError("--in-place needs the set's folder", hint: "give --files PATH, or configure the file set in files[]")
            }
            if !parsed.has("yes") { try confirm(database: name, path: set.path) }
            var preRestore: FileSetBackupJob?
            if FileManager.default.fileExists(atPath: set.path) {
                preRestore = FileSetBackupJob(set: set, kind: .preRestore, targets: [target],
                                              encryption: try preRestoreEncryption(setup: setup, keys: keys),
                                              compressionLevel: setup.compressionLevel, cacheFolder: setup.fileSetCacheFolder,
                                              leftOut: setup.fileSetLeftOut())
            }
            report = try restoreFileSetInPlace(job, root: set.path, exclude: set.exclude, leftOut: setup.fileSetLeftOut(),
                                               preRestore: preRestore)
        }
        if let preRestore = report.preRestore {
            print("kept the current files as snapshot \(preRestore.id) of \(name) on \(target.name)")
            for skipped in preRestore.skipped {
                var standardError = FileHandle.standardError
                print("warning: pre-restore snapshot: \(skipped.description)", to: &standardError)
            }
        }
        let scope = parsed.value("path").map { " (\($0))" } ?? ""
        print("restored \(report.snapshot.id) of file set \(name)\(scope) from \(target.name) to \(report.destination): "
              + "\(report.files) files (\(formatBytes(report.bytes))), \(report.folders) folders, \(report.links) links"
              + (inPlace ? ", \(report.removed) removed" : ""))
        return 0
    }

    /// The pre-restore backup is encrypted like any other; with only an identity at hand, to that
    /// identity's own recipient.
    static func preRestoreEncryption(setup: Setup, keys: DecryptionKeys) throws -> PayloadEncryption {
        do {
            return try setup.encryption()
        } catch {
            if !keys.identities.isEmpty { return .recipients(keys.identities.map(\.recipient)) }
            if let passphrase = keys.passphrase { return .passphrase(passphrase, workFactor: 18) }
            throw error
        }
    }

    /// Lists the recent backups on the terminal and asks which one to restore (Enter: the newest);
    /// when change objects reach further than the newest full backup, that newest change comes
    /// first, as choice 0.
    static func choose(database: String, target: any Target) throws -> BackupSelection {
        let listing = try listBackupsAndChanges(on: target, database: database)
        let menu = backupMenu(listing.backups)
        guard !menu.choices.isEmpty else { throw RestoreError.noBackups(database: database, target: target.name) }
        var newestChange: ChainRestorePlan?
        if case let .chain(plan)? = try? chooseRestoreSource(from: listing, database: database, selection: .latest, target: target.name) {
            newestChange = plan
        }
        var standardError = FileHandle.standardError
        print("Backups of \(database) on \(target.name), newest first:", to: &standardError)
        if let plan = newestChange {
            let moment = formatInstant(plan.point).dropLast().replacingOccurrences(of: "T", with: " ")
            print("  0  \(moment) UTC  newest change (\(plan.base.id) and \(plan.steps.count) change objects)", to: &standardError)
        }
        for line in menu.lines { print(line, to: &standardError) }
        print("Restore which backup? [\(newestChange == nil ? 1 : 0)]: ", terminator: "", to: &standardError)
        let answer = (readLine() ?? "").trimmingCharacters(in: .whitespaces)
        if newestChange != nil && (answer.isEmpty || answer == "0") { return .latest }
        guard let index = menuChoice(answer, count: menu.choices.count) else {
            throw RestoreError.invalidArgument("no backup numbered \(answer): choose \(newestChange == nil ? 1 : 0) to \(menu.choices.count)")
        }
        return .id(menu.choices[index].id)
    }

    /// Asks for the database's (or file set's) name on the terminal; refuses without a terminal.
    static func confirm(database: String, path: String) throws {
        guard isatty(STDIN_FILENO) != 0 else { throw RestoreError.notConfirmed(database: database) }
        var standardError = FileHandle.standardError
        print("This replaces \(path) with a backup. Type the name (\(database)) to go on: ",
              terminator: "", to: &standardError)
        guard let answer = readLine(), answer.trimmingCharacters(in: .whitespaces) == database else {
            throw RestoreError.notConfirmed(database: database)
        }
    }
}
