import Foundation

/// A flag another thread raises to stop work in progress: a backup or restore checks it between
/// chunks and fails with `OperationCancelled`, which aborts its uploads and removes its temporaries.
/// Requests to targets see it too: a transfer in flight is aborted (libcurl's progress callback)
/// and a wait between retries (`sleep(for:)`) ends as soon as it is raised.
public final class Cancellation: Sendable {
    private let raised = Monitor(false)

    /// Creates a flag that is not raised.
    public init() {}

    /// Raises the flag, waking every `sleep(for:)`.
    public func cancel() {
        raised.update { $0 = true }
    }

    /// Whether the flag is raised.
    public var isCancelled: Bool {
        raised.read { $0 }
    }

    /// Throws `OperationCancelled` when the flag is raised.
    public func check() throws {
        if isCancelled { throw OperationCancelled() }
    }

    /// Sleeps for `duration` or until the flag is raised, whichever comes first; returns whether
    /// it was raised.
    @discardableResult
    public func sleep(for duration: Duration) -> Bool {
        raised.wait(until: Date().addingTimeInterval(duration.timeInterval)) { $0 ? true : nil } ?? false
    }
}

/// Passes bytes on until its `Cancellation` is raised, then fails.
public final class CancellableSink: ByteSink {
    let next: any ByteSink
    let cancellation: Cancellation

    /// Creates a sink in front of `next` that stops when `cancellation` is raised.
    public init(next: any ByteSink, cancellation: Cancellation) {
        self.next = next
        self.cancellation = cancellation
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try cancellation.check()
        try next.write(bytes)
    }

    public func finish() throws {
        try cancellation.check()
        try next.finish()
    }
}

/// Work stopped because its `Cancellation` was raised.
public struct OperationCancelled: UserFacingError, Equatable {
    /// Creates the error.
    public init() {}

    public var message: String { "cancelled: the agent is stopping" }
}
