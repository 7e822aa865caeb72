import Foundation
import Testing
@testable import OffsiteCore

/// The S3 target against real servers on loopback: rclone (signatures checked) and moto.
@Suite struct S3ServerTests {
    @Test(arguments: S3TestServer.Kind.allCases)
    func passesTheTargetConformanceSuite(kind: S3TestServer.Kind) throws {
        let server = try S3TestServer.shared(kind)
        // A prefix in the target URL, and one more inside it, the way the agent uses both.
        let target = try server.makeTarget(prefix: uniqueS3Prefix("conformance"))
        try runTargetConformance(target, prefix: "")
        try runTargetConformance(target, prefix: "run2/")
        // A target at the bucket root sees the same keys with the prefix in front.
        let inner = uniqueS3Prefix("root")
        try runTargetConformance(try server.makeTarget(prefix: ""), prefix: "\(inner)/")
    }

    @Test(arguments: S3TestServer.Kind.allCases)
    func multipartUploadRoundTrips(kind: S3TestServer.Kind) throws {
        let server = try S3TestServer.shared(kind)
        let target = try server.makeTarget(prefix: uniqueS3Prefix("multipart"), partSize: 5 << 20, concurrency: 2)
        var generator = SplitMix64(seed: 12)
        let data = Data((0..<((12 << 20) + 777)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        try upload(data, to: target, key: "db/big.bin", chunk: 1 << 20)
        #expect(try target.list(prefix: "db/") == [RemoteObject(key: "db/big.bin", size: Int64(data.count),
                                                                modified: try target.list(prefix: "db/").first?.modified)])
        #expect(try target.size(key: "db/big.bin") == Int64(data.count))
        let roundTripped = try download(from: target, key: "db/big.bin") == data  // not inside #expect: no diff of 12 MiB on failure
        #expect(roundTripped)
        #expect(try target.openUploads().isEmpty, "a completed upload leaves no multipart upload open")
        try target.delete(key: "db/big.bin")
        #expect(try target.list(prefix: "").isEmpty)
    }

    @Test(arguments: S3TestServer.Kind.allCases)
    func abortedMultipartUploadLeavesNothing(kind: S3TestServer.Kind) throws {
        let server = try S3TestServer.shared(kind)
        let target = try server.makeTarget(prefix: uniqueS3Prefix("abort"), partSize: 5 << 20)
        let pending = try target.makeUpload(key: "db/aborted.bin")
        try pending.write(Data(repeating: 7, count: (11 << 20)))
        #expect(try target.openUploads().count == 1, "two full parts went out as a multipart upload")
        #expect(try target.list(prefix: "").isEmpty, "nothing is visible before commit")
        pending.abort()
        #expect(try target.list(prefix: "").isEmpty)
        #expect(try target.openUploads().isEmpty, "abort ends the multipart upload")
    }

    @Test(arguments: S3TestServer.Kind.allCases)
    func abortsStaleUploadsUnderItsPrefixOnly(kind: S3TestServer.Kind) throws {
        let server = try S3TestServer.shared(kind)
        let target = try server.makeTarget(prefix: uniqueS3Prefix("stale"))
        let neighbour = try server.makeTarget(prefix: uniqueS3Prefix("neighbour"))
        // Uploads left open, as by a crash: started and never completed or aborted.
        _ = try target.startMultipartUpload(key: "db/left-open.bin")
        _ = try target.startMultipartUpload(key: "other/left-open.bin")
        _ = try neighbour.startMultipartUpload(key: "db/not-mine.bin")
        #expect(try target.openUploads().count == 2)
        if kind == .rclone {
            // moto reports every upload as initiated in 2010, so only rclone can show the age cut.
            #expect(try target.abortStaleUploads(olderThan: .seconds(3600)) == 0, "recent uploads are kept")
            #expect(try target.openUploads().count == 2)
        }
        Thread.sleep(forTimeInterval: 1.1)  // the servers report start times in whole seconds
        // One database's folder: another database's upload under the same prefix stays open.
        #expect(try target.abortStaleUploads(olderThan: .zero, inFolder: "d") == 0, "a folder is matched whole")
        #expect(try target.abortStaleUploads(olderThan: .zero, inFolder: "db") == 1)
        #expect(try target.openUploads().map { $0.key.hasSuffix("/other/left-open.bin") } == [true])
        #expect(try target.abortStaleUploads(olderThan: .zero) == 1)
        #expect(try target.openUploads().isEmpty)
        #expect(try neighbour.openUploads().count == 1, "uploads outside the prefix are left alone")
        #expect(try neighbour.abortStaleUploads(olderThan: .zero) == 1)
    }

    @Test func listsMoreThanOnePageOfObjects() throws {
        let server = try S3TestServer.shared(.moto)
        let target = try server.makeTarget(prefix: uniqueS3Prefix("many"))
        let count = 1_010
        let keys = (0..<count).map { String(format: "db/%05d.bin", $0) }
        let failures = UploadFailures()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for index in stride(from: worker, to: count, by: 4) {
                do { try upload(Data([UInt8(index & 255)]), to: target, key: keys[index]) } catch { failures.add(error) }
            }
        }
        #expect(failures.errors.isEmpty, "\(failures.errors.first.map { "\($0)" } ?? "")")
        let listed = try target.list(prefix: "db/")
        #expect(listed.count == count)
        #expect(listed.map(\.key) == keys)
        #expect(listed.allSatisfy { $0.size == 1 })
    }

    @Test func wrongSecretNamesTheTargetAndTheCodeWithoutTheSecret() throws {
        let server = try S3TestServer.shared(.rclone)
        let wrongSecret = "wrong-secret-Zq8xV3pL"
        let target = try server.makeTarget(prefix: uniqueS3Prefix("auth"), secret: wrongSecret)
        var errors: [TargetError] = []
        for attempt in [{ _ = try target.list(prefix: "") }, { try upload(Data("x".utf8), to: target, key: "a.bin") }] {
            do {
                try attempt()
                Issue.record("a wrong secret must fail")
            } catch let error as TargetError {
                errors.append(error)
            }
        }
        #expect(errors.count == 2)
        for error in errors {
            let text = "\(error.message)\n\(error.hint ?? "")\n\(error)\n\(String(reflecting: error))"
            #expect(text.contains("target s3-rclone"))
            #expect(text.contains("SignatureDoesNotMatch"), "\(text)")
            #expect(!text.contains(wrongSecret))
            #expect(!text.contains(S3TestServer.secretAccessKey))
            #expect(error.isPermanent)
        }
    }

    @Test func signsQueriesWithReservedCharactersTheWayTheServerChecksThem() throws {
        // rclone verifies signatures: prefixes and keys with `/`, spaces, `+`, `=` and UTF-8 must sign right.
        let server = try S3TestServer.shared(.rclone)
        let target = try server.makeTarget(prefix: uniqueS3Prefix("encoding"))
        let keys = ["dir/sub dir/a+b=c.bin", "dir/ünïcödé.bin", "dir/semi;colon&amp.bin"]
        for key in keys { try upload(Data(key.utf8), to: target, key: key) }
        #expect(try target.list(prefix: "dir/").map(\.key) == keys.sorted())
        #expect(try target.list(prefix: "dir/sub dir/a+").map(\.key) == [keys[0]])
        for key in keys { #expect(try download(from: target, key: key) == Data(key.utf8)) }
        for key in keys { try target.delete(key: key) }
        #expect(try target.list(prefix: "").isEmpty)
    }
}

/// Errors collected from several threads.
private final class UploadFailures: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var errors: [Error] = []
    func add(_ error: Error) {
        lock.lock()
        errors.append(error)
        lock.unlock()
    }
}

/// Retries against injected faults, through a proxy in front of rclone (signatures still checked).
@Suite struct S3FaultTests {
    @Test func survivesTransientFailuresAndResumesACutDownload() throws {
        let server = try S3TestServer.shared(.rclone)
        let proxy = try FaultyProxy(inFrontOf: server, mode: .flaky)
        defer { proxy.stop() }
        let prefix = uniqueS3Prefix("flaky")
        let target = try server.makeTarget(prefix: prefix, partSize: 5 << 20, concurrency: 2, port: proxy.port,
                                           retryPolicy: RetryPolicy(maximumAttempts: 5, initialDelay: .milliseconds(20)))
        var generator = SplitMix64(seed: 99)
        let data = Data((0..<((11 << 20) + 5)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        try upload(data, to: target, key: "db/flaky.bin", chunk: 1 << 20)
        #expect(try target.list(prefix: "db/").map(\.size) == [Int64(data.count)], "the first listing's 500 was retried")
        let downloaded = try download(from: target, key: "db/flaky.bin")
        let same = downloaded == data  // not inside #expect: no diff of 11 MiB on failure
        #expect(same, "the cut-off download resumed where it stopped: \(downloaded.count) of \(data.count) bytes")
        let faults = try proxy.faultCounts()
        #expect(faults["part503", default: 0] > 2 && faults["partdrop", default: 0] > 1, "part faults were injected: \(faults)")
        #expect(faults["list500", default: 0] > 1 && faults["getcut", default: 0] > 1, "list and download faults were injected: \(faults)")
        let direct = try server.makeTarget(prefix: prefix)
        #expect(try direct.openUploads().isEmpty)
        try direct.delete(key: "db/flaky.bin")
    }

    @Test func aStoreThatKeepsFailingEndsInACleanFailure() throws {
        let server = try S3TestServer.shared(.rclone)
        let proxy = try FaultyProxy(inFrontOf: server, mode: .down)
        defer { proxy.stop() }
        let prefix = uniqueS3Prefix("down")
        let target = try server.makeTarget(prefix: prefix, partSize: 5 << 20, port: proxy.port,
                                           retryPolicy: RetryPolicy(maximumAttempts: 3, initialDelay: .milliseconds(10)))
        do {
            try upload(Data(repeating: 3, count: 11 << 20), to: target, key: "db/never.bin", chunk: 1 << 20)
            Issue.record("an upload whose parts always fail must fail")
        } catch let error as TargetError {
            #expect(error.message.contains("SlowDown"), "\(error.message)")
            #expect(!error.isPermanent)
        }
        let direct = try server.makeTarget(prefix: prefix)
        #expect(try direct.list(prefix: "").isEmpty, "nothing visible under the final key")
        #expect(try direct.openUploads().isEmpty, "the multipart upload was aborted")
    }
}
