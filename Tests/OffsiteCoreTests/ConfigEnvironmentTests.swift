import Foundation
import Testing
@testable import OffsiteCore

private let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
private let recipient2 = "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg"

/// The ConfigError `fromEnvironment` throws for `environment`, or nil.
private func failure(_ environment: [String: String]) -> ConfigError? {
    do {
        _ = try OffsiteConfig.fromEnvironment(environment)
        return nil
    } catch {
        return error as? ConfigError
    }
}

@Suite struct ConfigEnvironmentTests {
    static let sidecar = [
        "OFFSITE_DATA_DIR": "/data", "OFFSITE_TARGET": "s3://crm-backups/prod", "OFFSITE_RECIPIENTS": recipient,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "aws-secret-value", "AWS_SESSION_TOKEN": "tok",
        "AWS_REGION": "auto", "AWS_ENDPOINT_URL_S3": "https://account.r2.example.com",
    ]

    @Test func nothingWithoutATarget() throws {
        #expect(try OffsiteConfig.fromEnvironment([:]) == nil)
        #expect(try OffsiteConfig.fromEnvironment(["OFFSITE_DATA_DIR": "/data", "OFFSITE_TARGET": " "]) == nil)
    }

    @Test func theSidecarCaseNeedsOnlyVariables() throws {
        let config = try #require(try OffsiteConfig.fromEnvironment(Self.sidecar))
        #expect(config.file == nil)
        #expect(config.databases.isEmpty)
        #expect(config.watch == WatchConfig(dir: "/data"))
        #expect(config.local == nil)
        #expect(config.encryption == .age(AgeEncryptionConfig(recipients: [recipient])))
        #expect(config.targets.count == 1)
        let target = config.targets[0]
        #expect(target.name == "s3")
        #expect(target.location == .s3(bucket: "crm-backups", prefix: "prod"))
        let settings = try #require(target.store.s3)
        #expect(settings.credentials == S3Credentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: Secret("aws-secret-value"),
                                                      sessionToken: Secret("tok")))
        #expect(settings.region == "auto")
        #expect(settings.endpoint == URL(string: "https://account.r2.example.com"))
        #expect(target.retention.isEmpty)
        #expect(config.schedule == ScheduleConfig())
        #expect(!String(describing: config).contains("aws-secret-value"))
    }

    @Test func optionalVariablesAreApplied() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let passwordFile = folder.appendingPathComponent("password")
        try "dav-password\n".write(to: passwordFile, atomically: true, encoding: .utf8)
        let environment = [
            "OFFSITE_DATA_DIR": "/data", "OFFSITE_TARGET": "webdav+https://nas.example/dav",
            "OFFSITE_RECIPIENTS": "\(recipient),\(recipient2)", "OFFSITE_IDENTITY_FILE": "/config/identity.txt",
            "OFFSITE_LOCAL_DIR": "/backups", "OFFSITE_SCHEDULE_EVERY": "15m", "OFFSITE_HEALTH_MAX_AGE": "2h",
            "OFFSITE_KEEP_LAST": "3", "OFFSITE_KEEP_DAILY": "7", "OFFSITE_KEEP_WITHIN": "2d",
            "OFFSITE_WEBDAV_USERNAME": "backup$user", "OFFSITE_WEBDAV_PASSWORD_FILE": passwordFile.path,
            "OFFSITE_WEBHOOK_URL": "https://hooks.example/x", "OFFSITE_LOG_FORMAT": "json",
        ]
        let config = try #require(try OffsiteConfig.fromEnvironment(environment))
        #expect(config.encryption == .age(AgeEncryptionConfig(recipients: [recipient, recipient2],
                                                              identityFile: "/config/identity.txt")))
        #expect(config.local == LocalConfig(dir: "/backups"))
        #expect(config.schedule.every == .seconds(900))
        #expect(config.health.maxAge == .seconds(7200))
        #expect(config.log.format == .json)
        #expect(config.notify?.webhookURL.value == "https://hooks.example/x")
        let target = config.targets[0]
        #expect(target.name == "webdav")
        // A `$` in a variable's value is taken literally, not expanded again.
        #expect(target.store.webDAV?.credentials == HTTPCredentials(username: "backup$user", password: Secret("dav-password")))
        #expect(config.warnings.isEmpty)
        #expect(target.retention == RetentionPolicy(last: 3, daily: 7, within: .seconds(2 * 86_400)))
    }

    @Test func passwordsFromVariablesAreNotWarnedAbout() throws {
        let environment = ["OFFSITE_DATA_DIR": "/data", "OFFSITE_TARGET": "webdav+http://h/p", "OFFSITE_RECIPIENTS": recipient,
                           "OFFSITE_WEBDAV_USERNAME": "u", "OFFSITE_WEBDAV_PASSWORD": "pw"]
        let config = try #require(try OffsiteConfig.fromEnvironment(environment))
        #expect(config.targets[0].store.webDAV?.credentials?.password.value == "pw")
        #expect(config.warnings.isEmpty)
    }

    @Test func encryptionVariants() throws {
        var plain = Self.sidecar
        plain["OFFSITE_RECIPIENTS"] = nil
        plain["OFFSITE_ENCRYPTION"] = "none"
        #expect(try OffsiteConfig.fromEnvironment(plain)?.encryption == .plaintext)

        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let phrase = folder.appendingPathComponent("phrase")
        try "correct horse\n".write(to: phrase, atomically: true, encoding: .utf8)
        var passphrase = Self.sidecar
        passphrase["OFFSITE_RECIPIENTS"] = nil
        passphrase["OFFSITE_PASSPHRASE_FILE"] = phrase.path
        let config = try #require(try OffsiteConfig.fromEnvironment(passphrase))
        guard case let .age(age) = config.encryption else { Issue.record("expected age"); return }
        #expect(age.passphrase?.value == "correct horse")
        #expect(age.recipients.isEmpty)
    }

    @Test func errorsNameTheVariable() throws {
        var noData = Self.sidecar
        noData["OFFSITE_DATA_DIR"] = nil
        #expect(failure(noData)?.keyPath == "OFFSITE_DATA_DIR")

        var noEncryption = Self.sidecar
        noEncryption["OFFSITE_RECIPIENTS"] = nil
        #expect(failure(noEncryption)?.keyPath == "OFFSITE_RECIPIENTS")
        #expect(failure(noEncryption)?.hint?.contains("OFFSITE_ENCRYPTION=none") == true)

        var conflicting = Self.sidecar
        conflicting["OFFSITE_ENCRYPTION"] = "none"
        #expect(failure(conflicting)?.message.contains("OFFSITE_RECIPIENTS is set too") == true)

        var badRecipients = Self.sidecar
        badRecipients["OFFSITE_RECIPIENTS"] = "\(recipient) not-a-key"
        #expect(failure(badRecipients)?.keyPath == "OFFSITE_RECIPIENTS")

        var badEvery = Self.sidecar
        badEvery["OFFSITE_SCHEDULE_EVERY"] = "soon"
        let every = try #require(failure(badEvery))
        #expect(every.keyPath == "OFFSITE_SCHEDULE_EVERY")
        #expect(every.message.contains("expected a duration"))

        var badKeep = Self.sidecar
        badKeep["OFFSITE_KEEP_DAILY"] = "seven"
        #expect(failure(badKeep)?.keyPath == "OFFSITE_KEEP_DAILY")

        var badTarget = Self.sidecar
        badTarget["OFFSITE_TARGET"] = "s3://AKID:TOPSECRET@bucket/x"
        let target = try #require(failure(badTarget))
        #expect(target.keyPath == "OFFSITE_TARGET")
        #expect(!target.message.contains("TOPSECRET"))

        var missingSecret = Self.sidecar
        missingSecret["AWS_SECRET_ACCESS_KEY"] = nil
        let secret = try #require(failure(missingSecret))
        #expect(secret.keyPath == "AWS_SECRET_ACCESS_KEY")
        #expect(secret.message.contains("accessKeyId and secretAccessKey go together"))

        let webdav = ["OFFSITE_DATA_DIR": "/data", "OFFSITE_TARGET": "webdav+http://h/p", "OFFSITE_ENCRYPTION": "none",
                      "OFFSITE_WEBDAV_PASSWORD": "pw"]
        #expect(failure(webdav)?.keyPath == "OFFSITE_WEBDAV_USERNAME")
    }
}

@Suite struct ConfigTargetFlagTests {
    @Test func aTargetURLFromTheCommandLineTakesCredentialsFromTheEnvironment() throws {
        let s3 = try TargetConfig(url: "s3://bucket/p", environment: ["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "sk"])
        #expect(s3.name == "s3://bucket/p")
        #expect(s3.store.s3?.credentials == S3Credentials(accessKeyId: "id", secretAccessKey: Secret("sk")))
        let webdav = try TargetConfig(url: "webdav+https://h/dav", environment: ["OFFSITE_WEBDAV_USERNAME": "u",
                                                                                "OFFSITE_WEBDAV_PASSWORD": "p$x"])
        #expect(webdav.store.webDAV?.credentials == HTTPCredentials(username: "u", password: Secret("p$x")))
        let folder = try TargetConfig(url: "file:///mnt/usb", environment: [:])
        #expect(folder.location == .folder(path: "/mnt/usb") && folder.name == "file:///mnt/usb")
        do {
            _ = try TargetConfig(url: "s3://bucket/p", environment: ["AWS_ACCESS_KEY_ID": "id"])
            Issue.record("a half credential was accepted")
        } catch let error as ConfigError {
            #expect(error.keyPath == "AWS_SECRET_ACCESS_KEY")
        }
        #expect(throws: ConfigError.self) { try TargetConfig(url: "ftp://x", environment: [:]) }
    }
}
