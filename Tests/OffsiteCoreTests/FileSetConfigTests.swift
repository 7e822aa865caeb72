import Foundation
import Testing
@testable import OffsiteCore

/// `files[]` in the configuration: shape, defaults, key paths of mistakes, and names that would
/// share a folder with a database.
@Suite struct FileSetConfigTests {
    func parse(_ json: String) throws -> OffsiteConfig {
        try OffsiteConfig.parse(data: Data(json.utf8), environment: [:], baseDirectory: "/srv")
    }

    func failure(_ json: String) -> ConfigError? {
        do {
            _ = try parse(json)
            return nil
        } catch {
            return error as? ConfigError
        }
    }

    let tail = #""encryption": "none", "targets": [{"name": "usb", "url": "file:///mnt/usb"}]"#

    @Test func fileSetsParseWithDefaultsAndAloneAreEnough() throws {
        let config = try parse(#"{"files": [{"path": "data/uploads/", "exclude": ["*.tmp", "cache/**"]}, {"name": "json", "path": "/data/json"}], \#(tail)}"#)
        #expect(config.files.map(\.name) == ["uploads", "json"])
        #expect(config.files.map(\.path) == ["/srv/data/uploads", "/data/json"])
        #expect(config.files[0].exclude.texts == ["*.tmp", "cache/**"])
        #expect(config.fileSet(named: "json")?.exclude == ExcludePatterns.none)
        #expect(config.databases.isEmpty)
    }

    @Test(arguments: [
        (#"{"files": [{"path": "/a", "excludes": []}]"#, "files[0].excludes", "unknown key (did you mean \"exclude\"?)"),
        (#"{"files": [{"name": "a"}]"#, "files[0].path", "required"),
        (#"{"files": [{"path": "/a", "exclude": ["a//b"]}]"#, "files[0].exclude[0]", "has an empty part"),
        (#"{"files": [{"path": "/a", "exclude": "*.tmp"}]"#, "files[0].exclude", "expected an array"),
        (#"{"files": [{"path": "/a", "name": "../x"}]"#, "files[0].name", "not a usable file set name"),
        (#"{"files": [{"path": "/a/up"}, {"path": "/b/up"}]"#, "files[1].path", "/a/up (files[0]) and /b/up are both file set \"up\""),
        (#"{"databases": [{"path": "/data/uploads.db"}], "files": [{"path": "/data/uploads"}]"#, "files[0].path",
         "file set \"uploads\" (/data/uploads) has the name of database /data/uploads.db (databases[0])"),
    ])
    func mistakesNameTheirKeyPath(json: String, keyPath: String, fragment: String) throws {
        let error = try #require(failure(json + ", \(tail)}"))
        #expect(error.keyPath == keyPath)
        #expect(error.message.contains(fragment), "\(error.message)")
    }

    @Test func aWatchedDatabaseNamedLikeAFileSetIsAnErrorNamingBoth() throws {
        let folder = try ScratchFolder("set-names")
        try FileManager.default.copyItem(atPath: try CRMFixture.shared.get().path, toPath: folder.file("uploads.db"))
        let databases = try resolveDatabases(configured: [], watch: WatchConfig(dir: folder.path))
        let sets = [FileSetConfig(path: "/data/uploads")]
        #expect(throws: FileSetNameConflict(name: "uploads", fileSet: "/data/uploads", database: folder.file("uploads.db"))) {
            try checkFileSetNames(sets, against: databases)
        }
        try checkFileSetNames([FileSetConfig(path: "/data/photos")], against: databases)
    }
}
