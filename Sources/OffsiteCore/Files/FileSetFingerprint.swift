import Foundation

/// What the agent looks at to see that a file set changed: one walk of its tree with `lstat` only
/// (no file is opened), the same entries a backup would take, summed into one value. Two equal
/// fingerprints mean no entry was added, removed, renamed, or had its size, mode, owner,
/// modification or change time altered — what a backup compares to decide what to read again.
///
/// Swift's `Hasher` is seeded per process: fingerprints compare within one run of the agent only.
public struct FileSetFingerprint: Sendable, Equatable {
    /// The summed value.
    public let value: Int
    /// Entries seen.
    public let entries: Int

    /// Walks `set`'s folder, leaving out what its backup leaves out (`leftOut`: the databases and
    /// the local folder, as for `FileSetBackupJob`). Throws when the folder itself cannot be read.
    public init(of set: FileSetConfig, leftOut: [String]) throws {
        let paths = LeftOutPaths(root: set.path, exclude: set.exclude, paths: leftOut)
        var hasher = Hasher()
        var count = 0
        let walker = TreeWalker(root: set.path, isLeftOut: paths.contains, skip: { skipped in
            // An entry that cannot be read counts by its path: it may become readable later.
            hasher.combine(skipped.path)
        })
        try walker.walk { walked in
            count += 1
            let status = walked.status
            hasher.combine(walked.entry.path)
            hasher.combine(status.st_mode)
            hasher.combine(status.st_size)
            hasher.combine(status.st_ino)
            hasher.combine(status.st_uid)
            hasher.combine(status.st_gid)
            hasher.combine(status.st_mtim.tv_sec)
            hasher.combine(status.st_mtim.tv_nsec)
            hasher.combine(status.st_ctim.tv_sec)
            hasher.combine(status.st_ctim.tv_nsec)
        }
        value = hasher.finalize()
        entries = count
    }
}
