import Foundation

/// One S3 API call before signing: method, object key (nil for the bucket itself), query,
/// extra headers and body with its hashes.
struct S3Call {
    var method: String
    var key: String?
    var query: [(name: String, value: String)] = []
    var headers: [(name: String, value: String)] = []
    var body: HTTPRequestBody = .empty
    /// Hex SHA-256 of the body.
    var payloadHash: String = S3Hash.emptyPayloadHash
    /// Base64 MD5 of the body, sent as `Content-MD5` when set.
    var contentMD5: String?

    /// A call with a body in memory; hashes it and sets `Content-MD5` when `withMD5`.
    static func withBody(_ method: String, key: String?, query: [(name: String, value: String)] = [], data: Data,
                         withMD5: Bool = true) -> S3Call {
        var call = S3Call(method: method, key: key, query: query)
        call.attach(data, withMD5: withMD5)
        return call
    }

    /// Sets `data` as the body with its SHA-256 (signed, so the server refuses a body that
    /// changed on the way) and, when `withMD5`, its MD5 as well. Backup data goes without the
    /// MD5: the signed SHA-256 already covers it, and a second hash of every byte costs as much
    /// CPU as the first.
    mutating func attach(_ data: Data, withMD5: Bool = true) {
        body = .data(data)
        payloadHash = S3Hash.hex(S3Hash.sha256(data))
        contentMD5 = withMD5 ? Data(MD5.digest(data)).base64EncodedString() : nil
    }
}

/// Where a bucket is and how it is addressed.
struct S3Endpoint: Equatable {
    /// `https` or `http`.
    var scheme: String
    /// The host the bucket is reached at (with the bucket name in front when virtual-hosted).
    var host: String
    /// An explicit port, or nil for the scheme's default.
    var port: Int?
    /// Whether the bucket is the first path segment (path-style) rather than part of the host.
    var isPathStyle: Bool
    /// A base path the endpoint URL carried (rare; usually empty), without a trailing `/`.
    var basePath: String

    /// Resolves addressing: a custom endpoint is path-style unless `pathStyle` is false; AWS itself
    /// (no endpoint) is virtual-hosted unless `pathStyle` is true or the bucket has dots (which a
    /// wildcard certificate does not cover).
    static func resolve(endpoint: URL?, bucket: String, region: String, pathStyle: Bool?) -> S3Endpoint {
        if let endpoint, let host = endpoint.host {
            let isPathStyle = pathStyle ?? true
            var basePath = endpoint.path
            while basePath.hasSuffix("/") { basePath.removeLast() }
            return S3Endpoint(scheme: endpoint.scheme?.lowercased() ?? "https", host: isPathStyle ? host : "\(bucket).\(host)",
                              port: endpoint.port, isPathStyle: isPathStyle, basePath: basePath)
        }
        let isPathStyle = pathStyle ?? bucket.contains(".")
        let awsHost = "s3.\(region).amazonaws.com"
        return S3Endpoint(scheme: "https", host: isPathStyle ? awsHost : "\(bucket).\(awsHost)", port: nil,
                          isPathStyle: isPathStyle, basePath: "")
    }

    /// The `Host` header value (with the port when one was given).
    var hostHeader: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return port.map { "\(bracketed):\($0)" } ?? bracketed
    }

    /// The encoded path of `key` in `bucket` (nil: the bucket itself), as sent and as signed.
    func canonicalURI(bucket: String, key: String?) -> String {
        var path = basePath
        if isPathStyle { path += "/" + S3Encoding.encode(bucket) }
        if let key {
            path += "/" + S3Encoding.encode(key, keepingSlashes: true)
        }
        return path.isEmpty ? "/" : path
    }
}

/// Signs, sends and retries S3 calls for one target, and turns failures into `TargetError`s that
/// name the target and the S3 error code. Never puts a secret into an error.
final class S3Client: Sendable {
    let targetName: String
    let bucket: String
    let endpoint: S3Endpoint
    let signer: SigV4Signer
    /// Where every attempt goes, and every retry is decided.
    let transport: RetryingHTTPClient

    init(targetName: String, bucket: String, endpoint: S3Endpoint, signer: SigV4Signer, http: HTTPClient, retryPolicy: RetryPolicy,
         control: RequestControl = RequestControl()) {
        self.targetName = targetName
        self.bucket = bucket
        self.endpoint = endpoint
        self.signer = signer
        self.transport = RetryingHTTPClient(name: targetName, http: http, policy: retryPolicy, control: control)
    }

    /// Sends `call` with retries. Statuses in `accepting` (besides 2xx) are returned rather than
    /// thrown, for callers that give them a meaning (404 on delete). `prepare` can adjust the
    /// call before each attempt (a Range header when resuming a download).
    func send(_ call: S3Call, operation: String, accepting: Set<Int> = [], streamingInto sink: (any ByteSink)? = nil,
              onHead: ((Int, [(name: String, value: String)]) -> Void)? = nil,
              prepare: ((inout S3Call) -> Void)? = nil) throws -> HTTPResponse {
        try transport.run(operation) { _ in
            var attempt = call
            prepare?(&attempt)
            return try sendOnce(attempt, operation: operation, accepting: accepting, streamingInto: sink, onHead: onHead)
        }
    }

    /// One signed attempt; a retryable failure throws a non-permanent `TargetError`.
    func sendOnce(_ call: S3Call, operation: String, accepting: Set<Int> = [], streamingInto sink: (any ByteSink)? = nil,
                  onHead: ((Int, [(name: String, value: String)]) -> Void)? = nil) throws -> HTTPResponse {
        let path = endpoint.canonicalURI(bucket: bucket, key: call.key)
        let query = S3Encoding.canonicalQuery(call.query)
        var headers: [(name: String, value: String)] = [("host", endpoint.hostHeader)]
        if let md5 = call.contentMD5 { headers.append(("content-md5", md5)) }
        headers += call.headers
        headers += signer.signedHeaders(method: call.method, canonicalURI: path, canonicalQuery: query, headers: headers,
                                        payloadHash: call.payloadHash, date: Date())
        var url = "\(endpoint.scheme)://\(endpoint.hostHeader)\(path)"
        if !query.isEmpty { url += "?" + query }
        let response: HTTPResponse
        do {
            response = try transport.perform(HTTPRequest(method: call.method, url: url, headers: headers, body: call.body),
                                             streamingInto: sink, onHead: onHead)
        } catch let error as HTTPTransportError {
            throw TargetError.failed(target: targetName, operation: operation, detail: error.description,
                                     hint: error.isRetryable ? "check the endpoint and the network" : nil,
                                     isPermanent: !error.isRetryable)
        }
        if response.isSuccess || accepting.contains(response.status) { return response }
        throw failure(response, operation: operation)
    }

    /// The `TargetError` for a failed response: the S3 code from the error body (or the status),
    /// a hint where one helps, and whether a retry could succeed.
    func failure(_ response: HTTPResponse, operation: String) -> TargetError {
        let body = S3ErrorBody.parse(response.body)
        let code = body?.code ?? Self.codeForStatus(response.status)
        let message = redact(body?.message ?? "")
        var detail = "\(code) (HTTP \(response.status))"
        if !message.isEmpty { detail += ": \(message)" }
        return Self.classify(code: code, status: response.status, target: targetName, operation: operation, detail: detail)
    }

    /// Maps an S3 error code and status to a `TargetError`.
    static func classify(code: String, status: Int, target: String, operation: String, detail: String) -> TargetError {
        switch code {
        case "SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken",
             "TokenRefreshRequired", "InvalidSecurity", "NotSignedUp", "AccountProblem":
            return .authentication(target: target, detail: "\(operation): \(detail)")
        case "RequestTimeTooSkewed":
            return .failed(target: target, operation: operation, detail: detail,
                           hint: "check this host's clock (NTP): S3 refuses requests signed more than 15 minutes off",
                           isPermanent: true)
        case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException":
            return .failed(target: target, operation: operation, detail: detail,
                           hint: "check the region configured for this target: it must be the bucket's region",
                           isPermanent: true)
        case "NoSuchBucket":
            return .failed(target: target, operation: operation, detail: detail,
                           hint: "check the bucket name in the target URL and the endpoint; create the bucket first",
                           isPermanent: true)
        case "InvalidDigest", "XAmzContentSHA256Mismatch":
            return .failed(target: target, operation: operation, detail: detail,
                           hint: "the store rejected the integrity headers; report this as a bug", isPermanent: true)
        case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "BadDigest", "OperationAborted":
            return .failed(target: target, operation: operation, detail: detail, hint: nil, isPermanent: false)
        default:
            let retryable = HTTPRetryClassification.isRetryable(status: status)
            return .failed(target: target, operation: operation, detail: detail,
                           hint: retryable ? "the store is failing; try again later" : nil, isPermanent: !retryable)
        }
    }

    /// A code for a response without an error body (HEAD answers have none).
    static func codeForStatus(_ status: Int) -> String {
        switch status {
        case 301: return "PermanentRedirect"
        case 400: return "BadRequest"
        case 403: return "AccessDenied"
        case 404: return "NotFound"
        case 409: return "Conflict"
        case 412: return "PreconditionFailed"
        case 429: return "SlowDown"
        case 500: return "InternalError"
        case 503: return "ServiceUnavailable"
        default: return "HTTP\(status)"
        }
    }

    /// `text` with any credential that may have been echoed back replaced by `<redacted>`.
    func redact(_ text: String) -> String {
        var result = text
        for secret in [signer.secretAccessKey.value, signer.sessionToken?.value ?? ""] where secret.count >= 4 {
            result = result.replacingOccurrences(of: secret, with: "<redacted>")
        }
        return result
    }
}
