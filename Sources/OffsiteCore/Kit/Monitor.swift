import Foundation

/// State that several threads share behind one lock: read it, change it (which wakes every
/// thread waiting on it), or wait until it is what a thread needs. The rest of the kit (the
/// queue, the joinable thread, the worker pool) is built on it, so no other type hand-writes a
/// lock-and-condition protocol.
public final class Monitor<State>: @unchecked Sendable {
    // @unchecked: `state` is only touched with `condition` held.
    private let condition = NSCondition()
    private var state: State

    /// Shares `state`.
    public init(_ state: State) {
        self.state = state
    }

    /// What `body` makes of the state.
    public func read<Value>(_ body: (State) throws -> Value) rethrows -> Value {
        condition.lock()
        defer { condition.unlock() }
        return try body(state)
    }

    /// Changes the state and wakes every thread waiting on it; returns what `body` returns.
    @discardableResult
    public func update<Value>(_ body: (inout State) throws -> Value) rethrows -> Value {
        condition.lock()
        defer {
            condition.broadcast()
            condition.unlock()
        }
        return try body(&state)
    }

    /// Waits until `body` returns a value and returns it. `body` runs with the lock held: at once,
    /// then after every change. It may change the state when it returns a value (taking an element
    /// from a queue); the other waiters are woken then.
    @discardableResult
    public func wait<Value>(until body: (inout State) throws -> Value?) rethrows -> Value {
        try waitOrGiveUp(at: nil, body)!
    }

    /// `wait(until:)` that gives up at `deadline`: nil then.
    public func wait<Value>(until deadline: Date, _ body: (inout State) throws -> Value?) rethrows -> Value? {
        try waitOrGiveUp(at: deadline, body)
    }

    private func waitOrGiveUp<Value>(at deadline: Date?, _ body: (inout State) throws -> Value?) rethrows -> Value? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let value = try body(&state) {
                condition.broadcast()
                return value
            }
            if let deadline {
                if !condition.wait(until: deadline) { return try body(&state) }
            } else {
                condition.wait()
            }
        }
    }
}
