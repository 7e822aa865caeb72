import Foundation

/// A first-in, first-out queue from producers to one consumer thread, holding at most
/// `capacity` (counted by each element's `cost`): `put` waits while it is full, `take` while it
/// is empty. An element counts until the consumer comes back for the next one, so what the
/// consumer is working on is inside the bound too.
///
/// Either side can end it. The producer `close`s it (the consumer takes what is left, then nil),
/// or `abandon`s it (what is left is dropped; `take` and `put` throw `PipelineError.streamEnded`).
/// The consumer `fail`s it with its error, which the producer's next `put` throws.
public final class BoundedQueue<Element>: @unchecked Sendable {
    // @unchecked: the elements and the counts live in the monitor; `cost` is immutable.
    private struct State {
        var elements: [Element?] = []
        var head = 0
        /// The cost of what waits plus the cost of the element the consumer holds.
        var used = 0
        var inHand = 0
        var isClosed = false
        var isAbandoned = false
        var failure: (any Error)?

        var isEmpty: Bool { head == elements.count }

        mutating func removeAll() {
            elements.removeAll()
            head = 0
            used = inHand
        }
    }

    /// The most the queued elements may cost together (a single element that costs more goes in alone).
    public let capacity: Int
    private let cost: (Element) -> Int
    private let monitor = Monitor(State())

    /// A queue of at most `capacity`, where an element costs `cost(element)` (default 1: a count).
    public init(capacity: Int, cost: @escaping (Element) -> Int = { _ in 1 }) {
        self.capacity = max(capacity, 1)
        self.cost = cost
    }

    /// Adds `element` at the end, waiting while it does not fit. Throws the consumer's failure, or
    /// `PipelineError.streamEnded` once the queue was closed or abandoned.
    public func put(_ element: Element) throws {
        let price = cost(element)
        try monitor.wait { state -> Bool? in
            if let failure = state.failure { throw failure }
            if state.isClosed || state.isAbandoned { throw PipelineError.streamEnded }
            guard state.used == 0 || state.used + price <= capacity else { return nil }
            state.elements.append(element)
            state.used += price
            return true
        }
    }

    /// Adds `element` at the end without waiting: while it does not fit, the oldest waiting
    /// elements are dropped, and returned. Throws like `put`.
    public func putDroppingOldest(_ element: Element) throws -> [Element] {
        let price = cost(element)
        return try monitor.update { state in
            if let failure = state.failure { throw failure }
            if state.isClosed || state.isAbandoned { throw PipelineError.streamEnded }
            var dropped: [Element] = []
            while state.used > state.inHand, state.used + price > capacity, let oldest = state.elements[state.head] {
                state.elements[state.head] = nil
                state.head += 1
                state.used -= cost(oldest)
                dropped.append(oldest)
            }
            state.elements.append(element)
            state.used += price
            return dropped
        }
    }

    /// For the consumer: the next element, waiting for one; nil once the queue is closed and
    /// everything was taken. The element taken before this one stops counting now. Throws
    /// `PipelineError.streamEnded` when the queue was abandoned.
    public func take() throws -> Element? {
        // Done with the last one: a producer waiting for room may go on.
        monitor.update { state in
            state.used -= state.inHand
            state.inHand = 0
        }
        return try monitor.wait { state -> Element?? in
            if state.isAbandoned { throw PipelineError.streamEnded }
            if state.isEmpty { return state.isClosed ? .some(nil) : nil }
            let element = state.elements[state.head]!
            // The queue must not keep what the consumer is done with alive.
            state.elements[state.head] = nil
            state.head += 1
            if state.isEmpty {
                state.elements.removeAll(keepingCapacity: true)
                state.head = 0
            }
            state.inHand = cost(element)
            return .some(element)
        }
    }

    /// For the producer: nothing more comes; the consumer takes what is queued, then nil.
    public func close() {
        monitor.update { $0.isClosed = true }
    }

    /// For either side: drops what is queued; `put` and `take` throw `PipelineError.streamEnded`
    /// from now on (`put` throws the consumer's failure instead, if it had one).
    public func abandon() {
        monitor.update { state in
            state.isAbandoned = true
            state.removeAll()
        }
    }

    /// For the consumer: it cannot go on because of `error`; drops what is queued, and `put`
    /// throws `error` from now on.
    public func fail(_ error: any Error) {
        monitor.update { state in
            if state.failure == nil { state.failure = error }
            state.removeAll()
        }
    }

    /// Waits until everything put was taken and the consumer came back for more (or the queue
    /// was abandoned or failed), at most until `deadline`; false when the deadline came first.
    public func waitUntilDrained(before deadline: Date) -> Bool {
        monitor.wait(until: deadline) { state -> Bool? in
            state.isAbandoned || state.failure != nil || (state.isEmpty && state.inHand == 0) ? true : nil
        } ?? false
    }
}

/// A pipeline stage (or the queue between two) used after it ended.
public enum PipelineError: UserFacingError, Equatable {
    /// `write` or `finish` after the stream had finished, failed or been abandoned.
    case streamEnded

    public var message: String { "pipeline stage used after it ended" }
}
