import OffsiteCore

/// A command line's options, parsed against the names a command accepts: `--name value`,
/// `--name=value`, boolean `--flag`, repeated options collected in order.
struct Arguments {
    private(set) var values: [String: [String]] = [:]
    private(set) var flags: Set<String> = []
    private(set) var positional: [String] = []

    /// Parses `arguments` for a command that takes the value options `options` and the boolean `flags`.
    init(_ arguments: [String], options: Set<String>, flags: Set<String>) throws {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--"), argument.count > 2 else {
                if argument == "-h" { self.flags.insert("help"); continue }
                positional.append(argument)
                continue
            }
            var name = String(argument.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if flags.contains(name) || name == "help" {
                guard inlineValue == nil else { throw UsageError("--\(name) takes no value") }
                self.flags.insert(name)
            } else if options.contains(name) {
                if let inlineValue {
                    values[name, default: []].append(inlineValue)
                } else {
                    guard index < arguments.count else { throw UsageError("--\(name) needs a value") }
                    values[name, default: []].append(arguments[index])
                    index += 1
                }
            } else {
                let known = (options.union(flags)).sorted().map { "--\($0)" }.joined(separator: ", ")
                throw UsageError("unknown option --\(name)", hint: known.isEmpty ? nil : "this command takes \(known)")
            }
        }
    }

    /// The last value given for `name`.
    func value(_ name: String) -> String? { values[name]?.last }
    /// Every value given for `name`, in order.
    func all(_ name: String) -> [String] { values[name] ?? [] }
    /// Whether the boolean `name` was given.
    func has(_ name: String) -> Bool { flags.contains(name) }

    /// Fails when positional arguments were given to a command that takes none.
    func expectNoPositional() throws {
        if let first = positional.first { throw UsageError("unexpected argument \(first)") }
    }
}

/// A mistake on the command line; exits with status 2.
struct UsageError: UserFacingError {
    var message: String
    var hint: String?

    init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
}
