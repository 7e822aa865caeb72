import Foundation

/// Why an entry of a file set is not in a snapshot.
public enum SkipReason: Sendable, Equatable {
    /// It could not be opened or read (the system's words).
    case unreadable(String)
    /// It kept changing while it was read, every time it was read.
    case changedWhileRead
    /// A socket, FIFO or device: not something a file set holds.
    case unsupported(String)
}

/// An entry left out of a snapshot, and why.
public struct SkippedEntry: Sendable, Equatable {
    /// The path relative to the set's folder.
    public var path: String
    /// Why it was left out.
    public var reason: SkipReason

    /// One line for a log: `invoices/a.pdf: unreadable (Permission denied)`.
    public var description: String {
        switch reason {
        case let .unreadable(detail): return "\(path): unreadable (\(detail))"
        case .changedWhileRead: return "\(path): changed while it was read, every time"
        case let .unsupported(kind): return "\(path): not backed up (\(kind))"
        }
    }
}

/// What the walk found at one path, with what reading it needs.
struct WalkedEntry {
    /// The entry, without blobs.
    var entry: FileEntry
    /// The folder that holds it, open (for `openat`); -1 for the root.
    var parent: Int32
    /// Its name in that folder.
    var name: [UInt8]
    /// The raw `lstat` of the walk.
    var status: stat
}

/// Walks a set's folder depth-first with names sorted bytewise — manifest order — without ever
/// following a symbolic link (but the root's own path), leaving out what `isLeftOut` says, and
/// reporting what cannot be read. Folders are opened relative to their parent (`openat` with
/// `O_NOFOLLOW`), so a folder replaced by a link meanwhile is not followed either.
struct TreeWalker {
    /// The set's folder.
    let root: String
    /// Whether a path (relative, parts joined by `/`) is left out; the flag says whether it is a folder.
    let isLeftOut: ([UInt8], Bool) -> Bool
    /// Called for what is left out because it cannot be read or is not supported.
    let skip: (SkippedEntry) -> Void
    /// Called before each folder is read, to stop a walk (cancellation).
    var checkpoint: () throws -> Void = {}

    /// Walks the tree, calling `visit` for each entry in manifest order (the root first, as `.`).
    func walk(_ visit: (WalkedEntry) throws -> Void) throws {
        let descriptor = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw FileIOError(operation: "open folder", path: root, code: errno)
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw FileIOError(operation: "stat", path: root, code: errno) }
        try visit(WalkedEntry(entry: TreeWalker.entry(path: FileEntry.rootPath, status: status, type: .directory),
                              parent: -1, name: [], status: status))
        try walkFolder(descriptor, prefix: [], visit)
    }

    private func walkFolder(_ folder: Int32, prefix: [UInt8], _ visit: (WalkedEntry) throws -> Void) throws {
        try checkpoint()
        let names: [[UInt8]]
        do {
            names = try TreeWalker.names(in: folder)
        } catch let error as FileIOError {
            skip(SkippedEntry(path: prefix.isEmpty ? "." : String(decoding: prefix, as: UTF8.self),
                              reason: .unreadable(String(cString: strerror(error.code)))))
            return
        }
        for name in names {
            let path = prefix.isEmpty ? name : prefix + [UInt8(ascii: "/")] + name
            func display() -> String { String(decoding: path, as: UTF8.self) }
            var status = stat()
            let found = name.withUnsafeBufferPointer { buffer -> Int32 in
                buffer.withMemoryRebound(to: CChar.self) { chars in
                    var cName = Array(chars)
                    cName.append(0)
                    return fstatat(folder, cName, &status, AT_SYMLINK_NOFOLLOW)
                }
            }
            if found != 0 {
                if errno == ENOENT { continue }  // removed while walking
                skip(SkippedEntry(path: display(), reason: .unreadable(String(cString: strerror(errno)))))
                continue
            }
            switch status.st_mode & S_IFMT {
            case S_IFDIR:
                if isLeftOut(path, true) { continue }
                let child = TreeWalker.openAt(folder, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                guard child >= 0 else {
                    if errno == ENOENT { continue }
                    skip(SkippedEntry(path: display(), reason: .unreadable(String(cString: strerror(errno)))))
                    continue
                }
                defer { close(child) }
                var opened = stat()
                if fstat(child, &opened) == 0 { status = opened }
                try visit(WalkedEntry(entry: TreeWalker.entry(path: path, status: status, type: .directory),
                                      parent: folder, name: name, status: status))
                try walkFolder(child, prefix: path, visit)
            case S_IFREG:
                if isLeftOut(path, false) { continue }
                try visit(WalkedEntry(entry: TreeWalker.entry(path: path, status: status, type: .file),
                                      parent: folder, name: name, status: status))
            case S_IFLNK:
                if isLeftOut(path, false) { continue }
                guard let target = TreeWalker.readLink(folder, name) else {
                    if errno == ENOENT { continue }
                    skip(SkippedEntry(path: display(), reason: .unreadable(String(cString: strerror(errno)))))
                    continue
                }
                var entry = TreeWalker.entry(path: path, status: status, type: .symlink)
                entry.linkTarget = target
                entry.size = Int64(target.count)
                try visit(WalkedEntry(entry: entry, parent: folder, name: name, status: status))
            default:
                if isLeftOut(path, false) { continue }
                let kind: String
                switch status.st_mode & S_IFMT {
                case S_IFSOCK: kind = "a socket"
                case S_IFIFO: kind = "a FIFO"
                case S_IFCHR: kind = "a character device"
                case S_IFBLK: kind = "a block device"
                default: kind = "an unknown kind of file"
                }
                skip(SkippedEntry(path: display(), reason: .unsupported(kind)))
            }
        }
    }

    /// The entry `status` describes at `path`.
    static func entry(path: [UInt8], status: stat, type: FileEntryType) -> FileEntry {
        FileEntry(type: type, path: path, mode: UInt32(status.st_mode) & 0o7777, uid: UInt32(status.st_uid),
                  gid: UInt32(status.st_gid), modified: FileTime(status.st_mtim),
                  size: type == .file ? Int64(status.st_size) : 0,
                  change: ChangeKey(inode: UInt64(status.st_ino), changed: FileTime(status.st_ctim)))
    }

    /// The names in the open folder, without `.` and `..`, sorted bytewise.
    static func names(in folder: Int32) throws -> [[UInt8]] {
        let copy = dup(folder)
        guard copy >= 0, let directory = fdopendir(copy) else {
            let code = errno
            throw FileIOError(operation: "list", path: "folder", code: code)
        }
        defer { closedir(directory) }
        rewinddir(directory)
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let item = readdir(directory) else {
                if errno != 0 { throw FileIOError(operation: "list", path: "folder", code: errno) }
                break
            }
            let name = withUnsafeBytes(of: item.pointee.d_name) { raw in
                Array(raw.prefix { $0 != 0 })
            }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            names.append(name)
        }
        names.sort { $0.lexicographicallyPrecedes($1) }
        return names
    }

    /// `openat(folder, name, flags | O_CLOEXEC)`, retrying on EINTR.
    static func openAt(_ folder: Int32, _ name: [UInt8], _ flags: Int32) -> Int32 {
        var cName = name.map { CChar(bitPattern: $0) }
        cName.append(0)
        while true {
            let descriptor = openat(folder, cName, flags | O_CLOEXEC)
            if descriptor >= 0 || errno != EINTR { return descriptor }
        }
    }

    /// A link's target, or nil (errno set).
    static func readLink(_ folder: Int32, _ name: [UInt8]) -> [UInt8]? {
        var cName = name.map { CChar(bitPattern: $0) }
        cName.append(0)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBufferPointer { out in
            out.withMemoryRebound(to: CChar.self) { readlinkat(folder, cName, $0.baseAddress!, $0.count) }
        }
        guard count > 0 else { return nil }
        return Array(buffer[0..<count])
    }
}
