import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A target in a local or mounted folder (`file:///mnt/usb/offsite`).
///
/// Uploads go to a hidden temporary file beside the final name, are fsynced, renamed into place and
/// the folder is fsynced, so a crash leaves either the old state or the complete object. Leftover
/// temporaries (`.*.offsite-tmp`) are never listed and are removed by `removeStaleTemporaries`.
public final class FileTarget: Target {
    public let name: String
    /// The folder that holds the objects.
    public let root: String

    /// The suffix of temporary upload files.
    static let temporarySuffix = ".offsite-tmp"

    /// Creates a target rooted at `root` (created on first upload, mode 0700).
    public init(name: String, root: String) {
        self.name = name
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    public var location: String { "file://\(root)" }

    func path(for key: String) throws -> String {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw TargetError.failed(target: name, operation: "resolve key", detail: "invalid key \(key)", hint: nil, isPermanent: true)
        }
        return root + "/" + key
    }

    public func makeUpload(key: String) throws -> any TargetUpload {
        let finalPath = try path(for: key)
        let folder = (finalPath as NSString).deletingLastPathComponent
        try createFolders(folder)
        let fileName = (finalPath as NSString).lastPathComponent
        let temporary = "\(folder)/.\(fileName).\(UInt32.random(in: 0...UInt32.max))\(FileTarget.temporarySuffix)"
        let file = try reporting { try AtomicFile(temporaryPath: temporary) }
        return FileUpload(target: self, file: file, finalPath: finalPath)
    }

    public func list(prefix: String) throws -> [RemoteObject] {
        var results: [RemoteObject] = []
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory) else { return [] }
        guard isDirectory.boolValue else {
            throw TargetError.failed(target: name, operation: "list", detail: "\(root) is not a folder", hint: nil, isPermanent: true)
        }
        try walk(folder: root, relative: "", prefix: prefix, into: &results)
        return results.sorted { $0.key < $1.key }
    }

    private func walk(folder: String, relative: String, prefix: String, into results: inout [RemoteObject]) throws {
        guard let directory = opendir(folder) else { throw failure("list \(folder)") }
        defer { closedir(directory) }
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                if errno != 0 { throw failure("list \(folder)") }
                break
            }
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if entryName.hasPrefix(".") { continue }  // ., .., temporaries and hidden files
            let key = relative.isEmpty ? entryName : "\(relative)/\(entryName)"
            // Prune folders that cannot hold keys with the prefix.
            guard key.hasPrefix(prefix) || prefix.hasPrefix(key + "/") else { continue }
            let full = "\(folder)/\(entryName)"
            var info = stat()
            guard stat(full, &info) == 0 else {
                if errno == ENOENT { continue }  // removed while listing
                throw failure("stat \(full)")
            }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                try walk(folder: full, relative: key, prefix: prefix, into: &results)
            } else if (info.st_mode & S_IFMT) == S_IFREG, key.hasPrefix(prefix) {
                let modified = Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec) + TimeInterval(info.st_mtim.tv_nsec) / 1e9)
                results.append(RemoteObject(key: key, size: Int64(info.st_size), modified: modified))
            }
        }
    }

    public func download(key: String, into sink: any ByteSink) throws {
        let path = try path(for: key)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { throw TargetError.notFound(target: name, key: key) }
            throw failure("open \(path)")
        }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw failure("read \(path)")
            }
            if count == 0 { break }
            try sink.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
    }

    public func delete(key: String) throws {
        let path = try path(for: key)
        if unlink(path) != 0 && errno != ENOENT { throw failure("delete \(path)") }
        try reporting { try fsyncDirectory((path as NSString).deletingLastPathComponent) }
    }

    /// Removes temporary upload files older than `age` left by a crash, returning how many; with
    /// `folder`, only those under that top-level folder (one database's).
    @discardableResult
    public func removeStaleTemporaries(olderThan age: TimeInterval = 0, inFolder folder: String? = nil) -> Int {
        let base = folder.map { "\(root)/\($0)" } ?? root
        guard let enumerator = FileManager.default.enumerator(atPath: base) else { return 0 }
        var removed = 0
        let cutoff = Date().addingTimeInterval(-age)
        while let relative = enumerator.nextObject() as? String {
            guard relative.hasSuffix(FileTarget.temporarySuffix) else { continue }
            let full = "\(base)/\(relative)"
            let modified = (try? FileManager.default.attributesOfItem(atPath: full)[.modificationDate] as? Date) ?? Date.distantPast
            if modified <= cutoff, unlink(full) == 0 { removed += 1 }
        }
        return removed
    }

    func createFolders(_ folder: String) throws {
        var info = stat()
        if stat(folder, &info) == 0 { return }
        let parent = (folder as NSString).deletingLastPathComponent
        if parent != folder && !parent.isEmpty { try createFolders(parent) }
        if mkdir(folder, 0o700) != 0 && errno != EEXIST { throw failure("create folder \(folder)") }
        try reporting { try fsyncDirectory(parent) }
    }

    /// Runs `body`, turning a `FileIOError` into this target's error for the same operation.
    func reporting<Value>(_ body: () throws -> Value) throws -> Value {
        do { return try body() } catch let error as FileIOError {
            throw failure("\(error.operation) \(error.path)", code: error.code)
        }
    }

    func failure(_ operation: String, code: Int32 = errno) -> TargetError {
        let detail = String(cString: strerror(code))
        let permanent = code == EACCES || code == EPERM || code == EROFS || code == ENOSPC || code == EDQUOT
        let hint: String? = switch code {
        case EACCES, EPERM: "check that the agent's user may write to \(root)"
        case ENOSPC, EDQUOT: "the target's disk is full: free space or tighten its retention"
        case EROFS: "the target's file system is mounted read-only"
        default: nil
        }
        return .failed(target: name, operation: operation, detail: detail, hint: hint, isPermanent: permanent)
    }
}

/// An upload into a `FileTarget`: an `AtomicFile` beside the final name, put in place on commit.
final class FileUpload: TargetUpload {
    let target: FileTarget
    let file: AtomicFile
    let finalPath: String
    var isDone = false

    init(target: FileTarget, file: AtomicFile, finalPath: String) {
        self.target = target
        self.file = file
        self.finalPath = finalPath
    }

    deinit {
        if !isDone { abort() }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        try target.reporting { try file.write(bytes) }
    }

    func finish() throws {
        try target.reporting { try file.finish() }
    }

    func commit() throws {
        try target.reporting { try file.commit(as: finalPath) }
        isDone = true
    }

    func abort() {
        file.discard()
        isDone = true
    }
}
