import Foundation

extension OffsiteConfig {
    /// The common sidecar case, from environment variables alone: one data directory
    /// (`OFFSITE_DATA_DIR`, watched with the default patterns) and one target (`OFFSITE_TARGET`,
    /// named after its kind: `s3`, `webdav` or `file`). Nil when `OFFSITE_TARGET` is unset.
    ///
    /// Also read: `OFFSITE_RECIPIENTS` (comma or space separated), `OFFSITE_RECIPIENTS_FILE`,
    /// `OFFSITE_IDENTITY_FILE`, `OFFSITE_PASSPHRASE_FILE`, `OFFSITE_ENCRYPTION=none`,
    /// `OFFSITE_LOCAL_DIR`, `OFFSITE_SCHEDULE_EVERY`, `OFFSITE_HEALTH_MAX_AGE`,
    /// `OFFSITE_KEEP_LAST`/`_HOURLY`/`_DAILY`/`_WEEKLY`/`_MONTHLY`/`_YEARLY`/`_WITHIN` (the target's
    /// retention), `OFFSITE_WEBHOOK_URL`, `OFFSITE_LOG_FORMAT`, `OFFSITE_LOG_LEVEL`,
    /// `OFFSITE_HTTP_LISTEN` and `OFFSITE_HTTP_TOKEN_FILE` (the control endpoint),
    /// `OFFSITE_WEBDAV_USERNAME`, `OFFSITE_WEBDAV_PASSWORD`/`_FILE`, and for S3 the standard
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (or `AWS_SECRET_ACCESS_KEY_FILE`),
    /// `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`. Relative paths are resolved
    /// against the working directory. Errors name the variable, never its value.
    public static func fromEnvironment(_ environment: [String: String]) throws -> OffsiteConfig? {
        func value(_ name: String) -> String? {
            guard let text = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty
            else { return nil }
            return text
        }
        guard let targetURL = value("OFFSITE_TARGET") else { return nil }
        let location = try TargetLocation(parsing: targetURL, keyPath: "OFFSITE_TARGET")

        // Build the same tree a file would give, escaping `$` so values are taken literally,
        // and remember which variable each key path came from so errors can name it.
        var variableAt: [String: String] = [:]
        func literal(_ name: String, at keyPath: String) -> String? {
            variableAt[keyPath] = name
            guard let text = value(name) else { return nil }
            return text.replacingOccurrences(of: "$", with: "$$")
        }
        func count(_ name: String) throws -> Int? {
            guard let text = value(name) else { return nil }
            guard let number = Int(text), number >= 0 else {
                throw ConfigError(keyPath: name, problem: "expected a non-negative whole number")
            }
            return number
        }

        var tree: [String: Any] = [:]
        guard let dataDir = literal("OFFSITE_DATA_DIR", at: "watch.dir") else {
            throw ConfigError(keyPath: "OFFSITE_DATA_DIR", problem: "required when OFFSITE_TARGET is set",
                              hint: "set it to the folder holding the databases, such as /data")
        }
        tree["watch"] = ["dir": dataDir]
        if let localDir = literal("OFFSITE_LOCAL_DIR", at: "local.dir") { tree["local"] = ["dir": localDir] }
        if let every = literal("OFFSITE_SCHEDULE_EVERY", at: "schedule.every") { tree["schedule"] = ["every": every] }
        if let maxAge = literal("OFFSITE_HEALTH_MAX_AGE", at: "health.maxAge") { tree["health"] = ["maxAge": maxAge] }
        if let webhook = literal("OFFSITE_WEBHOOK_URL", at: "notify.webhookUrl") { tree["notify"] = ["webhookUrl": webhook] }
        var log: [String: Any] = [:]
        log["format"] = literal("OFFSITE_LOG_FORMAT", at: "log.format")
        log["level"] = literal("OFFSITE_LOG_LEVEL", at: "log.level")
        if !log.isEmpty { tree["log"] = log }
        var http: [String: Any] = [:]
        http["listen"] = literal("OFFSITE_HTTP_LISTEN", at: "http.listen")
        http["tokenFile"] = literal("OFFSITE_HTTP_TOKEN_FILE", at: "http.tokenFile")
        if !http.isEmpty { tree["http"] = http }

        var target: [String: Any] = ["name": location.kind.rawValue]
        target["url"] = literal("OFFSITE_TARGET", at: "targets[0].url")
        if location.kind == .webDAV {
            target["username"] = literal("OFFSITE_WEBDAV_USERNAME", at: "targets[0].username")
            target["password"] = literal("OFFSITE_WEBDAV_PASSWORD", at: "targets[0].password")
            target["passwordFile"] = literal("OFFSITE_WEBDAV_PASSWORD_FILE", at: "targets[0].passwordFile")
        }
        var retention: [String: Any] = [:]
        for rule in ["last", "hourly", "daily", "weekly", "monthly", "yearly"] {
            retention[rule] = try count("OFFSITE_KEEP_\(rule.uppercased())")
        }
        retention["within"] = literal("OFFSITE_KEEP_WITHIN", at: "targets[0].retention.within")
        if !retention.isEmpty { target["retention"] = retention }
        tree["targets"] = [target]

        let context = ConfigContext(environment: environment, baseDirectory: FileManager.default.currentDirectoryPath,
                                    warnsAboutInlineSecrets: false)
        if try encryptionFromEnvironment(context) == nil {
            throw ConfigError(keyPath: "OFFSITE_RECIPIENTS",
                              problem: "not set: backups are never stored unencrypted by default",
                              hint: "set OFFSITE_RECIPIENTS (age1…) or OFFSITE_PASSPHRASE_FILE, or OFFSITE_ENCRYPTION=none")
        }
        variableAt["targets[0].accessKeyId"] = "AWS_ACCESS_KEY_ID"
        variableAt["targets[0].secretAccessKey"] = "AWS_SECRET_ACCESS_KEY"
        do {
            return try parseTree(ConfigNode(value: tree, path: "", context: context))
        } catch var error as ConfigError {
            if let name = variableAt[error.keyPath] { error.keyPath = name }
            throw error
        }
    }
}

extension TargetConfig {
    /// A target given on the command line as a URL (`--target s3://bucket/prefix`): named by its
    /// URL, with credentials and settings from the environment as in `fromEnvironment` (S3: the
    /// `AWS_*` variables; WebDAV: `OFFSITE_WEBDAV_USERNAME`, `OFFSITE_WEBDAV_PASSWORD`/`_FILE`).
    public init(url: String, environment: [String: String]) throws {
        let location = try TargetLocation(parsing: url, keyPath: "--target")
        var tree: [String: Any] = ["name": location.kind.rawValue, "url": url.replacingOccurrences(of: "$", with: "$$")]
        var variableAt = ["url": "--target"]
        if location.kind == .webDAV {
            for (key, name) in [("username", "OFFSITE_WEBDAV_USERNAME"), ("password", "OFFSITE_WEBDAV_PASSWORD"),
                                ("passwordFile", "OFFSITE_WEBDAV_PASSWORD_FILE")] {
                variableAt[key] = name
                if let value = environment[name], !value.isEmpty {
                    tree[key] = value.replacingOccurrences(of: "$", with: "$$")
                }
            }
        }
        variableAt["accessKeyId"] = "AWS_ACCESS_KEY_ID"
        variableAt["secretAccessKey"] = "AWS_SECRET_ACCESS_KEY"
        let context = ConfigContext(environment: environment, baseDirectory: FileManager.default.currentDirectoryPath,
                                    warnsAboutInlineSecrets: false)
        var warnings: [String] = []
        do {
            self = try parseTarget(ConfigNode(value: tree, path: "", context: context), warnings: &warnings)
        } catch var error as ConfigError {
            if let name = variableAt[error.keyPath] { error.keyPath = name }
            throw error
        }
        name = url
    }
}
