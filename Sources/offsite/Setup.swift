import Foundation
import OffsiteCore

/// The options every command that touches databases and targets accepts.
let commonOptions: Set<String> = ["config", "db", "files", "target", "recipient", "identity", "passphrase-file"]

/// What a command works with: the configuration (from `--config`, `OFFSITE_CONFIG`, or the
/// environment alone), overridden or replaced by flags.
struct Setup {
    /// The configuration, or nil when flags alone describe the work.
    let config: OffsiteConfig?
    /// The process environment.
    let environment: [String: String]
    /// The command line.
    let arguments: Arguments

    /// Reads the configuration the command line and environment point at.
    init(_ arguments: Arguments) throws {
        let environment = ProcessInfo.processInfo.environment
        self.environment = environment
        self.arguments = arguments
        if let path = arguments.value("config") ?? environment["OFFSITE_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) {
            config = try OffsiteConfig.load(path: path, environment: environment)
        } else {
            config = try OffsiteConfig.fromEnvironment(environment)
        }
    }

    /// The databases `--db` names (a configured name or a path), or every configured one.
    func databases() throws -> [DatabaseRef] {
        let configured = try configuredDatabases()
        if let selector = arguments.value("db") {
            if let match = configured.first(where: { $0.name == selector }) { return [match] }
            if selector.contains("/") || FileManager.default.fileExists(atPath: selector) {
                let absolute = URL(fileURLWithPath: selector).standardizedFileURL.path
                return [configured.first(where: { $0.path == absolute }) ?? DatabaseRef(path: absolute)]
            }
            throw UsageError("no database named \(selector)",
                             hint: configured.isEmpty ? "give --db PATH" : "configured: \(configured.map(\.name).joined(separator: ", "))")
        }
        guard !configured.isEmpty else {
            throw UsageError("no database to back up", hint: "give --db PATH, or configure databases or watch.dir")
        }
        return configured
    }

    /// The name `--db` refers to, without requiring the database file to exist (for restores).
    func databaseName() throws -> (name: String, path: String?) {
        guard let selector = arguments.value("db") else {
            let configured = try configuredDatabases()
            if configured.count == 1 { return (configured[0].name, configured[0].path) }
            throw UsageError("which database? give --db NAME",
                             hint: configured.isEmpty ? nil : "configured: \(configured.map(\.name).joined(separator: ", "))")
        }
        if let match = try configuredDatabases().first(where: { $0.name == selector }) { return (match.name, match.path) }
        if selector.contains("/") {
            let absolute = URL(fileURLWithPath: selector).standardizedFileURL.path
            return (DatabaseRef.name(forPath: absolute), absolute)
        }
        return (selector, nil)
    }

    /// The names of this configuration's own databases: configured, found in `watch.dir`, and those
    /// the local folder's state remembers (a database whose file is gone still has backups).
    func ownDatabaseNames() throws -> [String] {
        var names = Set(try configuredDatabases().map(\.name))
        if let local = localFolder { names.formUnion(StateStore(folder: local).load().state.databases.keys) }
        return names.sorted()
    }

    /// The configured databases and those in `watch.dir`; two files with one name are an error.
    private func configuredDatabases() throws -> [DatabaseRef] {
        guard let config else { return [] }
        return try resolveDatabases(configured: config.databases, watch: config.watch)
    }

    /// The targets `--target` names (a configured name or a URL), or every configured one.
    func targets() throws -> [any Target] {
        let configured = config?.targets ?? []
        if let selector = arguments.value("target") {
            if let match = configured.first(where: { $0.name == selector }) { return [try makeTarget(match)] }
            if selector.contains("://") { return [try makeTarget(TargetConfig(url: selector, environment: environment))] }
            throw UsageError("no target named \(selector)",
                             hint: configured.isEmpty ? "give --target URL (file:///PATH, s3://BUCKET/PREFIX, webdav+https://HOST/PATH)"
                                                      : "configured: \(configured.map(\.name).joined(separator: ", "))")
        }
        guard !configured.isEmpty else {
            throw UsageError("no target", hint: "give --target URL, or configure targets")
        }
        return try configured.map { try makeTarget($0, spoolFolder: localFolder.map { URL(fileURLWithPath: $0) }) }
    }

    /// The targets `--target` names, or every configured one, each with its retention policy (a
    /// target given as a URL has none).
    func targetsWithRetention() throws -> [(target: any Target, policy: RetentionPolicy)] {
        let configured = config?.targets ?? []
        return try targets().map { target in
            (target, configured.first { $0.name == target.name }?.retention ?? RetentionPolicy())
        }
    }

    /// The one target a restore reads from: `--target`, or the only configured one.
    func singleTarget() throws -> any Target {
        let all = try targets()
        guard all.count == 1 else {
            throw UsageError("which target? give --target NAME", hint: "configured: \(all.map(\.name).joined(separator: ", "))")
        }
        return all[0]
    }

    /// How backups are encrypted: `--recipient` or `--passphrase-file` flags, else the configuration.
    /// Never plaintext unless the configuration says `"encryption": "none"`.
    func encryption() throws -> PayloadEncryption {
        let workFactor: Int
        if case let .age(age)? = config?.encryption { workFactor = age.scryptWorkFactor } else { workFactor = 18 }
        let recipients = arguments.all("recipient")
        if !recipients.isEmpty {
            return .recipients(try recipients.map { try AgeX25519Recipient(parsing: $0) })
        }
        if let file = arguments.value("passphrase-file") {
            return .passphrase(try readSecretFile(file, option: "--passphrase-file"), workFactor: workFactor)
        }
        switch config?.encryption {
        case .plaintext?:
            return .none
        case let .age(age)?:
            if let passphrase = age.passphrase { return .passphrase(passphrase.value, workFactor: workFactor) }
            guard !age.recipients.isEmpty else { break }
            return .recipients(try age.recipients.map { try AgeX25519Recipient(parsing: $0) })
        case nil:
            break
        }
        throw UsageError("no encryption key: offsite never writes plaintext backups unless told to",
                         hint: "give --recipient age1… (see `offsite keygen`) or --passphrase-file FILE, or set encryption in the configuration")
    }

    /// What decrypts backups: `--identity` / `--passphrase-file` flags, else the configuration.
    func decryptionKeys() throws -> DecryptionKeys {
        var keys = DecryptionKeys()
        if case let .age(age)? = config?.encryption { keys.maximumWorkFactor = age.scryptWorkFactor }
        var identityFiles = arguments.all("identity")
        if let file = arguments.value("passphrase-file") {
            keys.passphrase = try readSecretFile(file, option: "--passphrase-file")
        }
        if identityFiles.isEmpty && keys.passphrase == nil, case let .age(age)? = config?.encryption {
            if let file = age.identityFile { identityFiles = [file] }
            keys.passphrase = age.passphrase?.value
        }
        for file in identityFiles {
            let contents: String
            do {
                contents = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw UsageError("cannot read the identity file \(file)", hint: "check the path and that this user may read it")
            }
            keys.identities += try AgeIdentityFile.parse(contents)
        }
        return keys
    }

    /// The file sets `--files` names (a configured name, or a folder's path), or every configured
    /// one. A set named like a database is an error naming both.
    func fileSets() throws -> [FileSetConfig] {
        let configured = config?.files ?? []
        if !configured.isEmpty { try checkFileSetNames(configured, against: try configuredDatabases()) }
        guard let selector = arguments.value("files") else { return configured }
        if let match = configured.first(where: { $0.name == selector }) { return [match] }
        if selector.contains("/") {
            let absolute = URL(fileURLWithPath: selector).standardizedFileURL.path
            return [configured.first(where: { $0.path == absolute }) ?? FileSetConfig(path: absolute)]
        }
        throw UsageError("no file set named \(selector)",
                         hint: configured.isEmpty ? "give --files PATH, or configure files[]"
                                                  : "configured: \(configured.map(\.name).joined(separator: ", "))")
    }

    /// The file set `--files` names, without requiring its folder (restore, list, verify): a
    /// configured one, a path, or just a name (the folder on the target).
    func fileSetName() throws -> (name: String, set: FileSetConfig?) {
        guard let selector = arguments.value("files") else { throw UsageError("which file set? give --files NAME") }
        if let match = config?.files.first(where: { $0.name == selector }) { return (match.name, match) }
        if selector.contains("/") {
            let set = try fileSets()[0]
            return (set.name, set)
        }
        guard DatabaseRef.isValidName(selector) else { throw UsageError("\(selector) is not a file set name") }
        return (selector, nil)
    }

    /// Where file sets keep what they remember between runs: `LOCALDIR/.offsite-files`.
    var fileSetCacheFolder: String? { localFolder.map { "\($0)/.offsite-files" } }

    /// What is never part of a file set: the databases (with their companions) and the local folder.
    func fileSetLeftOut() -> [String] {
        fileSetLeftOutPaths(databases: (try? configuredDatabases()) ?? [], localFolder: localFolder)
    }

    /// The local rotation folder, if configured.
    var localFolder: String? { config?.local?.dir }

    /// What the local rotation keeps.
    var localKeep: RetentionPolicy? { config?.local?.keep }

    /// The gzip level.
    var compressionLevel: Int { config?.compression.level ?? 6 }

    /// The check snapshots pass before they are shipped.
    var integrityCheck: IntegrityCheck { config?.integrityCheck ?? .quick }

    private func readSecretFile(_ path: String, option: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), var text = String(data: data, encoding: .utf8) else {
            throw UsageError("\(option): cannot read \(path)")
        }
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        guard !text.isEmpty else { throw UsageError("\(option): \(path) is empty") }
        return text
    }
}
