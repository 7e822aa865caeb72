import Foundation
import Testing
@testable import OffsiteCore

private let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
private let recipient2 = "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg"

/// Parses `json` with `environment`, relative paths against `base`.
private func parse(_ json: String, environment: [String: String] = [:], base: String = "/etc/offsite") throws
    -> OffsiteConfig
{
    try OffsiteConfig.parse(data: Data(json.utf8), environment: environment, baseDirectory: base)
}

/// The ConfigError parsing `json` throws, or nil when it parses.
private func failure(_ json: String, environment: [String: String] = [:], base: String = "/etc/offsite")
    -> ConfigError?
{
    do {
        _ = try parse(json, environment: environment, base: base)
        return nil
    } catch {
        return error as? ConfigError
    }
}

/// A minimal valid document with `extra` top-level members and `target` as the only target.
private func document(_ extra: String = "", target: String = #"{"name": "usb", "url": "file:///mnt/usb"}"#,
                      encryption: String = #""none""#) -> String {
    var members = [#""databases": [{"path": "/data/crm.db"}]"#, "\"targets\": [\(target)]"]
    if !encryption.isEmpty { members.append("\"encryption\": \(encryption)") }
    if !extra.isEmpty { members.append(extra) }
    return "{" + members.joined(separator: ", ") + "}"
}

@Suite struct ConfigTests {
    @Test func aFullConfigurationParses() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try "s3-secret-value\n".write(to: folder.appendingPathComponent("s3.secret"), atomically: true, encoding: .utf8)
        try "nas-password\r\n".write(to: folder.appendingPathComponent("nas.secret"), atomically: true, encoding: .utf8)
        let json = """
        {
          "databases": [{ "path": "/data/crm.db" }, { "path": "data/other.sqlite", "name": "ledger" }],
          "watch": { "dir": "/data" },
          "local": { "dir": "/backups" },
          "encryption": { "recipients": ["\(recipient)"], "identityFile": "identity.txt", "scryptWorkFactor": 12 },
          "compression": { "level": 9 },
          "integrityCheck": "full",
          "schedule": { "every": "30m", "onChange": { "minInterval": "90s" }, "startup": false, "shutdown": true,
                        "timeZone": "Europe/Berlin" },
          "targets": [
            { "name": "s3", "url": "s3://bucket/some/prefix/", "endpoint": "https://s3.example.com:9000",
              "region": "auto", "pathStyle": true, "storageClass": "STANDARD_IA",
              "accessKeyId": "${KEY_ID}", "secretAccessKeyFile": "s3.secret", "sessionToken": "${TOKEN}",
              "schedule": "0 2 * * *", "partSize": "8MiB", "concurrency": 3, "timeout": 120,
              "retention": { "last": 3, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 12, "yearly": 3,
                             "within": "2d" } },
            { "name": "nas", "url": "webdav+https://nas.example:8443/dav/backups", "username": "backup",
              "passwordFile": "\(folder.path)/nas.secret", "insecureSkipVerify": true },
            { "name": "usb", "url": "file:///mnt/usb/offsite/" }
          ],
          "health": { "maxAge": "26h" },
          "notify": { "webhookUrl": "https://hooks.example/T0K3N", "onSuccess": true },
          "log": { "format": "json", "level": "debug" },
          "verify": { "every": "1w" },
          "shutdownTimeout": "1m30s",
          "restoreIfCorrupt": true
        }
        """
        let config = try parse(json, environment: ["KEY_ID": "AKIDEXAMPLE", "TOKEN": "session-token"], base: folder.path)
        #expect(config.databases == [DatabaseConfig(path: "/data/crm.db", name: "crm"),
                                     DatabaseConfig(path: folder.path + "/data/other.sqlite", name: "ledger")])
        #expect(config.watch == WatchConfig(dir: "/data", include: ["*.db", "*.sqlite", "*.sqlite3"]))
        #expect(config.local == LocalConfig(dir: "/backups", keep: RetentionPolicy(hourly: 24)))
        #expect(config.encryption == .age(AgeEncryptionConfig(recipients: [recipient],
                                                              identityFile: folder.path + "/identity.txt",
                                                              scryptWorkFactor: 12)))
        #expect(config.compression.level == 9)
        #expect(config.integrityCheck == .full)
        #expect(config.schedule == ScheduleConfig(every: .seconds(1800), onChange: OnChangeConfig(minInterval: .seconds(90)),
                                                  startup: false, shutdown: true,
                                                  timeZone: TimeZone(identifier: "Europe/Berlin")!))
        #expect(config.targets.map(\.name) == ["s3", "nas", "usb"])
        let s3 = try #require(config.target(named: "s3"))
        #expect(s3.location == .s3(bucket: "bucket", prefix: "some/prefix"))
        #expect(s3.kind == .s3)
        let s3Settings = try #require(s3.store.s3)
        #expect(s3Settings.endpoint == URL(string: "https://s3.example.com:9000"))
        #expect(s3Settings.region == "auto")
        #expect(s3Settings.pathStyle == true)
        #expect(s3Settings.storageClass == "STANDARD_IA")
        #expect(s3Settings.credentials == S3Credentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: Secret("s3-secret-value"),
                                                        sessionToken: Secret("session-token")))
        #expect(s3.schedule == "0 2 * * *")
        #expect(s3Settings.partSize == 8 * 1_048_576)
        #expect(s3Settings.concurrency == 3)
        #expect(s3Settings.connection.timeout == .seconds(120))
        #expect(s3.retention == RetentionPolicy(last: 3, hourly: 24, daily: 7, weekly: 4, monthly: 12, yearly: 3,
                                                within: .seconds(2 * 86_400)))
        let nas = try #require(config.target(named: "nas"))
        #expect(nas.location == .webDAV(baseURL: URL(string: "https://nas.example:8443/dav/backups")!))
        #expect(nas.store.webDAV?.credentials == HTTPCredentials(username: "backup", password: Secret("nas-password")))
        #expect(nas.store.webDAV?.connection.insecureSkipVerify == true)
        #expect(nas.retention.isEmpty)
        #expect(config.target(named: "usb")?.location == .folder(path: "/mnt/usb/offsite"))
        #expect(config.health.maxAge == .seconds(26 * 3600))
        #expect(config.notify == NotifyConfig(webhookURL: Secret("https://hooks.example/T0K3N"), onSuccess: true))
        #expect(config.log == LogConfig(format: .json, level: .debug))
        #expect(config.verify == VerifyConfig(every: .seconds(7 * 86_400)))
        #expect(config.shutdownTimeout == .seconds(90))
        #expect(config.restoreIfCorrupt)
        #expect(config.warnings.contains { $0.contains("insecureSkipVerify") })
    }

    @Test func defaultsFillWhatIsLeftOut() throws {
        let config = try parse(document())
        #expect(config.watch == nil && config.local == nil && config.notify == nil && config.verify == nil)
        #expect(config.compression.level == 6)
        #expect(config.integrityCheck == .quick)
        #expect(config.schedule == ScheduleConfig(every: .seconds(3600), onChange: OnChangeConfig(minInterval: .seconds(300)),
                                                  startup: true, shutdown: true))
        #expect(config.health.maxAge == .seconds(26 * 3600))
        #expect(config.log == LogConfig(format: .logfmt, level: .info))
        #expect(config.shutdownTimeout == .seconds(30))
        #expect(!config.restoreIfCorrupt)
        #expect(config.targets[0].retention == .keepEverything)
        let local = try parse(document(#""local": {"dir": "rotation"}, "schedule": {"onChange": false}"#))
        #expect(local.local == LocalConfig(dir: "/etc/offsite/rotation", keep: RetentionPolicy(hourly: 24)))
        #expect(local.schedule.onChange == nil)
    }

    static let exampleEnvironment = [
        "OFFSITE_RECIPIENT": recipient, "S3_BUCKET": "crm-backups", "S3_ENDPOINT": "https://account.r2.example.com",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret", "AWS_REGION": "auto",
        "OFFSITE_WEBHOOK_URL": "https://hooks.example/abc", "WEBDAV_HOST": "nas.example", "WEBDAV_USERNAME": "backup",
    ]

    @Test(arguments: ["offsite.json", "s3.json", "webdav.json", "folder.json"])
    func exampleFilesParse(name: String) throws {
        // The examples read Docker secrets from /run/secrets; point those at a temporary folder.
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let original = try String(contentsOf: repository.appendingPathComponent("config/\(name)"), encoding: .utf8)
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let secrets = folder.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        for file in ["s3", "nas", "webdav_password", "offsite-token"] {
            try "secret-of-\(file)\n".write(to: secrets.appendingPathComponent(file), atomically: true, encoding: .utf8)
        }
        let copy = folder.appendingPathComponent(name)
        try original.replacingOccurrences(of: "/run/secrets/", with: secrets.path + "/")
            .write(to: copy, atomically: true, encoding: .utf8)
        let config = try OffsiteConfig.load(path: copy.path, environment: Self.exampleEnvironment)
        #expect(!config.targets.isEmpty)
        #expect(config.encryption == .age(AgeEncryptionConfig(recipients: [recipient],
                                                              identityFile: name == "offsite.json" ? "/config/identity.txt" : nil)))
        #expect(config.file == copy.path)
        switch name {
        case "offsite.json":
            #expect(config.targets.map(\.kind) == [.s3, .webDAV, .folder])
            #expect(config.targets[0].location == .s3(bucket: "crm-backups", prefix: "offsite"))
            #expect(config.targets[0].store.s3?.credentials?.secretAccessKey.value == "secret-of-s3")
            #expect(config.targets[1].store.webDAV?.credentials?.password.value == "secret-of-nas")
            #expect(config.files.map(\.name) == ["uploads"] && config.files[0].exclude.texts == ["*.tmp", "cache/**"])
            #expect(config.http == HTTPConfig(listen: try ListenAddress(parsing: "0.0.0.0:8080"), token: Secret("secret-of-offsite-token")))
        case "s3.json":
            #expect(config.targets[0].store.s3?.credentials?.secretAccessKey.value == "example-secret")
            #expect(config.targets[0].store.s3?.endpoint?.host == "account.r2.example.com")
        case "webdav.json":
            #expect(config.targets[0].location == .webDAV(baseURL: URL(string: "https://nas.example/dav/backups")!))
            #expect(config.targets[0].store.webDAV?.credentials?.password.value == "secret-of-webdav_password")
        default:
            #expect(config.targets[0].location == .folder(path: "/mnt/usb/offsite"))
        }
    }

    @Test func unknownKeysNameTheirPath() throws {
        let top = try #require(failure(document(#""targts": []"#)))
        #expect(top.keyPath == "targts")
        #expect(top.message == #"targts: unknown key (did you mean "targets"?)"#)

        let nested = try #require(failure("""
            {"databases": [{"path": "/d/crm.db"}], "encryption": "none", "targets": [
              {"name": "a", "url": "file:///a"}, {"name": "b", "url": "file:///b", "retentoin": {"daily": 7}}]}
            """))
        #expect(nested.message == #"targets[1].retentoin: unknown key (did you mean "retention"?)"#)

        let deep = try #require(failure(document(target: #"{"name": "a", "url": "file:///a", "retention": {"dayly": 7}}"#)))
        #expect(deep.keyPath == "targets[0].retention.dayly")
        #expect(deep.message.contains(#"did you mean "daily"?"#))

        let unrelated = try #require(failure(document(#""schedule": {"zzzzzz": 1}"#)))
        #expect(unrelated.message == "schedule.zzzzzz: unknown key")
        #expect(unrelated.hint?.contains("every") == true)

        let local = try #require(failure(document(#""local": {"dir": "/b", "keep": {"hourly": 24, "Daily": 2}}"#)))
        #expect(local.message == #"local.keep.Daily: unknown key (did you mean "daily"?)"#)
    }

    @Test(arguments: [
        (#""compression": {"level": "high"}"#, "compression.level", "expected an integer, found a string"),
        (#""compression": {"level": 1.5}"#, "compression.level", "expected an integer, found a number"),
        (#""schedule": {"startup": "yes"}"#, "schedule.startup", "expected true or false"),
        (#""schedule": {"every": true}"#, "schedule.every", "expected a duration"),
        (#""schedule": {"every": "5 minutes"}"#, "schedule.every", "expected a duration such as"),
        (#""schedule": {"every": "0s"}"#, "schedule.every", "must be longer than zero"),
        (#""watch": {"dir": "/d", "include": "*.db"}"#, "watch.include", "expected an array, found a string"),
        (#""watch": ["/d"]"#, "watch", "expected an object, found an array"),
        (#""health": {"maxAge": {}}"#, "health.maxAge", "expected a duration"),
        (#""compression": {"level": 12}"#, "compression.level", "must be between 0 and 9, found 12"),
        (#""integrityCheck": "fast""#, "integrityCheck", #"expected one of "quick", "full""#),
        (#""log": {"level": "verbose"}"#, "log.level", "expected one of"),
        (#""restoreIfCorrupt": 1"#, "restoreIfCorrupt", "expected true or false, found an integer"),
        (#""schedule": {"timeZone": "Mars/Olympus"}"#, "schedule.timeZone", "unknown time zone"),
        (#""notify": {"webhookUrl": "ftp://x"}"#, "notify.webhookUrl", "expected an http:// or https:// URL"),
        (#""local": {"keep": {"hourly": 2}}"#, "local.dir", "required"),
    ])
    func wrongValuesNameTheirPath(member: String, keyPath: String, problem: String) throws {
        let error = try #require(failure(document(member)))
        #expect(error.keyPath == keyPath)
        #expect(error.problem.contains(problem), "\(error.problem)")
    }

    @Test func wrongValuesInTargetsNameTheirPath() throws {
        let daily = try #require(failure(document(target: #"{"name": "a", "url": "file:///a", "retention": {"daily": "7"}}"#)))
        #expect(daily.message == "targets[0].retention.daily: expected an integer, found a string")
        let negative = try #require(failure(document(target: #"{"name": "a", "url": "file:///a", "retention": {"last": -1}}"#)))
        #expect(negative.keyPath == "targets[0].retention.last")
        let noName = try #require(failure(document(target: #"{"url": "file:///a"}"#)))
        #expect(noName.message == "targets[0].name: required")
        let noURL = try #require(failure(document(target: #"{"name": "a"}"#)))
        #expect(noURL.message == "targets[0].url: required")
        let part = try #require(failure(document(target: #"{"name": "a", "url": "s3://b", "partSize": "1MiB"}"#)))
        #expect(part.keyPath == "targets[0].partSize")
        let wrongKind = try #require(failure(document(target: #"{"name": "a", "url": "s3://b", "username": "x"}"#)))
        #expect(wrongKind.message == "targets[0].username: not used by s3 targets")
        let folderKey = try #require(failure(document(target: #"{"name": "a", "url": "file:///a", "endpoint": "https://x"}"#)))
        #expect(folderKey.message == "targets[0].endpoint: not used by file targets")
        let noTargets = try #require(failure(#"{"databases": [{"path": "/d/a.db"}], "encryption": "none"}"#))
        #expect(noTargets.keyPath == "targets")
        let noDatabases = try #require(failure(#"{"encryption": "none", "targets": [{"name": "a", "url": "file:///a"}]}"#))
        #expect(noDatabases.keyPath == "databases")
    }

    @Test func invalidJSONSaysWhere() throws {
        let error = try #require(failure("{\n  \"databases\": [],\n  oops\n}"))
        #expect(error.message.hasPrefix("not valid JSON"))
        #expect(error.message.contains("line 3"), "\(error.message)")
        let array = try #require(failure("[]"))
        #expect(array.message == "expected an object, found an array")
    }

    @Test func variablesAreExpandedInEveryString() throws {
        let config = try parse(document(
            #""local": {"dir": "${ROOT}/backups", "keep": {"within": "${KEEP}"}}"#,
            target: #"{"name": "${NAME}", "url": "s3://${BUCKET}/a$${B}/c$$d", "region": "x$y"}"#),
            environment: ["ROOT": "/srv", "KEEP": "3d", "NAME": "remote", "BUCKET": "bkt",
                          "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "sk"])
        #expect(config.local?.dir == "/srv/backups")
        #expect(config.local?.keep.within == .seconds(3 * 86_400))
        #expect(config.targets[0].name == "remote")
        #expect(config.targets[0].location == .s3(bucket: "bkt", prefix: "a${B}/c$d"))
        #expect(config.targets[0].store.s3?.region == "x$y")
        #expect(try expandVariables(in: "$${X} $$ ${A}${A}", environment: ["A": "1"], keyPath: "k") == "${X} $ 11")
    }

    @Test func anUndefinedVariableNamesThePathAndVariable() throws {
        let error = try #require(failure(document(target: #"{"name": "a", "url": "s3://b", "accessKeyId": "${KEY_ID}", "secretAccessKey": "${SECRET}"}"#),
                                         environment: ["KEY_ID": "visible-id-value"]))
        #expect(error.keyPath == "targets[0].secretAccessKey")
        #expect(error.message == "targets[0].secretAccessKey: environment variable SECRET is not set")
        #expect(!error.message.contains("visible-id-value"))
        let unterminated = try #require(failure(document(#""local": {"dir": "${ROOT"}"#)))
        #expect(unterminated.keyPath == "local.dir")
        #expect(unterminated.message.contains("unterminated"))
    }

    @Test func secretFilesAreReadAndTrimmed() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try "  pass word \n\n".write(to: folder.appendingPathComponent("pw"), atomically: true, encoding: .utf8)
        try "line1\nline2\n".write(to: folder.appendingPathComponent("phrase"), atomically: true, encoding: .utf8)
        try "# team\n\(recipient)\n\n\(recipient2)\n".write(to: folder.appendingPathComponent("recipients.txt"),
                                                              atomically: true, encoding: .utf8)
        let webdav = #"{"name": "d", "url": "webdav+http://h/p", "username": "u", "passwordFile": "pw"}"#
        let config = try parse(document(target: webdav, encryption: #"{"recipientsFile": "recipients.txt"}"#),
                               base: folder.path)
        #expect(config.targets[0].store.webDAV?.credentials?.password.value == "  pass word ")
        #expect(config.encryption == .age(AgeEncryptionConfig(recipients: [recipient, recipient2])))
        let phrase = try parse(document(encryption: #"{"passphraseFile": "${DIR}/phrase"}"#),
                               environment: ["DIR": folder.path])
        guard case let .age(age) = phrase.encryption else { Issue.record("expected age"); return }
        #expect(age.passphrase?.value == "line1\nline2")
    }

    @Test func secretFileErrorsNameThePathNotTheContent() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let missing = try #require(failure(document(
            target: #"{"name": "d", "url": "webdav+http://h/p", "username": "u", "passwordFile": "nope"}"#),
            base: folder.path))
        #expect(missing.keyPath == "targets[0].passwordFile")
        #expect(missing.message.contains(folder.path + "/nope"))
        #expect(missing.message.contains("does not exist"))

        try "\n".write(to: folder.appendingPathComponent("empty"), atomically: true, encoding: .utf8)
        let empty = try #require(failure(document(encryption: #"{"passphraseFile": "empty"}"#), base: folder.path))
        #expect(empty.keyPath == "encryption.passphraseFile")
        #expect(empty.message.contains("is empty"))

        try "not-a-recipient-TOPSECRET\n".write(to: folder.appendingPathComponent("r"), atomically: true, encoding: .utf8)
        let bad = try #require(failure(document(encryption: #"{"recipientsFile": "r"}"#), base: folder.path))
        #expect(bad.keyPath == "encryption.recipientsFile")
        #expect(bad.message.contains("line 1"))
        #expect(!bad.message.contains("TOPSECRET"))

        let both = try #require(failure(document(
            target: #"{"name": "d", "url": "webdav+http://h/p", "username": "u", "password": "x", "passwordFile": "y"}"#)))
        #expect(both.keyPath == "targets[0].passwordFile")
        #expect(both.message.contains("cannot be combined with password"))
        let bothS3 = try #require(failure(document(
            target: #"{"name": "s", "url": "s3://b", "accessKeyId": "i", "secretAccessKey": "x", "secretAccessKeyFile": "y"}"#)))
        #expect(bothS3.keyPath == "targets[0].secretAccessKeyFile")
    }

    @Test func secretsAreRedactedInEveryDescription() throws {
        let secret = Secret("hunter2-very-secret")
        #expect(String(describing: secret) == "<redacted>")
        #expect("\(secret)" == "<redacted>")
        #expect(String(reflecting: secret) == "<redacted>")
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains("hunter2"))

        let target = #"{"name": "s", "url": "s3://b", "accessKeyId": "id", "secretAccessKey": "hunter2-very-secret", "sessionToken": "${T}"}"#
        let config = try parse(document(#""notify": {"webhookUrl": "https://h.example/hunter2-very-secret"}"#, target: target,
                                        encryption: #"{"passphrase": "hunter2-very-secret"}"#),
                               environment: ["T": "hunter2-very-secret"])
        #expect(config.targets[0].store.s3?.credentials?.secretAccessKey.value == "hunter2-very-secret")
        var everything = String(describing: config) + String(reflecting: config)
        dump(config, to: &everything)
        #expect(!everything.contains("hunter2"))
        #expect(everything.contains("<redacted>"))
        #expect(config.warnings.contains { $0.contains("targets[0].secretAccessKey") })
        #expect(config.warnings.contains { $0.contains("passphrase") })
        #expect(!config.warnings.joined().contains("hunter2"))
    }

    @Test(arguments: [
        "s3://AKIAEXAMPLE:TOPSECRET@bucket/prefix", "webdav+https://user:TOPSECRET@nas.example/dav",
        "webdav+http://TOPSECRET@nas.example/dav",
    ])
    func credentialsInURLsAreRefused(url: String) throws {
        let error = try #require(failure(document(target: "{\"name\": \"t\", \"url\": \"\(url)\"}")))
        #expect(error.keyPath == "targets[0].url")
        #expect(error.message.contains("credentials must not be in the URL"))
        #expect(!error.message.contains("TOPSECRET") && !(error.hint ?? "").contains("TOPSECRET"))
        let endpoint = try #require(failure(document(
            target: #"{"name": "t", "url": "s3://b", "endpoint": "https://k:TOPSECRET@s3.example"}"#)))
        #expect(endpoint.keyPath == "targets[0].endpoint")
        #expect(!endpoint.message.contains("TOPSECRET"))
    }

    @Test func targetURLsAreValidated() throws {
        #expect(try TargetLocation(parsing: "s3://bucket") == .s3(bucket: "bucket", prefix: ""))
        #expect(try TargetLocation(parsing: "S3://bucket//a//b/") == .s3(bucket: "bucket", prefix: "a/b"))
        #expect(try TargetLocation(parsing: "webdav+http://127.0.0.1:8080/") == .webDAV(baseURL: URL(string: "http://127.0.0.1:8080/")!))
        #expect(try TargetLocation(parsing: "file:///mnt/My%20Disk") == .folder(path: "/mnt/My Disk"))
        #expect(try TargetLocation(parsing: "file://localhost/mnt") == .folder(path: "/mnt"))
        for (url, problem) in [("ftp://host/x", #"unsupported scheme "ftp""#), ("https://host/x", "unsupported scheme"),
                               ("/mnt/usb", "not a target URL"), ("file://mnt/usb", "not a host"),
                               ("file:///", "absolute folder"), ("s3:///prefix", "missing the bucket"),
                               ("s3://b/p?x=1", "query"), ("s3://b:9000/p", "no port")] {
            do {
                _ = try TargetLocation(parsing: url, keyPath: "k")
                Issue.record("\(url) was accepted")
            } catch let error as ConfigError {
                #expect(error.keyPath == "k")
                #expect(error.problem.contains(problem), "\(url): \(error.problem)")
            }
        }
    }

    @Test func continuousProtectionHasDefaultsAndChecksItsLimit() throws {
        let base = #"{"databases": [{"path": "/d/a.db"}], "encryption": "none", "targets": [{"name": "usb", "url": "file:///a"}]"#
        #expect(try parse(base + "}").continuous == nil)
        #expect(try parse(base + #", "continuous": {}}"#).continuous == ContinuousConfig())
        let custom = try #require(try parse(base + #", "continuous": {"interval": "2s", "keep": "7d", "maxChain": "150%"}}"#).continuous)
        #expect(custom.interval == .seconds(2) && custom.keep == .seconds(7 * 86_400) && custom.maxChain == .share(1.5))
        #expect(try parse(base + #", "continuous": {"maxChain": 500}}"#).continuous?.maxChain == .count(500))
        let bad = try #require(failure(base + #", "continuous": {"maxChain": "0%"}}"#))
        #expect(bad.keyPath == "continuous.maxChain")
        let misspelt = try #require(failure(base + #", "continuous": {"intervall": "1s"}}"#))
        #expect(misspelt.keyPath == "continuous.intervall")
    }

    @Test func namesMustBeUnique() throws {
        let targets = try #require(failure("""
            {"databases": [{"path": "/d/a.db"}], "encryption": "none", "targets": [
              {"name": "usb", "url": "file:///a"}, {"name": "nas", "url": "file:///b"}, {"name": "usb", "url": "file:///c"}]}
            """))
        #expect(targets.message == #"targets[2].name: target name "usb" is already used by targets[0]"#)
        let databases = try #require(failure("""
            {"databases": [{"path": "/d/crm.db"}, {"path": "/e/crm.sqlite"}], "encryption": "none",
             "targets": [{"name": "usb", "url": "file:///a"}]}
            """))
        #expect(databases.keyPath == "databases[1].path")
        // Both paths are named, so the operator sees which files collide.
        #expect(databases.message.contains("/d/crm.db (databases[0]) and /e/crm.sqlite would both be backed up as database \"crm\""),
                "\(databases.message)")
        let renamed = try parse("""
            {"databases": [{"path": "/d/crm.db"}, {"path": "/e/crm.sqlite", "name": "crm-e"}], "encryption": "none",
             "targets": [{"name": "usb", "url": "file:///a"}]}
            """)
        #expect(renamed.databases.map(\.name) == ["crm", "crm-e"])
        let badName = try #require(failure(document(target: #"{"name": "a b", "url": "file:///a"}"#)))
        #expect(badName.keyPath == "targets[0].name")
    }

    @Test func databaseNamesComeFromFileNames() {
        #expect(DatabaseRef.name(forPath: "/data/crm.db") == "crm")
        #expect(DatabaseRef.name(forPath: "/data/app.data.sqlite3") == "app.data")
        #expect(DatabaseRef.name(forPath: "relative/ledger") == "ledger")
        #expect(DatabaseConfig.isValidName("crm_2-b.x"))
        #expect(!DatabaseConfig.isValidName(".hidden") && !DatabaseConfig.isValidName("a/b") && !DatabaseConfig.isValidName(""))
    }

    @Test func encryptionMustBeExplicit() throws {
        let none = try parse(document())
        #expect(none.encryption == .plaintext)
        #expect(none.warnings.contains { $0.contains("unencrypted") })

        let missing = try #require(failure(document(encryption: "")))
        #expect(missing.keyPath == "encryption")
        #expect(missing.message.contains("never stored unencrypted"))
        #expect(missing.hint?.contains("\"none\"") == true)

        let fromEnvironment = try parse(document(encryption: ""), environment: ["OFFSITE_RECIPIENTS": "\(recipient), \(recipient2)"])
        #expect(fromEnvironment.encryption == .age(AgeEncryptionConfig(recipients: [recipient, recipient2])))
        let plainFromEnvironment = try parse(document(encryption: ""), environment: ["OFFSITE_ENCRYPTION": "none"])
        #expect(plainFromEnvironment.encryption == .plaintext)

        let empty = try #require(failure(document(encryption: #"{"identityFile": "/k"}"#)))
        #expect(empty.keyPath == "encryption")
        #expect(empty.message.contains("no recipients and no passphrase"))
        let word = try #require(failure(document(encryption: #""off""#)))
        #expect(word.message.contains(#"expected "none""#))
        let both = try #require(failure(document(encryption: "{\"recipients\": [\"\(recipient)\"], \"passphrase\": \"p\"}")))
        #expect(both.message.contains("cannot be combined with recipients"))
        let badRecipient = try #require(failure(document(encryption: #"{"recipients": ["ssh-ed25519 AAAA"]}"#)))
        #expect(badRecipient.keyPath == "encryption.recipients[0]")
        let workFactor = try #require(failure(document(encryption: "{\"recipients\": [\"\(recipient)\"], \"scryptWorkFactor\": 23}")))
        #expect(workFactor.keyPath == "encryption.scryptWorkFactor")
    }

    @Test func s3TargetsFallBackToTheAWSVariables() throws {
        let environment = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "sk", "AWS_SESSION_TOKEN": "tok",
                           "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"]
        let config = try parse(document(target: #"{"name": "s", "url": "s3://b/p"}"#), environment: environment)
        let target = try #require(config.targets[0].store.s3)
        #expect(target.credentials == S3Credentials(accessKeyId: "AKID", secretAccessKey: Secret("sk"), sessionToken: Secret("tok")))
        #expect(target.region == "eu-west-1")
        #expect(target.endpoint == URL(string: "http://127.0.0.1:9000"))
        let half = try #require(failure(document(target: #"{"name": "s", "url": "s3://b/p", "accessKeyId": "x"}"#)))
        #expect(half.keyPath == "targets[0].secretAccessKey")
        let badEndpoint = try #require(failure(document(target: #"{"name": "s", "url": "s3://b/p"}"#),
                                               environment: ["AWS_ENDPOINT_URL_S3": "not a url"]))
        #expect(badEndpoint.keyPath == "AWS_ENDPOINT_URL_S3")
    }

    @Test func loadNamesTheFileAndResolvesPathsBesideIt() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("offsite.json")
        try document(#""local": {"dir": "rotation"}"#).write(to: file, atomically: true, encoding: .utf8)
        let config = try OffsiteConfig.load(path: file.path, environment: [:])
        #expect(config.local?.dir == folder.path + "/rotation")
        try document(#""bogus": 1"#).write(to: file, atomically: true, encoding: .utf8)
        do {
            _ = try OffsiteConfig.load(path: file.path, environment: [:])
            Issue.record("an unknown key was accepted")
        } catch let error as ConfigError {
            #expect(error.message == "\(file.path): bogus: unknown key")
        }
        #expect(throws: ConfigError.self) { try OffsiteConfig.load(path: folder.path + "/missing.json", environment: [:]) }
    }

    @Test(arguments: [("90s", 90), ("5m", 300), ("1h30m", 5400), ("26h", 93_600), ("7d", 604_800), ("2w", 1_209_600),
                      ("3600", 3600), ("1d12h", 129_600)])
    func durationsParse(text: String, seconds: Int64) throws {
        #expect(Duration(configText: text) == .seconds(seconds))
        let config = try parse(document("\"health\": {\"maxAge\": \"\(text)\"}"))
        #expect(config.health.maxAge == .seconds(seconds))
    }

    @Test func durationsRejectNonsenseAndFormatCompactly() throws {
        for text in ["", "5x", "h", "-5m", "5 m", "1.5h", "m5", "99999999999999999w"] {
            #expect(Duration(configText: text) == nil, "\(text)")
        }
        #expect(Duration(configText: "250ms") == .milliseconds(250))
        #expect(Duration.seconds(90).configText == "1m30s")
        #expect(Duration.seconds(7 * 86_400).configText == "7d")
        #expect(Duration.seconds(5400).configText == "1h30m")
        #expect(Duration.zero.configText == "0s")
        #expect(try parse(document(#""shutdownTimeout": 2.5"#)).shutdownTimeout == .milliseconds(2500))
        let negative = try #require(failure(document(#""shutdownTimeout": -1"#)))
        #expect(negative.keyPath == "shutdownTimeout")
    }

    @Test func suggestionsCatchTyposOnly() {
        #expect(closestKey(to: "retentoin", among: ["name", "retention"]) == "retention")
        #expect(closestKey(to: "URL", among: ["name", "url"]) == "url")
        #expect(closestKey(to: "completely", among: ["name", "url"]) == nil)
    }
}
