import Foundation

/// The bytes sent with a request: none, bytes in memory, or a region of a file. Every kind
/// can be read again from the start, so a retry re-sends the same bytes.
public enum HTTPRequestBody: Sendable {
    /// No body.
    case empty
    /// Bytes in memory.
    case data(Data)
    /// `length` bytes of the file at `path`, starting at `offset`.
    case file(path: String, offset: Int64, length: Int64)

    /// The number of bytes sent.
    public var length: Int64 {
        switch self {
        case .empty: return 0
        case let .data(data): return Int64(data.count)
        case let .file(_, _, length): return length
        }
    }
}

/// One HTTP request: method, absolute URL (already percent-encoded as it goes on the wire),
/// headers and body.
public struct HTTPRequest: Sendable {
    /// The method (`GET`, `PUT`, `PROPFIND`, …).
    public var method: String
    /// The URL exactly as it is sent; it is not re-encoded.
    public var url: String
    /// Header names and values, sent in this order.
    public var headers: [(name: String, value: String)]
    /// The body.
    public var body: HTTPRequestBody

    /// Creates a request.
    public init(method: String, url: String, headers: [(name: String, value: String)] = [], body: HTTPRequestBody = .empty) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// What a server answered: status, headers, and the body when it was collected rather than streamed.
public struct HTTPResponse: Sendable {
    /// The status code of the final response.
    public var status: Int
    /// Header names (lower-cased) and values of the final response, in the order received.
    public var headers: [(name: String, value: String)]
    /// The collected body; empty when the body was streamed into a sink.
    public var body: Data
    /// How many body bytes went into the sink.
    public var streamedByteCount: Int64

    /// Creates a response.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: Data = Data(), streamedByteCount: Int64 = 0) {
        self.status = status
        self.headers = headers
        self.body = body
        self.streamedByteCount = streamedByteCount
    }

    /// The value of the first header called `name` (case-insensitive), or nil.
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name == lowered }?.value
    }

    /// Whether the status is 2xx.
    public var isSuccess: Bool { (200..<300).contains(status) }
}

/// Settings shared by every request of one client.
public struct HTTPClientOptions: Sendable {
    /// How long connecting (TCP and TLS) may take.
    public var connectTimeout: Duration
    /// A transfer that moves no bytes for this long is abandoned.
    public var stallTimeout: Duration
    /// The longest a whole request may take, or nil for no limit.
    public var totalTimeout: Duration?
    /// Whether TLS certificates and host names are verified (default true).
    public var verifiesTLS: Bool
    /// The most bytes of a body collected into memory (error bodies, listings).
    public var collectedBodyLimit: Int
    /// HTTP authentication libcurl performs for every request, or nil for none.
    public var credentials: HTTPCredentials?

    /// Creates settings; the defaults suit object stores on the internet.
    public init(connectTimeout: Duration = .seconds(20), stallTimeout: Duration = .seconds(60), totalTimeout: Duration? = nil,
                verifiesTLS: Bool = true, collectedBodyLimit: Int = 32 << 20, credentials: HTTPCredentials? = nil) {
        self.connectTimeout = connectTimeout
        self.stallTimeout = stallTimeout
        self.totalTimeout = totalTimeout
        self.verifiesTLS = verifiesTLS
        self.collectedBodyLimit = collectedBodyLimit
        self.credentials = credentials
    }
}

/// A user name and password that libcurl sends with Basic or Digest authentication. They go to
/// libcurl as options, never into a URL, a header we build, or an error.
public struct HTTPCredentials: Sendable, Equatable {
    /// The user name.
    public var username: String
    /// The password.
    public var password: Secret
    /// Whether Basic is allowed (it sends the password in clear text: use it over TLS).
    public var allowsBasic: Bool
    /// Whether Digest is allowed.
    public var allowsDigest: Bool

    /// Creates credentials. With both schemes allowed libcurl asks the server which it wants
    /// first (an unauthenticated probe) and picks the safer one; the client then keeps that one.
    public init(username: String, password: Secret, allowsBasic: Bool = true, allowsDigest: Bool = true) {
        self.username = username
        self.password = password
        self.allowsBasic = allowsBasic
        self.allowsDigest = allowsDigest
    }
}

/// An HTTP authentication scheme libcurl can answer a challenge with.
enum HTTPAuthenticationScheme: Sendable, Equatable {
    case basic
    case digest

    /// The scheme to use from the `WWW-Authenticate` values of 401 answers: Digest when offered
    /// and allowed (the password never travels), else Basic; nil when neither is both.
    static func preferred(offeredBy challenges: [String], allowsBasic: Bool, allowsDigest: Bool) -> HTTPAuthenticationScheme? {
        let offered = Set(challenges.flatMap(schemeNames))
        if allowsDigest, offered.contains("digest") { return .digest }
        if allowsBasic, offered.contains("basic") { return .basic }
        return nil
    }

    /// The lower-cased scheme names in one header value, which may hold several challenges
    /// (`Digest realm="a", nonce="b", Basic realm="a"`): a scheme is a comma-separated item's
    /// first word when that word is no `name=value` parameter.
    static func schemeNames(in challenge: String) -> [String] {
        challenge.split(separator: ",").compactMap { item in
            let word = item.drop { $0 == " " || $0 == "\t" }.prefix { $0 != " " && $0 != "\t" }
            return word.isEmpty || word.contains("=") ? nil : word.lowercased()
        }
    }
}

/// A request that got no complete HTTP response: the connection failed, timed out or broke.
public struct HTTPTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libcurl's error code.
    public var code: Int
    /// libcurl's message, with details where it gave them (no request headers, so no secrets).
    public var detail: String
    /// Whether sending the same request again could succeed (resets, timeouts, refused connections).
    public var isRetryable: Bool

    /// Creates an error.
    public init(code: Int, detail: String, isRetryable: Bool) {
        self.code = code
        self.detail = detail
        self.isRetryable = isRetryable
    }

    public var description: String { "\(detail) (curl error \(code))" }
}

/// Which failures are worth another attempt.
public enum HTTPRetryClassification {
    /// Whether a response with `status` is worth retrying: 5xx, 408 Request Timeout, 429 Too Many Requests.
    public static func isRetryable(status: Int) -> Bool {
        status >= 500 || status == 408 || status == 429
    }

    /// Whether a libcurl error `code` is transient: refused or reset connections, timeouts,
    /// empty or truncated replies, DNS hiccups, TLS handshakes cut short. Certificate
    /// failures, malformed URLs and errors raised by our own callbacks are permanent.
    public static func isRetryable(curlCode code: Int) -> Bool {
        switch code {
        case 5, 6, 7: return true  // couldn't resolve proxy / host, couldn't connect
        case 16: return true  // HTTP/2 framing error
        case 18: return true  // partial file: the body ended early
        case 28: return true  // operation timed out (connect or stall)
        case 35: return true  // TLS connect error (handshake cut)
        case 52: return true  // got nothing: the server closed without answering
        case 55, 56: return true  // send or receive failure: reset connections
        case 92: return true  // HTTP/2 stream error
        default: return false
        }
    }
}

/// Exponential backoff with full jitter: attempt n (from 1) waits a random time up to
/// `min(maximumDelay, initialDelay · 2^(n-1))`. `RetryingHTTPClient` applies it.
public struct RetryPolicy: Sendable, Equatable {
    /// How many times a request is tried in all (at least 1).
    public var maximumAttempts: Int
    /// The cap on the first wait.
    public var initialDelay: Duration
    /// The cap on any wait.
    public var maximumDelay: Duration

    /// Creates a policy.
    public init(maximumAttempts: Int = 6, initialDelay: Duration = .milliseconds(500), maximumDelay: Duration = .seconds(30)) {
        self.maximumAttempts = max(1, maximumAttempts)
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// The longest wait after failed attempt `attempt` (1-based), before jitter.
    public func delayCap(afterAttempt attempt: Int) -> Duration {
        let factor = Double(1 << min(max(attempt - 1, 0), 30))
        let capped = min(seconds(initialDelay) * factor, seconds(maximumDelay))
        return .milliseconds(Int64(capped * 1000))
    }

    /// A random wait after failed attempt `attempt`, between zero and its cap.
    public func delay<G: RandomNumberGenerator>(afterAttempt attempt: Int, using generator: inout G) -> Duration {
        let cap = seconds(delayCap(afterAttempt: attempt))
        let wait = cap > 0 ? Double.random(in: 0...cap, using: &generator) : 0
        return .milliseconds(Int64(wait * 1000))
    }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
