import Foundation
import OffsiteCore

/// `offsite status`: what the agent recorded, per database and target.
enum StatusCommand {
    static let help = """
    usage: offsite status [--json] [--config FILE]

    Per database and target: the last success, the last failure and why, the next run, counts
    and sizes, as the agent (`offsite run`) recorded them in the local folder's state file.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["config"], flags: ["json"])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let (state, _) = try loadState(Setup(parsed))
        print(parsed.has("json") ? renderStatusJSON(state) : renderStatusTable(state, now: Date()), terminator: "")
        return 0
    }

    /// The agent's state from the configured local folder.
    static func loadState(_ setup: Setup) throws -> (AgentState, OffsiteConfig) {
        guard let config = setup.config else {
            throw UsageError("no configuration", hint: "give --config FILE or set OFFSITE_CONFIG")
        }
        guard let local = config.local else { throw AgentError.noLocalFolder }
        let (state, warning) = StateStore(folder: local.dir).load()
        if let warning {
            var standardError = FileHandle.standardError
            print("warning: \(warning)", to: &standardError)
        }
        return (state, config)
    }
}

/// `offsite healthcheck`: exit 0 when every database has a recent off-site copy, 1 otherwise.
enum HealthcheckCommand {
    static let help = """
    usage: offsite healthcheck [--config FILE]

    Exits 0 when every database has an off-site copy on every target younger than health.maxAge
    (default 26h), 1 otherwise, printing what is wrong. A new deployment is healthy for maxAge
    after the agent first started. Used by the image's Docker HEALTHCHECK.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["config"], flags: [])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        let (state, config) = try StatusCommand.loadState(setup)
        var names = Set(state.databases.keys)
        for database in (try? setup.databases()) ?? [] { names.insert(database.name) }
        for set in config.files { names.insert(set.name) }
        let report = evaluateHealth(state: state, databases: names.sorted(), targets: config.targets.map(\.name),
                                    maxAge: config.health.maxAge, now: Date())
        if report.isHealthy {
            print("healthy")
            return 0
        }
        for problem in report.problems { print("unhealthy: \(problem)") }
        return 1
    }
}
