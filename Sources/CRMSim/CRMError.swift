import OffsiteCore

/// Why generating, writing or checking the simulated CRM database failed.
public enum CRMError: UserFacingError, Equatable {
    /// The output file (or its -wal/-shm companion) already exists.
    case fileExists(String)
    /// The requested size is not a positive number of MiB.
    case invalidSize(Int)
    /// The requested write rate is not positive.
    case invalidRate(Double)
    /// SQLite would not switch the new database to WAL (it stayed in the named mode).
    case journalModeUnchanged(String, String)
    /// The database lacks the CRM tables.
    case notACRMDatabase(String)

    /// What failed, in one line.
    public var message: String {
        switch self {
        case let .fileExists(path): return "refusing to overwrite existing file \(path)"
        case let .invalidSize(size): return "invalid size \(size) MiB: must be at least 1"
        case let .invalidRate(rate): return "invalid rate \(rate) transactions/s: must be positive"
        case let .journalModeUnchanged(path, mode): return "\(path) stayed in journal mode \(mode) instead of wal"
        case let .notACRMDatabase(path): return "\(path) is not a CRM database (no app_counters table)"
        }
    }

    /// What to try.
    public var hint: String? {
        switch self {
        case .fileExists: return "choose a new path or delete the file first"
        case .invalidSize, .invalidRate, .journalModeUnchanged: return nil
        case .notACRMDatabase: return "create one with `offsite-crm generate --out PATH --size-mib N`"
        }
    }
}
