import Foundation
import Testing
@testable import OffsiteCore

/// What a parse should come to: a request's method, path, query and body, waiting for more, or a
/// status code.
private enum Expected: Equatable, CustomStringConvertible {
    case request(method: String, path: String, query: String?, body: String)
    case incomplete
    case status(Int)

    var description: String {
        switch self {
        case let .request(method, path, query, body): return "\(method) \(path) ?\(query ?? "-") body=\(body)"
        case .incomplete: return "incomplete"
        case let .status(status): return "\(status)"
        }
    }
}

private let smallLimits: HTTPLimits = {
    var limits = HTTPLimits()
    limits.maximumRequestLineBytes = 64
    limits.maximumHeadBytes = 256
    limits.maximumHeaderCount = 4
    limits.maximumBodyBytes = 32
    return limits
}()

private func outcome(_ text: String) -> Expected {
    switch parseHTTPRequest(Array(text.utf8), limits: smallLimits) {
    case .incomplete: return .incomplete
    case let .invalid(status, _): return .status(status)
    case let .complete(request, consumed):
        #expect(consumed <= text.utf8.count)
        return .request(method: request.method, path: request.path, query: request.query,
                        body: String(decoding: request.body, as: UTF8.self))
    }
}

private let longLine = "GET /" + String(repeating: "a", count: 80)
private let longHeader = "GET / HTTP/1.1\r\nHost: x\r\nA: " + String(repeating: "v", count: 300)

/// Requests and what parsing them must come to, with `smallLimits`.
private let parserCases: [(String, Expected)] = [
    // Whole requests.
    ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", .request(method: "GET", path: "/healthz", query: nil, body: "")),
    ("GET /api/status?pretty=1 HTTP/1.1\r\nHost: x\r\n\r\n", .request(method: "GET", path: "/api/status", query: "pretty=1", body: "")),
    ("GET / HTTP/1.0\r\n\r\n", .request(method: "GET", path: "/", query: nil, body: "")),
    ("GET / HTTP/1.1\nHost: x\n\n", .request(method: "GET", path: "/", query: nil, body: "")),
    ("POST /api/backup HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{\"db\":\"a\"}\n",
     .request(method: "POST", path: "/api/backup", query: nil, body: "{\"db\":\"a\"}\n")),
    ("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nabEXTRA", .request(method: "POST", path: "/b", query: nil, body: "ab")),
    ("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nab", .request(method: "POST", path: "/b", query: nil, body: "ab")),
    ("HEAD / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n", .request(method: "HEAD", path: "/", query: nil, body: "")),
    // Not there yet.
    ("", .incomplete),
    ("GE", .incomplete),
    ("GET / HTTP/1.1\r\nHost: x\r\n", .incomplete),
    ("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab", .incomplete),
    // Garbage, answered at once.
    ("\u{16}\u{03}\u{01}\u{02}\u{00}", .status(400)),
    (" GET / HTTP/1.1\r\n\r\n", .status(400)),
    ("G(T / HTTP/1.1\r\n\r\n", .status(400)),
    ("hello world\r\n\r\n", .status(400)),
    ("GET /\r\nHost: x\r\n\r\n", .status(400)),
    ("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", .status(400)),
    ("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", .status(400)),
    ("GET /a\u{7F}b HTTP/1.1\r\nHost: x\r\n\r\n", .status(400)),
    ("GET / FTP/1.1\r\nHost: x\r\n\r\n", .status(400)),
    ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", .status(505)),
    ("GET / HTTP/1.1\r\n\r\n", .status(400)),
    ("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", .status(400)),
    ("GET / HTTP/1.1\r\nHost: x\r\n Folded: y\r\n\r\n", .status(400)),
    ("GET / HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n", .status(400)),
    ("GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", .status(400)),
    ("GET / HTTP/1.1\r\nHost: x\r\nA: b\u{01}c\r\n\r\n", .status(400)),
    ("GET / HTTP/1.1\r\nHost: x\rEvil: y\r\n\r\n", .status(400)),
    ("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", .status(400)),
    ("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", .status(400)),
    ("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", .status(400)),
    ("POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", .status(411)),
    // Too large.
    ("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 33\r\n\r\n", .status(413)),
    ("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", .status(400)),
    (longLine + " HTTP/1.1\r\nHost: x\r\n\r\n", .status(414)),
    (longLine, .status(414)),
    ("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", .status(431)),
    (longHeader, .status(431)),
    (longHeader + "\r\n\r\n", .status(431)),
]

@Suite struct HTTPParserTests {
    @Test(arguments: parserCases)
    fileprivate func parses(text: String, expected: Expected) {
        #expect(outcome(text) == expected, "\(text.debugDescription)")
    }

    @Test func headersKeepTheirOrderAndAreFoundWithoutCase() throws {
        guard case let .complete(request, _) = parseHTTPRequest(Array("GET / HTTP/1.1\r\nHost: a\r\nX-One:  1 \r\nx-one: 2\r\n\r\n".utf8),
                                                                limits: HTTPLimits()) else {
            Issue.record("not parsed")
            return
        }
        #expect(request.headers == [HTTPServerHeader("Host", "a"), HTTPServerHeader("X-One", "1"), HTTPServerHeader("x-one", "2")])
        #expect(request.header("x-ONE") == "1")
        #expect(request.header("Authorization") == nil)
    }

    @Test func aResponseAlwaysClosesAndHeadLeavesOutTheBody() {
        let response = HTTPServerResponse.text(409, "busy\n", headers: [HTTPServerHeader("Retry-After", "10")])
        let full = String(decoding: response.serialized(), as: UTF8.self)
        #expect(full == "HTTP/1.1 409 Conflict\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 10\r\n"
                + "Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n")
        let head = String(decoding: response.serialized(includingBody: false), as: UTF8.self)
        #expect(head.hasSuffix("Content-Length: 5\r\nConnection: close\r\n\r\n"))
    }

    @Test(arguments: [
        ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc"),
        ("Basic abc", nil), ("Bearer", nil), ("Bearer ", nil), ("abc", nil),
    ] as [(String, String?)])
    func readsBearerTokens(header: String, token: String?) {
        #expect(bearerToken(header) == token)
    }

    @Test func comparesTokensWhateverTheirLengths() {
        let token = Secret("correct-horse-battery-staple")
        #expect(tokensMatch("correct-horse-battery-staple", token))
        #expect(!tokensMatch("correct-horse-battery-stapl", token))
        #expect(!tokensMatch("correct-horse-battery-staple!", token))
        #expect(!tokensMatch("", token))
        #expect(!tokensMatch("Correct-horse-battery-staple", token))
    }

    @Test(arguments: [
        ("token=a%2Bb&db=crm&reason=before+CSV+import", ["token": "a+b", "db": "crm", "reason": "before CSV import"]),
        ("db=crm&db=other&empty=&flag", ["db": "crm", "empty": "", "flag": ""]),
        ("", [:]),
    ] as [(String, [String: String])])
    func decodesForms(body: String, fields: [String: String]) {
        #expect(decodeForm(Array(body.utf8)) == fields)
    }

    @Test func refusesBrokenForms() {
        #expect(decodeForm(Array("token=%zz".utf8)) == nil)
        #expect(decodeForm([0xFF, 0xFE]) == nil)
    }
}
