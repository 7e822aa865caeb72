import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Another agent holds the lock on the local folder.
public struct AgentLockError: UserFacingError, Equatable {
    /// The local folder both agents want.
    public var folder: String
    /// The holder's process id as it wrote it, or nil when it had not written it yet.
    public var holderPID: Int32?
    /// The holder's host name (a container id in Docker), or nil.
    public var holderHost: String?
    /// When the holder started (ISO 8601, as it wrote it), or nil.
    public var holderStartedAt: String?

    /// Creates an error.
    public init(folder: String, holderPID: Int32?, holderHost: String?, holderStartedAt: String?) {
        self.folder = folder
        self.holderPID = holderPID
        self.holderHost = holderHost
        self.holderStartedAt = holderStartedAt
    }

    /// `another offsite agent (pid 1234 on host a1b2c3, started 2026-11-22T03:17:00Z) is using /backups`.
    public var message: String {
        var details: [String] = []
        if let holderPID {
            details.append("pid \(holderPID)" + (holderHost.map { " on host \($0)" } ?? ""))
        }
        if let holderStartedAt { details.append("started \(holderStartedAt)") }
        let who = details.isEmpty ? "" : " (\(details.joined(separator: ", ")))"
        return "another offsite agent\(who) is using \(folder)"
    }

    /// What to do about it.
    public var hint: String? {
        "stop the other agent first, or give this one its own local folder"
    }
}

/// The lock that keeps two agents off one local folder: `FOLDER/.offsite.lock` (0600), held with
/// `flock(LOCK_EX | LOCK_NB)` for the agent's lifetime, holding the holder's pid, host and start
/// time so that a second agent can name it.
///
/// It is the lock, not the file, that counts: the kernel drops the lock when the process ends in
/// any way (even `kill -9`), so a file left behind by a dead agent does not block the next one.
/// The file is never removed (removing it would let two agents lock two different files).
/// The lock belongs to the open file: a second `acquire` in the same process fails too.
public final class AgentLock: @unchecked Sendable {
    /// The lock file's name.
    public static let fileName = ".offsite.lock"

    /// The lock file.
    public let path: String
    private let lock = NSLock()
    private var descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit {
        release()
    }

    /// Takes the lock on `folder` (created 0700 when missing) and writes this process's pid, host
    /// and `startedAt` into the lock file. Throws `AgentLockError` naming the holder when another
    /// agent has it, `FileIOError` when the file cannot be opened.
    public static func acquire(folder: String, startedAt: Date = Date()) throws -> AgentLock {
        try makePrivateDirectory(folder)
        let path = (folder as NSString).appendingPathComponent(fileName)
        var descriptor: Int32
        repeat {
            descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        } while descriptor < 0 && errno == EINTR
        guard descriptor >= 0 else { throw FileIOError(operation: "open lock file", path: path, code: errno) }

        var result: Int32
        repeat {
            result = flock(descriptor, LOCK_EX | LOCK_NB)
        } while result != 0 && errno == EINTR
        if result != 0 {
            let code = errno
            defer { close(descriptor) }
            guard code == EWOULDBLOCK else { throw FileIOError(operation: "lock", path: path, code: code) }
            let holder = readHolder(descriptor)
            throw AgentLockError(folder: folder, holderPID: holder["pid"].flatMap { Int32($0) },
                                 holderHost: holder["host"], holderStartedAt: holder["started"])
        }

        // Ours now: make the file private and say who we are.
        let text = "pid=\(getpid())\nhost=\(currentHostName())\nstarted=\(formatISO8601(startedAt))\n"
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }
        guard fchmod(descriptor, 0o600) == 0, ftruncate(descriptor, off_t(bytes.count)) == 0, written == bytes.count else {
            let code = errno
            close(descriptor)
            throw FileIOError(operation: "write lock file", path: path, code: code)
        }
        return AgentLock(path: path, descriptor: descriptor)
    }

    /// Whether the lock is still held by this object.
    public var isHeld: Bool {
        lock.lock()
        defer { lock.unlock() }
        return descriptor >= 0
    }

    /// Empties the lock file and drops the lock; later calls do nothing.
    public func release() {
        lock.lock()
        defer { lock.unlock() }
        guard descriptor >= 0 else { return }
        // Still locked while emptying it, so no one reads a half-cleared holder.
        _ = ftruncate(descriptor, 0)
        close(descriptor)  // closing the last descriptor of the open file drops the flock
        descriptor = -1
    }

    /// The `key=value` lines of the lock file (the holder writes them right after locking, so
    /// they may be missing for a moment).
    private static func readHolder(_ descriptor: Int32) -> [String: String] {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, $0.count, 0) }
        guard count > 0 else { return [:] }
        var fields: [String: String] = [:]
        for line in String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            // Only printable text of sane length goes into the error message.
            guard parts.count == 2, parts[1].count <= 100,
                  parts[1].unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) else { continue }
            fields[String(parts[0])] = String(parts[1])
        }
        return fields
    }
}

/// This machine's host name (a container's id in Docker), or `unknown`.
private func currentHostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
    let name = String(cString: buffer)
    return name.isEmpty ? "unknown" : name
}
