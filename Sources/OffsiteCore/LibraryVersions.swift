import CCurl
import CSodium
import CSQLite
import CZlib

/// The versions of the C libraries this binary is linked against, for `offsite version`.
public enum LibraryVersions {
    /// offsite's own version.
    public static let offsite = "0.1.0"

    /// Name and version of each linked library, in a stable order.
    public static var all: [(name: String, version: String)] {
        [
            ("sqlite", String(cString: sqlite3_libversion())),
            ("zlib", String(cString: zlibVersion())),
            ("libsodium", String(cString: sodium_version_string())),
            ("libcurl", String(cString: offsite_curl_version())),
        ]
    }
}
