import Foundation

// A file set snapshot's manifest: text, one entry per line, tab-separated fields, read by offsite
// and by a bash loop alike (docs/FILESETS.md, "Manifest format").

/// What an entry of a file set is.
public enum FileEntryType: UInt8, Sendable {
    /// A regular file.
    case file = 0x66  // f
    /// A folder.
    case directory = 0x64  // d
    /// A symbolic link, stored as a link.
    case symlink = 0x6C  // l
}

/// A time with nanoseconds, as `stat` gives it.
public struct FileTime: Hashable, Sendable, Comparable {
    /// Whole seconds since 1970 (negative before).
    public var seconds: Int64
    /// Nanoseconds, 0 ..< 1e9, added to `seconds`.
    public var nanoseconds: Int32

    /// Creates a time.
    public init(seconds: Int64, nanoseconds: Int32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Creates a time from a `timespec`.
    init(_ spec: timespec) {
        self.init(seconds: Int64(spec.tv_sec), nanoseconds: Int32(spec.tv_nsec))
    }

    /// The time as a `timespec`.
    var timespec: Glibc.timespec { Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds)) }

    /// Orders by time.
    public static func < (lhs: FileTime, rhs: FileTime) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }

    /// `1700000000.123456789`, the signed decimal `touch -d @…` reads (`-1.500000000` for half a
    /// second before -1).
    public var text: String {
        func nine(_ value: Int64) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, 9 - digits.count)) + digits
        }
        if seconds < 0 && nanoseconds > 0 {
            return "-\(-(seconds + 1)).\(nine(1_000_000_000 - Int64(nanoseconds)))"
        }
        return "\(seconds).\(nine(Int64(nanoseconds)))"
    }

    /// Parses `text`'s form (a fraction of up to nine digits, or none); nil when malformed.
    public init?(text: some StringProtocol) {
        var body = Substring(text)
        let negative = body.hasPrefix("-")
        if negative { body = body.dropFirst() }
        let parts = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy({ $0.isASCII && $0.isNumber }),
              let seconds = Int64(whole) else { return nil }
        var fraction: Int64 = 0
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = Int64(digits) else { return nil }
            fraction = value
            for _ in digits.count..<9 { fraction *= 10 }
        }
        if negative && fraction > 0 {
            self.init(seconds: -seconds - 1, nanoseconds: Int32(1_000_000_000 - fraction))
        } else {
            self.init(seconds: negative ? -seconds : seconds, nanoseconds: Int32(fraction))
        }
    }
}

/// What tells an unchanged file from a changed one besides size and mtime: its inode and ctime.
public struct ChangeKey: Hashable, Sendable {
    /// The inode number.
    public var inode: UInt64
    /// The inode's change time.
    public var changed: FileTime
}

/// One blob of a file: its hash and the pack that holds it, by its number in the manifest.
public struct BlobRef: Hashable, Sendable {
    /// The content hash.
    public var hash: BlobHash
    /// The pack's number in the manifest's `#pack` lines.
    public var pack: Int
}

/// One entry of a manifest.
public struct FileEntry: Sendable, Equatable {
    /// File, folder or link.
    public var type: FileEntryType
    /// The path relative to the set's root, as bytes (names need not be UTF-8); `.` is the root.
    public var path: [UInt8]
    /// Permission bits (`mode & 07777`).
    public var mode: UInt32
    /// Owner.
    public var uid: UInt32
    /// Group.
    public var gid: UInt32
    /// Modification time.
    public var modified: FileTime
    /// A file's size, a link target's length; 0 for folders.
    public var size: Int64
    /// Inode and ctime when the entry was read, or nil when the next backup must read it again.
    public var change: ChangeKey?
    /// A file's blobs, in order.
    public var blobs: [BlobRef]
    /// A link's target.
    public var linkTarget: [UInt8]

    /// Creates an entry.
    public init(type: FileEntryType, path: [UInt8], mode: UInt32, uid: UInt32 = 0, gid: UInt32 = 0,
                modified: FileTime, size: Int64 = 0, change: ChangeKey? = nil, blobs: [BlobRef] = [],
                linkTarget: [UInt8] = []) {
        self.type = type
        self.path = path
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.modified = modified
        self.size = size
        self.change = change
        self.blobs = blobs
        self.linkTarget = linkTarget
    }

    /// The path as text, for messages (invalid UTF-8 shown as replacement characters).
    public var displayPath: String { String(decoding: path, as: UTF8.self) }

    /// The root folder's path.
    static let rootPath: [UInt8] = [UInt8(ascii: ".")]
}

/// The manifest's version line.
let manifestMagic = "#offsite-files 1"

/// What a manifest says about itself before its entries.
public struct ManifestHeader: Sendable, Equatable {
    /// The file set's name.
    public var set: String
    /// The snapshot's id.
    public var id: String
    /// The size of every chunk but a file's last.
    public var chunkSize: Int
    /// The packs the entries name by number: object names relative to the set's folder (`packs/…`).
    public var packs: [String]

    /// The header's text, ending with a newline.
    var text: String {
        var lines = [manifestMagic, "#set \(set)", "#id \(id)", "#chunk-size \(chunkSize)"]
        for (number, pack) in packs.enumerated() { lines.append("#pack\t\(number)\t\(pack)") }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A manifest that could not be read.
public struct ManifestError: UserFacingError, Equatable {
    /// The line number (from 1), or 0 for the manifest as a whole.
    public var line: Int
    /// What is wrong.
    public var detail: String

    public var message: String {
        line > 0 ? "file set manifest, line \(line): \(detail)" : "file set manifest: \(detail)"
    }

    public var hint: String? { "the snapshot may be damaged; try an older one (`offsite list --files NAME`)" }
}

// MARK: - Escaping

/// Escapes a path or link target for a manifest field: `\` → `\\`, bytes below 0x20 and 0x7F →
/// `\xHH`; everything else as is. bash's `printf '%b'` reverses it.
func escapeManifestField(_ bytes: [UInt8], into out: inout [UInt8]) {
    let digits = Array("0123456789abcdef".utf8)
    for byte in bytes {
        if byte == UInt8(ascii: "\\") {
            out.append(UInt8(ascii: "\\"))
            out.append(UInt8(ascii: "\\"))
        } else if byte < 0x20 || byte == 0x7F {
            out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "x"), digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
        } else {
            out.append(byte)
        }
    }
}

/// The bytes an escaped field stands for; nil when an escape is malformed.
func unescapeManifestField(_ field: ArraySlice<UInt8>) -> [UInt8]? {
    var out = [UInt8]()
    out.reserveCapacity(field.count)
    var index = field.startIndex
    func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
    while index < field.endIndex {
        let byte = field[index]
        if byte != UInt8(ascii: "\\") {
            out.append(byte)
            index += 1
            continue
        }
        guard index + 1 < field.endIndex else { return nil }
        let kind = field[index + 1]
        if kind == UInt8(ascii: "\\") {
            out.append(kind)
            index += 2
        } else if kind == UInt8(ascii: "x"), index + 3 < field.endIndex,
                  let high = hexValue(field[index + 2]), let low = hexValue(field[index + 3]) {
            out.append(high << 4 | low)
            index += 4
        } else {
            return nil
        }
    }
    return out
}

// MARK: - Lines

/// The manifest line of `entry` (without the newline).
func encodeManifestLine(_ entry: FileEntry) -> [UInt8] {
    var line = [UInt8]()
    line.reserveCapacity(96 + entry.path.count + entry.blobs.count * 68)
    let tab = UInt8(ascii: "\t")
    line.append(entry.type.rawValue)
    line.append(tab)
    var mode = String(entry.mode & 0o7777, radix: 8)
    mode = String(repeating: "0", count: max(0, 4 - mode.count)) + mode
    line.append(contentsOf: mode.utf8)
    line.append(tab)
    line.append(contentsOf: "\(entry.uid):\(entry.gid)".utf8)
    line.append(tab)
    line.append(contentsOf: entry.modified.text.utf8)
    line.append(tab)
    line.append(contentsOf: String(entry.size).utf8)
    line.append(tab)
    if let change = entry.change {
        line.append(contentsOf: "\(change.inode):\(change.changed.text)".utf8)
    } else {
        line.append(UInt8(ascii: "-"))
    }
    line.append(tab)
    switch entry.type {
    case .file where !entry.blobs.isEmpty:
        for (index, blob) in entry.blobs.enumerated() {
            if index > 0 { line.append(UInt8(ascii: ",")) }
            line.append(contentsOf: blob.hash.hexBytes)
            line.append(UInt8(ascii: ":"))
            line.append(contentsOf: String(blob.pack).utf8)
        }
    case .symlink:
        escapeManifestField(entry.linkTarget, into: &line)
    default:
        line.append(UInt8(ascii: "-"))
    }
    line.append(tab)
    escapeManifestField(entry.path, into: &line)
    return line
}

/// Parses one entry line (without its newline); throws `ManifestError` naming `lineNumber`.
func decodeManifestLine(_ line: ArraySlice<UInt8>, lineNumber: Int) throws -> FileEntry {
    func fail(_ detail: String) -> ManifestError { ManifestError(line: lineNumber, detail: detail) }
    var fields: [ArraySlice<UInt8>] = []
    fields.reserveCapacity(8)
    var start = line.startIndex
    var index = line.startIndex
    while index < line.endIndex, fields.count < 7 {
        if line[index] == UInt8(ascii: "\t") {
            fields.append(line[start..<index])
            start = index + 1
        }
        index += 1
    }
    fields.append(line[start..<line.endIndex])
    guard fields.count == 8 else { throw fail("expected 8 tab-separated fields, found \(fields.count)") }
    func text(_ field: ArraySlice<UInt8>) -> String { String(decoding: field, as: UTF8.self) }
    guard fields[0].count == 1, let type = FileEntryType(rawValue: fields[0].first!) else {
        throw fail("unknown entry type \"\(text(fields[0]))\"")
    }
    guard let mode = UInt32(text(fields[1]), radix: 8), mode <= 0o7777 else { throw fail("bad mode \"\(text(fields[1]))\"") }
    let owner = fields[2].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
    guard owner.count == 2, let uid = UInt32(text(owner[0])), let gid = UInt32(text(owner[1])) else {
        throw fail("bad owner \"\(text(fields[2]))\"")
    }
    guard let modified = FileTime(text: text(fields[3])) else { throw fail("bad modification time \"\(text(fields[3]))\"") }
    guard let size = Int64(text(fields[4])), size >= 0 else { throw fail("bad size \"\(text(fields[4]))\"") }
    var change: ChangeKey?
    if fields[5] != [UInt8(ascii: "-")] {
        let parts = fields[5].split(separator: UInt8(ascii: ":"), maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let inode = UInt64(text(parts[0])), let time = FileTime(text: text(parts[1])) else {
            throw fail("bad change key \"\(text(fields[5]))\"")
        }
        change = ChangeKey(inode: inode, changed: time)
    }
    guard let path = unescapeManifestField(fields[7]), !path.isEmpty else { throw fail("bad path") }
    var entry = FileEntry(type: type, path: path, mode: mode, uid: uid, gid: gid, modified: modified, size: size, change: change)
    switch type {
    case .file:
        if fields[6] != [UInt8(ascii: "-")] {
            for reference in fields[6].split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
                guard reference.count > 65, reference[reference.startIndex + 64] == UInt8(ascii: ":"),
                      let hash = BlobHash(hex: reference.prefix(64)),
                      let pack = Int(text(reference.dropFirst(65))), pack >= 0 else {
                    throw fail("bad blob reference \"\(text(reference))\"")
                }
                entry.blobs.append(BlobRef(hash: hash, pack: pack))
            }
        }
        if entry.blobs.isEmpty != (size == 0) { throw fail("a file of \(size) bytes with \(entry.blobs.count) blobs") }
    case .symlink:
        guard let target = unescapeManifestField(fields[6]), !target.isEmpty else { throw fail("bad link target") }
        entry.linkTarget = target
    case .directory:
        break
    }
    return entry
}

/// Whether path `a` comes before path `b` in manifest order: the root first, then component by
/// component, each compared bytewise (a depth-first walk with sorted names gives this order).
func manifestPathPrecedes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    let aIsRoot = a == FileEntry.rootPath
    let bIsRoot = b == FileEntry.rootPath
    if aIsRoot || bIsRoot { return aIsRoot && !bIsRoot }
    let count = min(a.count, b.count)
    var index = 0
    while index < count {
        let x = a[index] == UInt8(ascii: "/") ? 0 : Int(a[index]) + 1
        let y = b[index] == UInt8(ascii: "/") ? 0 : Int(b[index]) + 1
        if x != y { return x < y }
        index += 1
    }
    return a.count < b.count
}

// MARK: - Reading a manifest file

/// Reads a plain manifest file: its header, then its entries one at a time, in constant memory.
final class ManifestReader {
    /// The header (read by `init`).
    private(set) var header = ManifestHeader(set: "", id: "", chunkSize: 0, packs: [])
    private let descriptor: Int32
    private let path: String
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var atEnd = false
    private var lineNumber = 0
    private var pendingLine: ArraySlice<UInt8>?

    /// Opens `path` and reads its header; throws `ManifestError` when it is not a manifest.
    init(path: String) throws {
        self.path = path
        descriptor = try openDescriptor(path, O_RDONLY, operation: "open")
        buffer = [UInt8](repeating: 0, count: 1 << 16)
        do {
            guard let first = try nextLine(), String(decoding: first, as: UTF8.self) == manifestMagic else {
                throw ManifestError(line: 1, detail: "not an offsite file set manifest (no \"\(manifestMagic)\" line)")
            }
            var header = ManifestHeader(set: "", id: "", chunkSize: 0, packs: [])
            while let line = try nextLine() {
                guard line.first == UInt8(ascii: "#") else {
                    pendingLine = line
                    break
                }
                let text = String(decoding: line, as: UTF8.self)
                if text.hasPrefix("#set ") { header.set = String(text.dropFirst(5)) }
                if text.hasPrefix("#id ") { header.id = String(text.dropFirst(4)) }
                if text.hasPrefix("#chunk-size "), let size = Int(text.dropFirst(12)) { header.chunkSize = size }
                if text.hasPrefix("#pack\t") {
                    let parts = text.split(separator: "\t", omittingEmptySubsequences: false)
                    guard parts.count == 3, Int(parts[1]) == header.packs.count, !parts[2].isEmpty else {
                        throw ManifestError(line: lineNumber, detail: "bad #pack line")
                    }
                    header.packs.append(String(parts[2]))
                }
            }
            guard header.chunkSize > 0 else { throw ManifestError(line: 0, detail: "no #chunk-size line") }
            self.header = header
        } catch {
            close(descriptor)
            throw error
        }
    }

    deinit {
        close(descriptor)
    }

    /// The next entry, or nil at the end. Entries must come in manifest order, each blob's pack
    /// must be one of the header's.
    func next() throws -> FileEntry? {
        while true {
            let line: ArraySlice<UInt8>
            if let pending = pendingLine {
                pendingLine = nil
                line = pending
            } else {
                guard let read = try nextLine() else { return nil }
                line = read
            }
            if line.isEmpty || line.first == UInt8(ascii: "#") { continue }
            let entry = try decodeManifestLine(line, lineNumber: lineNumber)
            if let bad = entry.blobs.first(where: { $0.pack >= header.packs.count }) {
                throw ManifestError(line: lineNumber, detail: "blob names pack \(bad.pack), the manifest lists \(header.packs.count)")
            }
            return entry
        }
    }

    /// The next line without its newline (valid until the next call), or nil at the end.
    private func nextLine() throws -> ArraySlice<UInt8>? {
        while true {
            if let newline = buffer[start..<end].firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[start..<newline]
                start = newline + 1
                lineNumber += 1
                return line
            }
            if atEnd {
                guard start < end else { return nil }
                let line = buffer[start..<end]
                start = end
                lineNumber += 1
                return line
            }
            if start > 0 {
                let (from, count) = (start, end - start)
                buffer.withUnsafeMutableBytes { raw in _ = memmove(raw.baseAddress!, raw.baseAddress! + from, count) }
                end = count
                start = 0
            }
            if end == buffer.count { buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count)) }
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + end, $0.count - end) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileIOError(operation: "read", path: path, code: errno)
            }
            if count == 0 { atEnd = true } else { end += count }
        }
    }
}
