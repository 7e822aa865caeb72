import Foundation
import Testing
@testable import OffsiteCore

/// The thread kit: each piece once, with the other side played by a thread of the test.
@Suite struct BoundedQueueTests {
    @Test func deliversInOrderAndEndsAfterClose() throws {
        let queue = BoundedQueue<Int>(capacity: 7)
        let producer = JoinableThread(name: "test-producer") {
            for number in 0..<1000 { try queue.put(number) }
            queue.close()
        }
        var taken: [Int] = []
        while let number = try queue.take() { taken.append(number) }
        try producer.join().get()
        #expect(taken == Array(0..<1000))
        #expect(try queue.take() == nil, "a closed, empty queue stays ended")
        #expect(throws: PipelineError.streamEnded) { try queue.put(1) }
    }

    @Test func theElementInTheConsumersHandsCountsUntilItComesBack() throws {
        let queue = BoundedQueue<Data>(capacity: 30, cost: \.count)
        try queue.put(Data(count: 10))
        #expect(try queue.take()?.count == 10)  // in hand: 10 of 30 used
        let putCount = Counter()
        let producer = JoinableThread(name: "test-producer") {
            for _ in 0..<4 {
                try queue.put(Data(count: 10))
                putCount.increment()
            }
        }
        try eventuallyTrue { putCount.value == 2 }
        Thread.sleep(forTimeInterval: 0.2)
        #expect(putCount.value == 2, "the third waits: 10 in hand and 20 queued fill the 30")
        #expect(try queue.take()?.count == 10)  // the first is done: room for one more
        try eventuallyTrue { putCount.value == 3 }
        _ = try queue.take()
        _ = try queue.take()
        try producer.join().get()
        #expect(putCount.value == 4)
        // An element larger than the capacity goes in alone.
        let large = BoundedQueue<Data>(capacity: 30, cost: \.count)
        try large.put(Data(count: 100))
        #expect(try large.take()?.count == 100)
    }

    @Test func theConsumersFailureReachesTheProducer() throws {
        struct Broken: Error, Equatable {}
        let queue = BoundedQueue<Int>(capacity: 2)
        let consumer = JoinableThread(name: "test-consumer") {
            _ = try queue.take()
            queue.fail(Broken())
        }
        #expect(throws: Broken.self) {
            for number in 0..<10 { try queue.put(number) }
        }
        _ = consumer.join()
    }

    @Test func abandoningEndsBothSides() throws {
        let queue = BoundedQueue<Int>(capacity: 2)
        try queue.put(1)
        let consumer = JoinableThread(name: "test-consumer") { () -> [Int] in
            var taken: [Int] = []
            while let number = try queue.take() { taken.append(number) }
            return taken
        }
        try eventuallyTrue { queue.waitUntilDrained(before: Date()) }
        queue.abandon()
        #expect(throws: PipelineError.streamEnded) { try consumer.join().get() }
        #expect(throws: PipelineError.streamEnded) { try queue.put(2) }
    }

    @Test func aFullQueueCanDropItsOldestInstead() throws {
        let queue = BoundedQueue<String>(capacity: 2)
        #expect(try queue.putDroppingOldest("a").isEmpty)
        #expect(try queue.putDroppingOldest("b").isEmpty)
        #expect(try queue.putDroppingOldest("c") == ["a"])
        #expect(!queue.waitUntilDrained(before: Date()))
        #expect(try queue.take() == "b")
        #expect(try queue.take() == "c")
        #expect(!queue.waitUntilDrained(before: Date()), "the consumer still holds c")
        queue.close()
        #expect(try queue.take() == nil)
        #expect(queue.waitUntilDrained(before: Date()))
    }
}

@Suite struct JoinableThreadTests {
    @Test func joinHandsBackTheValueOrTheError() throws {
        struct Broken: Error {}
        let value = JoinableThread(name: "test-value") { 6 * 7 }
        #expect(try value.join().get() == 42)
        #expect(try value.join().get() == 42, "join may be called again")
        #expect(value.hasEnded)
        let failing = JoinableThread(name: "test-error", background: true) { () -> Int in throw Broken() }
        #expect(throws: Broken.self) { try failing.join().get() }
    }

    @Test func runWaitsSoTheBodyMayUseWhatTheCallerOwns() throws {
        var owned = [1, 2, 3]
        let caller = Thread.current
        let result = JoinableThread.run(name: "test-run") { () -> Bool in
            owned.append(4)
            return Thread.current != caller
        }
        #expect(try result.get(), "the body ran on another thread")
        #expect(owned == [1, 2, 3, 4])
    }
}

@Suite struct WorkerPoolTests {
    @Test func outcomesComeBackInSubmissionOrderWithEachWorkersOwnState() throws {
        final class Tally: @unchecked Sendable { var jobs = 0 }
        let tallies = (0..<3).map { _ in Tally() }
        let pool = WorkerPool<Int, Int>(name: "test-pool", workers: tallies.map { tally -> (Int) throws -> Int in
            { number in
                tally.jobs += 1  // only this worker's thread touches its tally
                Thread.sleep(forTimeInterval: Double(number % 4) / 1000)  // later jobs often end first
                return number * number
            }
        })
        var squares: [Int] = []
        for number in 0..<60 {
            if pool.inFlight == 6 { squares.append(try pool.takeOldest(waiting: true)!.outcome.get()) }
            pool.submit(number)
            #expect(pool.inFlight <= 6)
        }
        while let (_, outcome) = pool.takeOldest(waiting: true) { squares.append(try outcome.get()) }
        #expect(squares == (0..<60).map { $0 * $0 })
        #expect(pool.stop().isEmpty)
        #expect(tallies.reduce(0) { $0 + $1.jobs } == 60)
    }

    @Test func finishedOutcomesCanBeTakenOutOfOrderAndFailuresComeBackAsOutcomes() throws {
        struct Broken: Error {}
        let gate = Gate()
        let pool = WorkerPool<Int, Int>(name: "test-pool", workers: Array(repeating: { number in
            if number == 0 { gate.wait() }
            if number == 2 { throw Broken() }
            return number
        }, count: 2))
        pool.submit(0)  // held at the gate
        pool.submit(1)
        #expect(pool.takeOldest(waiting: false) == nil, "the oldest is still running")
        let first = try #require(pool.takeFinished(waiting: true))
        #expect(first.job == 1)
        pool.submit(2)
        #expect(throws: Broken.self) { try pool.takeFinished(waiting: true)!.outcome.get() }
        gate.open()
        #expect(try pool.takeFinished(waiting: true)?.outcome.get() == 0)
        #expect(pool.takeFinished(waiting: true) == nil, "nothing is in flight")
    }

    @Test func stopWaitsForRunningJobsAndHandsBackTheRest() throws {
        let gate = Gate()
        let ended = Counter()
        let pool = WorkerPool<Int, Void>(name: "test-pool", workers: [{ _ in
            gate.wait()
            ended.increment()
        }])
        for number in 0..<5 { pool.submit(number) }
        try eventuallyTrue { gate.waiters == 1 }
        let opener = JoinableThread(name: "test-opener") {
            Thread.sleep(forTimeInterval: 0.1)
            gate.open()
        }
        let handedBack = pool.stop()
        #expect(ended.value == 1, "the running job ended before stop returned")
        #expect(handedBack == [0, 1, 2, 3, 4], "done or not, every job not taken back is returned in order")
        #expect(pool.stop().isEmpty)
        _ = opener.join()
    }
}

@Suite struct MonitorTests {
    @Test func aTimedWaitGivesUpAtItsDeadline() {
        let monitor = Monitor(0)
        let started = Date()
        #expect(monitor.wait(until: started.addingTimeInterval(0.05)) { $0 > 0 ? $0 : nil } == nil)
        #expect(Date().timeIntervalSince(started) >= 0.05)
        let changer = JoinableThread(name: "test-changer") { monitor.update { $0 = 7 } }
        #expect(monitor.wait(until: Date().addingTimeInterval(60)) { $0 > 0 ? $0 : nil } == 7)
        _ = changer.join()
    }
}

/// A thread-safe counter.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}

/// Holds threads until it is opened.
private final class Gate: Sendable {
    private let state = Monitor((isOpen: false, waiters: 0))
    var waiters: Int { state.read { $0.waiters } }
    func open() { state.update { $0.isOpen = true } }
    func wait() {
        state.update { $0.waiters += 1 }
        state.wait { $0.isOpen ? true : nil }
    }
}

/// Polls `condition` every 5 ms, for at most 30 s.
private func eventuallyTrue(_ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(30)
    while try !condition() {
        guard Date() < deadline else { throw TestFailure("the condition never held") }
        Thread.sleep(forTimeInterval: 0.005)
    }
}

@Suite struct ProcessMemoryTests {
    /// The C library is found and takes the setting; trimming after a large allocation was freed
    /// gives it back. (What it saves is measured by the benchmark, not here.)
    @Test func theAllocatorTakesTheArenaLimitAndTrims() {
        #expect(ProcessMemory.limitArenas(to: 2))
        let size = 64 << 20
        let buffers = (0..<4).map { _ in UnsafeMutableRawPointer.allocate(byteCount: size / 4, alignment: 16) }
        for buffer in buffers { buffer.initializeMemory(as: UInt8.self, repeating: 1, count: size / 4) }
        for buffer in buffers { buffer.deallocate() }
        _ = ProcessMemory.releaseFreedMemory()
    }
}
