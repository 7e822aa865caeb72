import Foundation

/// A thread of its own that runs one body and hands back what it returned or threw: start it,
/// go on with other work, `join()` for the result. Blocking work (C calls, file I/O) runs here,
/// never on the Swift concurrency pool.
public final class JoinableThread<Value>: @unchecked Sendable {
    // @unchecked: `body` is set before the thread starts and used only by it; `outcome` is written
    // once by the thread and read by `join`, both under `condition`.
    private let condition = NSCondition()
    private var outcome: Result<Value, any Error>?
    private var body: (() throws -> Value)?

    /// Starts `body` on a thread named `name`; with `background`, in the background scheduling
    /// class, so it only takes CPU time the application does not want (`yieldToTheApplication`).
    public init(name: String, background: Bool = false, _ body: @escaping () throws -> Value) {
        self.body = body
        let thread = Thread { [self] in
            if background { yieldToTheApplication() }
            let result = Result { try self.body!() }
            self.body = nil
            condition.lock()
            outcome = result
            condition.broadcast()
            condition.unlock()
        }
        thread.name = name
        thread.start()
    }

    /// Waits for the body to end; returns what it returned or threw. May be called more than once.
    public func join() -> Result<Value, any Error> {
        condition.lock()
        defer { condition.unlock() }
        while outcome == nil { condition.wait() }
        return outcome!
    }

    /// Whether the body has ended (`join` would not wait).
    public var hasEnded: Bool {
        condition.lock()
        defer { condition.unlock() }
        return outcome != nil
    }
}
