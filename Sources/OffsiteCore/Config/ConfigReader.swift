import Foundation

// Walks the JSONSerialization tree by hand so every problem can name its full key path
// (`targets[1].retention.daily`): unknown keys, wrong types, out-of-range values, undefined
// `${VAR}`s and unreadable `…File`s. Nothing in here ever puts a value into a message.

/// What every node needs besides its value: the environment for `${VAR}` and the folder
/// relative paths are resolved against.
struct ConfigContext {
    var environment: [String: String]
    var baseDirectory: String
    /// Whether secrets written as plain text are worth a warning (in a file, not from variables).
    var warnsAboutInlineSecrets = true
}

/// One value of the configuration tree at a key path.
struct ConfigNode {
    let value: Any
    let path: String
    let context: ConfigContext

    /// An error at this node's key path.
    func error(_ problem: String, hint: String? = nil) -> ConfigError {
        ConfigError(keyPath: path, problem: problem, hint: hint)
    }

    /// The node for element `index` of an array.
    func element(_ index: Int, _ value: Any) -> ConfigNode {
        ConfigNode(value: value, path: "\(path)[\(index)]", context: context)
    }

    /// What kind of JSON value this is, for "expected X, found Y".
    var kindName: String {
        if value is NSNull { return "null" }
        if value is String { return "a string" }
        if value is [Any] { return "an array" }
        if value is [String: Any] { return "an object" }
        if let number = value as? NSNumber {
            if ConfigNode.isBoolean(number) { return "true/false" }
            return ConfigNode.integerValue(number) == nil ? "a number" : "an integer"
        }
        return "an unexpected value"
    }

    private func mismatch(_ expected: String) -> ConfigError {
        error("expected \(expected), found \(kindName)")
    }

    /// JSONSerialization gives booleans as NSNumber of ObjC type `c`; JSON numbers never are.
    static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }

    /// The integer a JSON number holds exactly, or nil for fractions and out-of-range values.
    static func integerValue(_ number: NSNumber) -> Int? {
        if isBoolean(number) { return nil }
        let type = String(cString: number.objCType)
        if type == "d" || type == "f" {
            let double = number.doubleValue
            guard double.rounded() == double, abs(double) < 9.0e15 else { return nil }
            return Int(double)
        }
        if type == "Q" { return number.uint64Value <= UInt64(Int.max) ? Int(number.uint64Value) : nil }
        return number.intValue
    }

    /// The string, with `${VAR}` expanded.
    func string() throws -> String {
        guard let text = value as? String else { throw mismatch("a string") }
        return try expandVariables(in: text, environment: context.environment, keyPath: path)
    }

    /// A string that must not be empty after expansion.
    func nonEmptyString() throws -> String {
        let text = try string()
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else { throw error("must not be empty") }
        return text
    }

    /// An integer within `range`.
    func integer(in range: ClosedRange<Int>? = nil) throws -> Int {
        guard let number = value as? NSNumber, !ConfigNode.isBoolean(number) else { throw mismatch("an integer") }
        guard let integer = ConfigNode.integerValue(number) else { throw mismatch("an integer") }
        if let range, !range.contains(integer) {
            throw error("must be between \(range.lowerBound) and \(range.upperBound), found \(integer)")
        }
        return integer
    }

    /// `true` or `false`.
    func bool() throws -> Bool {
        guard let number = value as? NSNumber, ConfigNode.isBoolean(number) else { throw mismatch("true or false") }
        return number.boolValue
    }

    /// A duration: text such as `"1h30m"` or a number of seconds. Must be positive unless
    /// `allowingZero`.
    func duration(allowingZero: Bool = false) throws -> Duration {
        let parsed: Duration
        if let number = value as? NSNumber, !ConfigNode.isBoolean(number) {
            let seconds = number.doubleValue
            guard seconds.isFinite, seconds >= 0, seconds < 1e12 else {
                throw error("expected a non-negative number of seconds")
            }
            parsed = .milliseconds(Int64((seconds * 1000).rounded()))
        } else if value is String {
            guard let duration = Duration(configText: try string()) else {
                throw error("expected a duration such as \"90s\", \"5m\", \"1h30m\", \"7d\" or \"2w\"")
            }
            parsed = duration
        } else {
            throw mismatch("a duration (such as \"1h30m\", or a number of seconds)")
        }
        if !allowingZero && parsed <= .zero { throw error("must be longer than zero") }
        return parsed
    }

    /// An array's elements.
    func array() throws -> [ConfigNode] {
        guard let items = value as? [Any] else { throw mismatch("an array") }
        return items.enumerated().map { element($0.offset, $0.element) }
    }

    /// An array of non-empty strings.
    func stringArray() throws -> [String] {
        try array().map { try $0.nonEmptyString() }
    }

    /// An object whose keys must all be among `allowedKeys`; an unknown key is an error that
    /// names its key path and, when one is close, the key that was probably meant.
    func object(allowedKeys: [String]) throws -> ConfigObject {
        guard let fields = value as? [String: Any] else { throw mismatch("an object") }
        for key in fields.keys.sorted() where !allowedKeys.contains(key) {
            let keyPath = ConfigObject.childPath(path, key)
            if let suggestion = closestKey(to: key, among: allowedKeys) {
                throw ConfigError(keyPath: keyPath, problem: "unknown key (did you mean \"\(suggestion)\"?)")
            }
            throw ConfigError(keyPath: keyPath, problem: "unknown key",
                              hint: "known keys here: \(allowedKeys.joined(separator: ", "))")
        }
        return ConfigObject(fields: fields, path: path, context: context)
    }
}

/// A JSON object whose keys have been checked; typed accessors for its fields. A field that is
/// absent or `null` reads as nil.
struct ConfigObject {
    let fields: [String: Any]
    let path: String
    let context: ConfigContext

    static func childPath(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The path of `key` in this object.
    func path(of key: String) -> String { ConfigObject.childPath(path, key) }

    /// An error at `key`.
    func error(at key: String, _ problem: String, hint: String? = nil) -> ConfigError {
        ConfigError(keyPath: path(of: key), problem: problem, hint: hint)
    }

    /// An error at this object itself.
    func error(_ problem: String, hint: String? = nil) -> ConfigError {
        ConfigError(keyPath: path, problem: problem, hint: hint)
    }

    /// Whether `key` is present and not null.
    func has(_ key: String) -> Bool { node(key) != nil }

    /// The node at `key`, or nil when absent or null.
    func node(_ key: String) -> ConfigNode? {
        guard let value = fields[key], !(value is NSNull) else { return nil }
        return ConfigNode(value: value, path: path(of: key), context: context)
    }

    /// The node at `key`, or an error saying it is required.
    func required(_ key: String) throws -> ConfigNode {
        guard let node = node(key) else { throw error(at: key, "required") }
        return node
    }

    func string(_ key: String) throws -> String? { try node(key)?.nonEmptyString() }
    func requiredString(_ key: String) throws -> String { try required(key).nonEmptyString() }
    func integer(_ key: String, in range: ClosedRange<Int>? = nil) throws -> Int? {
        try node(key)?.integer(in: range)
    }
    func bool(_ key: String) throws -> Bool? { try node(key)?.bool() }
    func duration(_ key: String, allowingZero: Bool = false) throws -> Duration? {
        try node(key)?.duration(allowingZero: allowingZero)
    }
    func stringArray(_ key: String) throws -> [String]? { try node(key)?.stringArray() }

    /// A file path, resolved against the configuration file's folder when relative.
    func filePath(_ key: String) throws -> String? {
        guard let text = try string(key) else { return nil }
        return resolvePath(text, against: context.baseDirectory)
    }

    /// A secret given either inline at `key` or in the file named at `fileKey` (read now,
    /// trailing newline trimmed). Both at once is an error.
    func secret(_ key: String, fileKey: String) throws -> Secret? {
        if has(key) && has(fileKey) {
            throw error(at: fileKey, "cannot be combined with \(key); give one of them")
        }
        if let inline = try string(key) { return Secret(inline) }
        guard let file = try filePath(fileKey) else { return nil }
        return Secret(try readSecretFile(file, keyPath: path(of: fileKey)))
    }
}

/// Expands `${NAME}` from `environment`; `$${` and `$$` give a literal `$`. An undefined variable
/// is an error naming the key path and the variable (never a value).
func expandVariables(in text: String, environment: [String: String], keyPath: String) throws -> String {
    guard text.contains("$") else { return text }
    var result = ""
    var index = text.startIndex
    while index < text.endIndex {
        let character = text[index]
        let next = text.index(after: index)
        guard character == "$", next < text.endIndex else {
            result.append(character)
            index = next
            continue
        }
        if text[next] == "$" {
            result.append("$")
            index = text.index(after: next)
        } else if text[next] == "{" {
            let nameStart = text.index(after: next)
            guard let close = text[nameStart...].firstIndex(of: "}") else {
                throw ConfigError(keyPath: keyPath, problem: "unterminated ${ (write $${ for a literal ${)")
            }
            let name = String(text[nameStart..<close])
            guard isVariableName(name) else {
                throw ConfigError(keyPath: keyPath, problem: "\"${\(name)}\" is not a variable reference",
                                  hint: "names are letters, digits and _; write $${ for a literal ${")
            }
            guard let value = environment[name] else {
                throw ConfigError(keyPath: keyPath, problem: "environment variable \(name) is not set",
                                  hint: "set \(name), or write $${ for a literal ${")
            }
            result += value
            index = text.index(after: close)
        } else {
            result.append("$")
            index = next
        }
    }
    return result
}

private func isVariableName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic)
    else { return false }
    return name.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && $0.properties.isAlphabetic) || ("0"..."9").contains($0) }
}

/// `path` when absolute, else `path` under `base`; `~` is not expanded (containers have no home).
func resolvePath(_ path: String, against base: String) -> String {
    if path.hasPrefix("/") { return path }
    return URL(fileURLWithPath: base, isDirectory: true).appendingPathComponent(path).standardizedFileURL.path
}

/// Reads a secret file: UTF-8, trailing newlines trimmed, not empty. Errors name the key path and
/// the file, never the content.
func readSecretFile(_ file: String, keyPath: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
        throw ConfigError(keyPath: keyPath, problem: "file \(file) does not exist")
    }
    guard !isDirectory.boolValue else {
        throw ConfigError(keyPath: keyPath, problem: "\(file) is a folder, not a file")
    }
    guard let data = FileManager.default.contents(atPath: file) else {
        throw ConfigError(keyPath: keyPath, problem: "cannot read \(file)", hint: "check the file's permissions")
    }
    guard var text = String(data: data, encoding: .utf8) else {
        throw ConfigError(keyPath: keyPath, problem: "\(file) is not UTF-8 text")
    }
    while let last = text.last, last == "\n" || last == "\r" || last == "\r\n" { text.removeLast() }
    guard !text.isEmpty else { throw ConfigError(keyPath: keyPath, problem: "\(file) is empty") }
    return text
}

/// The allowed key closest to a misspelt one, when it is close enough to be a likely typo.
func closestKey(to key: String, among candidates: [String]) -> String? {
    let lowered = key.lowercased()
    if let sameLetters = candidates.first(where: { $0.lowercased() == lowered }) { return sameLetters }
    let limit = key.count <= 4 ? 1 : 2
    let scored = candidates.map { ($0, editDistance(lowered, $0.lowercased())) }
    guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= limit else { return nil }
    return best.0
}

/// Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps
/// (so `retentoin` is one edit from `retention`).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { table[i][0] = i }
    for j in 0...b.count { table[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
            }
        }
    }
    return table[a.count][b.count]
}
