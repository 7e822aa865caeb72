import Foundation

extension OffsiteConfig {
    /// Reads and validates the configuration file at `path`. Relative paths inside it (databases,
    /// folders, `…File` secrets) are resolved against the file's folder; `${VAR}` comes from
    /// `environment`. Throws `ConfigError` naming the file and the key path of the first problem.
    public static func load(path: String, environment: [String: String]) throws -> OffsiteConfig {
        let absolute = resolvePath(path, against: FileManager.default.currentDirectoryPath)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw ConfigError(keyPath: "", problem: "configuration file \(path) does not exist",
                              hint: "give --config FILE or set OFFSITE_CONFIG")
        }
        guard let data = FileManager.default.contents(atPath: absolute) else {
            throw ConfigError(keyPath: "", problem: "cannot read configuration file \(path)",
                              hint: "check the file's permissions")
        }
        let folder = (absolute as NSString).deletingLastPathComponent
        do {
            var config = try parse(data: data, environment: environment, baseDirectory: folder)
            config.file = path
            return config
        } catch let error as ConfigError {
            throw error.inFile(path)
        }
    }

    /// Parses and validates configuration JSON; relative paths are resolved against
    /// `baseDirectory`. Throws `ConfigError` naming the key path of the first problem.
    public static func parse(data: Data, environment: [String: String], baseDirectory: String) throws -> OffsiteConfig {
        let tree: Any
        do {
            tree = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw ConfigError(keyPath: "", problem: "not valid JSON: \(describeJSONError(error, in: data))")
        }
        let context = ConfigContext(environment: environment, baseDirectory: baseDirectory)
        return try parseTree(ConfigNode(value: tree, path: "", context: context))
    }
}

// MARK: - The document

private let topLevelKeys = [
    "databases", "watch", "files", "local", "encryption", "compression", "integrityCheck", "schedule", "targets",
    "health", "notify", "log", "verify", "http", "continuous", "shutdownTimeout", "restoreIfCorrupt",
]

func parseTree(_ root: ConfigNode) throws -> OffsiteConfig {
    let top = try root.object(allowedKeys: topLevelKeys)
    var warnings: [String] = []

    let databases = try parseDatabases(top)
    let watch = try top.node("watch").map { try parseWatch($0) }
    let files = try parseFileSets(top, databases: databases)
    if databases.isEmpty && watch == nil && files.isEmpty {
        throw ConfigError(keyPath: "databases", problem: "no databases to protect",
                          hint: "list them in \"databases\" or name their folder in \"watch\" (or list folders of files in \"files\")")
    }
    let local = try top.node("local").map { try parseLocal($0) }
    let encryption = try parseEncryption(top, warnings: &warnings)
    let compression = CompressionConfig(
        level: try top.node("compression")?.object(allowedKeys: ["level"]).integer("level", in: 0...9) ?? 6)
    let integrityCheck = try top.node("integrityCheck").map {
        try parseChoice($0, IntegrityCheck.self, ["quick", "full"])
    } ?? .quick
    let schedule = try top.node("schedule").map { try parseSchedule($0) } ?? ScheduleConfig()
    let targets = try parseTargets(top, warnings: &warnings)
    let health = HealthConfig(
        maxAge: try top.node("health")?.object(allowedKeys: ["maxAge"]).duration("maxAge") ?? HealthConfig().maxAge)
    let notify = try top.node("notify").map { try parseNotify($0) }
    let log = try top.node("log").map { try parseLog($0) } ?? LogConfig()
    let verify = try top.node("verify").map {
        VerifyConfig(every: try $0.object(allowedKeys: ["every"]).required("every").duration())
    }
    let http = try top.node("http").map { try parseHTTP($0, warnings: &warnings) }
    let continuous = try top.node("continuous").map { try parseContinuous($0) }
    let shutdownTimeout = try top.duration("shutdownTimeout") ?? .seconds(30)
    let restoreIfCorrupt = try top.bool("restoreIfCorrupt") ?? false

    return OffsiteConfig(
        databases: databases, watch: watch, files: files, local: local, encryption: encryption,
        compression: compression, integrityCheck: integrityCheck, schedule: schedule, targets: targets,
        health: health, notify: notify, log: log, verify: verify, http: http, continuous: continuous,
        shutdownTimeout: shutdownTimeout,
        restoreIfCorrupt: restoreIfCorrupt, warnings: warnings)
}

// MARK: - Sections

func parseContinuous(_ node: ConfigNode) throws -> ContinuousConfig {
    let section = try node.object(allowedKeys: ["interval", "keep", "maxChain"])
    var config = ContinuousConfig()
    if let interval = try section.duration("interval") { config.interval = interval }
    if let keep = try section.duration("keep") { config.keep = keep }
    if let limit = section.node("maxChain") {
        if let text = try? limit.string(), text.hasSuffix("%") {
            guard let percent = Double(text.dropLast().trimmingCharacters(in: .whitespaces)), percent > 0, percent <= 1000 else {
                throw limit.error("expected a share of the base's size from \"1%\" to \"1000%\", or a number of change objects")
            }
            config.maxChain = .share(percent / 100)
        } else {
            config.maxChain = .count(try limit.integer(in: 1...1_000_000))
        }
    }
    return config
}

func parseDatabases(_ top: ConfigObject) throws -> [DatabaseConfig] {
    guard let list = top.node("databases") else { return [] }
    var databases: [DatabaseConfig] = []
    var firstIndex: [String: (index: Int, path: String)] = [:]
    for (index, node) in try list.array().enumerated() {
        let entry = try node.object(allowedKeys: ["path", "name"])
        let path = resolvePath(try entry.requiredString("path"), against: node.context.baseDirectory)
        let database = DatabaseConfig(path: path, name: try entry.string("name"))
        let nameKey = entry.has("name") ? entry.path(of: "name") : entry.path(of: "path")
        guard DatabaseConfig.isValidName(database.name) else {
            throw ConfigError(keyPath: nameKey, problem: "\"\(database.name)\" is not a usable database name",
                              hint: "names use letters, digits, '.', '_' and '-'; set \"name\" to choose one")
        }
        if let earlier = firstIndex[database.name] {
            throw ConfigError(keyPath: nameKey,
                              problem: "\(earlier.path) (databases[\(earlier.index)]) and \(database.path) would both be "
                                  + "backed up as database \"\(database.name)\" (one folder on every target)",
                              hint: "give one of them a different \"name\"")
        }
        firstIndex[database.name] = (index, database.path)
        databases.append(database)
    }
    return databases
}

/// Parses `files[]`: each `{ "name", "path", "exclude" }`; names unique among file sets and
/// distinct from every database's name (they would share a folder on every target).
func parseFileSets(_ top: ConfigObject, databases: [DatabaseConfig]) throws -> [FileSetConfig] {
    guard let list = top.node("files") else { return [] }
    var sets: [FileSetConfig] = []
    for node in try list.array() {
        let entry = try node.object(allowedKeys: ["name", "path", "exclude"])
        guard let path = try entry.filePath("path") else { throw entry.error(at: "path", "required") }
        var patterns: [String] = []
        if let excludeNode = entry.node("exclude") {
            for item in try excludeNode.array() {
                let text = try item.nonEmptyString()
                do {
                    _ = try ExcludePatterns([text])
                } catch let error as ExcludePatternError {
                    throw item.error("pattern \"\(text)\" \(error.problem)")
                }
                patterns.append(text)
            }
        }
        let set = FileSetConfig(path: path, name: try entry.string("name"), exclude: try ExcludePatterns(patterns))
        let nameKey = entry.has("name") ? entry.path(of: "name") : entry.path(of: "path")
        guard isSafeName(set.name) else {
            throw ConfigError(keyPath: nameKey, problem: "\"\(set.name)\" is not a usable file set name",
                              hint: "names use letters, digits, '.', '_' and '-'; set \"name\" to choose one")
        }
        if let index = sets.firstIndex(where: { $0.name == set.name }) {
            throw ConfigError(keyPath: nameKey,
                              problem: "\(sets[index].path) (files[\(index)]) and \(set.path) are both file set \"\(set.name)\"",
                              hint: "give one of them a different \"name\"")
        }
        if let index = databases.firstIndex(where: { $0.name == set.name }) {
            throw ConfigError(keyPath: nameKey,
                              problem: "file set \"\(set.name)\" (\(set.path)) has the name of database \(databases[index].path) "
                                  + "(databases[\(index)]): they would share one folder on every target",
                              hint: "give the file set (or the database) a different \"name\"")
        }
        sets.append(set)
    }
    return sets
}

func parseWatch(_ node: ConfigNode) throws -> WatchConfig {
    let watch = try node.object(allowedKeys: ["dir", "include"])
    guard let dir = try watch.filePath("dir") else { throw watch.error(at: "dir", "required") }
    let include = try watch.stringArray("include") ?? WatchConfig.defaultInclude
    if include.isEmpty { throw watch.error(at: "include", "must list at least one pattern") }
    return WatchConfig(dir: dir, include: include)
}

func parseLocal(_ node: ConfigNode) throws -> LocalConfig {
    let local = try node.object(allowedKeys: ["dir", "keep"])
    guard let dir = try local.filePath("dir") else { throw local.error(at: "dir", "required") }
    let keep = try local.node("keep").map { try parseRetention($0) } ?? LocalConfig.defaultKeep
    return LocalConfig(dir: dir, keep: keep)
}

/// Parses a retention policy object: `last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`
/// (non-negative counts) and `within` (a duration).
func parseRetention(_ node: ConfigNode) throws -> RetentionPolicy {
    let object = try node.object(allowedKeys: ["last", "hourly", "daily", "weekly", "monthly", "yearly", "within"])
    let counts = 0...1_000_000
    return RetentionPolicy(
        last: try object.integer("last", in: counts), hourly: try object.integer("hourly", in: counts),
        daily: try object.integer("daily", in: counts), weekly: try object.integer("weekly", in: counts),
        monthly: try object.integer("monthly", in: counts), yearly: try object.integer("yearly", in: counts),
        within: try object.duration("within", allowingZero: true))
}

func parseChoice<Choice: RawRepresentable>(_ node: ConfigNode, _ type: Choice.Type, _ names: [String]) throws -> Choice
where Choice.RawValue == String {
    let text = try node.string()
    guard let choice = Choice(rawValue: text) else {
        throw node.error("expected one of \(names.map { "\"\($0)\"" }.joined(separator: ", "))")
    }
    return choice
}

func parseSchedule(_ node: ConfigNode) throws -> ScheduleConfig {
    let object = try node.object(allowedKeys: ["every", "onChange", "startup", "shutdown", "timeZone"])
    var schedule = ScheduleConfig()
    if let every = try object.duration("every") { schedule.every = every }
    if let onChange = object.node("onChange") {
        if onChange.value is [String: Any] {
            let settings = try onChange.object(allowedKeys: ["minInterval"])
            schedule.onChange = OnChangeConfig(
                minInterval: try settings.duration("minInterval", allowingZero: true) ?? OnChangeConfig().minInterval)
        } else if let number = onChange.value as? NSNumber, ConfigNode.isBoolean(number) {
            schedule.onChange = number.boolValue ? OnChangeConfig() : nil
        } else {
            throw onChange.error("expected an object ({\"minInterval\": \"5m\"}) or true/false, found \(onChange.kindName)")
        }
    }
    if let startup = try object.bool("startup") { schedule.startup = startup }
    if let shutdown = try object.bool("shutdown") { schedule.shutdown = shutdown }
    if let zoneName = try object.string("timeZone") {
        guard let zone = TimeZone(identifier: zoneName) else {
            throw object.error(at: "timeZone", "unknown time zone \"\(zoneName)\"",
                               hint: "use an IANA name such as \"UTC\" or \"Europe/Berlin\"")
        }
        schedule.timeZone = zone
    }
    return schedule
}

func parseNotify(_ node: ConfigNode) throws -> NotifyConfig {
    let object = try node.object(allowedKeys: ["webhookUrl", "webhookUrlFile", "onSuccess"])
    guard let url = try object.secret("webhookUrl", fileKey: "webhookUrlFile") else {
        throw object.error(at: "webhookUrl", "required (or webhookUrlFile)")
    }
    let keyPath = object.path(of: object.has("webhookUrl") ? "webhookUrl" : "webhookUrlFile")
    guard let parsed = URL(string: url.value), let scheme = parsed.scheme?.lowercased(),
          scheme == "http" || scheme == "https", parsed.host != nil else {
        throw ConfigError(keyPath: keyPath, problem: "expected an http:// or https:// URL")
    }
    return NotifyConfig(webhookURL: url, onSuccess: try object.bool("onSuccess") ?? false)
}

func parseLog(_ node: ConfigNode) throws -> LogConfig {
    let object = try node.object(allowedKeys: ["format", "level"])
    var log = LogConfig()
    if let format = object.node("format") { log.format = try parseChoice(format, LogConfig.Format.self, ["logfmt", "json"]) }
    if let level = object.node("level") {
        log.level = try parseChoice(level, LogConfig.Level.self, ["debug", "info", "warn", "error"])
    }
    return log
}

/// Parses the control endpoint: `listen` (default 127.0.0.1:8080) and the token (`tokenFile`, or
/// `token`, which draws a warning when written inline). A token is required unless the address
/// is loopback; it must be at least `HTTPConfig.minimumTokenLength` printable ASCII characters.
func parseHTTP(_ node: ConfigNode, warnings: inout [String]) throws -> HTTPConfig {
    let object = try node.object(allowedKeys: ["listen", "token", "tokenFile"])
    let listenPath = object.path(of: "listen")
    let listen: ListenAddress
    do {
        listen = try ListenAddress(parsing: try object.string("listen") ?? HTTPConfig.defaultListen)
    } catch let error as ListenAddressError {
        throw ConfigError(keyPath: listenPath, problem: error.problem,
                          hint: "for example \"127.0.0.1:8080\", or \"0.0.0.0:8080\" with a tokenFile")
    }
    if node.context.warnsAboutInlineSecrets, let raw = object.fields["token"] as? String, !raw.contains("${") {
        warnings.append("\(object.path(of: "token")) is written in the configuration; prefer tokenFile or ${VAR}")
    }
    let token = try object.secret("token", fileKey: "tokenFile")
    if let token {
        let tokenPath = object.path(of: object.has("token") ? "token" : "tokenFile")
        let hint = "make one with: head -c 32 /dev/urandom | base64 > token"
        guard token.value.unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) }) else {
            throw ConfigError(keyPath: tokenPath, problem: "the token must be printable ASCII without spaces", hint: hint)
        }
        guard token.value.count >= HTTPConfig.minimumTokenLength else {
            throw ConfigError(keyPath: tokenPath,
                              problem: "the token is shorter than \(HTTPConfig.minimumTokenLength) characters", hint: hint)
        }
    }
    if token == nil && !listen.isLoopback {
        throw ConfigError(keyPath: listenPath, problem: "listening on \(listen), which is not loopback, requires a token",
                          hint: "add \"tokenFile\" naming a file with a long random token, or listen on 127.0.0.1")
    }
    return HTTPConfig(listen: listen, token: token)
}

// MARK: - Encryption

private let encryptionKeys = [
    "recipients", "recipientsFile", "identityFile", "passphrase", "passphraseFile", "scryptWorkFactor",
]

func parseEncryption(_ top: ConfigObject, warnings: inout [String]) throws -> EncryptionConfig {
    guard let node = top.node("encryption") else {
        if let fromEnvironment = try encryptionFromEnvironment(top.context) {
            if fromEnvironment == .plaintext { warnings.append("encryption is off: backups are stored unencrypted") }
            return fromEnvironment
        }
        throw ConfigError(keyPath: "encryption", problem: "missing: backups are never stored unencrypted by default",
                          hint: "give \"recipients\" (age1…) or a \"passphraseFile\", or write \"encryption\": \"none\"")
    }
    if node.value is String {
        guard try node.string() == "none" else {
            throw node.error("expected \"none\" or an object with recipients or a passphrase")
        }
        warnings.append("encryption is off: backups are stored unencrypted")
        return .plaintext
    }
    let object = try node.object(allowedKeys: encryptionKeys)
    var recipients: [String] = []
    for (index, recipientNode) in (try object.node("recipients")?.array() ?? []).enumerated() {
        let recipient = try recipientNode.nonEmptyString().trimmingCharacters(in: .whitespaces)
        guard isAgeRecipient(recipient) else {
            throw ConfigError(keyPath: object.path(of: "recipients") + "[\(index)]",
                              problem: "not an age recipient (expected age1…)",
                              hint: "`offsite keygen` prints a recipient")
        }
        recipients.append(recipient)
    }
    if let file = try object.filePath("recipientsFile") {
        recipients += try readRecipientsFile(file, keyPath: object.path(of: "recipientsFile"))
    }
    if object.has("passphrase") {
        warnings.append("encryption.passphrase is written in the configuration; prefer passphraseFile")
    }
    let passphrase = try object.secret("passphrase", fileKey: "passphraseFile")
    let identityFile = try object.filePath("identityFile")
    let workFactor = try object.integer("scryptWorkFactor", in: 10...22) ?? AgeEncryptionConfig.defaultScryptWorkFactor
    let settings = AgeEncryptionConfig(recipients: recipients, identityFile: identityFile, passphrase: passphrase,
                                       scryptWorkFactor: workFactor)
    try validateAge(settings, keyPath: node.path)
    return .age(settings)
}

/// The encryption the `OFFSITE_*` variables describe, or nil when they say nothing.
func encryptionFromEnvironment(_ context: ConfigContext) throws -> EncryptionConfig? {
    let environment = context.environment
    func value(_ name: String) -> String? {
        guard let text = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else {
            return nil
        }
        return text
    }
    let encryptionVariables = ["OFFSITE_RECIPIENTS", "OFFSITE_RECIPIENTS_FILE", "OFFSITE_PASSPHRASE_FILE"]
    if let mode = value("OFFSITE_ENCRYPTION") {
        guard mode == "none" else {
            throw ConfigError(keyPath: "OFFSITE_ENCRYPTION", problem: "expected \"none\" (or leave it unset)")
        }
        if let conflicting = encryptionVariables.first(where: { value($0) != nil }) {
            throw ConfigError(keyPath: "OFFSITE_ENCRYPTION", problem: "is \"none\" but \(conflicting) is set too")
        }
        return .plaintext
    }
    var recipients: [String] = []
    if let list = value("OFFSITE_RECIPIENTS") {
        for recipient in list.split(whereSeparator: { $0 == "," || $0.isWhitespace }).map(String.init) {
            guard isAgeRecipient(recipient) else {
                throw ConfigError(keyPath: "OFFSITE_RECIPIENTS", problem: "not a list of age recipients (age1…)")
            }
            recipients.append(recipient)
        }
    }
    if let file = value("OFFSITE_RECIPIENTS_FILE") {
        recipients += try readRecipientsFile(resolvePath(file, against: context.baseDirectory),
                                             keyPath: "OFFSITE_RECIPIENTS_FILE")
    }
    let passphrase = try value("OFFSITE_PASSPHRASE_FILE").map {
        Secret(try readSecretFile(resolvePath($0, against: context.baseDirectory), keyPath: "OFFSITE_PASSPHRASE_FILE"))
    }
    let identityFile = value("OFFSITE_IDENTITY_FILE").map { resolvePath($0, against: context.baseDirectory) }
    guard !recipients.isEmpty || passphrase != nil else {
        if identityFile != nil {
            throw ConfigError(keyPath: "OFFSITE_IDENTITY_FILE",
                              problem: "an identity alone cannot encrypt backups; set OFFSITE_RECIPIENTS too",
                              hint: "the recipient is the age1… line `offsite keygen` printed")
        }
        return nil
    }
    let settings = AgeEncryptionConfig(recipients: recipients, identityFile: identityFile, passphrase: passphrase)
    try validateAge(settings, keyPath: "OFFSITE_PASSPHRASE_FILE")
    return .age(settings)
}

private func validateAge(_ settings: AgeEncryptionConfig, keyPath: String) throws {
    if settings.passphrase != nil && !settings.recipients.isEmpty {
        throw ConfigError(keyPath: keyPath, problem: "a passphrase cannot be combined with recipients",
                          hint: "age encrypts to a passphrase only on its own; choose one")
    }
    if settings.passphrase == nil && settings.recipients.isEmpty {
        throw ConfigError(keyPath: keyPath, problem: "no recipients and no passphrase to encrypt to",
                          hint: "give \"recipients\" (age1…) or a \"passphraseFile\", or write \"encryption\": \"none\"")
    }
}

/// Whether `text` looks like an age X25519 recipient: `age1` then lowercase bech32 characters.
func isAgeRecipient(_ text: String) -> Bool {
    let bech32 = Set("qpzry9x8gf2tvdw0s3jn54khce6mua7l")
    return text.hasPrefix("age1") && text.count > 10 && text.dropFirst(4).allSatisfy { bech32.contains($0) }
}

/// Reads an age recipients file: one recipient a line, blank lines and `#` comments ignored.
func readRecipientsFile(_ file: String, keyPath: String) throws -> [String] {
    let text = try readSecretFile(file, keyPath: keyPath)
    var recipients: [String] = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let trimmed = line.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
        if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
        guard isAgeRecipient(trimmed) else {
            throw ConfigError(keyPath: keyPath, problem: "line \(number + 1) of \(file) is not an age recipient (age1…)")
        }
        recipients.append(trimmed)
    }
    guard !recipients.isEmpty else { throw ConfigError(keyPath: keyPath, problem: "\(file) lists no recipients") }
    return recipients
}

// MARK: - Targets

private let commonTargetKeys = ["name", "url", "schedule", "retention"]
private let s3TargetKeys = [
    "endpoint", "region", "pathStyle", "storageClass", "accessKeyId", "secretAccessKey", "secretAccessKeyFile",
    "sessionToken", "insecureSkipVerify", "partSize", "concurrency", "timeout",
]
private let webDAVTargetKeys = ["username", "password", "passwordFile", "insecureSkipVerify", "timeout"]

func parseTargets(_ top: ConfigObject, warnings: inout [String]) throws -> [TargetConfig] {
    guard let list = top.node("targets") else {
        throw ConfigError(keyPath: "targets", problem: "required: at least one target",
                          hint: "for example {\"name\": \"usb\", \"url\": \"file:///mnt/usb/offsite\"}")
    }
    let nodes = try list.array()
    if nodes.isEmpty { throw list.error("must list at least one target") }
    var targets: [TargetConfig] = []
    var firstIndex: [String: Int] = [:]
    for (index, node) in nodes.enumerated() {
        let target = try parseTarget(node, warnings: &warnings)
        if let earlier = firstIndex[target.name] {
            throw ConfigError(keyPath: node.path + ".name",
                              problem: "target name \"\(target.name)\" is already used by targets[\(earlier)]",
                              hint: "target names must be unique")
        }
        firstIndex[target.name] = index
        targets.append(target)
    }
    return targets
}

func parseTarget(_ node: ConfigNode, warnings: inout [String]) throws -> TargetConfig {
    let allKeys = commonTargetKeys + s3TargetKeys + webDAVTargetKeys.filter { !s3TargetKeys.contains($0) }
    let object = try node.object(allowedKeys: allKeys)
    let name = try object.requiredString("name")
    guard isSafeName(name) else {
        throw object.error(at: "name", "\"\(name)\" is not a usable target name",
                           hint: "names use letters, digits, '.', '_' and '-'")
    }
    let urlNode = try object.required("url")
    let url = try urlNode.nonEmptyString()
    let location = try TargetLocation(parsing: url, keyPath: urlNode.path)
    let kindKeys: [String]
    switch location.kind {
    case .s3: kindKeys = s3TargetKeys
    case .webDAV: kindKeys = webDAVTargetKeys
    case .folder: kindKeys = []
    }
    for key in object.fields.keys.sorted() where !commonTargetKeys.contains(key) && !kindKeys.contains(key) {
        throw object.error(at: key, "not used by \(location.kind.rawValue) targets")
    }

    var target = TargetConfig(name: name, url: url, location: location)
    target.schedule = try object.string("schedule")
    if let schedule = target.schedule {
        do {
            _ = try CronExpression(parsing: schedule)
        } catch let error as CronError {
            throw object.error(at: "schedule", error.message, hint: error.hint)
        }
    }
    target.retention = try object.node("retention").map { try parseRetention($0) } ?? .keepEverything
    var connection = ConnectionSettings()
    connection.insecureSkipVerify = try object.bool("insecureSkipVerify") ?? false
    connection.timeout = try object.duration("timeout")
    if connection.insecureSkipVerify {
        warnings.append("target \(name): TLS certificate verification is off (insecureSkipVerify)")
    }
    func warnIfInline(_ key: String) {
        if node.context.warnsAboutInlineSecrets, let raw = object.fields[key] as? String, !raw.contains("${") {
            warnings.append("\(object.path(of: key)) is written in the configuration; prefer \(key)File or ${VAR}")
        }
    }

    switch target.store {
    case var .s3(settings):
        settings.connection = connection
        try parseS3Settings(object, into: &settings, context: node.context, warnIfInline: warnIfInline)
        target.store = .s3(settings)
    case var .webDAV(settings):
        settings.connection = connection
        let username = try object.string("username")
        let password = try object.secret("password", fileKey: "passwordFile")
        warnIfInline("password")
        switch (username, password) {
        case let (username?, password?): settings.credentials = HTTPCredentials(username: username, password: password)
        case (nil, _?): throw object.error(at: "username", "required when a password is given")
        case (_?, nil): throw object.error(at: "password", "required when a username is given (or passwordFile)")
        case (nil, nil): break
        }
        target.store = .webDAV(settings)
    case .folder:
        break
    }
    return target
}

/// The S3 keys of a target entry, with the standard `AWS_*` variables where the entry is silent.
private func parseS3Settings(_ object: ConfigObject, into settings: inout S3TargetSettings, context: ConfigContext,
                             warnIfInline: (String) -> Void) throws {
    let environment = context.environment
    settings.endpoint = try object.node("endpoint").map { try parseEndpoint(try $0.nonEmptyString(), keyPath: $0.path) }
        ?? environmentValue(environment, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL").map {
            try parseEndpoint($0.value, keyPath: $0.name)
        }
    settings.region = try object.string("region") ?? environmentValue(environment, "AWS_REGION", "AWS_DEFAULT_REGION")?.value
    settings.pathStyle = try object.bool("pathStyle")
    settings.storageClass = try object.string("storageClass")
    var accessKeyId = try object.string("accessKeyId")
    var secretAccessKey = try object.secret("secretAccessKey", fileKey: "secretAccessKeyFile")
    var sessionToken = try object.string("sessionToken").map(Secret.init)
    warnIfInline("secretAccessKey")
    if accessKeyId == nil && secretAccessKey == nil {
        accessKeyId = environmentValue(environment, "AWS_ACCESS_KEY_ID")?.value
        if let secret = environmentValue(environment, "AWS_SECRET_ACCESS_KEY") {
            secretAccessKey = Secret(secret.value)
        } else if let file = environmentValue(environment, "AWS_SECRET_ACCESS_KEY_FILE") {
            secretAccessKey = Secret(try readSecretFile(resolvePath(file.value, against: context.baseDirectory), keyPath: file.name))
        }
        if sessionToken == nil {
            sessionToken = environmentValue(environment, "AWS_SESSION_TOKEN").map { Secret($0.value) }
        }
    }
    switch (accessKeyId, secretAccessKey) {
    case let (accessKeyId?, secretAccessKey?):
        settings.credentials = S3Credentials(accessKeyId: accessKeyId, secretAccessKey: secretAccessKey, sessionToken: sessionToken)
    case (nil, nil):
        break
    default:
        throw object.error(at: accessKeyId == nil ? "accessKeyId" : "secretAccessKey", "required: accessKeyId and secretAccessKey go together",
                           hint: "set both in the target, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    }
    if let partSize = object.node("partSize") {
        settings.partSize = try parseByteSize(partSize, in: 5 * 1_048_576...5 * 1_073_741_824)
    }
    settings.concurrency = try object.integer("concurrency", in: 1...64)
}

private func environmentValue(_ environment: [String: String], _ names: String...) -> (name: String, value: String)? {
    for name in names {
        if let value = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty {
            return (name, value)
        }
    }
    return nil
}

/// An S3 endpoint: an http(s) URL without credentials, query or fragment.
func parseEndpoint(_ text: String, keyPath: String) throws -> URL {
    if let schemeEnd = text.range(of: "://"),
       text[schemeEnd.upperBound...].prefix(while: { $0 != "/" }).contains("@") {
        throw ConfigError(keyPath: keyPath, problem: "credentials must not be in the URL",
                          hint: "use accessKeyId and secretAccessKey or secretAccessKeyFile")
    }
    guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
          scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
          components.query == nil, components.fragment == nil, let url = components.url else {
        throw ConfigError(keyPath: keyPath, problem: "expected an http:// or https:// URL such as https://s3.example.com")
    }
    return url
}

/// A size in bytes: an integer, or text such as `"16MiB"`, `"8MB"`, `"1048576"`.
func parseByteSize(_ node: ConfigNode, in range: ClosedRange<Int>) throws -> Int {
    let bytes: Int
    if node.value is String {
        let text = try node.string().trimmingCharacters(in: .whitespaces)
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        let unit = text.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        let scales = ["": 1, "B": 1, "KB": 1000, "MB": 1_000_000, "GB": 1_000_000_000,
                      "KiB": 1024, "MiB": 1_048_576, "GiB": 1_073_741_824]
        guard let number = Int(digits), let scale = scales[unit] else {
            throw node.error("expected a size such as \"16MiB\" or a number of bytes")
        }
        let (product, overflow) = number.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw node.error("too large") }
        bytes = product
    } else {
        bytes = try node.integer()
    }
    guard range.contains(bytes) else {
        throw node.error("must be between 5MiB and 5GiB (S3's limits for a part)")
    }
    return bytes
}

/// JSONSerialization's message, with its character offset turned into a line and column.
func describeJSONError(_ error: Error, in data: Data) -> String {
    let detail = (error as NSError).userInfo["NSDebugDescription"] as? String ?? "\(error)"
    guard let range = detail.range(of: #"character \d+"#, options: .regularExpression),
          let offset = Int(detail[range].dropFirst("character ".count)) else { return detail }
    let prefix = data.prefix(offset)
    let line = prefix.filter { $0 == UInt8(ascii: "\n") }.count + 1
    let column = offset - (prefix.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0) + 1
    return detail.replacingCharacters(in: range, with: "line \(line), column \(column)")
}
