import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Looks at a SQLite database's file locks to tell whether another process has it open. The
/// application may run in another container, so processes cannot be listed; locks are shared
/// through the file system.
///
/// A connection in WAL mode holds a shared lock on the `-shm` file's DMS byte for as long as it is
/// open; any connection reading or writing holds locks in the database file's lock-byte range.
/// An idle connection to a rollback-journal database holds no lock and cannot be seen.
public enum LockProbe {
    /// One lock another process holds.
    public struct Holder: Sendable, Equatable, CustomStringConvertible {
        /// The file the lock is on.
        public var file: String
        /// The holder's pid, 0 when it lives in another pid namespace.
        public var pid: Int32

        public var description: String {
            pid > 0 ? "pid \(pid) holds a lock on \(file)" : "a process in another container holds a lock on \(file)"
        }
    }

    /// Every lock found on the database at `path` and its `-shm` file.
    public static func holders(ofDatabaseAt path: String) -> [Holder] {
        var found: [Holder] = []
        // SQLite's lock bytes: PENDING at 1 GiB, RESERVED after it, then the 510-byte SHARED range.
        let pendingByte: Int = 0x4000_0000
        if let holder = probe(file: path, start: pendingByte, length: 512) { found.append(holder) }
        // WAL index: the eight WAL locks at 120 and the DMS byte at 128.
        if let holder = probe(file: path + "-shm", start: 120, length: 9) { found.append(holder) }
        return found
    }

    static func probe(file: String, start: Int, length: Int) -> Holder? {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = off_t(start)
        lock.l_len = off_t(length)
        guard fcntl(fd, F_GETLK, &lock) == 0, lock.l_type != Int16(F_UNLCK) else { return nil }
        return Holder(file: (file as NSString).lastPathComponent, pid: lock.l_pid)
    }
}
