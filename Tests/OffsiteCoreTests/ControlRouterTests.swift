import Foundation
import Testing
@testable import OffsiteCore

private let token = "router-test-token-0123456789"

/// One request to the router and what must come back.
struct RouteCase: Sendable, CustomStringConvertible {
    var tokenConfigured: Bool
    var method: String
    var path: String
    var headers: [HTTPServerHeader] = []
    var body: String = ""
    var busy: Set<String> = []
    var status: Int
    var bodyContains: String?

    var description: String { "\(tokenConfigured ? "token" : "no token") \(method) \(path) \(body) → \(status)" }
}

private let bearer = [HTTPServerHeader("Authorization", "Bearer \(token)")]
private let form = [HTTPServerHeader("Content-Type", "application/x-www-form-urlencoded")]

private func respond(_ item: RouteCase, delegate: TestControlDelegate = TestControlDelegate()) -> HTTPServerResponse {
    var snapshot = sampleControlSnapshot(busy: item.busy)
    snapshot.now = controlNow
    delegate.setSnapshot(snapshot)
    let router = ControlRouter(delegate: delegate, token: item.tokenConfigured ? Secret(token) : nil, startWait: .milliseconds(200))
    return router.respond(to: HTTPServerRequest(method: item.method, path: item.path, headers: item.headers, body: Array(item.body.utf8)))
}

@Suite struct ControlRouterTests {
    @Test(arguments: [
        // Always open.
        RouteCase(tokenConfigured: false, method: "GET", path: "/healthz", status: 200, bodyContains: "ok\n"),
        RouteCase(tokenConfigured: true, method: "HEAD", path: "/healthz", status: 200),
        RouteCase(tokenConfigured: false, method: "GET", path: "/metrics", status: 200, bodyContains: "offsite_backups_total"),
        // Without a token, nothing else.
        RouteCase(tokenConfigured: false, method: "GET", path: "/api/status", status: 403, bodyContains: "http.tokenFile"),
        RouteCase(tokenConfigured: false, method: "GET", path: "/", status: 403, bodyContains: "No token configured"),
        RouteCase(tokenConfigured: false, method: "POST", path: "/api/backup", headers: bearer, status: 403),
        RouteCase(tokenConfigured: false, method: "POST", path: "/backup", headers: form, body: "token=\(token)&db=crm", status: 403),
        // With one, reads are open and actions need it.
        RouteCase(tokenConfigured: true, method: "GET", path: "/api/status", status: 200, bodyContains: "\"name\" : \"crm\""),
        RouteCase(tokenConfigured: true, method: "GET", path: "/", status: 200, bodyContains: "<h3>ledger"),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", body: #"{"db": "crm"}"#, status: 401),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: [HTTPServerHeader("Authorization", "Bearer wrong")],
                  body: #"{"db": "crm"}"#, status: 401),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: [HTTPServerHeader("Authorization", "Basic \(token)")],
                  body: #"{"db": "crm"}"#, status: 401),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: #"{"db": "crm"}"#, status: 202,
                  bodyContains: #""id":"20261122T031700Z-manual""#),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer,
                  body: #"{"db": "crm", "target": "s3", "reason": "before CSV import"}"#, status: 202,
                  bodyContains: #""reason":"before CSV import","status":"started","target":"s3""#),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: #"{"db": "crm"}"#, busy: ["crm"],
                  status: 409, bodyContains: "running"),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: #"{"db": "ledger"}"#, busy: ["crm"],
                  status: 202),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: "", status: 400,
                  bodyContains: "which database"),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: #"{"db": "nope"}"#, status: 400,
                  bodyContains: "known: crm, ledger"),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: #"{"db": "crm", "target": "tape"}"#,
                  status: 400, bodyContains: "configured: s3, nas"),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: #"{"db": "crm", "retention": 1}"#,
                  status: 400, bodyContains: "unknown key"),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: #"{"db": 7}"#, status: 400),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: "[1]", status: 400),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer, body: "{nonsense", status: 400),
        RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer,
                  body: #"{"db": "crm", "reason": "\#(String(repeating: "x", count: 201))"}"#, status: 400, bodyContains: "longer than 200"),
        // The page's form.
        RouteCase(tokenConfigured: true, method: "POST", path: "/backup", headers: form, body: "token=\(token)&db=crm&reason=now",
                  status: 202, bodyContains: "The backup 20261122T031700Z-manual of crm has started."),
        RouteCase(tokenConfigured: true, method: "POST", path: "/backup", headers: form, body: "token=wrong&db=crm", status: 403,
                  bodyContains: "Wrong token"),
        RouteCase(tokenConfigured: true, method: "POST", path: "/backup", headers: form, body: "db=crm", status: 403),
        RouteCase(tokenConfigured: true, method: "POST", path: "/backup", headers: form, body: "token=\(token)&db=crm", busy: ["crm"],
                  status: 409, bodyContains: "Already backing up"),
        RouteCase(tokenConfigured: true, method: "POST", path: "/backup", headers: form, body: "token=%zz", status: 400),
        // Wrong methods and paths.
        RouteCase(tokenConfigured: true, method: "POST", path: "/healthz", status: 405),
        RouteCase(tokenConfigured: true, method: "DELETE", path: "/", status: 405),
        RouteCase(tokenConfigured: true, method: "GET", path: "/api/backup", status: 405),
        RouteCase(tokenConfigured: true, method: "GET", path: "/backup", status: 405),
        RouteCase(tokenConfigured: true, method: "GET", path: "/nothing", status: 404),
        RouteCase(tokenConfigured: false, method: "GET", path: "/favicon.ico", status: 404),
    ])
    func answers(item: RouteCase) {
        let response = respond(item)
        #expect(response.status == item.status, "\(item)")
        #expect(response.header("Cache-Control") == "no-store")
        if let fragment = item.bodyContains {
            let body = String(decoding: response.body, as: UTF8.self)
            #expect(body.contains(fragment), "\(item): \(body)")
        }
    }

    @Test func anAcceptedRequestReachesTheAgentWithItsReason() {
        let delegate = TestControlDelegate()
        let response = respond(RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer,
                                         body: #"{"db": "ledger", "reason": "before\nCSV   import"}"#, status: 202), delegate: delegate)
        #expect(response.status == 202)
        #expect(delegate.requests.count == 1)
        #expect(delegate.requests.first?.database == "ledger")
        #expect(delegate.requests.first?.target == nil)
        #expect(delegate.requests.first?.reason == "before CSV import")
        // Refused requests never reach it.
        _ = respond(RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", body: #"{"db": "crm"}"#, status: 401),
                    delegate: delegate)
        #expect(delegate.requests.count == 1)
    }

    @Test func theOnlyDatabaseNeedsNoName() {
        let delegate = TestControlDelegate()
        var snapshot = sampleControlSnapshot()
        snapshot.databases = ["crm"]
        delegate.setSnapshot(snapshot)
        let router = ControlRouter(delegate: delegate, token: Secret(token))
        let response = router.respond(to: HTTPServerRequest(method: "POST", path: "/api/backup", headers: bearer))
        #expect(response.status == 202)
        #expect(delegate.requests.first?.database == "crm")
    }

    @Test func aBackupThatDoesNotStartInTimeIsAnsweredAsQueued() {
        let delegate = TestControlDelegate()
        delegate.behaviour = .stayQueued
        let response = respond(RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer,
                                         body: #"{"db": "crm"}"#, status: 202), delegate: delegate)
        #expect(response.status == 202)
        #expect(String(decoding: response.body, as: UTF8.self).contains(#""id":null"#))
        #expect(String(decoding: response.body, as: UTF8.self).contains(#""status":"queued""#))
    }

    @Test func aDroppedOrRefusedBackupIs503() {
        let delegate = TestControlDelegate()
        delegate.behaviour = .drop
        let dropped = respond(RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer,
                                        body: #"{"db": "crm"}"#, status: 503), delegate: delegate)
        #expect(dropped.status == 503)
        #expect(String(decoding: dropped.body, as: UTF8.self).contains("the database file is gone"))
        delegate.stopping = true
        let stopping = respond(RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer,
                                         body: #"{"db": "crm"}"#, status: 503), delegate: delegate)
        #expect(stopping.status == 503)
    }

    @Test func unhealthyIs503WithTheReasons() {
        let delegate = TestControlDelegate()
        var snapshot = sampleControlSnapshot()
        snapshot.maxAge = .seconds(1800)
        delegate.setSnapshot(snapshot)
        let response = ControlRouter(delegate: delegate, token: nil).respond(to: HTTPServerRequest(method: "GET", path: "/healthz"))
        #expect(response.status == 503)
        let body = String(decoding: response.body, as: UTF8.self)
        #expect(body.hasPrefix("unhealthy: crm on nas: newest off-site copy is 1h old"))
        #expect(body.split(separator: "\n").count == 2)
    }

    @Test func pagesCarryTheSecurityHeaders() {
        let response = respond(RouteCase(tokenConfigured: true, method: "GET", path: "/", status: 200))
        #expect(response.header("Content-Type") == "text/html; charset=utf-8")
        #expect(response.header("Content-Security-Policy")?.hasPrefix("default-src 'none'") == true)
        #expect(response.header("X-Frame-Options") == "DENY")
        let refused = respond(RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", body: "{}", status: 401))
        #expect(refused.header("WWW-Authenticate") == "Bearer realm=\"offsite\"")
        let busy = respond(RouteCase(tokenConfigured: true, method: "POST", path: "/api/backup", headers: bearer,
                                     body: #"{"db": "crm"}"#, busy: ["crm"], status: 409))
        #expect(busy.header("Retry-After") == "10")
        let metrics = respond(RouteCase(tokenConfigured: false, method: "GET", path: "/metrics", status: 200))
        #expect(metrics.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        let wrongMethod = respond(RouteCase(tokenConfigured: false, method: "PUT", path: "/metrics", status: 405))
        #expect(wrongMethod.header("Allow") == "GET, HEAD")
    }
}
