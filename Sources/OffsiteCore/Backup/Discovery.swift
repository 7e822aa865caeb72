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
