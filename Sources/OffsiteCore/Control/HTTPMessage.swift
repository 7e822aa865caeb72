import Foundation

// The control endpoint's HTTP/1.1 messages: what a request may look like (strictly, and bounded),
// parsed by a pure function that the server feeds with the bytes it has so far, and responses
// that always close the connection.

/// How much and how long one client may make the control endpoint hold.
public struct HTTPLimits: Sendable, Equatable {
    /// The longest request line (`GET /path HTTP/1.1`); longer: 414.
    public var maximumRequestLineBytes = 4 * 1024
    /// The longest head, request line and headers together; longer: 431.
    public var maximumHeadBytes = 16 * 1024
    /// The most header fields; more: 431.
    public var maximumHeaderCount = 64
    /// The largest body; larger: 413.
    public var maximumBodyBytes = 16 * 1024
    /// The time a whole request may take to arrive; then 408.
    public var requestTimeout: Duration = .seconds(10)
    /// The longest silence while a request arrives; then 408 (or, before its first byte, a close).
    public var idleTimeout: Duration = .seconds(5)
    /// The time a response may take to be taken by the client; then the connection is closed.
    public var writeTimeout: Duration = .seconds(10)
    /// How long the server goes on reading (and dropping) what a client still sends after the
    /// response, so that the client reads the response rather than a reset.
    public var lingerTimeout: Duration = .seconds(2)
    /// The most open connections; at the cap the oldest connection still sending its request
    /// is closed to make room, so that a crowd of slow clients cannot lock others out.
    public var maximumConnections = 256
    /// The most requests handled at once; more wait in line.
    public var maximumHandlers = 16

    /// The defaults.
    public init() {}
}

/// One request, parsed.
public struct HTTPServerRequest: Sendable, Equatable {
    /// `GET`, `POST`, … (case-sensitive, as HTTP says).
    public var method: String
    /// The path, without the query (`/api/status`).
    public var path: String
    /// What follows `?` in the request target, or nil.
    public var query: String?
    /// `HTTP/1.1` or `HTTP/1.0`.
    public var version: String
    /// The header fields in order, names as sent.
    public var headers: [HTTPServerHeader]
    /// The body (at most `HTTPLimits.maximumBodyBytes`).
    public var body: [UInt8]

    /// Creates a request.
    public init(method: String, path: String, query: String? = nil, version: String = "HTTP/1.1",
                headers: [HTTPServerHeader] = [], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
    }

    /// The first value of the header `name` (compared without case), or nil.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// One header field.
public struct HTTPServerHeader: Sendable, Equatable {
    /// The field name as sent.
    public var name: String
    /// The value without surrounding whitespace.
    public var value: String

    /// Creates a field.
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// One response. The server adds `Content-Length` and `Connection: close`.
public struct HTTPServerResponse: Sendable, Equatable {
    /// The status code.
    public var status: Int
    /// Header fields besides `Content-Length` and `Connection`.
    public var headers: [HTTPServerHeader]
    /// The body.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: Int, headers: [HTTPServerHeader] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A `text/plain` response whose body is `text`.
    public static func text(_ status: Int, _ text: String, headers: [HTTPServerHeader] = []) -> HTTPServerResponse {
        HTTPServerResponse(status: status, headers: [HTTPServerHeader("Content-Type", "text/plain; charset=utf-8")] + headers,
                     body: Array(text.utf8))
    }

    /// The first value of the header `name` (compared without case), or nil.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// The bytes on the wire: status line, headers, `Content-Length`, `Connection: close`, and
    /// the body unless `includingBody` is false (an answer to `HEAD`).
    public func serialized(includingBody: Bool = true) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(HTTPServerResponse.reasonPhrase(status))\r\n"
        for header in headers { head += "\(header.name): \(header.value)\r\n" }
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + (includingBody ? body : [])
    }

    /// The reason phrase of `status` (RFC 9110), or `Unknown`.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Unknown"
        }
    }
}

/// What the bytes received so far amount to.
public enum HTTPParseOutcome: Sendable, Equatable {
    /// Not a whole request yet, and nothing wrong so far.
    case incomplete
    /// A whole request, taking the first `consumed` bytes.
    case complete(HTTPServerRequest, consumed: Int)
    /// Not a request this server takes: answer `status` with `reason`, then close.
    case invalid(status: Int, reason: String)
}

/// Parses an HTTP/1.x request from the bytes received so far, strictly: a request line of a
/// method token, an origin-form target and `HTTP/1.0` or `HTTP/1.1`; header fields without
/// folding or control characters; `Host` once for HTTP/1.1; a body only by `Content-Length`
/// (chunked bodies get 411). Lines end in CRLF (a bare LF is accepted). Rejects as early as it
/// can, so garbage is answered without waiting for more of it.
public func parseHTTPRequest(_ bytes: [UInt8], limits: HTTPLimits) -> HTTPParseOutcome {
    // The method, as far as it has arrived, must be a token followed by a space.
    for (index, byte) in bytes.prefix(limits.maximumRequestLineBytes + 1).enumerated() {
        if byte == space {
            if index == 0 { return .invalid(status: 400, reason: "the request line starts with a space") }
            break
        }
        if !isTokenByte(byte) { return .invalid(status: 400, reason: "the request line does not start with a method") }
    }
    guard let headEnd = findHeadEnd(bytes, limit: limits.maximumHeadBytes) else {
        let firstLine = bytes.firstIndex(of: newline) ?? bytes.count
        if firstLine > limits.maximumRequestLineBytes {
            return .invalid(status: 414, reason: "the request line is longer than \(limits.maximumRequestLineBytes) bytes")
        }
        if bytes.count > limits.maximumHeadBytes {
            return .invalid(status: 431, reason: "the request head is longer than \(limits.maximumHeadBytes) bytes")
        }
        return .incomplete
    }
    var lines = splitLines(bytes[0..<headEnd.contentEnd])
    guard !lines.isEmpty else { return .invalid(status: 400, reason: "empty request") }
    if lines.contains(where: { $0.contains(carriageReturn) }) {
        return .invalid(status: 400, reason: "a bare carriage return in the request head")
    }
    let requestLine = lines.removeFirst()
    if requestLine.count > limits.maximumRequestLineBytes {
        return .invalid(status: 414, reason: "the request line is longer than \(limits.maximumRequestLineBytes) bytes")
    }
    let parts = requestLine.split(separator: space, omittingEmptySubsequences: false)
    guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
        return .invalid(status: 400, reason: "the request line is not METHOD TARGET VERSION")
    }
    let method = String(decoding: parts[0], as: UTF8.self)
    let version = String(decoding: parts[2], as: UTF8.self)
    guard parts[1].first == UInt8(ascii: "/"), parts[1].allSatisfy({ $0 > space && $0 < 0x7F }) else {
        return .invalid(status: 400, reason: "the request target is not an absolute path")
    }
    let target = String(decoding: parts[1], as: UTF8.self)
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        let isHTTP = version.hasPrefix("HTTP/") && version.count == 8
        return .invalid(status: isHTTP ? 505 : 400,
                        reason: isHTTP ? "\(version) is not supported; use HTTP/1.1" : "the request line has no HTTP version")
    }
    if lines.count > limits.maximumHeaderCount {
        return .invalid(status: 431, reason: "more than \(limits.maximumHeaderCount) header fields")
    }
    var headers: [HTTPServerHeader] = []
    for line in lines {
        guard let first = line.first, first != space, first != tab else {
            return .invalid(status: 400, reason: "a folded or empty header line")
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
              line[line.startIndex..<colon].allSatisfy(isTokenByte) else {
            return .invalid(status: 400, reason: "a header line is not NAME: VALUE")
        }
        let value = line[line.index(after: colon)...]
        guard value.allSatisfy({ $0 == tab || ($0 >= space && $0 != 0x7F) }) else {
            return .invalid(status: 400, reason: "a control character in a header value")
        }
        let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self)
        let text = String(decoding: value, as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
        headers.append(HTTPServerHeader(name, text))
    }
    func values(_ name: String) -> [String] {
        headers.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }
    let hosts = values("Host")
    if hosts.count > 1 || (version == "HTTP/1.1" && hosts.isEmpty) {
        return .invalid(status: 400, reason: "an HTTP/1.1 request needs exactly one Host header")
    }
    if !values("Transfer-Encoding").isEmpty {
        return .invalid(status: 411, reason: "send the body with Content-Length, not Transfer-Encoding")
    }
    var bodyLength = 0
    let lengths = values("Content-Length").flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
        .map { $0.trimmingCharacters(in: .whitespaces) }
    if let first = lengths.first {
        guard lengths.allSatisfy({ $0 == first }), !first.isEmpty, first.count <= 18,
              first.allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(first) else {
            return .invalid(status: 400, reason: "Content-Length is not one number")
        }
        bodyLength = length
    }
    if bodyLength > limits.maximumBodyBytes {
        return .invalid(status: 413, reason: "the body is larger than \(limits.maximumBodyBytes) bytes")
    }
    let total = headEnd.bodyStart + bodyLength
    guard bytes.count >= total else { return .incomplete }
    let question = target.firstIndex(of: "?")
    let request = HTTPServerRequest(method: method, path: String(target[..<(question ?? target.endIndex)]),
                              query: question.map { String(target[target.index(after: $0)...]) }, version: version,
                              headers: headers, body: Array(bytes[headEnd.bodyStart..<total]))
    return .complete(request, consumed: total)
}

private let space = UInt8(ascii: " ")
private let tab = UInt8(ascii: "\t")
private let newline = UInt8(ascii: "\n")
private let carriageReturn = UInt8(ascii: "\r")

/// RFC 9110 `tchar`: the characters of methods and header names.
private func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    default:
        return "!#$%&'*+-.^_`|~".utf8.contains(byte)
    }
}

/// Where the head ends: the end of its last line's content and the first byte of the body; nil
/// when the empty line has not arrived within `limit` (+4) bytes.
private func findHeadEnd(_ bytes: [UInt8], limit: Int) -> (contentEnd: Int, bodyStart: Int)? {
    let end = min(bytes.count, limit + 4)
    var index = 0
    while index < end {
        if bytes[index] == newline {
            // "\n\n" or "\n\r\n" ends the head.
            if index + 1 < bytes.count && bytes[index + 1] == newline { return (index, index + 2) }
            if index + 2 < bytes.count && bytes[index + 1] == carriageReturn && bytes[index + 2] == newline {
                return (index, index + 3)
            }
        }
        index += 1
    }
    return nil
}

/// The head's lines without their line ends (`\r\n` or `\n`).
private func splitLines(_ head: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
    head.split(separator: newline, omittingEmptySubsequences: false).map { line in
        line.last == carriageReturn ? line.dropLast() : line
    }
}
