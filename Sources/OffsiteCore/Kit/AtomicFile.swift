import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file that appears whole or not at all: written under a temporary name beside its final one,
/// flushed to disk, renamed (or linked) into place, and its folder flushed, so that a crash leaves
/// the old state or the whole new file, never a part of it.
///
/// No failure is passed over. The one thing not reported is a file system that cannot sync
/// folders at all (`fsyncDirectory`: nothing more can be done there). A folder sync that fails
/// after the rename is thrown as well: the file is in place then, but may not survive a crash,
/// so the caller must not call it durable (a target upload fails, and is taken again).
///
/// An unnamed temporary (`init(unnamedIn:)`) never has a name: a spool that is written, read
/// back through `temporaryPath` and discarded, never put in place (nothing is left of it after
/// a crash).
public final class AtomicFile: ByteSink {
    /// Where the bytes are while they are written: the temporary's name, or for an unnamed one
    /// a path that opens it again (`/proc/self/fd/N`) while this object lives.
    public let temporaryPath: String
    /// The bytes written so far.
    public private(set) var byteCount: Int64 = 0
    private var descriptor: Int32
    private let isNamed: Bool
    private let syncsOnFinish: Bool
    private var isSynced = false
    private var isFinished = false
    private var isDone = false

    /// A new temporary at `temporaryPath`, created exclusively with `mode`. With `syncsOnFinish`
    /// false, `finish()` only closes it and the caller may `sync()` it meanwhile on another thread
    /// (restore checks the file while it goes to disk); `commit` syncs it if nobody did.
    public init(temporaryPath: String, mode: mode_t = 0o600, syncsOnFinish: Bool = true) throws {
        self.temporaryPath = temporaryPath
        self.syncsOnFinish = syncsOnFinish
        isNamed = true
        descriptor = try openDescriptor(temporaryPath, O_WRONLY | O_CREAT | O_EXCL, mode, operation: "create")
        // The umask may have narrowed the mode; set exactly what was asked for.
        if fchmod(descriptor, mode) != 0 {
            let error = FileIOError(operation: "chmod", path: temporaryPath, code: errno)
            close(descriptor)
            unlink(temporaryPath)
            throw error
        }
    }

    /// A new temporary beside `finalPath`, hidden and unique (`.NAME.tmp-HEX`, `makeTemporaryPath`).
    public convenience init(beside finalPath: String, mode: mode_t = 0o600) throws {
        try self.init(temporaryPath: makeTemporaryPath(nextTo: finalPath), mode: mode)
    }

    /// A temporary without a name in `folder` (mode 0600), readable through `temporaryPath`.
    public init(unnamedIn folder: String) throws {
        descriptor = try openUnlinkedTemporaryFile(in: folder)
        #if os(Linux)
        temporaryPath = "/proc/self/fd/\(descriptor)"
        #else
        temporaryPath = "/dev/fd/\(descriptor)"
        #endif
        isNamed = false
        syncsOnFinish = false
    }

    /// Closes the file; a named temporary that was neither committed nor discarded stays on disk
    /// (its owner's start-up removes leftovers by their names).
    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard descriptor >= 0, !isFinished else { throw FileIOError(operation: "write", path: temporaryPath, code: EBADF) }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        try writeFully(descriptor, base, bytes.count, path: temporaryPath)
        byteCount += Int64(bytes.count)
    }

    /// The end of the bytes: a named temporary is synced (unless told otherwise) and closed; an
    /// unnamed one stays open to be read back. Once is enough; later calls do nothing.
    public func finish() throws {
        guard !isFinished, !isDone else { return }
        isFinished = true
        guard isNamed else { return }
        if syncsOnFinish { try sync() }
        let closing = descriptor
        descriptor = -1
        if close(closing) != 0 { throw FileIOError(operation: "close", path: temporaryPath, code: errno) }
    }

    /// Flushes what was written to disk (fsync). After `finish`, it may run on another thread
    /// while this one reads the file by its name.
    public func sync() throws {
        if descriptor >= 0 {
            try syncDescriptor(descriptor, path: temporaryPath)
        } else {
            try syncFile(at: temporaryPath)
        }
        isSynced = true
    }

    /// Puts the file in place at `finalPath`: finished and synced if it was not yet, renamed onto
    /// `finalPath` (replacing what is there) or, unless `replacing`, linked there (an existing
    /// file is never touched: `FileIOError` with EEXIST) and the temporary name removed; then the
    /// folder is synced. On failure before the rename the temporary is left for `discard`.
    public func commit(as finalPath: String, replacing: Bool = true) throws {
        precondition(isNamed, "an unnamed temporary is never put in place")
        guard !isDone else { throw FileIOError(operation: "commit", path: temporaryPath, code: EBADF) }
        if !isFinished { try finish() }
        try AtomicFile.putInPlace(temporaryPath, as: finalPath, replacing: replacing, isSynced: isSynced)
        isDone = true
    }

    /// Removes the temporary (closing it); for a write that failed. Never throws.
    public func discard() {
        if descriptor >= 0 {
            close(descriptor)
            descriptor = -1
        }
        if isNamed && !isDone { unlink(temporaryPath) }
        isDone = true
    }

    /// The end of an atomic write whose temporary someone else wrote (SQLite's backup of a
    /// snapshot): syncs `temporaryPath` unless `isSynced`, renames (or, unless `replacing`, links)
    /// it onto `finalPath`, and syncs the folders involved.
    public static func putInPlace(_ temporaryPath: String, as finalPath: String, replacing: Bool = true,
                                  isSynced: Bool = false) throws {
        if !isSynced { try syncFile(at: temporaryPath) }
        if replacing {
            if rename(temporaryPath, finalPath) != 0 {
                throw FileIOError(operation: "rename \(temporaryPath) to", path: finalPath, code: errno)
            }
        } else {
            // link() refuses to replace an existing file, so a file created meanwhile is never clobbered.
            if link(temporaryPath, finalPath) != 0 { throw FileIOError(operation: "link", path: finalPath, code: errno) }
            unlink(temporaryPath)
        }
        let finalFolder = parentDirectory(of: finalPath)
        try fsyncDirectory(finalFolder)
        let temporaryFolder = parentDirectory(of: temporaryPath)
        if temporaryFolder != finalFolder { try fsyncDirectory(temporaryFolder) }
    }
}
