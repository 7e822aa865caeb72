import Foundation
import Testing
@testable import OffsiteCore

/// A sink that records what it gets, can be held shut, and can be told to fail; safe to use from
/// the consumer thread and inspect from the test (everything behind `condition`).
private final class Probe: ByteSink, @unchecked Sendable {
    struct Broken: Error, Equatable {}
    private let condition = NSCondition()
    private var _data = Data()
    private var _finished = false
    private var _isOpen = true
    private var _writes = 0
    private let failOnWrite: Int?
    private let failOnFinish: Bool

    init(failOnWrite: Int? = nil, failOnFinish: Bool = false, isOpen: Bool = true) {
        self.failOnWrite = failOnWrite
        self.failOnFinish = failOnFinish
        _isOpen = isOpen
    }

    var data: Data { condition.withLock { _data } }
    var isFinished: Bool { condition.withLock { _finished } }
    var writes: Int { condition.withLock { _writes } }

    func open() {
        condition.withLock { _isOpen = true; condition.broadcast() }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        condition.lock()
        defer { condition.unlock() }
        while !_isOpen { condition.wait() }
        _writes += 1
        if _writes == failOnWrite { throw Broken() }
        _data.append(contentsOf: bytes)
    }

    func finish() throws {
        condition.lock()
        defer { condition.unlock() }
        if failOnFinish { throw Broken() }
        _finished = true
    }
}

@Suite struct ThreadedSinkTests {
    @Test func deliversEveryByteInOrderAndFinishes() throws {
        let probe = Probe()
        let sink = ThreadedSink(next: probe, capacity: 1000)
        var expected = Data()
        for index in 0..<500 {
            let piece = Data((0..<(index % 37 + 1)).map { UInt8(truncatingIfNeeded: $0 &+ index) })
            expected.append(piece)
            try sink.write(piece)
        }
        try sink.write(Data(repeating: 7, count: 2500))  // larger than the capacity: split
        expected.append(Data(repeating: 7, count: 2500))
        try sink.finish()
        #expect(probe.isFinished)
        #expect(probe.data == expected)
        #expect(throws: PipelineError.streamEnded) { try sink.write(Data([1])) }
    }

    @Test func theWriterWaitsWhenTheQueueIsFull() throws {
        let probe = Probe(isOpen: false)
        let sink = Unchecked(ThreadedSink(next: probe, capacity: 100))
        let written = Counter()
        let thread = Thread {
            for _ in 0..<50 {
                try? sink.value.write(Data(repeating: 1, count: 10))
                written.increment()
            }
        }
        thread.start()
        Thread.sleep(forTimeInterval: 0.2)
        // The consumer holds one chunk it cannot write; at most 100 more bytes wait in the queue.
        #expect(written.value <= 11, "the writer is held back: \(written.value) writes went through")
        #expect(written.value >= 10)
        probe.open()
        while written.value < 50 { Thread.sleep(forTimeInterval: 0.005) }
        try sink.value.finish()
        #expect(probe.data.count == 500)
    }

    @Test func aConsumerFailureReachesTheWriter() throws {
        let probe = Probe(failOnWrite: 3)
        let sink = ThreadedSink(next: probe, capacity: 10)
        #expect(throws: Probe.Broken.self) {
            for _ in 0..<1000 { try sink.write(Data(repeating: 2, count: 10)) }
            try sink.finish()
        }
        #expect(!probe.isFinished)

        let failingFinish = ThreadedSink(next: Probe(failOnFinish: true))
        try failingFinish.write(Data([1, 2, 3]))
        #expect(throws: Probe.Broken.self) { try failingFinish.finish() }
    }

    @Test func abandoningStopsTheConsumerWithoutFinishing() throws {
        let probe = Probe(isOpen: false)
        let sink = ThreadedSink(next: probe, capacity: 1 << 20)
        for _ in 0..<10 { try sink.write(Data(repeating: 3, count: 100)) }
        let opener = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            probe.open()  // lets the one write in progress end
        }
        opener.start()
        sink.abandon()  // returns only once the consumer has exited
        #expect(!probe.isFinished)
        #expect(probe.writes <= 1, "queued chunks are dropped, not written")
        #expect(throws: PipelineError.streamEnded) { try sink.write(Data([1])) }
        #expect(throws: PipelineError.streamEnded) { try sink.finish() }
    }
}

/// A thread-safe counter.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}

/// Hands a value to one other thread in a test, which then is its only user until it is joined.
private final class Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
