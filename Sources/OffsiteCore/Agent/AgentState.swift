import Foundation

/// What the agent knows about its databases and targets, kept across restarts in
/// `LOCALDIR/.offsite-state.json` (see `StateStore`) and shown by `status` and `healthcheck`.
///
/// Reasons stored here are single lines; the caller must pass messages that hold no secrets
/// (`UserFacingError.message` never does).
public struct AgentState: Codable, Sendable, Equatable {
    /// The layout version this code writes.
    public static let currentVersion = 1

    /// The layout version of the file.
    public var version: Int
    /// When an agent first started with this state: the start of the health grace period.
    public var firstStartedAt: Date?
    /// When the current (or last) agent started.
    public var agentStartedAt: Date?
    /// The current (or last) agent's process id.
    public var agentPID: Int32?
    /// Per database, by name.
    public var databases: [String: DatabaseState]
    /// Failures of work that is not one backup to one target (a prune, the local rotation, the
    /// state file, a database that cannot be protected), newest last, at most `problemLimit`.
    public var problems: [OperationProblem]?
    /// How many times each kind of operation failed, ever, by `OperationProblem.operation`.
    public var problemCounts: [String: Int]?
    /// Files in a watched folder that are not backed up, by path, with why (one line).
    public var unprotected: [String: String]?
    /// Per target, when its schedule last fired (`every` and cron count from there after a restart).
    public var scheduledRuns: [String: Date]?

    /// An empty state.
    public init() {
        version = AgentState.currentVersion
        databases = [:]
    }

    /// The record of `target` for `database`, if there is one.
    public func target(_ target: String, of database: String) -> TargetState? {
        databases[database]?.targets[target]
    }

    // MARK: Recording what happened

    /// How many problems `recordProblem` remembers.
    public static let problemLimit = 50

    /// Notes that `operation` (`prune`, `local-rotation`, `state-write`, `name-conflict`, …) failed
    /// at `date` because of `reason` (one line, no secrets), for `database` and `target` when it
    /// concerns them; counted in `problemCounts`, kept in `problems`.
    public mutating func recordProblem(_ operation: String, database: String? = nil, target: String? = nil,
                                       reason: String, at date: Date) {
        var list = problems ?? []
        list.append(OperationProblem(time: date, operation: operation, database: database, target: target, reason: oneLine(reason)))
        if list.count > AgentState.problemLimit { list.removeFirst(list.count - AgentState.problemLimit) }
        problems = list
        problemCounts = (problemCounts ?? [:]).merging([operation: 1], uniquingKeysWith: +)
    }

    /// Notes that the file at `path` is not backed up because of `reason`, or, with nil, that it is again.
    public mutating func recordUnprotected(_ path: String, reason: String?) {
        var map = unprotected ?? [:]
        map[path] = reason.map(oneLine)
        unprotected = map.isEmpty ? nil : map
    }

    /// Notes that an agent started at `date` as process `pid`.
    public mutating func recordStart(at date: Date, pid: Int32) {
        if firstStartedAt == nil { firstStartedAt = date }
        agentStartedAt = date
        agentPID = pid
    }

    /// Makes sure `database` has a record (first seen at `date`) and notes its path.
    public mutating func recordDatabase(_ database: String, path: String, at date: Date, isFileSet: Bool = false) {
        if databases[database] == nil {
            databases[database] = DatabaseState(name: database, path: path, firstSeenAt: date)
        } else {
            databases[database]!.path = path
        }
        databases[database]!.fileSet = isFileSet ? true : nil
    }

    /// Notes that `database` was seen to change at `date`.
    public mutating func recordChange(of database: String, at date: Date) {
        withDatabase(database, at: date) { $0.lastChangeAt = date }
    }

    /// Notes a snapshot of `database`.
    public mutating func recordSnapshot(of database: String, _ snapshot: SnapshotRecord) {
        withDatabase(database, at: snapshot.time) { $0.lastSnapshot = snapshot }
    }

    /// Notes that backup `backupID` of `database` (`bytes` stored, taking `seconds` from the start
    /// of the snapshot, when known) reached `target` at `date`. Returns how many failures in a row
    /// this success ends: more than zero is a recovery.
    @discardableResult
    public mutating func recordSuccess(database: String, target: String, at date: Date, backupID: String,
                                       bytes: Int64, seconds: Double? = nil) -> Int {
        withTarget(target, of: database, at: date) { state in
            let ended = state.consecutiveFailures
            state.lastSuccess = BackupSuccess(time: date, backupID: backupID, bytes: bytes, seconds: seconds)
            state.shippedBytes = (state.shippedBytes ?? 0) + bytes
            state.consecutiveFailures = 0
            state.successCount += 1
            return ended
        }
    }

    /// Notes that a backup of `database` to `target` failed at `date` because of `reason` (one line,
    /// no secrets; longer text is cut). Returns the number of failures in a row, this one included.
    @discardableResult
    public mutating func recordFailure(database: String, target: String, at date: Date, reason: String) -> Int {
        withTarget(target, of: database, at: date) { state in
            state.lastFailure = BackupFailure(time: date, reason: oneLine(reason))
            state.consecutiveFailures += 1
            state.failureCount += 1
            return state.consecutiveFailures
        }
    }

    /// Notes when the next scheduled backup of `database` to `target` is due (nil: none planned).
    public mutating func recordNextRun(database: String, target: String, at next: Date?, now: Date) {
        withTarget(target, of: database, at: now) { $0.nextRunAt = next }
    }

    /// Notes what a listing of `target` showed for `database`.
    public mutating func recordListing(database: String, target: String, _ listing: TargetListing) {
        withTarget(target, of: database, at: listing.time) { $0.listing = listing }
    }

    /// Notes the result of a restore drill of `database` from `target`.
    public mutating func recordVerify(database: String, target: String, _ result: VerifyResult) {
        var result = result
        result.reason = result.reason.map(oneLine)
        withTarget(target, of: database, at: result.time) { $0.lastVerify = result }
    }

    /// How many backups per database and target `recordBackup` remembers.
    public static let recentBackupLimit = 200

    /// Notes what backup `record.backupID` of `database` shipped to `target`, for `verify` to
    /// compare with later; only the newest `recentBackupLimit` per target are kept.
    public mutating func recordBackup(database: String, target: String, _ record: BackupRecord) {
        withTarget(target, of: database, at: record.time) { state in
            var records = state.recentBackups ?? []
            records.removeAll { $0.backupID == record.backupID }
            records.append(record)
            records.sort { $0.time < $1.time }
            if records.count > AgentState.recentBackupLimit {
                records.removeFirst(records.count - AgentState.recentBackupLimit)
            }
            state.recentBackups = records
        }
    }

    /// Notes every upload of `report` that succeeded (see `recordBackup(database:target:_:)`), with
    /// the reason a manual backup was asked for, if any.
    public mutating func recordBackup(_ report: BackupReport, database: String, at date: Date = Date(),
                                      reason: String? = nil) {
        for upload in report.uploads where upload.error == nil {
            guard let objectBytes = upload.size else { continue }
            recordBackup(database: database, target: upload.target,
                         BackupRecord(backupID: report.id.description, time: date, snapshotBytes: report.snapshot.byteCount,
                                      pageCount: Int64(report.snapshot.pageCount), pageSize: report.snapshot.pageSize,
                                      objectBytes: objectBytes, reason: reason.map(oneLine)))
        }
    }

    /// What was recorded at backup time about `database`'s backups on `target`, by backup id.
    public func backupRecords(database: String, target: String) -> [String: BackupRecord] {
        let records = self.target(target, of: database)?.recentBackups ?? []
        return Dictionary(records.map { ($0.backupID, $0) }, uniquingKeysWith: { _, last in last })
    }

    mutating func withDatabase<Result>(_ database: String, at date: Date,
                                               _ body: (inout DatabaseState) -> Result) -> Result {
        if databases[database] == nil {
            databases[database] = DatabaseState(name: database, path: "", firstSeenAt: date)
        }
        return body(&databases[database]!)
    }

    mutating func withTarget<Result>(_ target: String, of database: String, at date: Date,
                                             _ body: (inout TargetState) -> Result) -> Result {
        withDatabase(database, at: date) { record in
            if record.targets[target] == nil { record.targets[target] = TargetState(firstSeenAt: date) }
            return body(&record.targets[target]!)
        }
    }
}

/// One database's record.
public struct DatabaseState: Codable, Sendable, Equatable {
    /// The database's name (`crm`).
    public var name: String
    /// Its file (empty when not yet known).
    public var path: String
    /// When the agent first saw it: the start of its health grace period.
    public var firstSeenAt: Date
    /// When a change was last detected, or nil.
    public var lastChangeAt: Date?
    /// The last snapshot taken, or nil.
    public var lastSnapshot: SnapshotRecord?
    /// Its current chain of changes (continuous protection), or nil.
    public var chain: ChainRecord?
    /// Why its changes are not shipped continuously although continuous protection is on (it is
    /// not in WAL mode, …), or nil.
    public var continuity: String?
    /// Per target, by name.
    public var targets: [String: TargetState]
    /// True for a file set (`files[]`: a folder, not a database); absent for a database.
    public var fileSet: Bool?

    /// Whether the record is a file set's.
    public var isFileSet: Bool { fileSet == true }

    /// Creates a record with no history.
    public init(name: String, path: String, firstSeenAt: Date, targets: [String: TargetState] = [:]) {
        self.name = name
        self.path = path
        self.firstSeenAt = firstSeenAt
        self.targets = targets
    }
}

/// A snapshot taken.
public struct SnapshotRecord: Codable, Sendable, Equatable {
    /// When it was taken.
    public var time: Date
    /// Its backup id (`20261122T031700Z-change`).
    public var backupID: String
    /// Its size in bytes.
    public var bytes: Int64
    /// The database's page count.
    public var pageCount: Int64
    /// The database's page size in bytes.
    public var pageSize: Int

    /// Creates a record.
    public init(time: Date, backupID: String, bytes: Int64, pageCount: Int64, pageSize: Int) {
        self.time = time
        self.backupID = backupID
        self.bytes = bytes
        self.pageCount = pageCount
        self.pageSize = pageSize
    }
}

/// One database on one target.
public struct TargetState: Codable, Sendable, Equatable {
    /// When the agent first tried this target for this database: the start of its grace period.
    public var firstSeenAt: Date
    /// The last backup that reached the target, or nil.
    public var lastSuccess: BackupSuccess?
    /// The last failure, or nil (kept after a later success, for the record).
    public var lastFailure: BackupFailure?
    /// Failures since the last success.
    public var consecutiveFailures: Int
    /// Successful backups to this target, ever.
    public var successCount: Int
    /// Failed backups to this target, ever.
    public var failureCount: Int
    /// When the next scheduled backup is due, or nil.
    public var nextRunAt: Date?
    /// What the last listing showed, or nil.
    public var listing: TargetListing?
    /// The last restore drill, or nil.
    public var lastVerify: VerifyResult?
    /// The commit time of the oldest change not yet on this target (continuous protection), or
    /// nil when it holds every change shipped so far: the replication lag is the time since.
    public var oldestUnshippedChange: Date?
    /// The most recent backups shipped here, oldest first (at most `AgentState.recentBackupLimit`);
    /// nil in state files written before it was recorded.
    public var recentBackups: [BackupRecord]?
    /// Bytes stored here by successful backups (compressed and encrypted), ever; nil in state
    /// files written before they were counted.
    public var shippedBytes: Int64?

    /// Creates a record with no history.
    public init(firstSeenAt: Date) {
        self.firstSeenAt = firstSeenAt
        consecutiveFailures = 0
        successCount = 0
        failureCount = 0
    }

    /// Whether the last attempt failed.
    public var isFailing: Bool { consecutiveFailures > 0 }
}

/// What one backup was when it was shipped: what `verify` compares a restored copy with.
public struct BackupRecord: Codable, Sendable, Equatable {
    /// The backup id (`20261122T031700Z-scheduled`).
    public var backupID: String
    /// When it was shipped.
    public var time: Date
    /// The snapshot's size in bytes (the restored file must have the same).
    public var snapshotBytes: Int64
    /// The snapshot's page count.
    public var pageCount: Int64
    /// The snapshot's page size in bytes.
    public var pageSize: Int
    /// The object's size on the target (compressed and encrypted).
    public var objectBytes: Int64
    /// Why a manual backup was asked for (`POST /api/backup`), in one line; nil for the others.
    public var reason: String?

    /// Creates a record.
    public init(backupID: String, time: Date, snapshotBytes: Int64, pageCount: Int64, pageSize: Int, objectBytes: Int64,
                reason: String? = nil) {
        self.backupID = backupID
        self.time = time
        self.snapshotBytes = snapshotBytes
        self.pageCount = pageCount
        self.pageSize = pageSize
        self.objectBytes = objectBytes
        self.reason = reason
    }
}

/// A database's chain of changes: its base and what was shipped in it.
public struct ChainRecord: Codable, Sendable, Equatable {
    /// The base's backup id.
    public var base: String
    /// Change objects shipped in it.
    public var objects: Int
    /// Their bytes on the targets.
    public var bytes: Int64

    /// Creates a record.
    public init(base: String, objects: Int, bytes: Int64) {
        self.base = base
        self.objects = objects
        self.bytes = bytes
    }
}

/// A failed operation that is not one backup to one target.
public struct OperationProblem: Codable, Sendable, Equatable {
    /// When it failed.
    public var time: Date
    /// What failed: `prune`, `local-rotation`, `state-write`, `name-conflict`, ….
    public var operation: String
    /// The database concerned, if any.
    public var database: String?
    /// The target concerned, if any.
    public var target: String?
    /// Why, in one line without secrets.
    public var reason: String

    /// Creates a record.
    public init(time: Date, operation: String, database: String? = nil, target: String? = nil, reason: String) {
        self.time = time
        self.operation = operation
        self.database = database
        self.target = target
        self.reason = reason
    }
}

/// A backup that reached a target.
public struct BackupSuccess: Codable, Sendable, Equatable {
    /// When the upload finished.
    public var time: Date
    /// The backup id.
    public var backupID: String
    /// Bytes stored on the target (compressed and encrypted).
    public var bytes: Int64
    /// How long the backup took, from the start of the snapshot to the end of the upload; nil
    /// when not recorded.
    public var seconds: Double?

    /// Creates a record.
    public init(time: Date, backupID: String, bytes: Int64, seconds: Double? = nil) {
        self.time = time
        self.backupID = backupID
        self.bytes = bytes
        self.seconds = seconds
    }
}

/// A failed backup.
public struct BackupFailure: Codable, Sendable, Equatable {
    /// When it failed.
    public var time: Date
    /// Why, in one line without secrets.
    public var reason: String

    /// Creates a record.
    public init(time: Date, reason: String) {
        self.time = time
        self.reason = reason
    }
}

/// What one listing of a target showed for one database.
public struct TargetListing: Codable, Sendable, Equatable {
    /// When the listing was taken.
    public var time: Date
    /// Backups of the database on the target.
    public var objectCount: Int
    /// Their total size in bytes.
    public var storedBytes: Int64

    /// Creates a record.
    public init(time: Date, objectCount: Int, storedBytes: Int64) {
        self.time = time
        self.objectCount = objectCount
        self.storedBytes = storedBytes
    }
}

/// The result of a restore drill.
public struct VerifyResult: Codable, Sendable, Equatable {
    /// When it ran.
    public var time: Date
    /// The backup checked.
    public var backupID: String
    /// Whether it restored and passed the integrity check.
    public var ok: Bool
    /// Why not, in one line; nil when ok.
    public var reason: String?

    /// Creates a record.
    public init(time: Date, backupID: String, ok: Bool, reason: String? = nil) {
        self.time = time
        self.backupID = backupID
        self.ok = ok
        self.reason = reason
    }
}

/// `text` on one line: runs of whitespace (newlines included) become one space, at most 300
/// characters.
func oneLine(_ text: String) -> String {
    let words = text.split(whereSeparator: { $0.isWhitespace || $0.isNewline || $0.unicodeScalars.first!.properties.generalCategory == .control })
    let joined = words.joined(separator: " ")
    return joined.count > 300 ? String(joined.prefix(299)) + "…" : joined
}

// MARK: - The state file

/// Keeps an `AgentState` in `FOLDER/.offsite-state.json`: written atomically (a 0600 temporary
/// file, fsync, rename, fsync of the folder), read forgivingly (a missing file is an empty state;
/// a corrupt one is an empty state and a warning, never a crash).
///
/// Several processes may record into one state file — the agent, and `offsite backup` or `prune`
/// run by hand beside it — so every write is a read-modify-write under an exclusive `flock` on
/// `FOLDER/.offsite-state.lock` that reads the file again when another process wrote it since, and
/// applies the changes to what is on disk. `update` writes one change at once (the commands);
/// the agent `stage`s `StateChange` values and `flush`es them at most about once a second. Staged
/// changes whose write failed are kept (they did happen) and written with the next flush.
public final class StateStore: @unchecked Sendable {
    /// The state file's name.
    public static let fileName = ".offsite-state.json"
    /// The name of the file whose `flock` serialises writers across processes.
    public static let lockFileName = ".offsite-state.lock"

    /// The folder holding the file.
    public let folder: String
    /// The state file.
    public let path: String
    private let lock = NSLock()
    /// The state on disk as this process last read or wrote it, with the pending changes applied.
    private var cached: AgentState?
    /// The file's identity when it was last read or written here; another one means another writer.
    private var stamp: FileStamp?
    /// Changes applied in memory and not written yet, oldest first: applied again to a fresh read.
    private var pending: [StateChange] = []

    /// What identifies one version of the state file: every write renames a new file into place.
    private struct FileStamp: Equatable {
        var device: UInt64, inode: UInt64, size: Int64, modified: Int64

        /// The file's stamp, or nil when there is no file.
        init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        }
    }

    /// A store for the state file in `folder` (nothing is read yet).
    public init(folder: String) {
        self.folder = folder
        path = (folder as NSString).appendingPathComponent(StateStore.fileName)
    }

    /// Reads the state file. Missing: an empty state and no warning. Unreadable or corrupt: an empty
    /// state and a warning to log (the next save replaces the file).
    public func load() -> (state: AgentState, warning: String?) {
        lock.lock()
        defer { lock.unlock() }
        let result = readFromDisk()
        cached = result.state
        stamp = FileStamp(path: path)
        pending = []
        return result
    }

    /// The state as last loaded, saved or updated here, with changes another process wrote since.
    public var current: AgentState {
        lock.lock()
        defer { lock.unlock() }
        refreshIfChanged()
        return cached!
    }

    /// Writes `state` atomically and makes it the current state.
    public func save(_ state: AgentState) throws {
        lock.lock()
        defer { lock.unlock() }
        let fileLock = try acquireFileLock()
        defer { releaseFileLock(fileLock) }
        cached = state
        pending = []
        try writeToDisk(state)
        stamp = FileStamp(path: path)
    }

    /// Applies `body` to the current state (read again when another process wrote it) and saves the
    /// result at once, with whatever is staged, one writer at a time across processes; returns what
    /// `body` returns. When saving fails the error is thrown and `body`'s change is not kept; when
    /// `body` throws, nothing changes.
    @discardableResult
    public func update<Result>(_ body: (inout AgentState) throws -> Result) throws -> Result {
        lock.lock()
        defer { lock.unlock() }
        let fileLock = try acquireFileLock()
        defer { releaseFileLock(fileLock) }
        refreshIfChanged()
        var state = cached!
        let result = try body(&state)
        try writeToDisk(state)
        cached = state
        stamp = FileStamp(path: path)
        pending = []
        return result
    }

    /// Applies `changes` to the current state in memory; `flush` writes them.
    public func stage(_ changes: [StateChange]) {
        guard !changes.isEmpty else { return }
        lock.lock()
        defer { lock.unlock() }
        refreshIfChanged()
        cached!.apply(changes)
        pending += changes
    }

    /// Whether changes are staged and not written yet.
    public var hasStagedChanges: Bool { lock.withLock { !pending.isEmpty } }

    /// Writes the staged changes, applied to the file as it is on disk; returns the state written.
    /// When writing fails they stay staged and the error is thrown.
    @discardableResult
    public func flush() throws -> AgentState {
        lock.lock()
        defer { lock.unlock() }
        let fileLock = try acquireFileLock()
        defer { releaseFileLock(fileLock) }
        refreshIfChanged()
        try writeToDisk(cached!)
        stamp = FileStamp(path: path)
        pending = []
        return cached!
    }

    /// Reads the file again when it is not the one last read or written here (another process
    /// wrote it), and applies the pending changes to it.
    private func refreshIfChanged() {
        let now = FileStamp(path: path)
        guard cached == nil || now != stamp else { return }
        var state = readFromDisk().state
        state.apply(pending)
        cached = state
        stamp = now
    }

    /// Opens the lock file and takes its exclusive `flock`, waiting for another writer.
    private func acquireFileLock() throws -> Int32 {
        try makePrivateDirectory(folder)
        let lockPath = (folder as NSString).appendingPathComponent(StateStore.lockFileName)
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw FileIOError(operation: "open", path: lockPath, code: errno) }
        while flock(descriptor, LOCK_EX) != 0 {
            if errno == EINTR { continue }
            let code = errno
            close(descriptor)
            throw FileIOError(operation: "lock", path: lockPath, code: code)
        }
        return descriptor
    }

    private func releaseFileLock(_ descriptor: Int32) {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    /// Removes temporary files a killed agent left behind (`..offsite-state.json.tmp-…`). Call it
    /// only while holding the `AgentLock`.
    public func removeStaleTemporaryFiles() {
        let prefix = "." + StateStore.fileName + ".tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(prefix) {
            removeFileIfPresent((folder as NSString).appendingPathComponent(name))
        }
    }

    /// The file's JSON: sorted keys, ISO 8601 times with milliseconds.
    public static func encode(_ state: AgentState) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatISO8601(date, milliseconds: true))
        }
        return try encoder.encode(state)
    }

    /// Parses the file's JSON.
    public static func decode(_ data: Data) throws -> AgentState {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseISO8601(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 time: \(text)")
            }
            return date
        }
        return try decoder.decode(AgentState.self, from: data)
    }

    private func readFromDisk() -> (state: AgentState, warning: String?) {
        guard pathExists(path) else { return (AgentState(), nil) }
        guard let data = FileManager.default.contents(atPath: path) else {
            return (AgentState(), "cannot read the state file \(path); starting with an empty state")
        }
        do {
            return (try StateStore.decode(data), nil)
        } catch {
            return (AgentState(), "the state file \(path) is corrupt (\(describeDecodingError(error))); "
                        + "starting with an empty state, the next save replaces it")
        }
    }

    private func writeToDisk(_ state: AgentState) throws {
        let data = try StateStore.encode(state)
        try makePrivateDirectory(folder)
        let file = try AtomicFile(beside: path, mode: 0o600)
        do {
            try file.write(data + [UInt8(ascii: "\n")])
            try file.commit(as: path)
        } catch {
            file.discard()
            throw error
        }
    }
}

/// Parses `2026-11-22T03:17:00Z` or `2026-11-22T03:17:00.123Z` (any RFC 3339 offset).
func parseISO8601(_ text: String) -> Date? {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    if let date = formatter.date(from: text) { return date }
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.date(from: text)
}

/// A short reason for a JSON decoding failure, naming the key path.
private func describeDecodingError(_ error: Error) -> String {
    func path(_ context: DecodingError.Context) -> String {
        let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        return keys.isEmpty ? "" : keys.joined(separator: ".") + ": "
    }
    switch error {
    case DecodingError.dataCorrupted(let context): return path(context) + context.debugDescription
    case DecodingError.keyNotFound(let key, let context): return path(context) + "missing \(key.stringValue)"
    case DecodingError.typeMismatch(_, let context): return path(context) + context.debugDescription
    case DecodingError.valueNotFound(_, let context): return path(context) + context.debugDescription
    default: return String(describing: error)
    }
}
