import Foundation

/// Tells whether a database really changed, as SQLite sees it: `PRAGMA data_version` on a
/// long-lived connection changes exactly when another connection commits. A file event alone
/// (a checkpoint, a read that touched `-shm`) is not a change.
public final class ChangeDetector {
    /// The database watched.
    public let path: String
    private var connection: SQLiteDatabase?
    private var lastVersion: Int64?
    private var inode: UInt64 = 0

    /// Starts watching the database at `path`; the first `hasChanged()` answers false.
    public init(path: String) {
        self.path = path
        _ = poll()
    }

    /// Whether the database changed since the last call. A file that was replaced (another inode)
    /// counts as changed, so a replaced database is backed up rather than missed; a missing
    /// file does not.
    public func hasChanged() -> Bool {
        poll()
    }

    private func poll() -> Bool {
        do {
            var info = stat()
            guard stat(path, &info) == 0 else {
                // Gone (deleted, or being replaced): nothing to back up until it is back.
                connection = nil
                inode = 0
                return false
            }
            let currentInode = UInt64(info.st_ino)
            if connection != nil && currentInode != inode {
                connection = nil  // the file was replaced: the old connection sees the old file
            }
            if connection == nil {
                inode = currentInode
                let database = try SQLiteDatabase(path: path, mode: .readWrite, busyTimeout: .milliseconds(200))
                try database.execute("PRAGMA query_only = 1")
                connection = database
                let version = try database.scalarInt("PRAGMA data_version")
                defer { lastVersion = version }
                return lastVersion != nil
            }
            let version = try connection!.scalarInt("PRAGMA data_version")
            defer { lastVersion = version }
            return version != lastVersion
        } catch {
            connection = nil
            return lastVersion != nil
        }
    }

    /// Closes the connection (for example before an in-place restore); the next call reopens it.
    public func close() {
        connection = nil
    }
}
