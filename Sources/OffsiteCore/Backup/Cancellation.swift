import Foundation

/// A flag another thread raises to stop work in progress: a backup or restore checks it between
/// chunks and fails with `OperationCancelled`, which aborts its uploads and removes its temporaries.
public final class Cancellation: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false

    /// Creates a flag that is not raised.
    public init() {}

    /// Raises the flag.
    public func cancel() {
        lock.withLock { raised = true }
    }

    /// Whether the flag is raised.
    public var isCancelled: Bool {
        lock.withLock { raised }
    }

    /// Throws `OperationCancelled` when the flag is raised.
    public func check() throws {
        if isCancelled { throw OperationCancelled() }
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
