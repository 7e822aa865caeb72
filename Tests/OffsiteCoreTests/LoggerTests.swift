import Foundation
import Testing
@testable import OffsiteCore

/// Collects the lines a logger writes.
private final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String] = []
    var lines: [String] { lock.withLock { storage } }
    func append(_ line: String) { lock.withLock { storage.append(line) } }
}

/// A logger writing into a collector, its clock pinned at 2026-11-22T03:17:00Z.
private func makeLogger(_ format: LogConfig.Format, level: LogConfig.Level = .info) -> (Logger, LineCollector) {
    let collector = LineCollector()
    let logger = Logger(format: format, level: level, output: .lines { collector.append($0) },
                        clock: { Date(timeIntervalSince1970: 1_795_317_420) })
    return (logger, collector)
}

private struct TargetCredentials {
    var name: String
    var key: Secret
}

private struct UploadFailure: UserFacingError {
    var message: String { "upload to s3 failed: HTTP 503" }
    var hint: String? { "try later" }
}

@Suite struct LoggerTests {
    @Test func logfmtLineHasTimeLevelEventAndFieldsInOrder() {
        let (logger, lines) = makeLogger(.logfmt)
        logger.info("backup.done", ["db": "crm", "target": "s3", "id": "20261122T031700Z-change", "bytes": 1_048_576])
        #expect(lines.lines == [
            "time=2026-11-22T03:17:00Z level=info event=backup.done db=crm target=s3 id=20261122T031700Z-change bytes=1048576",
        ])
        let built: [(String, String)] = [("db", "crm"), ("reason", "disk full")]
        logger.log(.info, "built", fields: built)
        #expect(lines.lines.last == #"time=2026-11-22T03:17:00Z level=info event=built db=crm reason="disk full""#)
    }

    @Test(arguments: [
        ("plain", "plain"),
        ("two words", #""two words""#),
        ("", #""""#),
        (#"say "hi""#, #""say \"hi\"""#),
        ("a=b", #""a=b""#),
        (#"C:\temp"#, #""C:\\temp""#),
        ("line1\nline2", #""line1\nline2""#),
        ("tab\there", #""tab\there""#),
        ("bell\u{07}", #""bell\u0007""#),
        ("ünïcødé", "ünïcødé"),
    ])
    func logfmtQuotesValuesThatNeedIt(value: String, expected: String) {
        let (logger, lines) = makeLogger(.logfmt)
        logger.info("e", ["v": value])
        #expect(lines.lines.first?.hasSuffix(" v=" + expected) == true, "\(lines.lines)")
        #expect(lines.lines.first?.contains("\n") == false)
    }

    @Test func valuesAreRenderedByKind() {
        let (logger, lines) = makeLogger(.logfmt)
        let missing: String? = nil
        let present: Int? = 7
        logger.warn("mixed", ["ok": true, "ratio": 0.5, "at": Date(timeIntervalSince1970: 0), "wait": Duration.seconds(90),
                              "missing": missing as Any, "present": present as Any, "error": UploadFailure(),
                              "time": "spoof", "bad key!": 1])
        #expect(lines.lines == [
            "time=2026-11-22T03:17:00Z level=warn event=mixed ok=true ratio=0.5 at=1970-01-01T00:00:00Z wait=1m30s "
                + #"present=7 error="upload to s3 failed: HTTP 503" time_=spoof bad_key_=1"#,
        ])
    }

    @Test func jsonLineHasTheSameKeysAndTypedValues() throws {
        let (logger, lines) = makeLogger(.json)
        logger.error("backup.failed", ["db": "crm", "target": "s3", "bytes": 42, "retry": false,
                                       "reason": "connection refused\n\"quoted\""])
        let line = try #require(lines.lines.first)
        #expect(line.hasPrefix(#"{"time":"2026-11-22T03:17:00Z","level":"error","event":"backup.failed","db":"crm""#))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["bytes"] as? Int == 42)
        #expect(object["retry"] as? Bool == false)
        #expect(object["reason"] as? String == "connection refused\n\"quoted\"")
        #expect(Set(object.keys) == ["time", "level", "event", "db", "target", "bytes", "retry", "reason"])
    }

    @Test(arguments: [LogConfig.Format.logfmt, .json])
    func neverPrintsASecret(format: LogConfig.Format) {
        let (logger, lines) = makeLogger(format)
        let secret = Secret("hunter2-very-secret")
        logger.error("config", ["key": secret, "credentials": TargetCredentials(name: "s3", key: secret),
                                "keys": [secret, secret], "maybe": Optional(secret) as Any])
        logger.log(.error, "pairs", fields: [("key", secret)])
        let text = lines.lines.joined(separator: "\n")
        #expect(lines.lines.count == 2)
        #expect(!text.contains("hunter2"))
        #expect(text.contains("<redacted>"))
    }

    @Test func levelsBelowTheThresholdAreDropped() {
        let (logger, lines) = makeLogger(.logfmt, level: .warn)
        logger.debug("a")
        logger.info("b")
        logger.warn("c")
        logger.error("d")
        logger.log(.info, "e", fields: [])
        #expect(lines.lines.map { $0.components(separatedBy: "event=").last! } == ["c", "d"])
        #expect(!logger.isEnabled(.info) && logger.isEnabled(.error))
        let (verbose, all) = makeLogger(.logfmt, level: .debug)
        verbose.debug("x")
        #expect(all.lines.count == 1)
    }

    @Test func concurrentLinesNeverInterleave() throws {
        let folder = try ScratchFolder("logger")
        let path = folder.file("log")
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(descriptor >= 0)
        defer { close(descriptor) }
        let logger = Logger(format: .logfmt, output: .fileDescriptor(descriptor))
        let threads = 8, perThread = 60
        let filler = String(repeating: "x", count: 5000)  // longer than PIPE_BUF: a torn write would show
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<perThread {
                logger.info("tick", ["thread": thread, "index": index, "filler": filler])
            }
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.last == "")
        #expect(lines.count == threads * perThread + 1)
        var seen = Set<String>()
        for line in lines.dropLast() {
            #expect(line.hasPrefix("time=") && line.hasSuffix("filler=" + filler))
            let parts = line.split(separator: " ")
            #expect(parts.count == 6)
            seen.insert(parts[3] + " " + parts[4])
        }
        #expect(seen.count == threads * perThread)
    }

    @Test func isoTimestampsAreUTC() {
        #expect(formatISO8601(Date(timeIntervalSince1970: 1_795_317_420)) == "2026-11-22T03:17:00Z")
        #expect(formatISO8601(Date(timeIntervalSince1970: 1_795_317_420.25), milliseconds: true) == "2026-11-22T03:17:00.250Z")
        #expect(formatISO8601(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00Z")
    }
}
