import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed file-system call: the operation, the path and the system's own words for `errno`.
public struct FileIOError: UserFacingError, Equatable {
    /// What was being done (`create`, `write`, `fsync`, `rename`, …).
    public var operation: String
    /// The file or folder it was done on.
    public var path: String
    /// The `errno` value.
    public var code: Int32

    /// Creates an error for `operation` on `path` with `errno` value `code`.
    public init(operation: String, path: String, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var message: String {
        "\(operation) \(path): \(String(cString: strerror(code)))"
    }

    public var hint: String? {
        switch code {
        case EEXIST: return "the file already exists; remove it or choose another name"
        case EACCES, EPERM: return "check the owner and permissions of the file and its folder"
        case ENOSPC, EDQUOT: return "the disk is full; free some space"
        case ENOENT: return "check that the path exists"
        case EROFS: return "the file system is mounted read-only"
        default: return nil
        }
    }

    /// Whether the error says the file or folder does not exist.
    public var isNotFound: Bool { code == ENOENT }
}

/// Throws a `FileIOError` for the current `errno`.
private func failure(_ operation: String, _ path: String) -> FileIOError {
    FileIOError(operation: operation, path: path, code: errno)
}

/// Opens `path` with `flags` (and `mode` when creating), retrying on EINTR.
func openDescriptor(_ path: String, _ flags: Int32, _ mode: mode_t = 0, operation: String) throws -> Int32 {
    while true {
        let descriptor = open(path, flags | O_CLOEXEC, mode)
        if descriptor >= 0 { return descriptor }
        if errno != EINTR { throw failure(operation, path) }
    }
}

/// Writes all `count` bytes at `start` to `descriptor`, retrying short writes and EINTR.
func writeFully(_ descriptor: Int32, _ start: UnsafeRawPointer, _ count: Int, path: String) throws {
    var written = 0
    while written < count {
        let result = write(descriptor, start + written, count - written)
        if result < 0 {
            if errno == EINTR { continue }
            throw failure("write", path)
        }
        written += result
    }
}

/// Writes the bytes from `start` up to `end` of the open file `descriptor` to `sink`, through
/// `buffer`; the range must be in the file. `path` names the file in errors.
func writeRange(of descriptor: Int32, from start: Int64, to end: Int64, into sink: any ByteSink,
                buffer: UnsafeMutableRawBufferPointer, path: String) throws {
    var offset = start
    while offset < end {
        let count = Int(min(Int64(buffer.count), end - offset))
        let got = pread(descriptor, buffer.baseAddress!, count, off_t(offset))
        if got < 0 {
            if errno == EINTR { continue }
            throw failure("read", path)
        }
        if got == 0 { throw FileIOError(operation: "read", path: path, code: EIO) }
        try sink.write(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
        offset += Int64(got)
    }
}

/// Flushes `descriptor` to stable storage, retrying on EINTR.
func syncDescriptor(_ descriptor: Int32, path: String) throws {
    while fsync(descriptor) != 0 {
        if errno == EINTR { continue }
        throw failure("fsync", path)
    }
}

/// Writes the file at `path`'s data and metadata to disk (fsync).
func syncFile(at path: String) throws {
    let descriptor = try openDescriptor(path, O_RDONLY, operation: "open")
    defer { close(descriptor) }
    try syncDescriptor(descriptor, path: path)
}

/// A sink that writes into a new file: created exclusively (never overwrites) with mode 0600,
/// written through a fixed buffer, and made durable by `finish()` (flush, fsync, close).
/// A sink dropped before `finish()` closes its file but leaves it on disk: call `discard()`.
public final class FileSink: ByteSink {
    /// The file being written.
    public let path: String
    /// Whether `finish()` fsyncs; without, the caller syncs the file itself (`syncFile(at:)`).
    private let syncsOnFinish: Bool
    private var descriptor: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    /// Bytes written so far (including those still buffered).
    public private(set) var byteCount: Int64 = 0

    /// Creates `path` (failing with EEXIST when it exists) with `mode`, buffering `bufferSize` bytes.
    /// With `syncsOnFinish` false, `finish()` only flushes and closes.
    public init(creating path: String, mode: mode_t = 0o600, bufferSize: Int = 1 << 20, syncsOnFinish: Bool = true) throws {
        self.path = path
        self.syncsOnFinish = syncsOnFinish
        descriptor = try openDescriptor(path, O_WRONLY | O_CREAT | O_EXCL, mode, operation: "create")
        // The umask may have narrowed the mode; set exactly what was asked for.
        if fchmod(descriptor, mode) != 0 {
            let error = failure("chmod", path)
            close(descriptor)
            unlink(path)
            throw error
        }
        buffer = .allocate(byteCount: max(bufferSize, 1), alignment: 1)
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
        buffer.deallocate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard descriptor >= 0 else { throw FileIOError(operation: "write", path: path, code: EBADF) }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if buffered + bytes.count <= buffer.count {
            buffer.baseAddress!.advanced(by: buffered).copyMemory(from: base, byteCount: bytes.count)
            buffered += bytes.count
        } else {
            try flushBuffer()
            if bytes.count >= buffer.count {
                try writeFully(descriptor, base, bytes.count, path: path)
            } else {
                buffer.baseAddress!.copyMemory(from: base, byteCount: bytes.count)
                buffered = bytes.count
            }
        }
        byteCount += Int64(bytes.count)
    }

    /// Writes out the buffer, fsyncs (unless told not to) and closes the file.
    public func finish() throws {
        guard descriptor >= 0 else { throw FileIOError(operation: "finish", path: path, code: EBADF) }
        try flushBuffer()
        if syncsOnFinish { try syncDescriptor(descriptor, path: path) }
        let descriptor = self.descriptor
        self.descriptor = -1
        if close(descriptor) != 0 { throw failure("close", path) }
    }

    /// Closes the file without syncing and removes it; for a write that failed. Never throws.
    public func discard() {
        if descriptor >= 0 {
            close(descriptor)
            descriptor = -1
        }
        unlink(path)
    }

    private func flushBuffer() throws {
        guard buffered > 0 else { return }
        try writeFully(descriptor, buffer.baseAddress!, buffered, path: path)
        buffered = 0
    }
}

/// Streams the file at `path` into `sink` in chunks of `bufferSize` bytes, without finishing
/// the sink; returns the number of bytes read.
@discardableResult
public func readFile(at path: String, into sink: any ByteSink, bufferSize: Int = 1 << 20) throws -> Int64 {
    let descriptor = try openDescriptor(path, O_RDONLY, operation: "open")
    defer { close(descriptor) }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bufferSize, 1), alignment: 1)
    defer { buffer.deallocate() }
    var total: Int64 = 0
    while true {
        let count = read(descriptor, buffer.baseAddress!, buffer.count)
        if count < 0 {
            if errno == EINTR { continue }
            throw failure("read", path)
        }
        if count == 0 { return total }
        try sink.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        total += Int64(count)
    }
}

/// Reads at most `count` bytes from the start of the file at `path` (fewer when it is shorter).
public func readPrefix(of path: String, count: Int) throws -> [UInt8] {
    let descriptor = try openDescriptor(path, O_RDONLY, operation: "open")
    defer { close(descriptor) }
    var bytes = [UInt8](repeating: 0, count: count)
    var filled = 0
    while filled < count {
        let result = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + filled, count - filled) }
        if result < 0 {
            if errno == EINTR { continue }
            throw failure("read", path)
        }
        if result == 0 { break }
        filled += result
    }
    return Array(bytes[0..<filled])
}

/// Flushes the file at `path` (written by someone else, such as SQLite) to stable storage.
public func fsyncFile(_ path: String) throws {
    let descriptor = try openDescriptor(path, O_RDONLY, operation: "open")
    defer { close(descriptor) }
    try syncDescriptor(descriptor, path: path)
}

/// Flushes the folder at `path` so that files created, renamed or removed in it survive a crash.
public func fsyncDirectory(_ path: String) throws {
    let descriptor = try openDescriptor(path, O_RDONLY | O_DIRECTORY, operation: "open folder")
    defer { close(descriptor) }
    while fsync(descriptor) != 0 {
        switch errno {
        case EINTR: continue
        // Some file systems cannot sync a folder; there is nothing more to do there.
        case EINVAL, ENOTSUP: return
        default: throw failure("fsync folder", path)
        }
    }
}

/// The folder part of `path` (`.` when it has none).
func parentDirectory(of path: String) -> String {
    let parent = (path as NSString).deletingLastPathComponent
    return parent.isEmpty ? "." : parent
}

/// Creates the folder at `path` and any missing parents (like `mkdir -p`); the folders it creates
/// get mode 0700, folders that already exist are left as they are.
public func makePrivateDirectory(_ path: String) throws {
    if let isFolder = isDirectory(path) {
        guard isFolder else { throw FileIOError(operation: "create folder", path: path, code: ENOTDIR) }
        return
    }
    let parent = parentDirectory(of: path)
    if parent != path && parent != "/" && parent != "." {
        try makePrivateDirectory(parent)
    }
    if mkdir(path, 0o700) != 0 {
        // Created meanwhile by someone else: fine when it is a folder.
        if errno == EEXIST && isDirectory(path) == true { return }
        throw failure("create folder", path)
    }
    // The umask may have narrowed the mode; these folders are ours and private.
    if chmod(path, 0o700) != 0 { throw failure("chmod", path) }
}

/// Whether `path` is a folder (following symbolic links), nil when nothing is there.
private func isDirectory(_ path: String) -> Bool? {
    var status = stat()
    guard stat(path, &status) == 0 else { return nil }
    return (status.st_mode & S_IFMT) == S_IFDIR
}

/// Removes the file at `path` if there is one; never throws.
public func removeFileIfPresent(_ path: String) {
    unlink(path)
}

/// A new file in `folder` (mode 0600) that has no name, open for reading and writing: it goes away
/// with its last descriptor, whatever happens to the process. Falls back to creating a hidden
/// file and unlinking it at once where `O_TMPFILE` is not supported.
public func openUnlinkedTemporaryFile(in folder: String) throws -> Int32 {
    let temporaryFileFlag: Int32 = 0o20000000 | O_DIRECTORY  // O_TMPFILE, which Glibc only declares with _GNU_SOURCE
    let anonymous = open(folder, temporaryFileFlag | O_RDWR | O_CLOEXEC, 0o600)
    if anonymous >= 0 { return anonymous }
    let path = makeTemporaryPath(nextTo: (folder as NSString).appendingPathComponent("spill"))
    let descriptor = try openDescriptor(path, O_RDWR | O_CREAT | O_EXCL, 0o600, operation: "create")
    unlink(path)
    return descriptor
}

/// A path for a temporary file next to `finalPath`, hidden and unique: `.<name>.tmp-<random>`.
public func makeTemporaryPath(nextTo finalPath: String) -> String {
    let name = (finalPath as NSString).lastPathComponent
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    let folder = (finalPath as NSString).deletingLastPathComponent
    let temporaryName = ".\(name).tmp-\(suffix)"
    return folder.isEmpty ? temporaryName : (folder as NSString).appendingPathComponent(temporaryName)
}

/// The size in bytes of the file at `path`.
public func fileSize(at path: String) throws -> Int64 {
    var status = stat()
    guard stat(path, &status) == 0 else { throw failure("stat", path) }
    return Int64(status.st_size)
}

/// Whether something (a file, a folder, a link) exists at `path`.
public func pathExists(_ path: String) -> Bool {
    var status = stat()
    return lstat(path, &status) == 0
}

/// Whether `first` and `second` name the same existing file (same device and inode).
public func isSameFile(_ first: String, _ second: String) -> Bool {
    var a = stat()
    var b = stat()
    guard stat(first, &a) == 0, stat(second, &b) == 0 else { return false }
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino
}
