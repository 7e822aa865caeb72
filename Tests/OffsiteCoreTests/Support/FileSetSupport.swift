import Foundation
@testable import OffsiteCore

/// Builds and compares file trees for the file set tests.
enum TreeFixture {
    /// Writes `data` to `root/path` (folders made), with `mode` and modification time `mtime`.
    static func write(_ root: String, _ path: String, _ data: Data, mode: Int = 0o644, mtime: Double? = nil) throws {
        let full = "\(root)/\(path)"
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        unlink(full)
        try data.write(to: URL(fileURLWithPath: full))
        chmod(full, mode_t(mode))
        if let mtime { try setTime(full, mtime) }
    }

    /// Sets the modification time of `path` (not following a link).
    static func setTime(_ path: String, _ seconds: Double) throws {
        var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0),
                     timespec(tv_sec: Int(seconds.rounded(.down)), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))]
        guard utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) == 0 else { throw TestFailure("utimensat \(path)") }
    }

    /// Makes a symbolic link at `root/path` pointing at `target`.
    static func link(_ root: String, _ path: String, to target: String) throws {
        let full = "\(root)/\(path)"
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        unlink(full)
        guard symlink(target, full) == 0 else { throw TestFailure("symlink \(full)") }
    }

    /// Every entry under `root` (the root itself as `.`), by relative path: its type, permissions,
    /// modification time (ns) and content hash or link target. Folders' times are included unless
    /// `folderTimes` is false. Paths are kept as bytes turned to text with escapes, so any name compares.
    static func state(_ root: String, folderTimes: Bool = true, skipping: Set<String> = []) throws -> [String: String] {
        var result: [String: String] = [:]
        func describe(_ path: [UInt8], full: [UInt8]) throws {
            let cPath = full.map { CChar(bitPattern: $0) } + [0]
            var status = stat()
            guard lstat(cPath, &status) == 0 else { throw TestFailure("lstat \(String(decoding: full, as: UTF8.self))") }
            var key: [UInt8] = []
            escapeManifestField(path, into: &key)
            let name = String(decoding: key, as: UTF8.self)
            if skipping.contains(name) { return }
            let mode = String(status.st_mode & 0o7777, radix: 8)
            let mtime = "\(status.st_mtim.tv_sec).\(status.st_mtim.tv_nsec)"
            switch status.st_mode & S_IFMT {
            case S_IFDIR:
                result[name] = "d \(mode)" + (folderTimes ? " \(mtime)" : "")
                let descriptor = open(cPath, O_RDONLY | O_DIRECTORY)
                let names = try TreeWalker.names(in: descriptor)
                close(descriptor)
                for child in names {
                    let childPath = path == FileEntry.rootPath ? child : path + [UInt8(ascii: "/")] + child
                    try describe(childPath, full: full + [UInt8(ascii: "/")] + child)
                }
            case S_IFREG:
                let descriptor = open(cPath, O_RDONLY)
                var data = Data()
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let count = read(descriptor, &buffer, buffer.count)
                    if count <= 0 { break }
                    data.append(contentsOf: buffer[0..<count])
                }
                close(descriptor)
                result[name] = "f \(mode) \(mtime) \(BlobHash.of(data))"
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: 4096)
                let count = readlink(cPath, &buffer, buffer.count)
                var target: [UInt8] = []
                escapeManifestField(buffer[0..<max(count, 0)].map { UInt8(bitPattern: $0) }, into: &target)
                result[name] = "l \(mtime) \(String(decoding: target, as: UTF8.self))"
            default:
                result[name] = "other"
            }
        }
        try describe(FileEntry.rootPath, full: Array(root.utf8))
        return result
    }

    /// The bytes of the file at `path`.
    static func readBytes(_ path: String) throws -> Data {
        let sink = DataSink()
        try readFile(at: path, into: sink)
        return sink.data
    }

    /// Deterministic content of `count` bytes: text when `text`, else random bytes (like JPEG or PDF data).
    static func content(_ count: Int, seed: UInt64, text: Bool) -> Data {
        if text { return mixedTestData(count: count, seed: seed | 1) }
        var generator = SplitMix64(seed: seed)
        var bytes = [UInt8](repeating: 0, count: count)
        var index = 0
        while index < count {
            var word = generator.next()
            for _ in 0..<8 where index < count {
                bytes[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
        return Data(bytes)
    }
}
