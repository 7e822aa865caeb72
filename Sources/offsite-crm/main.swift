// offsite-crm: builds and exercises a simulated small-business CRM database, for tests and benchmarks.
import CRMSim
import Foundation
import OffsiteCore

/// A mistake in the command line.
struct UsageError: UserFacingError {
    var message: String
    var hint: String? { "run `offsite-crm --help` (or `offsite-crm COMMAND --help`) for usage" }
}

/// Options of one command: `--name value`, `--name=value` and bare `--flag`s.
struct Options {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    /// Parses `arguments`, accepting only the names in `valued` (which take a value) and `flagged`.
    init(_ arguments: ArraySlice<String>, valued: Set<String>, flagged: Set<String>) throws {
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            guard argument.hasPrefix("--") else { throw UsageError(message: "unexpected argument \(argument)") }
            var name = String(argument.dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if flagged.contains(name), value == nil {
                flags.insert(name)
            } else if valued.contains(name) {
                guard let given = value ?? remaining.popFirst() else { throw UsageError(message: "--\(name) needs a value") }
                values[name] = given
            } else {
                throw UsageError(message: "unknown option --\(name)")
            }
        }
    }

    func has(_ flag: String) -> Bool { flags.contains(flag) }

    func string(_ name: String) throws -> String {
        guard let value = values[name] else { throw UsageError(message: "missing --\(name)") }
        return value
    }

    func integer(_ name: String, default fallback: Int? = nil) throws -> Int {
        guard let text = values[name] else {
            if let fallback { return fallback }
            throw UsageError(message: "missing --\(name)")
        }
        guard let value = Int(text) else { throw UsageError(message: "--\(name) must be a whole number, not \(text)") }
        return value
    }

    func seed() throws -> UInt64 {
        guard let text = values["seed"] else { return 1 }
        guard let value = UInt64(text) else { throw UsageError(message: "--seed must be a non-negative whole number, not \(text)") }
        return value
    }

    func number(_ name: String) throws -> Double {
        let text = try string(name)
        guard let value = Double(text), value.isFinite, value > 0 else {
            throw UsageError(message: "--\(name) must be a positive number, not \(text)")
        }
        return value
    }
}

let overview = """
    usage: offsite-crm COMMAND [OPTIONS]

    Builds and exercises a simulated small-business CRM SQLite database.

    commands:
      generate   create a new CRM database of a given size
      write      write to a CRM database like the live application, then report
      check      verify that app_counters agrees with the tables
      chain      back it up and ship a chain of change objects after it (continuous protection)
      checksum   time the CRC-32 a backup takes of its checked copy (for the benchmark)
    """

let usages = [
    "chain": ChainCommand.usage,
    "checksum": """
        usage: offsite-crm checksum --file PATH

        Computes the CRC-32 of PATH as a backup does for the copy that passed its check
        (PlaintextChecksum.of: zlib's crc32 over the file read in chunks) and prints it with the
        bytes and the seconds it took, for the benchmark.
        """,
    "generate": """
        usage: offsite-crm generate --out PATH --size-mib N [--seed S]

        Creates a new WAL-mode CRM database at PATH of about N MiB. The same seed and size always
        give the same rows (default seed 1). Refuses to overwrite an existing file.
        """,
    "write": """
        usage: offsite-crm write --db PATH --rate R --duration SECONDS [--seed S] [--json] [--trace FILE]

        Runs short application-like write transactions at R per second for SECONDS, then prints the
        report (commits, busy errors, commit latency p50/p99/max, achieved rate, longest stall);
        --json prints it as JSON; --trace writes one line per committed transaction to FILE (seconds
        from the start when it began, milliseconds it took). Exits 1 when any transaction failed.
        """,
    "check": """
        usage: offsite-crm check --db PATH

        Checks that app_counters equals the row counts of activity_logs and comments, in one read
        transaction. Exits 0 when it holds, 1 when it does not (naming each mismatch).
        """,
]

func execute(_ arguments: [String]) throws -> Int32 {
    guard let command = arguments.first else {
        print(overview)
        return 2
    }
    if ["--help", "-h", "help"].contains(command) {
        print(overview)
        return 0
    }
    guard let usage = usages[command] else { throw UsageError(message: "unknown command \(command)") }
    let rest = arguments.dropFirst()
    if rest.contains("--help") || rest.contains("-h") {
        print(usage)
        return 0
    }
    switch command {
    case "generate":
        let options = try Options(rest, valued: ["out", "size-mib", "seed"], flagged: [])
        let stats = try CRMGenerator.generate(at: try options.string("out"), sizeMiB: try options.integer("size-mib"),
                                              seed: try options.seed())
        print("generated \(try options.string("out")): \(stats.summary)")
        return 0
    case "write":
        let options = try Options(rest, valued: ["db", "rate", "duration", "seed", "trace"], flagged: ["json"])
        let writer = try CRMWriter(path: try options.string("db"), rate: try options.number("rate"), seed: try options.seed())
        let report = try writer.run(duration: .seconds(try options.number("duration")))
        if let trace = try? options.string("trace") {
            let lines = writer.timeline.map { String(format: "%.4f %.3f\n", $0.beganSeconds, $0.milliseconds) }
            try Data(lines.joined().utf8).write(to: URL(fileURLWithPath: trace))
        }
        if options.has("json") {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.summary)
            if let firstError = report.firstError { print("first error: \(firstError)") }
        }
        return report.hasErrors ? 1 : 0
    case "checksum":
        let options = try Options(rest, valued: ["file"], flagged: [])
        let started = DispatchTime.now().uptimeNanoseconds
        let checksum = try PlaintextChecksum.of(fileAt: try options.string("file"))
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        print(String(format: "crc32 %08x bytes %lld seconds %.4f", checksum.crc, checksum.length, seconds))
        return 0
    case "chain":
        let options = try Options(rest, valued: ["db", "target", "recipient", "transactions", "per-object", "compact-every",
                                                 "level", "seed"], flagged: [])
        return try ChainCommand.run(options)
    default:
        let options = try Options(rest, valued: ["db"], flagged: [])
        let path = try options.string("db")
        let problems = try CRMInvariant.violations(inDatabaseAt: path)
        if problems.isEmpty {
            print("ok: \(path) app_counters agrees with the tables")
            return 0
        }
        for problem in problems { print("mismatch: \(problem)") }
        return 1
    }
}

do {
    exit(try execute(Array(CommandLine.arguments.dropFirst())))
} catch let error as UsageError {
    FileHandle.standardError.write(Data("error: \(error.message)\nhint: \(error.hint ?? "")\n".utf8))
    exit(2)
} catch let error as any UserFacingError {
    var text = "error: \(error.message)\n"
    if let hint = error.hint { text += "hint: \(hint)\n" }
    FileHandle.standardError.write(Data(text.utf8))
    exit(1)
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
