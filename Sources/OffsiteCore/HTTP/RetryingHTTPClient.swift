import Foundation

/// A failure that says whether the same request could succeed if sent again.
public protocol TransientFailure: Error {
    /// Whether trying again could help: 5xx, 408, 429, resets, timeouts; not a refusal that
    /// will stay one (credentials, a missing bucket, a malformed request).
    var mayPass: Bool { get }
}

extension TargetError: TransientFailure {
    /// Whether trying again could help (`!isPermanent`).
    public var mayPass: Bool { !isPermanent }
}

extension HTTPTransportError: TransientFailure {
    /// Whether trying again could help (`isRetryable`).
    public var mayPass: Bool { isRetryable }
}

/// One retry, told to `RequestControl.onRetry` before its wait.
public struct HTTPRetry: Sendable {
    /// The target (or service) the request is for.
    public var target: String
    /// What was being done (`upload part 3 of crm/…`).
    public var operation: String
    /// The attempt that failed, from 1.
    public var attempt: Int
    /// How many attempts there are at most.
    public var maximumAttempts: Int
    /// The wait before the next attempt.
    public var delay: Duration
    /// Why the attempt failed: one line, no secrets.
    public var reason: String

    /// The fields of a log line about it.
    public var logFields: [(String, Any)] {
        [("target", target), ("operation", operation), ("attempt", "\(attempt)/\(maximumAttempts)"),
         ("delay", String(format: "%.2fs", delay.timeInterval)),
         ("reason", reason)]
    }
}

/// What the caller of a target gives every request the target makes: a flag that stops them, and
/// where each retry is told. The agent gives its own; the default is never cancelled and silent.
public struct RequestControl: Sendable {
    /// Raised to stop requests in flight and waits between retries; nil: never.
    public var cancellation: Cancellation?
    /// Told of every retry before its wait.
    public var onRetry: @Sendable (HTTPRetry) -> Void

    /// Creates a control.
    public init(cancellation: Cancellation? = nil, onRetry: @escaping @Sendable (HTTPRetry) -> Void = { _ in }) {
        self.cancellation = cancellation
        self.onRetry = onRetry
    }
}

/// The one retry layer between `HTTPClient` and the clients of the targets (S3, WebDAV) and the
/// webhook: `run` repeats an attempt with exponential backoff and full jitter (`policy`) while it
/// fails with a `TransientFailure` that may pass, never for anything else; each retry is told to
/// `control.onRetry`. `control.cancellation` stops a transfer in flight (`perform`) and wakes a
/// wait between attempts at once; both end in `OperationCancelled`.
public final class RetryingHTTPClient: Sendable {
    /// The client attempts go through.
    public let http: HTTPClient
    /// How often and how long to wait.
    public let policy: RetryPolicy
    /// Cancellation and the retry report.
    public let control: RequestControl
    /// The target (or service) named in retry reports.
    public let name: String

    /// Creates the layer over `http` for the target `name`.
    public init(name: String, http: HTTPClient, policy: RetryPolicy, control: RequestControl = RequestControl()) {
        self.name = name
        self.http = http
        self.policy = policy
        self.control = control
    }

    /// One attempt: `HTTPClient.perform`, stopped when the cancellation is raised.
    public func perform(_ request: HTTPRequest, streamingInto sink: (any ByteSink)? = nil,
                        onHead: ((_ status: Int, _ headers: [(name: String, value: String)]) -> Void)? = nil) throws -> HTTPResponse {
        try http.perform(request, streamingInto: sink, onHead: onHead, cancellation: control.cancellation)
    }

    /// Runs `attempt` (given its number, from 1) until it returns, throws a failure that will not
    /// pass, attempts run out (the last failure is thrown) or the cancellation is raised
    /// (`OperationCancelled`). `operation` names what is done in retry reports.
    public func run<Value>(_ operation: String, _ attempt: (_ number: Int) throws -> Value) throws -> Value {
        var generator = SystemRandomNumberGenerator()
        var number = 1
        while true {
            try control.cancellation?.check()
            do {
                return try attempt(number)
            } catch {
                if control.cancellation?.isCancelled == true { throw OperationCancelled() }
                guard number < policy.maximumAttempts, (error as? TransientFailure)?.mayPass == true else { throw error }
                let delay = policy.delay(afterAttempt: number, using: &generator)
                control.onRetry(HTTPRetry(target: name, operation: operation, attempt: number,
                                          maximumAttempts: policy.maximumAttempts, delay: delay,
                                          reason: (error as? UserFacingError)?.message ?? "\(error)"))
                if let cancellation = control.cancellation {
                    if cancellation.sleep(for: delay) { throw OperationCancelled() }
                } else {
                    Thread.sleep(forTimeInterval: delay.timeInterval)
                }
                number += 1
            }
        }
    }
}
