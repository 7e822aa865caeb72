import Foundation
import Testing
@testable import OffsiteCore

/// The pieces of the file set format, each on its own: the content hash, tar, the manifest's
/// lines and escapes, exclude patterns, object names.
@Suite struct FileSetFormatTests {
    @Test func contentHashIsBlake2b256AsB2sumPrintsIt() throws {
        // RFC 7693 test vectors for BLAKE2b-256 ("abc" and the empty string).
        #expect(BlobHash.of(Data("abc".utf8)).description == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319")
        #expect(BlobHash.of(Data()).description == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8")
        // And the same as the standard tool, on bytes in uneven pieces.
        let folder = try ScratchFolder("hash")
        let data = mixedTestData(count: 300_001)
        try data.write(to: URL(fileURLWithPath: folder.file("blob")))
        let printed = try toolOutput(["b2sum", "-l", "256", folder.file("blob")]).split(separator: " ").first.map(String.init)
        let hasher = ContentHasher()
        var offset = 0
        while offset < data.count {
            let end = min(offset + 70_001, data.count)
            data[offset..<end].withUnsafeBytes { hasher.update($0) }
            offset = end
        }
        #expect(BlobHash(digest: hasher.finish()).description == printed)
        #expect(BlobHash(printed ?? "") == BlobHash.of(data))
    }

    @Test func blobHashTextRoundTripsAndRejectsBadText() throws {
        let hash = BlobHash.of(Data("x".utf8))
        #expect(BlobHash(hash.description) == hash)
        #expect(BlobHash(hash.description.uppercased()) == hash)
        #expect(BlobHash(String(hash.description.dropLast())) == nil)
        #expect(BlobHash(String(hash.description.dropLast()) + "g") == nil)
        #expect(String(decoding: hash.memberName, as: UTF8.self) == "\(hash.description.prefix(2))/\(hash)")
    }

    /// Collects a tar stream's members.
    final class Collector: TarMemberHandler {
        var members: [(String, Data)] = []
        var wanted: (String) -> Bool = { _ in true }
        func beginMember(name: [UInt8], size: Int64) throws -> Bool {
            let text = String(decoding: name, as: UTF8.self)
            guard wanted(text) else { return false }
            members.append((text, Data()))
            return true
        }
        func memberBytes(_ bytes: UnsafeRawBufferPointer) throws { members[members.count - 1].1.append(contentsOf: bytes) }
        func endMember() throws {}
    }

    /// Writes a tar of `members`.
    func tar(_ members: [(String, Data)]) throws -> Data {
        let sink = DataSink()
        let writer = TarWriter(next: sink)
        for (name, data) in members {
            try data.withUnsafeBytes { try writer.writeMember(name: Array(name.utf8), bytes: $0, modified: 1_700_000_000) }
        }
        try writer.writeEnd()
        #expect(writer.byteCount == Int64(sink.data.count))
        return sink.data
    }

    @Test func tarRoundTripsInAnyPiecesAndSkipsUnwantedMembers() throws {
        let members: [(String, Data)] = [("ab/one", Data("hello".utf8)), ("cd/empty", Data()),
                                         ("ef/block", Data(repeating: 7, count: 512)), ("01/big", mixedTestData(count: 70_000))]
        let archive = try tar(members)
        #expect(archive.count % 512 == 0)
        for piece in [1, 7, 511, 512, 513, 100_000] {
            let collector = Collector()
            collector.wanted = { $0 != "ef/block" }
            let reader = TarReader(handler: collector)
            var offset = 0
            while offset < archive.count {
                let end = min(offset + piece, archive.count)
                try reader.write(archive.subdata(in: offset..<end))
                offset = end
            }
            try reader.finish()
            #expect(reader.memberCount == 4)
            #expect(collector.members.map(\.0) == ["ab/one", "cd/empty", "01/big"], "pieces of \(piece)")
            #expect(collector.members.map(\.1) == [members[0].1, members[1].1, members[3].1], "pieces of \(piece)")
        }
    }

    @Test func concatenatedArchivesReadAsOneWhenAsked() throws {
        let both = try tar([("ab/one", Data("1".utf8))]) + tar([("cd/two", Data("22".utf8))])
        let collector = Collector()
        let reader = TarReader(handler: collector, concatenated: true)
        try reader.write(both)
        try reader.finish()
        #expect(collector.members.map(\.0) == ["ab/one", "cd/two"])
        // Without asking, the first archive's end is the end.
        let single = Collector()
        let strict = TarReader(handler: single)
        try strict.write(both)
        try strict.finish()
        #expect(single.members.map(\.0) == ["ab/one"])
    }

    @Test func tarReaderRefusesTruncatedAndDamagedStreams() throws {
        let archive = try tar([("ab/one", Data("hello".utf8))])
        for cut in [100, 512, 600, 1024] {
            let reader = TarReader(handler: Collector())
            try reader.write(archive.prefix(cut))
            #expect(throws: TarError.self, "cut at \(cut)") { try reader.finish() }
        }
        var damaged = archive
        damaged[0] ^= 1
        #expect(throws: TarError.self) { try TarReader(handler: Collector()).write(damaged) }
        #expect(throws: TarError.self) { _ = try TarWriter.header(name: Array(repeating: 0x61, count: 101), size: 1, mode: 0o600, modified: 0) }
    }

    @Test func gnuTarExtractsWhatTarWriterWritesAndTarReaderReadsWhatGnuTarWrites() throws {
        let folder = try ScratchFolder("tar")
        let hash = BlobHash.of(Data("content".utf8))
        let members: [(String, Data)] = [(String(decoding: hash.memberName, as: UTF8.self), Data("content".utf8)),
                                         ("00/zero", Data()), ("ff/large", mixedTestData(count: 1_000_003))]
        try tar(members).write(to: URL(fileURLWithPath: folder.file("pack.tar")))
        try FileManager.default.createDirectory(atPath: folder.file("out"), withIntermediateDirectories: true)
        let extract = try runTool("tar", ["-xf", "pack.tar", "-C", "out"], in: folder)
        #expect(extract.status == 0, "\(extract.standardError)")
        #expect(extract.standardError.isEmpty, "GNU tar warns: \(extract.standardError)")
        for (name, data) in members {
            #expect(FileManager.default.contents(atPath: folder.file("out/\(name)")) == data, "\(name)")
        }
        #expect(try permissions(of: folder.file("out/00/zero")) == 0o600)
        let listing = try runTool("tar", ["-tvf", "pack.tar"], in: folder)
        #expect(listing.standardOutput.contains("2023-11-14"), "\(listing.standardOutput)")

        // And the other way: GNU tar's own archive (with a folder entry and a long pax name).
        let longName = String(repeating: "n", count: 120)
        try FileManager.default.createDirectory(atPath: folder.file("in/sub"), withIntermediateDirectories: true)
        try Data("a".utf8).write(to: URL(fileURLWithPath: folder.file("in/sub/a")))
        try Data("long".utf8).write(to: URL(fileURLWithPath: folder.file("in/sub/\(longName)")))
        for format in ["gnu", "pax"] {
            let made = try runTool("tar", ["--format=\(format)", "-cf", "gnu-\(format).tar", "-C", "in", "sub"], in: folder)
            #expect(made.status == 0, "\(made.standardError)")
            let collector = Collector()
            let reader = TarReader(handler: collector)
            try reader.write(try Data(contentsOf: URL(fileURLWithPath: folder.file("gnu-\(format).tar"))))
            try reader.finish()
            #expect(Dictionary(uniqueKeysWithValues: collector.members) == ["sub/a": Data("a".utf8), "sub/\(longName)": Data("long".utf8)],
                    "\(format)")
        }
    }

    @Test(arguments: [
        ("plain name.pdf", "plain name.pdf"),
        ("tab\there", #"tab\x09here"#),
        ("new\nline", #"new\x0aline"#),
        (#"back\slash"#, #"back\\slash"#),
        ("del\u{7F}", #"del\x7f"#),
        ("Rechnung-Müller.pdf", "Rechnung-Müller.pdf"),
    ])
    func manifestFieldsEscapeExactlyControlBytesAndBackslashes(raw: String, escaped: String) throws {
        var out: [UInt8] = []
        escapeManifestField(Array(raw.utf8), into: &out)
        #expect(String(decoding: out, as: UTF8.self) == escaped)
        #expect(unescapeManifestField(out[...]) == Array(raw.utf8))
    }

    @Test func invalidUTF8AndEveryByteSurviveEscaping() throws {
        let bytes = (1...255).map { UInt8($0) } + [0xC3, 0x28, 0xFF]
        var out: [UInt8] = []
        escapeManifestField(bytes, into: &out)
        #expect(!out.contains(UInt8(ascii: "\t")) && !out.contains(UInt8(ascii: "\n")))
        #expect(unescapeManifestField(out[...]) == bytes)
        for bad in [#"\"#, #"\x4"#, #"\q"#, #"\xzz"#] {
            #expect(unescapeManifestField(Array(bad.utf8)[...]) == nil, "\(bad)")
        }
    }

    @Test func bashPrintfRestoresEscapedNames() throws {
        let folder = try ScratchFolder("escape")
        let names: [[UInt8]] = [Array("tab\there".utf8), Array("new\nline\n".utf8), Array(#"back\c\x41"#.utf8), [0x66, 0xFF, 0xFE, 0x01]]
        for name in names {
            var field: [UInt8] = []
            escapeManifestField(name, into: &field)
            try Data(field).write(to: URL(fileURLWithPath: folder.file("field")))
            let script = #"IFS= read -r field < field; printf -v out '%b' "$field"; printf '%s' "$out" > decoded"#
            let result = try runTool("bash", ["-c", script], in: folder)
            #expect(result.status == 0)
            #expect(FileManager.default.contents(atPath: folder.file("decoded")).map(Array.init) == name, "\(name)")
        }
    }

    @Test func timesFormatAsTouchReadsThem() throws {
        #expect(FileTime(seconds: 1_700_000_000, nanoseconds: 5).text == "1700000000.000000005")
        #expect(FileTime(seconds: 0, nanoseconds: 0).text == "0.000000000")
        #expect(FileTime(seconds: -2, nanoseconds: 500_000_000).text == "-1.500000000")
        for time in [FileTime(seconds: -2, nanoseconds: 500_000_000), FileTime(seconds: 12, nanoseconds: 999_999_999),
                     FileTime(seconds: -5, nanoseconds: 0)] {
            #expect(FileTime(text: time.text) == time)
        }
        #expect(FileTime(text: "12.5") == FileTime(seconds: 12, nanoseconds: 500_000_000))
        for bad in ["", "1.", ".5", "1.1234567890", "x", "1.2.3"] { #expect(FileTime(text: bad) == nil, "\(bad)") }
    }

    @Test func manifestLinesRoundTrip() throws {
        let hash = BlobHash.of(Data("a".utf8))
        let entries = [
            FileEntry(type: .directory, path: FileEntry.rootPath, mode: 0o755, uid: 1000, gid: 1000,
                      modified: FileTime(seconds: 1, nanoseconds: 2), change: ChangeKey(inode: 9, changed: FileTime(seconds: 3, nanoseconds: 4))),
            FileEntry(type: .file, path: Array("a b/c\td".utf8), mode: 0o4755, modified: FileTime(seconds: 5, nanoseconds: 0),
                      size: 9_000_000, blobs: [BlobRef(hash: hash, pack: 0), BlobRef(hash: hash, pack: 12)]),
            FileEntry(type: .file, path: Array("empty".utf8), mode: 0o600, modified: FileTime(seconds: 5, nanoseconds: 0)),
            FileEntry(type: .symlink, path: Array("link".utf8), mode: 0o777, modified: FileTime(seconds: 5, nanoseconds: 0),
                      size: 8, linkTarget: Array("../x\ny".utf8)),
        ]
        for entry in entries {
            let line = encodeManifestLine(entry)
            #expect(line.filter { $0 == UInt8(ascii: "\t") }.count == 7)
            #expect(try decodeManifestLine(line[...], lineNumber: 1) == entry)
        }
        for bad in ["x\t0644\t0:0\t1.0\t0\t-\t-\tp", "f\t0644\t0:0\t1.0\t5\t-\t-\tp", "f\t9999\t0:0\t1.0\t0\t-\t-\tp",
                    "d\t0755\t0:0\t1.0\t0\t-\t-", "f\t0644\t0:0\t1.0\t1\t-\tzz:0\tp"] {
            #expect(throws: ManifestError.self, "\(bad)") { try decodeManifestLine(Array(bad.utf8)[...], lineNumber: 1) }
        }
    }

    @Test func manifestOrderIsComponentWiseAsADepthFirstWalkWithSortedNames() {
        let walked = [".", "a", "a/b", "a/b/c", "a.txt", "a-b", "b"].map { Array($0.utf8) }
        let sortedNames = walked.sorted(by: manifestPathPrecedes)
        #expect(sortedNames.map { String(decoding: $0, as: UTF8.self) } == [".", "a", "a/b", "a/b/c", "a-b", "a.txt", "b"])
        #expect(manifestPathPrecedes(Array(".".utf8), Array("!".utf8)))
        #expect(!manifestPathPrecedes(Array("a".utf8), Array("a".utf8)))
    }

    @Test(arguments: [
        ("*.tmp", "x.tmp", false, true), ("*.tmp", "a/b/x.tmp", false, true), ("*.tmp", "x.tmp.keep", false, false),
        ("cache/**", "cache/a", false, true), ("cache/**", "cache/a/b", true, true), ("cache/**", "cache", true, false),
        ("cache/**", "x/cache/a", false, false), ("/tmp", "tmp", true, true), ("/tmp", "a/tmp", true, false),
        ("build/", "build", true, true), ("build/", "build", false, false), ("build/", "a/build", true, true),
        ("**/thumbs", "thumbs", true, true), ("**/thumbs", "a/b/thumbs", true, true), ("a/**/z", "a/z", false, true),
        ("a/**/z", "a/b/c/z", false, true), ("exports/*.csv", "exports/x.csv", false, true),
        ("exports/*.csv", "exports/sub/x.csv", false, false), ("file?.txt", "file1.txt", false, true),
        ("file?.txt", "file10.txt", false, false), ("[abc].log", "b.log", false, true), ("[!abc].log", "b.log", false, false),
        ("[a-c]x", "bx", false, true), (#"\*"#, "*", false, true), (#"\*"#, "a", false, false), ("*", "anything", false, true),
        (".DS_Store", "a/.DS_Store", false, true), ("a*b*c", "aXXbYYc", false, true), ("a*b*c", "aXXbYY", false, false),
    ])
    func excludePatternsMatchAsDocumented(pattern: String, path: String, isFolder: Bool, excluded: Bool) throws {
        let patterns = try ExcludePatterns([pattern])
        #expect(patterns.excludes(Array(path.utf8), isFolder: isFolder) == excluded)
    }

    @Test func unusableExcludePatternsAreRefused() {
        for bad in ["/", "a//b", ""] {
            #expect(throws: ExcludePatternError.self, "\(bad)") { _ = try ExcludePatterns([bad]) }
        }
    }

    @Test func objectNamesRevealNothingAndOnlyExactPackNamesCount() {
        let name = FileSetLayout.newPackName(at: Date(timeIntervalSince1970: 1_700_000_000), format: .encrypted)
        #expect(name.hasPrefix("packs/20231114T221320Z-") && name.hasSuffix(".tar.gz.age"))
        #expect(FileSetLayout.packTime(Substring(name)) == 1_700_000_000)
        #expect(FileSetLayout.newPackName(at: Date(), format: .encrypted) != FileSetLayout.newPackName(at: Date(), format: .encrypted))
        for foreign in ["packs/20231114T221320Z-xyz.tar.gz.age", "packs/x/20231114T221320Z-0123456789abcdef0123456789abcdef.tar.gz.age",
                        "packs/20231114T221320Z-0123456789abcdef0123456789abcdef.sqlite3.gz.age", "20231114T221320Z-manual.sqlite3.gz.age"] {
            #expect(FileSetLayout.packTime(Substring(foreign)) == nil, "\(foreign)")
        }
        let objects = [RemoteObject(key: "uploads/20231114T221320Z-manual.files.gz.age", size: 10),
                       RemoteObject(key: "uploads/20231114T221320Z-manual.packs", size: 3),
                       RemoteObject(key: "uploads/\(name)", size: 5),
                       RemoteObject(key: "uploads/site-b/20231114T221320Z-manual.files.gz.age", size: 1),
                       RemoteObject(key: "uploads/20231114T221320Z-manual.sqlite3.gz.age", size: 1)]
        let listing = FileSetListing(objects: objects, set: "uploads")
        #expect(listing.snapshots.map(\.id.description) == ["20231114T221320Z-manual"])
        #expect(listing.packLists.keys.sorted() == ["20231114T221320Z-manual"])
        #expect(listing.packs.keys.sorted() == [name])
        // Database code never takes a manifest for a database backup.
        #expect(RemoteBackup(object: objects[0]) == nil)
        #expect(parsePackList(Data(packListText([name]).utf8)) == [name])
        #expect(parsePackList(Data("packs/evil\n".utf8)) == nil)
    }
}
