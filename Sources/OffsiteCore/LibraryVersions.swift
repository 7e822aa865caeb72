/// The versions of the C libraries this binary is linked against, for `offsite version`.
public enum LibraryVersions {
    /// offsite's own version.
    public static let offsite = "0.1.0"

    /// Name and version of each linked library, in a stable order.
    public static var all: [(name: String, version: String)] {
        [
            ("sqlite", SQLiteDatabase.libraryVersion),
            ("zlib", Zlib.version),
            ("libsodium", AgePrimitives.libraryVersion),
            ("libcurl", HTTPClient.libraryVersion),
        ]
    }
}
