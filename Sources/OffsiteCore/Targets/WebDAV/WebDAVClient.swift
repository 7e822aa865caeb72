import Foundation

/// Builds URLs, sends and retries WebDAV requests for one target, and maps statuses onto
/// `TargetError`s that name the target. Credentials travel only as libcurl options, so no
/// URL, header built here, or error ever carries them.
final class WebDAVClient: Sendable {
    let targetName: String
    /// `scheme://host[:port]`, the part of every URL before the path.
    let origin: String
    /// The base folder's path as sent (percent-encoded), without a trailing `/`; empty for the root.
    let basePath: String
    /// Where every attempt goes, and every retry is decided.
    let transport: RetryingHTTPClient
    /// The client under the retries (its options and the authentication scheme it learned).
    var http: HTTPClient { transport.http }

    init(targetName: String, origin: String, basePath: String, http: HTTPClient, retryPolicy: RetryPolicy,
         control: RequestControl = RequestControl()) {
        self.targetName = targetName
        self.origin = origin
        self.basePath = basePath
        self.transport = RetryingHTTPClient(name: targetName, http: http, policy: retryPolicy, control: control)
    }

    // MARK: - Paths

    /// The characters left as they are in a path segment (RFC 3986 unreserved); everything else is encoded.
    private static let segmentCharacters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// `segment` percent-encoded for a URL path.
    static func encode(segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: segmentCharacters) ?? segment
    }

    /// The encoded path of a target-relative key (`db/a.bin`) or folder (`db/`, `` for the base).
    func path(of key: String) -> String {
        let isFolder = key.isEmpty || key.hasSuffix("/")
        let segments = key.split(separator: "/", omittingEmptySubsequences: true).map { Self.encode(segment: String($0)) }
        var path = basePath
        if !segments.isEmpty { path += "/" + segments.joined(separator: "/") }
        if isFolder { path += "/" }
        return path.isEmpty ? "/" : path
    }

    /// The absolute URL of an encoded path.
    func url(ofPath path: String) -> String {
        origin + path
    }

    /// The percent-decoded form of an encoded path, as `DAVMultistatus` reports paths.
    static func decoded(_ path: String) -> String {
        DAVMultistatus.normalized(path.removingPercentEncoding ?? path)
    }

    // MARK: - Requests

    /// Sends a request with retries. Statuses in `accepting` (besides 2xx) are returned rather
    /// than thrown. `key` names the object a 404 is about. `prepare` adjusts each attempt.
    func send(_ request: HTTPRequest, operation: String, key: String? = nil, accepting: Set<Int> = [],
              streamingInto sink: (any ByteSink)? = nil,
              onHead: ((Int, [(name: String, value: String)]) -> Void)? = nil,
              prepare: ((inout HTTPRequest) -> Void)? = nil) throws -> HTTPResponse {
        try transport.run(operation) { _ in
            var attempt = request
            prepare?(&attempt)
            return try sendOnce(attempt, operation: operation, key: key, accepting: accepting, streamingInto: sink, onHead: onHead)
        }
    }

    /// Every status that is not a success, for `sendOnce` callers that decide about failures themselves.
    static let failureStatuses = Set(300..<600)

    /// One attempt; a retryable failure throws a non-permanent `TargetError`.
    func sendOnce(_ request: HTTPRequest, operation: String, key: String? = nil, accepting: Set<Int> = [],
                  streamingInto sink: (any ByteSink)? = nil,
                  onHead: ((Int, [(name: String, value: String)]) -> Void)? = nil) throws -> HTTPResponse {
        let response: HTTPResponse
        do {
            response = try transport.perform(request, streamingInto: sink, onHead: onHead)
        } catch let error as HTTPTransportError {
            throw TargetError.failed(target: targetName, operation: operation, detail: error.description,
                                     hint: error.isRetryable ? "check the server address and the network" : nil,
                                     isPermanent: !error.isRetryable)
        }
        if response.isSuccess || accepting.contains(response.status) { return response }
        throw Self.failure(status: response.status, method: request.method, target: targetName, operation: operation, key: key)
    }

    /// PROPFIND with `Depth: 0` or `1` (never infinity: Apache refuses it and it does not scale)
    /// on an encoded path. Returns nil for 404; throws when the answer is not a multistatus.
    func propfind(path: String, depth: Int, operation: String) throws -> [DAVResource]? {
        let request = HTTPRequest(method: "PROPFIND", url: url(ofPath: path),
                                  headers: [("Depth", String(depth)), ("Content-Type", "application/xml; charset=utf-8")],
                                  body: .data(DAVMultistatus.propfindBody))
        let response = try send(request, operation: operation, accepting: [404])
        if response.status == 404 { return nil }
        guard response.status == 207, let resources = DAVMultistatus.parse(response.body, requestPath: Self.decoded(path)) else {
            throw TargetError.failed(target: targetName, operation: operation,
                                     detail: "the server answered HTTP \(response.status) without a readable multistatus",
                                     hint: "check that the URL points to a WebDAV folder", isPermanent: true)
        }
        return resources
    }

    // MARK: - Errors

    /// The `TargetError` for a failed status of `method`.
    static func failure(status: Int, method: String, target: String, operation: String, key: String?) -> TargetError {
        let detail = "HTTP \(status)\(reason(status).map { " \($0)" } ?? "")"
        func permanent(_ hint: String?) -> TargetError {
            .failed(target: target, operation: operation, detail: detail, hint: hint, isPermanent: true)
        }
        func transient(_ hint: String?) -> TargetError {
            .failed(target: target, operation: operation, detail: detail, hint: hint, isPermanent: false)
        }
        switch status {
        case 401:
            return .authentication(target: target, detail: "\(operation): \(detail)")
        case 403 where method == "MOVE":
            // rclone answers 403 for a MOVE whose source is gone or whose folder is missing.
            return permanent("the server refused to rename the uploaded temporary; check the folder still exists and is writable")
        case 403:
            return .authentication(target: target, detail: "\(operation): \(detail)")
        case 404:
            if let key { return .notFound(target: target, key: key) }
            return permanent("check the folder in the target URL")
        case 405:
            return permanent("check that the target URL points to a WebDAV folder")
        case 409:
            return permanent("a parent folder is missing on the server")
        case 412:
            return permanent("the server would not overwrite the existing object")
        case 413:
            return permanent("the server refuses bodies this large; raise its limit (Apache LimitRequestBody, nginx client_max_body_size)")
        case 507:
            return permanent("the WebDAV server is full: free space or raise the quota, or shorten retention")
        case 408, 423, 429:
            return transient(status == 423 ? "the object is locked by another client" : "the server is busy; try again later")
        case 500...599:
            return transient("the server is failing; try again later")
        default:
            return permanent(nil)
        }
    }

    /// The reason phrase of the statuses worth naming.
    private static func reason(_ status: Int) -> String? {
        switch status {
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 412: return "Precondition Failed"
        case 413: return "Content Too Large"
        case 423: return "Locked"
        case 429: return "Too Many Requests"
        case 500: return "Internal Server Error"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 507: return "Insufficient Storage"
        default: return nil
        }
    }
}
