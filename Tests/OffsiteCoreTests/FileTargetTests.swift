import Foundation
import Testing
@testable import OffsiteCore

@Suite struct FileTargetTests {
    @Test func passesTheConformanceSuite() throws {
        let folder = try makeTemporaryFolder("file-target")
        defer { try? FileManager.default.removeItem(at: folder) }
        let target = FileTarget(name: "usb", root: folder.appendingPathComponent("nested/not/yet").path)
        try runTargetConformance(target, prefix: "")
        try runTargetConformance(target, prefix: "run2/")
    }

    @Test func writesPrivateFilesAndFoldersAndHidesTemporaries() throws {
        let folder = try makeTemporaryFolder("file-target")
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = folder.appendingPathComponent("root").path
        let target = FileTarget(name: "usb", root: root)
        try upload(Data("abc".utf8), to: target, key: "crm/x.bin")
        let fileMode = try FileManager.default.attributesOfItem(atPath: "\(root)/crm/x.bin")[.posixPermissions] as? Int
        let folderMode = try FileManager.default.attributesOfItem(atPath: "\(root)/crm")[.posixPermissions] as? Int
        #expect(fileMode == 0o600)
        #expect(folderMode == 0o700)

        // A crashed upload leaves a temporary that is never listed and is removed as stale.
        let crashed = try target.makeUpload(key: "crm/y.bin")
        try crashed.write(Data("partial".utf8))
        let names = try FileManager.default.contentsOfDirectory(atPath: "\(root)/crm")
        #expect(names.contains { $0.hasSuffix(FileTarget.temporarySuffix) })
        #expect(try target.list(prefix: "").map(\.key) == ["crm/x.bin"])
        #expect(target.removeStaleTemporaries(inFolder: "other") == 0, "another database's folder")
        #expect(target.removeStaleTemporaries(inFolder: "crm") == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(root)/crm") == ["x.bin"])
        crashed.abort()
    }

    @Test func rejectsKeysThatEscapeTheRoot() throws {
        let target = FileTarget(name: "usb", root: "/nonexistent-root")
        #expect(throws: TargetError.self) { try target.makeUpload(key: "../etc/passwd") }
        #expect(throws: TargetError.self) { try target.download(key: "a//b", into: DataSink()) }
    }

    @Test func listsAMissingRootAsEmpty() throws {
        let target = FileTarget(name: "usb", root: "/nonexistent-root-\(UUID().uuidString)")
        #expect(try target.list(prefix: "").isEmpty)
    }
}
