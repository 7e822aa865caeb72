import Foundation
import Testing
@testable import OffsiteCore

private let token = "server-test-token-0123456789abcdef"

/// The control endpoint on a free loopback port, serving `TestControlDelegate`, its log lines kept.
final class RunningControlServer: @unchecked Sendable {
    let server: ControlServer
    let delegate: TestControlDelegate
    let folder: ScratchFolder
    let logLines = LogLines()

    init(token: String?, limits: HTTPLimits = HTTPLimits()) throws {
        folder = try ScratchFolder("control-server")
        delegate = TestControlDelegate()
        let logLines = self.logLines
        let logger = Logger(format: .logfmt, level: .debug, output: .lines { logLines.append($0) })
        let config = HTTPConfig(listen: try ListenAddress(parsing: "127.0.0.1:\(try freeLoopbackPort())"), token: token.map(Secret.init))
        server = ControlServer(config: config, delegate: delegate, logger: logger, limits: limits, startWait: .seconds(2))
        try server.start()
    }

    deinit { server.stop() }

    var port: Int { server.port }

    func curl(_ path: String, token: String? = nil, _ arguments: [String] = []) throws -> CurlResult {
        try OffsiteCoreTests.curl(path, port: port, in: folder, token: token, arguments)
    }
}

/// Log lines collected from any thread.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}

/// Writes `text` to a file in `folder` and returns `@PATH` for curl's `--data-binary`.
private func bodyFile(_ text: String, in folder: ScratchFolder) throws -> String {
    let path = folder.file("body-\(UUID().uuidString.prefix(8))")
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return "@" + path
}

@Suite(.serialized) struct ControlServerTests {
    @Test func withoutATokenOnlyHealthAndMetricsAnswer() throws {
        let running = try RunningControlServer(token: nil)
        let health = try running.curl("/healthz")
        #expect(health.status == 200)
        #expect(health.body == "ok\n")
        #expect(health.headers["connection"] == "close")
        #expect(health.headers["cache-control"] == "no-store")
        let metrics = try running.curl("/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(metrics.body.contains(#"offsite_backups_total{database="crm",target="s3"} 2"#))
        #expect(try running.curl("/api/status").status == 403)
        #expect(try running.curl("/").status == 403)
        #expect(try running.curl("/api/backup", token: token, ["-X", "POST"]).status == 403)
        #expect(try running.curl("/backup", ["--data-binary", try bodyFile("token=\(token)&db=crm", in: running.folder)]).status == 403)
        #expect(running.delegate.requests.isEmpty)
    }

    @Test func withATokenReadsAreOpenAndBackupsNeedIt() throws {
        let running = try RunningControlServer(token: token)
        let status = try running.curl("/api/status")
        #expect(status.status == 200)
        #expect(status.headers["content-type"] == "application/json")
        let parsed = try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any]
        #expect((parsed?["databases"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["crm", "ledger"])
        #expect(status.body == renderStatusJSON(sampleControlState()))

        let page = try running.curl("/")
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        #expect(page.headers["content-security-policy"]?.hasPrefix("default-src 'none'") == true)
        #expect(page.body.contains("id=\"db-crm\"") && page.body.contains("id=\"target-nas\""))

        let json = ["-H", "Content-Type: application/json"]
        let noToken = try running.curl("/api/backup", json + ["--data-binary", try bodyFile(#"{"db": "crm"}"#, in: running.folder)])
        #expect(noToken.status == 401)
        #expect(noToken.headers["www-authenticate"] == "Bearer realm=\"offsite\"")
        let wrongToken = try running.curl("/api/backup", token: token + "x",
                                          json + ["--data-binary", try bodyFile(#"{"db": "crm"}"#, in: running.folder)])
        #expect(wrongToken.status == 401)
        #expect(running.delegate.requests.isEmpty)

        let accepted = try running.curl("/api/backup", token: token,
                                        json + ["--data-binary", try bodyFile(#"{"db": "crm", "target": "s3", "reason": "before CSV import"}"#,
                                                                              in: running.folder)])
        #expect(accepted.status == 202)
        let answer = try JSONSerialization.jsonObject(with: Data(accepted.body.utf8)) as? [String: Any]
        #expect(answer?["id"] as? String == "20261122T031700Z-manual")
        #expect(answer?["db"] as? String == "crm")
        #expect(answer?["status"] as? String == "started")
        #expect(running.delegate.requests.map(\.reason) == ["before CSV import"])

        var busy = sampleControlSnapshot(busy: ["crm"])
        busy.now = controlNow
        running.delegate.setSnapshot(busy)
        let conflict = try running.curl("/api/backup", token: token,
                                        json + ["--data-binary", try bodyFile(#"{"db": "crm"}"#, in: running.folder)])
        #expect(conflict.status == 409)
        #expect(conflict.headers["retry-after"] == "10")

        let unknown = try running.curl("/api/backup", token: token,
                                       json + ["--data-binary", try bodyFile(#"{"db": "payroll"}"#, in: running.folder)])
        #expect(unknown.status == 400)
        #expect(unknown.body.contains("known: crm, ledger"))
    }

    @Test func thePagesFormTakesTheTokenAsAField() throws {
        let running = try RunningControlServer(token: token)
        let wrong = try running.curl("/backup", ["--data-binary", try bodyFile("token=nope&db=ledger", in: running.folder)])
        #expect(wrong.status == 403)
        #expect(wrong.body.contains("Wrong token"))
        let started = try running.curl("/backup", ["--data-binary", try bodyFile("token=\(token)&db=ledger&reason=from+the+page",
                                                                                 in: running.folder)])
        #expect(started.status == 202)
        #expect(started.headers["content-security-policy"] != nil)
        #expect(started.body.contains("The backup 20261122T031700Z-manual of ledger has started."))
        #expect(running.delegate.requests.map(\.database) == ["ledger"])
        #expect(running.delegate.requests.map(\.reason) == ["from the page"])
    }

    @Test func headAnswersLikeGetWithoutABody() throws {
        let running = try RunningControlServer(token: token)
        let head = try running.curl("/metrics", ["-I"])
        #expect(head.status == 200)
        // With -I curl writes the headers where the body would go: there must be nothing else.
        #expect(head.body.hasPrefix("HTTP/1.1 200 OK"))
        #expect(!head.body.contains("# HELP"))
        #expect(Int(head.headers["content-length"] ?? "") ?? 0 > 100)
    }

    @Test func wrongMethodsPathsAndMalformedRequestsGetTheirStatus() throws {
        var limits = HTTPLimits()
        limits.requestTimeout = .seconds(1)
        limits.idleTimeout = .seconds(1)
        let running = try RunningControlServer(token: token, limits: limits)
        #expect(try running.curl("/nothing").status == 404)
        let wrongMethod = try running.curl("/healthz", ["-X", "DELETE"])
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers["allow"] == "GET, HEAD")
        #expect(try running.curl("/api/backup").status == 405)
        #expect(try running.curl("/healthz", ["-X", "GE(T"]).status == 400)
        #expect(try running.curl("/healthz", ["-H", "Bad Header: x"]).status == 400)
        #expect(try running.curl("/api/backup", ["-H", "Transfer-Encoding: chunked", "--data-binary", "{}"]).status == 411)
        let large = try bodyFile(String(repeating: "x", count: 20_000), in: running.folder)
        #expect(try running.curl("/api/backup", token: token, ["--data-binary", large]).status == 413)
        #expect(try running.curl("/" + String(repeating: "a", count: 5000)).status == 414)
        #expect(try running.curl("/healthz", ["-H", "X-Big: " + String(repeating: "b", count: 20_000)]).status == 431)
        let fields = (0..<70).flatMap { ["-H", "X-Field-\($0): \($0)"] }
        #expect(try running.curl("/healthz", fields).status == 431)

        // What curl will not send: another HTTP version, and a request that never finishes.
        let version = try RawClient(port: running.port)
        version.send("GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
        #expect(RawClient.status(of: version.readResponse()) == 505)
        let slow = try RawClient(port: running.port)
        slow.send("GET /healthz HTTP/1.1\r\nHo")
        let timedOut = slow.readResponse()
        #expect(RawClient.status(of: timedOut) == 408, "\(timedOut)")
        // A connection that says nothing is closed without an answer.
        let silent = try RawClient(port: running.port)
        #expect(silent.readResponse() == "")
        #expect(try running.curl("/healthz").status == 200)
    }

    @Test func theTokenIsNeverLogged() throws {
        let running = try RunningControlServer(token: token)
        _ = try running.curl("/api/backup", token: token, ["--data-binary", try bodyFile(#"{"db": "crm"}"#, in: running.folder)])
        _ = try running.curl("/api/backup", token: "wrong-\(token)", ["--data-binary", try bodyFile(#"{"db": "crm"}"#, in: running.folder)])
        _ = try running.curl("/backup?token=\(token)", ["--data-binary", try bodyFile("token=\(token)&db=crm", in: running.folder)])
        _ = try running.curl("/healthz", ["-H", "X-Token: \(token)", "-H", "Bad Header: \(token)"])
        running.server.stop()
        let log = running.logLines.all.joined(separator: "\n")
        #expect(log.contains("event=http.request"))
        #expect(log.contains("event=http.rejected"))
        #expect(log.contains("path=/backup "))
        #expect(!log.contains(token), "\(log)")
    }

    @Test func anAddressInUseSaysSo() throws {
        let running = try RunningControlServer(token: nil)
        let second = HTTPServer(address: try ListenAddress(parsing: "127.0.0.1:\(running.port)")) { _ in .text(200, "") }
        do {
            try second.start()
            second.stop()
            Issue.record("a second server bound the same port")
        } catch {
            #expect(error.message.contains("cannot listen on 127.0.0.1:\(running.port)"))
            #expect(error.hint?.contains("http.listen") == true)
        }
    }

    @Test func manyClientsAtOnceAreAllAnswered() async throws {
        let running = try RunningControlServer(token: token)
        let port = running.port
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<200 {
                group.addTask {
                    try await onThread {
                        let client = try RawClient(port: port)
                        client.send("GET \(index % 2 == 0 ? "/healthz" : "/metrics") HTTP/1.1\r\nHost: x\r\n\r\n")
                        return RawClient.status(of: client.readResponse())
                    }
                }
            }
            var all: [Int] = []
            for try await status in group { all.append(status) }
            return all
        }
        #expect(statuses.count == 200)
        #expect(statuses.allSatisfy { $0 == 200 }, "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
    }

    @Test func idleConnectionsCannotLockOthersOut() throws {
        var limits = HTTPLimits()
        limits.maximumConnections = 16
        let running = try RunningControlServer(token: nil, limits: limits)
        // More silent connections than the cap: the oldest are dropped to make room.
        let idle = try (0..<40).map { _ in try RawClient(port: running.port) }
        Thread.sleep(forTimeInterval: 0.2)
        let health = try running.curl("/healthz")
        #expect(health.status == 200)
        #expect(idle.count == 40)
    }
}
