import Foundation

/// The SQLite databases in `folder` whose file names match one of `include` (shell patterns):
/// `-wal`, `-shm` and `-journal` files are never taken for databases, and a file counts only when
/// it starts with SQLite's header.
public func discoverDatabases(in folder: String, include: [String]) -> [DatabaseRef] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    return names.sorted().compactMap { name -> DatabaseRef? in
        guard !name.hasSuffix("-wal"), !name.hasSuffix("-shm"), !name.hasSuffix("-journal"), !name.hasPrefix("."),
              include.contains(where: { fnmatch($0, name, 0) == 0 }) else { return nil }
        let path = "\(folder)/\(name)"
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, hasSQLiteHeader(path) else { return nil }
        return DatabaseRef(path: path)
    }
}

/// Two databases that would share one name, and so one folder on every target: a configuration
/// error that names both paths. Backing both up would interleave their backups in one folder, and
/// a restore by name could put the other database's contents in place.
public struct DatabaseNameConflict: UserFacingError, Equatable {
    /// The shared name (`crm`).
    public var name: String
    /// The database that had the name first (a configured one, or the first in file-name order).
    public var first: String
    /// The database that would take the same name.
    public var second: String

    /// Creates the error.
    public init(name: String, first: String, second: String) {
        self.name = name
        self.first = first
        self.second = second
    }

    public var message: String {
        "\(first) and \(second) would both be backed up as database \"\(name)\" (one folder on every target)"
    }

    public var hint: String? {
        "rename one of the files, give it a distinct \"name\" in databases[], or narrow watch.include"
    }
}

/// Every database a configuration protects: `configured` (databases[]) first, then the databases
/// found in `watch` that are not configured already (by path). Throws `DatabaseNameConflict` when
/// two different files would get one name — in databases[] and in the watched folder alike.
public func resolveDatabases(configured: [DatabaseRef], watch: WatchConfig?) throws -> [DatabaseRef] {
    var result: [DatabaseRef] = []
    for candidate in configured + (watch.map { discoverDatabases(in: $0.dir, include: $0.include) } ?? []) {
        if result.contains(where: { $0.path == candidate.path }) { continue }
        if let clash = result.first(where: { $0.name == candidate.name }) {
            throw DatabaseNameConflict(name: candidate.name, first: clash.path, second: candidate.path)
        }
        result.append(candidate)
    }
    return result
}

/// A file set and a database that would share one name, and so one folder on every target.
public struct FileSetNameConflict: UserFacingError, Equatable {
    /// The shared name.
    public var name: String
    /// The file set's folder.
    public var fileSet: String
    /// The database's file.
    public var database: String

    /// Creates the error.
    public init(name: String, fileSet: String, database: String) {
        self.name = name
        self.fileSet = fileSet
        self.database = database
    }

    public var message: String {
        "file set \(fileSet) and database \(database) would both be backed up as \"\(name)\" (one folder on every target)"
    }

    public var hint: String? { "give the file set a different \"name\" in files[], or the database one in databases[]" }
}

/// Throws `FileSetNameConflict` when a file set has the name of one of `databases`.
public func checkFileSetNames(_ sets: [FileSetConfig], against databases: [DatabaseRef]) throws {
    for set in sets {
        if let database = databases.first(where: { $0.name == set.name }) {
            throw FileSetNameConflict(name: set.name, fileSet: set.path, database: database.path)
        }
    }
}
