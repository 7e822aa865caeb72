import Foundation

/// The whole configuration of offsite, as read from `config/offsite.json` (see `load`) or from
/// environment variables alone (see `fromEnvironment`). Every relative path has been resolved,
/// every `${VAR}` expanded and every `…File` secret read; defaults are filled in.
public struct OffsiteConfig: Sendable {
    /// The configuration file, or nil when built from the environment or memory.
    public var file: String?
    /// Databases named one by one.
    public var databases: [DatabaseConfig]
    /// A folder whose SQLite databases are all protected, or nil.
    public var watch: WatchConfig?
    /// Folders of files protected besides the databases (`files[]`).
    public var files: [FileSetConfig]
    /// The local rotation, or nil for none.
    public var local: LocalConfig?
    /// How payloads are encrypted; plaintext only when configured explicitly.
    public var encryption: EncryptionConfig
    /// gzip settings.
    public var compression: CompressionConfig
    /// The check a snapshot must pass before it is shipped.
    public var integrityCheck: IntegrityCheck
    /// When backups are taken.
    public var schedule: ScheduleConfig
    /// Where backups go; at least one, names unique.
    public var targets: [TargetConfig]
    /// What `healthcheck` accepts.
    public var health: HealthConfig
    /// Webhook notifications, or nil for none.
    public var notify: NotifyConfig?
    /// Log output.
    public var log: LogConfig
    /// Periodic restore drills, or nil for none.
    public var verify: VerifyConfig?
    /// The control endpoint (`/healthz`, `/metrics`, the status page…), or nil when `run` does
    /// not listen.
    public var http: HTTPConfig?
    /// Continuous protection (every committed change of WAL-mode databases shipped within
    /// seconds), or nil when off.
    public var continuous: ContinuousConfig?
    /// How long `run` may take to finish after SIGTERM (the shutdown backup included); default 30s.
    public var shutdownTimeout: Duration
    /// Whether `run` restores a database from the newest good backup when it finds it corrupt
    /// at startup; default false.
    public var restoreIfCorrupt: Bool
    /// Things worth logging about this configuration (secrets written inline, plaintext,
    /// disabled TLS checks); empty when there is nothing to say. Never contains a secret.
    public var warnings: [String]

    /// Creates a configuration in code (for commands run from flags alone); everything not
    /// given takes the same default as in a file.
    public init(databases: [DatabaseConfig] = [], watch: WatchConfig? = nil, files: [FileSetConfig] = [], local: LocalConfig? = nil,
                encryption: EncryptionConfig, compression: CompressionConfig = CompressionConfig(),
                integrityCheck: IntegrityCheck = .quick, schedule: ScheduleConfig = ScheduleConfig(),
                targets: [TargetConfig], health: HealthConfig = HealthConfig(), notify: NotifyConfig? = nil,
                log: LogConfig = LogConfig(), verify: VerifyConfig? = nil, http: HTTPConfig? = nil,
                continuous: ContinuousConfig? = nil,
                shutdownTimeout: Duration = .seconds(30), restoreIfCorrupt: Bool = false, file: String? = nil,
                warnings: [String] = []) {
        self.file = file
        self.databases = databases
        self.watch = watch
        self.files = files
        self.local = local
        self.encryption = encryption
        self.compression = compression
        self.integrityCheck = integrityCheck
        self.schedule = schedule
        self.targets = targets
        self.health = health
        self.notify = notify
        self.log = log
        self.verify = verify
        self.http = http
        self.continuous = continuous
        self.shutdownTimeout = shutdownTimeout
        self.restoreIfCorrupt = restoreIfCorrupt
        self.warnings = warnings
    }

    /// The target named `name`, if configured.
    public func target(named name: String) -> TargetConfig? {
        targets.first { $0.name == name }
    }

    /// The database named `name`, if configured one by one.
    public func database(named name: String) -> DatabaseConfig? {
        databases.first { $0.name == name }
    }

    /// The file set named `name`, if configured.
    public func fileSet(named name: String) -> FileSetConfig? {
        files.first { $0.name == name }
    }
}

/// A folder of files protected besides the databases: uploads, JSON stores, exports.
public struct FileSetConfig: Sendable, Equatable {
    /// Its name: the folder on every target (`uploads`); defaults to the folder's own name.
    public var name: String
    /// The folder (absolute).
    public var path: String
    /// What is left out (see `ExcludePatterns`).
    public var exclude: ExcludePatterns

    /// Creates a file set; the name defaults to the last part of `path`.
    public init(path: String, name: String? = nil, exclude: ExcludePatterns = .none) {
        self.path = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        self.name = name ?? (self.path as NSString).lastPathComponent
        self.exclude = exclude
    }
}

/// A database named in the configuration: the same path-and-name pair the backup code uses.
public typealias DatabaseConfig = DatabaseRef

extension DatabaseRef {
    /// Whether `name` can be used in object keys and folder names: letters, digits, `.`, `_`,
    /// `-`, not starting with `.`.
    public static func isValidName(_ name: String) -> Bool {
        isSafeName(name)
    }
}

/// Letters, digits, `.`, `_`, `-`; not empty and not starting with `.`.
func isSafeName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, first != "." else { return false }
    return name.unicodeScalars.allSatisfy {
        $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0))
    }
}

/// A folder watched for SQLite databases.
public struct WatchConfig: Sendable, Equatable {
    /// The folder (absolute).
    public var dir: String
    /// File name patterns (`*.db`) that select databases.
    public var include: [String]

    /// The patterns used when `include` is not given.
    public static let defaultInclude = ["*.db", "*.sqlite", "*.sqlite3"]

    /// Creates a watch; `include` defaults to `defaultInclude`.
    public init(dir: String, include: [String] = WatchConfig.defaultInclude) {
        self.dir = dir
        self.include = include
    }
}

/// The local rotation of plain SQLite snapshots.
public struct LocalConfig: Sendable, Equatable {
    /// The folder (absolute): `DIR/DBNAME/ID.sqlite3`.
    public var dir: String
    /// What the rotation keeps; default the last 24 hourly.
    public var keep: RetentionPolicy

    /// The policy used when `keep` is not given.
    public static let defaultKeep = RetentionPolicy(hourly: 24)

    /// Creates a rotation.
    public init(dir: String, keep: RetentionPolicy = LocalConfig.defaultKeep) {
        self.dir = dir
        self.keep = keep
    }
}

/// How payloads are encrypted.
public enum EncryptionConfig: Sendable, Equatable {
    /// No encryption: only when the configuration says `"encryption": "none"`.
    case plaintext
    /// age v1 to the configured recipients or passphrase.
    case age(AgeEncryptionConfig)
}

/// age settings: X25519 recipients, or one scrypt passphrase (age allows it only on its own).
public struct AgeEncryptionConfig: Sendable, Equatable {
    /// Public `age1…` recipients, from `recipients` and `recipientsFile`.
    public var recipients: [String]
    /// The identity file restores use (absolute), or nil.
    public var identityFile: String?
    /// The passphrase, from `passphrase` or `passphraseFile`, or nil.
    public var passphrase: Secret?
    /// scrypt's log2 work factor for passphrase encryption (10…22, default 18).
    public var scryptWorkFactor: Int

    /// The work factor used when none is given.
    public static let defaultScryptWorkFactor = 18

    /// Creates age settings.
    public init(recipients: [String] = [], identityFile: String? = nil, passphrase: Secret? = nil,
                scryptWorkFactor: Int = AgeEncryptionConfig.defaultScryptWorkFactor) {
        self.recipients = recipients
        self.identityFile = identityFile
        self.passphrase = passphrase
        self.scryptWorkFactor = scryptWorkFactor
    }
}

/// gzip settings.
public struct CompressionConfig: Sendable, Equatable {
    /// zlib level 0…9, default 6.
    public var level: Int

    /// Creates settings.
    public init(level: Int = 6) {
        self.level = level
    }
}

/// Continuous protection: every committed change of a WAL-mode database shipped within seconds
/// (docs/CONTINUOUS.md).
public struct ContinuousConfig: Sendable, Equatable {
    /// When a chain has grown enough for a new full backup.
    public enum ChainLimit: Sendable, Equatable {
        /// When the change objects shipped since the base reach this share of the base's size.
        case share(Double)
        /// When this many change objects were shipped since the base.
        case count(Int)
    }

    /// How often committed changes are shipped; default 1s.
    public var interval: Duration
    /// How far back second-level restore points reach; default 24h.
    public var keep: Duration
    /// When a new full backup starts a new chain; default 50% of the base's size.
    public var maxChain: ChainLimit

    /// Creates settings with the documented defaults.
    public init(interval: Duration = .seconds(1), keep: Duration = .seconds(86_400), maxChain: ChainLimit = .share(0.5)) {
        self.interval = interval
        self.keep = keep
        self.maxChain = maxChain
    }
}

/// When backups are taken.
public struct ScheduleConfig: Sendable, Equatable {
    /// The interval between scheduled backups; default 1h.
    public var every: Duration
    /// On-change backups, or nil when off.
    public var onChange: OnChangeConfig?
    /// Whether `run` takes a backup when it starts; default true.
    public var startup: Bool
    /// Whether `run` takes a backup when it stops; default true.
    public var shutdown: Bool
    /// The zone for cron schedules and retention buckets; default UTC.
    public var timeZone: TimeZone

    /// Creates a schedule with the documented defaults.
    public init(every: Duration = .seconds(3600), onChange: OnChangeConfig? = OnChangeConfig(),
                startup: Bool = true, shutdown: Bool = true, timeZone: TimeZone = TimeZone(identifier: "UTC")!) {
        self.every = every
        self.onChange = onChange
        self.startup = startup
        self.shutdown = shutdown
        self.timeZone = timeZone
    }
}

/// Backups taken when a database changes.
public struct OnChangeConfig: Sendable, Equatable {
    /// The least time between two on-change backups of one database; default 5m.
    public var minInterval: Duration

    /// Creates settings.
    public init(minInterval: Duration = .seconds(300)) {
        self.minInterval = minInterval
    }
}

/// What kind of store a target is.
public enum TargetKind: String, Sendable, Equatable {
    /// An S3-compatible object store.
    case s3
    /// A WebDAV server.
    case webDAV = "webdav"
    /// A directory, such as a mounted disk.
    case folder = "file"
}

/// Where a target's backups live, parsed from its URL.
public enum TargetLocation: Sendable, Equatable {
    /// `s3://BUCKET/PREFIX`; the prefix has no leading or trailing `/` and may be empty.
    case s3(bucket: String, prefix: String)
    /// `webdav+https://HOST/PATH` → the `https://HOST/PATH` base URL.
    case webDAV(baseURL: URL)
    /// `file:///PATH` → the absolute path.
    case folder(path: String)

    /// The kind of store.
    public var kind: TargetKind {
        switch self {
        case .s3: return .s3
        case .webDAV: return .webDAV
        case .folder: return .folder
        }
    }
}

/// One target: its name, its URL, when it is due and what it keeps, and the settings of its kind
/// of store (`store`), which only that kind has.
public struct TargetConfig: Sendable, Equatable {
    /// Its unique name (`s3`, `nas`).
    public var name: String
    /// The URL as configured (never holds credentials).
    public var url: String
    /// Where the store is and how it is reached.
    public var store: TargetStore
    /// A cron schedule (`0 2 * * *`) for this target, or nil to follow the global schedule.
    public var schedule: String?
    /// What this target keeps; empty (the default) keeps everything.
    public var retention: RetentionPolicy

    /// The parsed URL.
    public var location: TargetLocation { store.location }
    /// The kind of store.
    public var kind: TargetKind { location.kind }

    /// Creates a target of `store`, following the global schedule and keeping everything.
    public init(name: String, url: String, store: TargetStore) {
        self.name = name
        self.url = url
        self.store = store
        self.retention = .keepEverything
    }

    /// Creates a target with only a name and location; everything else is off or default.
    public init(name: String, url: String, location: TargetLocation) {
        self.init(name: name, url: url, store: TargetStore(location))
    }
}

/// A target's store with the settings of its kind.
public enum TargetStore: Sendable, Equatable {
    /// An S3-compatible object store.
    case s3(S3TargetSettings)
    /// A WebDAV server.
    case webDAV(WebDAVTargetSettings)
    /// A folder, such as a mounted disk.
    case folder(path: String)

    /// The store at `location` with default settings: no credentials, the backend's defaults.
    public init(_ location: TargetLocation) {
        switch location {
        case let .s3(bucket, prefix): self = .s3(S3TargetSettings(bucket: bucket, prefix: prefix))
        case let .webDAV(baseURL): self = .webDAV(WebDAVTargetSettings(baseURL: baseURL))
        case let .folder(path): self = .folder(path: path)
        }
    }

    /// Where it is.
    public var location: TargetLocation {
        switch self {
        case let .s3(settings): return .s3(bucket: settings.bucket, prefix: settings.prefix)
        case let .webDAV(settings): return .webDAV(baseURL: settings.baseURL)
        case let .folder(path): return .folder(path: path)
        }
    }

    /// The S3 settings, for an S3 target.
    public var s3: S3TargetSettings? {
        if case let .s3(settings) = self { return settings }
        return nil
    }

    /// The WebDAV settings, for a WebDAV target.
    public var webDAV: WebDAVTargetSettings? {
        if case let .webDAV(settings) = self { return settings }
        return nil
    }
}

/// How a remote target's requests go.
public struct ConnectionSettings: Sendable, Equatable {
    /// Skip TLS certificate verification (default false).
    public var insecureSkipVerify = false
    /// The timeout of one request, or nil for the default, 60 s.
    public var timeout: Duration?

    /// Verifies certificates, default timeout.
    public init() {}

    /// The client settings: connecting may take `timeout` up to 20 s, a transfer that moves
    /// nothing for `timeout` is abandoned.
    func clientOptions(credentials: HTTPCredentials? = nil) -> HTTPClientOptions {
        let limit = timeout ?? .seconds(60)
        return HTTPClientOptions(connectTimeout: min(limit, .seconds(20)), stallTimeout: limit,
                                 verifiesTLS: !insecureSkipVerify, credentials: credentials)
    }
}

/// An S3 target's settings.
public struct S3TargetSettings: Sendable, Equatable {
    /// The bucket.
    public var bucket: String
    /// The key prefix; no leading or trailing `/`, may be empty.
    public var prefix: String
    /// The endpoint (`https://…`), or nil for AWS itself.
    public var endpoint: URL?
    /// The region, or nil for the backend's default.
    public var region: String?
    /// Path-style addressing; nil lets the backend choose.
    public var pathStyle: Bool?
    /// The storage class for uploads, or nil.
    public var storageClass: String?
    /// The credentials, or nil when none were given (the target then refuses to open).
    public var credentials: S3Credentials?
    /// The multipart part size in bytes, or nil for the backend's default.
    public var partSize: Int?
    /// Parts uploaded at once, or nil for the backend's default.
    public var concurrency: Int?
    /// TLS and timeouts.
    public var connection = ConnectionSettings()

    /// Settings for `prefix` in `bucket`; everything else default.
    public init(bucket: String, prefix: String) {
        self.bucket = bucket
        self.prefix = prefix
    }
}

/// An S3 access key, whole.
public struct S3Credentials: Sendable, Equatable {
    /// The access key id.
    public var accessKeyId: String
    /// The secret access key.
    public var secretAccessKey: Secret
    /// The session token of temporary credentials.
    public var sessionToken: Secret?

    /// Creates credentials.
    public init(accessKeyId: String, secretAccessKey: Secret, sessionToken: Secret? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// A WebDAV target's settings.
public struct WebDAVTargetSettings: Sendable, Equatable {
    /// The `https://HOST/PATH` base URL.
    public var baseURL: URL
    /// The user name and password (Basic or Digest, as the server asks), or nil for none.
    public var credentials: HTTPCredentials?
    /// TLS and timeouts.
    public var connection = ConnectionSettings()

    /// Settings for `baseURL`, without credentials.
    public init(baseURL: URL) {
        self.baseURL = baseURL
    }
}

/// What `healthcheck` accepts.
public struct HealthConfig: Sendable, Equatable {
    /// The oldest an off-site copy of each database may be; default 26h.
    public var maxAge: Duration

    /// Creates settings.
    public init(maxAge: Duration = .seconds(26 * 3600)) {
        self.maxAge = maxAge
    }
}

/// Webhook notifications.
public struct NotifyConfig: Sendable, Equatable {
    /// The URL failures (and, with `onSuccess`, successes) are POSTed to; a secret, since
    /// webhook URLs often carry a token.
    public var webhookURL: Secret
    /// Whether successes are sent too; default false.
    public var onSuccess: Bool

    /// Creates settings.
    public init(webhookURL: Secret, onSuccess: Bool = false) {
        self.webhookURL = webhookURL
        self.onSuccess = onSuccess
    }
}

/// Log output settings.
public struct LogConfig: Sendable, Equatable {
    /// Line format.
    public enum Format: String, Sendable, Equatable {
        /// `key=value` pairs (the default).
        case logfmt
        /// One JSON object per line.
        case json
    }

    /// Least severity written.
    public enum Level: String, Sendable, Equatable, Comparable {
        /// Everything.
        case debug
        /// Normal operation (the default).
        case info
        /// Problems that did not fail anything.
        case warn
        /// Failures only.
        case error

        private var rank: Int { [.debug, .info, .warn, .error].firstIndex(of: self)! }

        /// Orders by severity.
        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rank < rhs.rank }
    }

    /// Line format; default logfmt.
    public var format: Format
    /// Least severity; default info.
    public var level: Level

    /// Creates settings.
    public init(format: Format = .logfmt, level: Level = .info) {
        self.format = format
        self.level = level
    }
}

/// Periodic restore drills.
public struct VerifyConfig: Sendable, Equatable {
    /// The interval between drills.
    public var every: Duration

    /// Creates settings.
    public init(every: Duration) {
        self.every = every
    }
}

/// The control endpoint of `offsite run`.
public struct HTTPConfig: Sendable, Equatable {
    /// Where to listen; default `127.0.0.1:8080`.
    public var listen: ListenAddress
    /// The token that `POST /api/backup` and the page's "Back up now" must present, or nil: then
    /// only `/healthz` and `/metrics` answer.
    public var token: Secret?

    /// The address used when `listen` is not given.
    public static let defaultListen = "127.0.0.1:8080"
    /// The shortest token accepted.
    public static let minimumTokenLength = 16

    /// Creates settings.
    public init(listen: ListenAddress, token: Secret? = nil) {
        self.listen = listen
        self.token = token
    }
}
