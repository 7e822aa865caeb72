import OffsiteCore

/// `offsite version`: the version and the linked libraries' versions.
enum VersionCommand {
    static let help = """
    usage: offsite version

    Prints offsite's version and the versions of the linked SQLite, zlib, libsodium and libcurl.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: [], flags: [])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        print("offsite \(LibraryVersions.offsite)")
        for (name, version) in LibraryVersions.all { print("\(name) \(version)") }
        return 0
    }
}
