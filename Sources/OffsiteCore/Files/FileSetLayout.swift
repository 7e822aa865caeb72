import Foundation

// Where a file set lives on a target (docs/FILESETS.md, "Layout on the target"):
//   NAME/ID.files.gz.age      a snapshot's manifest (`.files.gz` without encryption)
//   NAME/ID.packs             the packs that snapshot needs, in plain text
//   NAME/packs/TIME-RANDOM.tar.gz.age

/// Object names of file sets.
public enum FileSetLayout {
    /// The suffix of a manifest in `format`.
    public static func manifestSuffix(_ format: PayloadFormat) -> String {
        format == .encrypted ? ".files.gz.age" : ".files.gz"
    }

    /// The suffix of a pack in `format`.
    public static func packSuffix(_ format: PayloadFormat) -> String {
        format == .encrypted ? ".tar.gz.age" : ".tar.gz"
    }

    /// The suffix of a snapshot's pack list.
    public static let packListSuffix = ".packs"

    /// The folder of packs inside a set's folder.
    public static let packFolder = "packs"

    /// `NAME/ID.files.gz.age`.
    public static func manifestKey(set: String, id: BackupID, format: PayloadFormat) -> String {
        "\(set)/\(id)\(manifestSuffix(format))"
    }

    /// `NAME/ID.packs`.
    public static func packListKey(set: String, id: BackupID) -> String {
        "\(set)/\(id)\(packListSuffix)"
    }

    /// A new pack's name relative to the set's folder: `packs/YYYYMMDDTHHMMSSZ-<32 hex>.tar.gz.age`,
    /// the time it was written and 128 random bits.
    static func newPackName(at date: Date, format: PayloadFormat) -> String {
        var generator = SystemRandomNumberGenerator()
        let random = (0..<2).map { _ in
            let text = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - text.count) + text
        }.joined()
        return "\(packFolder)/\(BackupID.formatTimestamp(Int64(date.timeIntervalSince1970.rounded(.down))))-\(random)\(packSuffix(format))"
    }

    /// The time in a pack's name (`packs/TIME-RANDOM.tar.gz[.age]`), or nil when the name is not
    /// exactly a pack's: only such names are ever deleted as packs.
    static func packTime(_ name: Substring) -> Int64? {
        guard name.hasPrefix("\(packFolder)/") else { return nil }
        var stem = name.dropFirst(packFolder.count + 1)
        if stem.hasSuffix(packSuffix(.encrypted)) {
            stem = stem.dropLast(packSuffix(.encrypted).count)
        } else if stem.hasSuffix(packSuffix(.plain)) {
            stem = stem.dropLast(packSuffix(.plain).count)
        } else {
            return nil
        }
        let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].count == 32,
              parts[1].allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) else { return nil }
        return BackupID.parseTimestamp(parts[0])
    }
}

/// A file set snapshot as a listing shows it: its manifest object.
public struct RemoteFileSnapshot: Sendable, Hashable {
    /// The file set's name.
    public var set: String
    /// The snapshot's id.
    public var id: BackupID
    /// Encrypted or not, from the manifest's name.
    public var format: PayloadFormat
    /// The manifest object's size in bytes.
    public var size: Int64
    /// The manifest object's key.
    public var key: String

    /// Recognises a manifest directly under a set's folder (`NAME/ID.files.gz[.age]`); nil for
    /// anything else.
    public init?(object: RemoteObject) {
        let parts = object.key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty else { return nil }
        let fileName = parts[1]
        for format in [PayloadFormat.encrypted, .plain] where fileName.hasSuffix(FileSetLayout.manifestSuffix(format)) {
            guard let id = BackupID(fileName.dropLast(FileSetLayout.manifestSuffix(format).count)) else { return nil }
            self.set = String(parts[0])
            self.id = id
            self.format = format
            self.size = object.size
            self.key = object.key
            return
        }
        return nil
    }
}

/// One listing of a set's folder on a target, sorted out: snapshots, pack lists and packs.
struct FileSetListing {
    /// The snapshots, oldest first.
    var snapshots: [RemoteFileSnapshot] = []
    /// Pack lists by snapshot id text.
    var packLists: [String: RemoteObject] = [:]
    /// Packs by name relative to the set's folder (`packs/…`); only names that are exactly a pack's.
    var packs: [String: RemoteObject] = [:]

    /// Lists `set/` on `target` (one listing) and sorts it out.
    init(target: any Target, set: String) throws {
        self.init(objects: try target.list(prefix: "\(set)/"), set: set)
    }

    /// Sorts out the objects of a listing of `set/`.
    init(objects: [RemoteObject], set: String) {
        let folder = "\(set)/"
        for object in objects where object.key.hasPrefix(folder) {
            let relative = object.key.dropFirst(folder.count)
            if let snapshot = RemoteFileSnapshot(object: object) {
                snapshots.append(snapshot)
            } else if !relative.contains("/"), relative.hasSuffix(FileSetLayout.packListSuffix),
                      let id = BackupID(relative.dropLast(FileSetLayout.packListSuffix.count)) {
                packLists[id.description] = object
            } else if FileSetLayout.packTime(relative) != nil {
                packs[String(relative)] = object
            }
        }
        snapshots.sort { $0.id < $1.id }
    }

    /// The snapshot with `id`, if listed.
    func snapshot(_ id: BackupID) -> RemoteFileSnapshot? {
        snapshots.last { $0.id == id }
    }
}

/// Every snapshot of the file set `set` on `target`, oldest first. One listing, no reads.
public func listFileSetSnapshots(on target: any Target, set: String) throws -> [RemoteFileSnapshot] {
    try FileSetListing(target: target, set: set).snapshots
}

/// The text of a pack list: a comment line, then one pack name a line.
func packListText(_ packs: [String]) -> String {
    (["#offsite-files-packs 1"] + packs).joined(separator: "\n") + "\n"
}

/// The pack names of a pack list's text; nil when it is not one.
func parsePackList(_ data: Data) -> [String]? {
    let text = String(decoding: data, as: UTF8.self)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    guard lines.first == "#offsite-files-packs 1" else { return nil }
    lines.removeFirst()
    guard lines.allSatisfy({ FileSetLayout.packTime(Substring($0)) != nil }) else { return nil }
    return lines
}
