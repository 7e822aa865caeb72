import Foundation
import Testing
@testable import OffsiteCore

/// The one test body every target runs: the folder target here, S3 and WebDAV against real servers.
/// `prefix` isolates a run inside a shared bucket or folder.
func runTargetConformance(_ target: any Target, prefix: String) throws {
    #expect(try target.list(prefix: prefix).isEmpty, "a fresh prefix lists nothing")

    // A small object round-trips with its exact size.
    let small = Data("hello offsite".utf8)
    try upload(small, to: target, key: "\(prefix)db/a.bin")
    let listed = try target.list(prefix: prefix)
    #expect(listed.map(\.key) == ["\(prefix)db/a.bin"])
    #expect(listed.map(\.size) == [Int64(small.count)])
    #expect(try download(from: target, key: "\(prefix)db/a.bin") == small)

    // A larger object, written in uneven chunks, round-trips byte for byte.
    var generator = SplitMix64(seed: 7)
    let large = Data((0..<(3 << 20) + 12345).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
    try upload(large, to: target, key: "\(prefix)db/b.bin", chunk: 70_001)
    // Compared into a Bool: swift-testing would spend minutes describing two differing MiB-sized values.
    let largeMatches = try download(from: target, key: "\(prefix)db/b.bin") == large
    #expect(largeMatches, "the 3 MiB object round-trips byte for byte")
    let sizes = Dictionary(uniqueKeysWithValues: try target.list(prefix: prefix).map { ($0.key, $0.size) })
    #expect(sizes == ["\(prefix)db/a.bin": Int64(small.count), "\(prefix)db/b.bin": Int64(large.count)])

    // Nothing is visible under the final key before commit, and an abort leaves nothing behind.
    let pending = try target.makeUpload(key: "\(prefix)db/c.bin")
    try pending.write(Data(repeating: 1, count: 1000))
    #expect(try target.list(prefix: "\(prefix)db/c").isEmpty, "an uncommitted upload is invisible")
    pending.abort()
    #expect(try target.list(prefix: "\(prefix)db/c").isEmpty, "an aborted upload leaves nothing")
    #expect(throws: TargetError.self) { try download(from: target, key: "\(prefix)db/c.bin") }

    // An empty object is an object.
    try upload(Data(), to: target, key: "\(prefix)db/empty.bin")
    #expect(try target.list(prefix: "\(prefix)db/empty").map(\.size) == [0])

    // Uploading again replaces the object whole.
    try upload(Data("replaced".utf8), to: target, key: "\(prefix)db/a.bin")
    #expect(try download(from: target, key: "\(prefix)db/a.bin") == Data("replaced".utf8))

    // The prefix filters, across folders.
    try upload(Data("x".utf8), to: target, key: "\(prefix)other/x.bin")
    #expect(try target.list(prefix: "\(prefix)other/").map(\.key) == ["\(prefix)other/x.bin"])
    #expect(try target.list(prefix: "\(prefix)db/").count == 3)
    #expect(try target.list(prefix: "\(prefix)d").count == 3)

    // A missing object is `notFound`, on every target alike.
    do {
        _ = try download(from: target, key: "\(prefix)db/missing.bin")
        Issue.record("downloading a missing object must throw")
    } catch let error as TargetError {
        #expect(error == .notFound(target: target.name, key: "\(prefix)db/missing.bin"))
    }

    // Delete removes; deleting what is gone succeeds.
    try target.delete(key: "\(prefix)db/a.bin")
    try target.delete(key: "\(prefix)db/a.bin")
    try target.delete(key: "\(prefix)db/never-existed.bin")
    #expect(try target.list(prefix: "\(prefix)db/").map(\.key) == ["\(prefix)db/b.bin", "\(prefix)db/empty.bin"])
    for object in try target.list(prefix: prefix) { try target.delete(key: object.key) }
    #expect(try target.list(prefix: prefix).isEmpty)
}

/// Uploads `data` to `key` in chunks of `chunk` bytes and commits it.
func upload(_ data: Data, to target: any Target, key: String, chunk: Int = 1 << 20) throws {
    let upload = try target.makeUpload(key: key)
    do {
        var offset = 0
        while offset < data.count {
            let end = min(offset + chunk, data.count)
            try upload.write(data.subdata(in: offset..<end))
            offset = end
        }
        try upload.finish()
        try upload.commit()
    } catch {
        upload.abort()
        throw error
    }
}

/// Downloads the whole object at `key` into memory.
func download(from target: any Target, key: String) throws -> Data {
    let sink = DataSink()
    try target.download(key: key, into: sink)
    return sink.data
}

