import Foundation
import OffsiteCore

/// The commands, each in its own file; `run` returns the exit status.
let commands: [(name: String, summary: String, run: ([String]) throws -> Int32)] = [
    ("run", "the agent: watch, schedule, snapshot, rotate, ship, prune until SIGTERM", RunCommand.run),
    ("backup", "one backup now (kind manual), to every target or one", BackupCommand.run),
    ("list", "backups on the targets and in the local rotation", ListCommand.run),
    ("restore", "download, decrypt, verify and put a backup in place", RestoreCommand.run),
    ("verify", "restore drill: download, decrypt, integrity_check, compare", VerifyCommand.run),
    ("prune", "apply retention now, saying what is kept and why", PruneCommand.run),
    ("status", "per database and target: last success, last failure, next run", StatusCommand.run),
    ("healthcheck", "exit 0 when every database has a recent off-site copy", HealthcheckCommand.run),
    ("check", "validate the configuration and probe every target", CheckCommand.run),
    ("keygen", "new age X25519 identity; prints its public recipient", KeygenCommand.run),
    ("version", "version and linked library versions", VersionCommand.run),
]

let usage = """
usage: offsite COMMAND [OPTIONS]

offsite keeps SQLite databases safe off-site: consistent snapshots, gzip, age encryption,
shipped to folder, S3 or WebDAV targets.

commands:
\(commands.map { "  \($0.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \($0.summary)" }.joined(separator: "\n"))

Run `offsite COMMAND --help` for a command's options.
"""

/// Prints `error: …` and, when there is one, `hint: …` on stderr.
func report(_ error: Error) {
    var standardError = FileHandle.standardError
    if let error = error as? UserFacingError {
        print("error: \(error.message)", to: &standardError)
        if let hint = error.hint { print("hint: \(hint)", to: &standardError) }
    } else {
        print("error: \(error)", to: &standardError)
    }
}

extension FileHandle: @retroactive TextOutputStream {
    public func write(_ string: String) {
        write(Data(string.utf8))
    }
}

signal(SIGPIPE, SIG_IGN)
ProcessMemory.limitArenas()
let arguments = Array(CommandLine.arguments.dropFirst())
guard let name = arguments.first, !["-h", "--help", "help"].contains(name) else {
    print(usage)
    exit(arguments.isEmpty ? 2 : 0)
}
guard let command = commands.first(where: { $0.name == name }) else {
    report(UsageError("unknown command \(name)", hint: "run `offsite --help` for the list of commands"))
    exit(2)
}
do {
    exit(try command.run(Array(arguments.dropFirst())))
} catch let error as UsageError {
    report(error)
    exit(2)
} catch {
    report(error)
    exit(1)
}
