// swift-tools-version: 6.0
// offsite: off-site backup agent for SQLite. No package dependencies: the C libraries
// (SQLite, zlib, libsodium, libcurl) are reached through the small shim targets below.
import PackageDescription

let package = Package(
    name: "offsite",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "offsite", targets: ["offsite"]),
        .executable(name: "offsite-crm", targets: ["offsite-crm"]),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium",
                       providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .target(name: "OffsiteCore", dependencies: ["CSQLite", "CZlib", "CSodium", "CCurl"]),
        .target(name: "CRMSim", dependencies: ["OffsiteCore"]),
        .executableTarget(name: "offsite", dependencies: ["OffsiteCore"]),
        .executableTarget(name: "offsite-crm", dependencies: ["CRMSim", "OffsiteCore"]),
        .testTarget(name: "OffsiteCoreTests", dependencies: ["OffsiteCore", "CRMSim"]),
    ],
    swiftLanguageModes: [.v6]
)
