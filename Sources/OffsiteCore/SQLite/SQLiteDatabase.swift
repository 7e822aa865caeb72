import CSQLite
import Foundation

/// A failed SQLite call: the operation, the file, SQLite's result code and its own message.
public struct SQLiteError: UserFacingError, Equatable {
    /// SQLite's (extended) result code.
    public var code: Int32
    /// What was being done (`open`, `prepare`, `step`, …).
    public var operation: String
    /// The database file, when known.
    public var path: String
    /// SQLite's message.
    public var detail: String

    public var message: String {
        let place = path.isEmpty ? "" : " \(path)"
        return "sqlite \(operation)\(place): \(detail)"
    }

    /// Whether the error is SQLITE_BUSY or SQLITE_LOCKED (another connection holds a lock).
    public var isBusy: Bool {
        let primary = code & 0xff
        return primary == SQLITE_BUSY || primary == SQLITE_LOCKED
    }

    /// Whether the file is damaged or not a database at all (SQLITE_CORRUPT or SQLITE_NOTADB).
    public var isCorruption: Bool {
        let primary = code & 0xff
        return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB
    }

    /// Whether the file could not be opened at all (SQLITE_CANTOPEN: missing, or not permitted).
    public var isCannotOpen: Bool { code & 0xff == SQLITE_CANTOPEN }

    /// Whether the file is not a database (SQLITE_NOTADB).
    public var isNotADatabase: Bool { code & 0xff == SQLITE_NOTADB }
}

/// One connection to a SQLite database. Every C return code goes through `check`.
/// Not thread-safe: use one connection per thread.
public final class SQLiteDatabase {
    /// The raw handle, for the few places (the backup API) that need it.
    public let handle: OpaquePointer
    /// The file this connection opened.
    public let path: String

    /// How to open a database.
    public enum Mode: Sendable {
        /// Read only; fails if the file is missing.
        case readOnly
        /// Read and write; fails if the file is missing.
        case readWrite
        /// Read and write, creating the file when missing.
        case create
    }

    /// Opens `path`; `busyTimeout` is how long a statement waits for a lock before SQLITE_BUSY.
    public init(path: String, mode: Mode = .readWrite, busyTimeout: Duration = .seconds(5)) throws {
        var flags: Int32 = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
        switch mode {
        case .readOnly: flags |= SQLITE_OPEN_READONLY
        case .readWrite: flags |= SQLITE_OPEN_READWRITE
        case .create: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
        }
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let detail = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(db)
            throw SQLiteError(code: rc, operation: "open", path: path, detail: detail)
        }
        self.handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
        let millis = busyTimeout.components.seconds * 1000 + busyTimeout.components.attoseconds / 1_000_000_000_000_000
        sqlite3_busy_timeout(db, Int32(clamping: millis))
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    /// Throws a `SQLiteError` for `operation` unless `rc` is one of `accepted`.
    @discardableResult
    public func check(_ rc: Int32, _ operation: String, accepting accepted: Set<Int32> = [SQLITE_OK]) throws -> Int32 {
        if accepted.contains(rc) { return rc }
        throw SQLiteError(code: rc, operation: operation, path: path, detail: String(cString: sqlite3_errmsg(handle)))
    }

    /// Throws a `SQLiteError` for `operation` unless `rc` is SQLITE_OK; the hot-path form that
    /// builds no set of accepted codes.
    @discardableResult
    public func check(_ rc: Int32, _ operation: String) throws -> Int32 {
        if rc == SQLITE_OK { return rc }
        return try check(rc, operation, accepting: [SQLITE_OK])
    }

    /// Runs one or more statements that return no rows of interest.
    public func execute(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let detail = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(errorMessage)
            throw SQLiteError(code: rc, operation: "exec", path: path, detail: detail)
        }
    }

    /// Compiles one statement.
    public func prepare(_ sql: String) throws -> SQLiteStatement {
        var statement: OpaquePointer?
        try check(sqlite3_prepare_v2(handle, sql, -1, &statement, nil), "prepare")
        guard let statement else {
            throw SQLiteError(code: SQLITE_MISUSE, operation: "prepare", path: path, detail: "empty statement")
        }
        return SQLiteStatement(statement: statement, database: self)
    }

    /// The first column of the first row of `sql`, as text (nil for NULL or no row).
    public func scalarText(_ sql: String) throws -> String? {
        let statement = try prepare(sql)
        guard try statement.step() else { return nil }
        return statement.text(at: 0)
    }

    /// The first column of the first row of `sql`, as an integer (nil for NULL or no row).
    public func scalarInt(_ sql: String) throws -> Int64? {
        let statement = try prepare(sql)
        guard try statement.step(), !statement.isNull(at: 0) else { return nil }
        return statement.int64(at: 0)
    }

    /// Every value of the first column of `sql`, as text.
    public func column(_ sql: String) throws -> [String] {
        let statement = try prepare(sql)
        var values: [String] = []
        while try statement.step() { values.append(statement.text(at: 0) ?? "") }
        return values
    }

    /// The rowid of the last inserted row.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Runs `body` inside BEGIN IMMEDIATE … COMMIT, rolling back when it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Copies this connection's main database into `destination`'s in one `sqlite3_backup_step(-1)`:
    /// a single read transaction here, so the copy is consistent while other connections write
    /// (an incremental backup restarts on every commit from another connection). Returns the
    /// number of pages copied. A lock held elsewhere throws a `SQLiteError` whose `isBusy` is
    /// true; the call can then simply be repeated.
    public func copyWholeDatabase(into destination: SQLiteDatabase) throws -> Int {
        guard let backup = sqlite3_backup_init(destination.handle, "main", handle, "main") else {
            throw SQLiteError(code: sqlite3_extended_errcode(destination.handle), operation: "backup",
                              path: destination.path, detail: String(cString: sqlite3_errmsg(destination.handle)))
        }
        let stepCode = sqlite3_backup_step(backup, -1)
        let pageCount = Int(sqlite3_backup_pagecount(backup))
        let finishCode = sqlite3_backup_finish(backup)
        if stepCode != SQLITE_DONE {
            let detail = finishCode == SQLITE_OK ? String(cString: sqlite3_errstr(stepCode))
                : String(cString: sqlite3_errmsg(destination.handle))
            throw SQLiteError(code: stepCode, operation: "backup", path: path, detail: detail)
        }
        try destination.check(finishCode, "backup")
        return pageCount
    }

    /// Copies this connection's main database into `destination`'s in steps of `pagesPerStep`
    /// pages, calling `betweenSteps(copied, total)` after each step that did not finish the copy.
    ///
    /// Call it inside a read transaction held open on this connection (`BEGIN` and a read): the
    /// backup then reads that one snapshot throughout, so other connections' commits neither
    /// restart it nor change what it copies (WAL mode). Without one, each step opens its own
    /// read transaction and a commit elsewhere restarts the copy. Returns the number of pages and
    /// how often the copy went backwards (a restart), which is zero when used as intended.
    public func copyDatabase(into destination: SQLiteDatabase, pagesPerStep: Int,
                             betweenSteps: (_ copied: Int, _ total: Int) throws -> Void) throws -> (pageCount: Int, restarts: Int) {
        guard let backup = sqlite3_backup_init(destination.handle, "main", handle, "main") else {
            throw SQLiteError(code: sqlite3_extended_errcode(destination.handle), operation: "backup",
                              path: destination.path, detail: String(cString: sqlite3_errmsg(destination.handle)))
        }
        var restarts = 0
        var copiedBefore = 0
        var stepCode = SQLITE_OK
        var failure: Error?
        while true {
            stepCode = sqlite3_backup_step(backup, Int32(clamping: max(pagesPerStep, 1)))
            guard stepCode == SQLITE_OK else { break }
            let total = Int(sqlite3_backup_pagecount(backup))
            let copied = total - Int(sqlite3_backup_remaining(backup))
            if copied < copiedBefore { restarts += 1 }
            copiedBefore = copied
            do { try betweenSteps(copied, total) } catch {
                failure = error
                break
            }
        }
        let pageCount = Int(sqlite3_backup_pagecount(backup))
        let finishCode = sqlite3_backup_finish(backup)
        if let failure { throw failure }
        if stepCode != SQLITE_DONE {
            let detail = finishCode == SQLITE_OK ? String(cString: sqlite3_errstr(stepCode))
                : String(cString: sqlite3_errmsg(destination.handle))
            throw SQLiteError(code: stepCode, operation: "backup", path: path, detail: detail)
        }
        try destination.check(finishCode, "backup")
        return (pageCount, restarts)
    }

    /// Writes the dirty pages of this connection's open write transaction to the database file
    /// without committing it (`sqlite3_db_cacheflush`).
    public func flushCache() throws {
        try check(sqlite3_db_cacheflush(handle), "cache flush")
    }

    /// Whether this connection has a transaction open (`BEGIN` … not yet committed).
    public var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// The version of the linked SQLite library.
    public static var libraryVersion: String { String(cString: sqlite3_libversion()) }

    // MARK: Write-ahead log (continuous protection)

    /// Makes closing this connection never checkpoint the database nor delete its `-wal`, even
    /// when it is the last connection (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`).
    public func disableCheckpointOnClose() throws {
        var applied: Int32 = 0
        try check(offsite_sqlite_db_config_int(handle, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, &applied), "no checkpoint on close")
    }

    /// Maps the database's wal-index (`-shm`) through SQLite's own VFS, for `WALIndexHeader.read`.
    /// The database must be in WAL mode and this connection must have read from it. The mapping
    /// lives as long as this connection.
    public func mapWALIndex() throws -> WALIndex {
        var region: UnsafeMutableRawPointer?
        let rc = offsite_sqlite_shm_map(handle, &region)
        guard rc == SQLITE_OK, let region else {
            throw SQLiteError(code: rc == SQLITE_OK ? SQLITE_ERROR : rc, operation: "map wal-index", path: path,
                              detail: rc == SQLITE_OK ? "no wal-index" : String(cString: sqlite3_errstr(rc)))
        }
        return WALIndex(region: region, connection: self)
    }

    /// Runs `body` with `handler` as this connection's busy handler — called, on this thread, each
    /// time a lock is found taken, with how many times it was called for that lock; true tries
    /// again, false gives up with SQLITE_BUSY — and then puts back a busy timeout of `restoring`.
    public func withBusyHandler<T>(restoring timeout: Duration, _ handler: @escaping (Int32) -> Bool,
                                   _ body: () throws -> T) rethrows -> T {
        let box = Unmanaged.passRetained(BusyHandlerBox(handler))
        sqlite3_busy_handler(handle, { context, count in
            Unmanaged<BusyHandlerBox>.fromOpaque(context!).takeUnretainedValue().handler(count) ? 1 : 0
        }, box.toOpaque())
        defer {
            let millis = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
            sqlite3_busy_timeout(handle, Int32(clamping: millis))
            box.release()
        }
        return try body()
    }

    /// How a checkpoint went: whether it was blocked, the frames in the log, the frames checkpointed.
    public struct CheckpointResult: Sendable, Equatable {
        /// Whether it could not complete (another connection held what it needed).
        public var busy: Bool
        /// Frames in the write-ahead log.
        public var logFrames: Int
        /// Frames copied into the database.
        public var checkpointedFrames: Int
    }

    /// Checkpoints the database (`sqlite3_wal_checkpoint_v2`): `passive` never waits; `restart`
    /// also waits (busy handler) for readers to leave the log.
    public func checkpoint(restart: Bool = false) throws -> CheckpointResult {
        var log: Int32 = 0
        var done: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2(handle, "main", restart ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_PASSIVE, &log, &done)
        if rc == SQLITE_BUSY { return CheckpointResult(busy: true, logFrames: Int(log), checkpointedFrames: Int(done)) }
        try check(rc, "checkpoint")
        return CheckpointResult(busy: false, logFrames: Int(log), checkpointedFrames: Int(done))
    }
}

/// A busy handler, kept alive while SQLite may call it.
private final class BusyHandlerBox {
    let handler: (Int32) -> Bool
    init(_ handler: @escaping (Int32) -> Bool) { self.handler = handler }
}

/// A database's wal-index (`-shm`) as SQLite maps it, read-only: its header tells the last
/// committed frame of the write-ahead log, the log's salts and how far it was checkpointed.
public final class WALIndex {
    private let region: UnsafeMutableRawPointer
    /// The connection whose mapping this is: the mapping lives as long as it does.
    private let connection: SQLiteDatabase

    init(region: UnsafeMutableRawPointer, connection: SQLiteDatabase) {
        self.region = region
        self.connection = connection
    }

    /// The header, read consistently; nil when no consistent read could be made right now (a
    /// writer was busy) or the index is not initialised.
    public func header() -> WALIndexHeader? {
        var raw = offsite_wal_index_header()
        guard offsite_wal_index_read(region, &raw) == 0 else { return nil }
        let salt = withUnsafeBytes(of: raw.salt) { Array($0) }
        return WALIndexHeader(change: raw.change, pageSize: Int(raw.pageSize), maxFrame: raw.maxFrame, pageCount: raw.pageCount,
                              frameChecksum: (raw.frameChecksum.0, raw.frameChecksum.1), salt: salt, backfilled: raw.backfilled)
    }
}

/// What the wal-index header says (see `WALIndex`).
public struct WALIndexHeader: Sendable, Equatable {
    /// Counts commits.
    public var change: UInt32
    /// The database's page size.
    public var pageSize: Int
    /// The last committed frame of the log (0: the log is empty).
    public var maxFrame: UInt32
    /// The database's size in pages after the last commit.
    public var pageCount: UInt32
    /// The cumulative checksum of frame `maxFrame`, as its frame header holds it.
    public var frameChecksum: (UInt32, UInt32)
    /// The log header's salts, the 8 bytes as they are stored there.
    public var salt: [UInt8]
    /// Frames copied into the database (`nBackfill`).
    public var backfilled: UInt32

    public static func == (lhs: WALIndexHeader, rhs: WALIndexHeader) -> Bool {
        lhs.change == rhs.change && lhs.pageSize == rhs.pageSize && lhs.maxFrame == rhs.maxFrame && lhs.pageCount == rhs.pageCount
            && lhs.frameChecksum == rhs.frameChecksum && lhs.salt == rhs.salt && lhs.backfilled == rhs.backfilled
    }
}

/// A compiled statement. Bind with 1-based indexes, read columns with 0-based indexes.
public final class SQLiteStatement {
    let statement: OpaquePointer
    let database: SQLiteDatabase

    init(statement: OpaquePointer, database: SQLiteDatabase) {
        self.statement = statement
        self.database = database
    }

    deinit {
        sqlite3_finalize(statement)
    }

    /// A value that can be bound to a parameter.
    public enum Value: Sendable, Equatable {
        case null
        case integer(Int64)
        case real(Double)
        case text(String)
        case blob([UInt8])
    }

    /// Binds `values` to parameters 1…n, after resetting the statement.
    public func bind(_ values: [Value]) throws {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(statement, index)
            case let .integer(v): rc = sqlite3_bind_int64(statement, index, v)
            case let .real(v): rc = sqlite3_bind_double(statement, index, v)
            case let .text(v): rc = sqlite3_bind_text(statement, index, v, -1, offsite_sqlite_transient())
            case let .blob(v):
                rc = v.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), offsite_sqlite_transient()) }
            }
            try database.check(rc, "bind")
        }
    }

    /// Binds `values` and runs the statement to completion.
    public func run(_ values: [Value] = []) throws {
        try bind(values)
        while try step() {}
    }

    /// Steps once: true when a row is available, false when done.
    public func step() throws -> Bool {
        let rc = sqlite3_step(statement)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        let error = SQLiteError(code: rc, operation: "step", path: database.path,
                                detail: String(cString: sqlite3_errmsg(database.handle)))
        sqlite3_reset(statement)
        throw error
    }

    /// Whether column `index` of the current row is NULL.
    public func isNull(at index: Int32) -> Bool { sqlite3_column_type(statement, index) == SQLITE_NULL }
    /// Column `index` of the current row as an integer.
    public func int64(at index: Int32) -> Int64 { sqlite3_column_int64(statement, index) }
    /// Column `index` of the current row as a double.
    public func double(at index: Int32) -> Double { sqlite3_column_double(statement, index) }
    /// Column `index` of the current row as text, nil for NULL.
    public func text(at index: Int32) -> String? {
        guard let pointer = sqlite3_column_text(statement, index) else { return nil }
        return String(cString: pointer)
    }
}
