import Foundation

/// A fixed set of threads doing the jobs handed to them. Each worker is one thread with its own
/// way of doing a job (a closure that may own state, such as a zlib stream, used by that thread
/// alone). Jobs start in the order they were submitted; their outcomes are taken back in that
/// order (`takeOldest`: the gzip pools write members in input order) or as they come
/// (`takeFinished`: S3 parts).
///
/// Work in flight is bounded by the caller: a job counts from `submit` until its outcome is
/// taken back (`inFlight`), so a caller that takes one back whenever `inFlight` reaches its limit
/// never has more. A job and its outcome are handed between threads under the pool's lock: the
/// submitter must not touch a job between `submit` and taking it back.
public final class WorkerPool<Job, Output>: @unchecked Sendable {
    // @unchecked: jobs and outcomes live in the monitor; each worker closure is used by one thread.
    private struct Slot {
        let number: Int
        let job: Job
        var isStarted = false
        var outcome: Result<Output, any Error>?
    }

    private struct State {
        /// Submitted and not taken back, in submission order.
        var slots: [Slot] = []
        var nextNumber = 0
        /// Workers running a job.
        var busy = 0
        var isStopping = false
    }

    private let shared = Monitor(State())

    /// Starts one thread per element of `workers`, named `name-0`, `name-1`, …; with
    /// `background`, they run only on CPU time the application does not want.
    public init(name: String, background: Bool = false, workers: [(Job) throws -> Output]) {
        for (index, work) in workers.enumerated() {
            let worker = Worker(shared: shared, work: work)
            let thread = Thread {
                if background { yieldToTheApplication() }
                worker.run()
            }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    deinit {
        _ = stop()
    }

    /// Jobs submitted whose outcome was not taken back yet.
    public var inFlight: Int {
        shared.read { $0.slots.count }
    }

    /// Hands `job` to the next free worker, after the jobs submitted before it. Not after `stop`.
    public func submit(_ job: Job) {
        shared.update { state in
            precondition(!state.isStopping, "a job was submitted to a stopped worker pool")
            state.slots.append(Slot(number: state.nextNumber, job: job))
            state.nextNumber += 1
        }
    }

    /// The oldest job in flight and its outcome once it is done (waiting for it when `waiting`);
    /// nil when nothing is in flight, or (not waiting) the oldest is not done.
    public func takeOldest(waiting: Bool) -> (job: Job, outcome: Result<Output, any Error>)? {
        take(waiting: waiting) { slots in slots.first?.outcome == nil ? nil : 0 }
    }

    /// The oldest job in flight that is done and its outcome (waiting for one when `waiting`); nil
    /// when nothing is in flight, or (not waiting) none is done.
    public func takeFinished(waiting: Bool) -> (job: Job, outcome: Result<Output, any Error>)? {
        take(waiting: waiting) { slots in slots.firstIndex { $0.outcome != nil } }
    }

    private func take(waiting: Bool, choosing choose: ([Slot]) -> Int?) -> (job: Job, outcome: Result<Output, any Error>)? {
        let taken = shared.wait { state -> Slot?? in
            if state.slots.isEmpty { return .some(nil) }
            guard let index = choose(state.slots) else { return waiting ? nil : .some(nil) }
            return .some(state.slots.remove(at: index))
        }
        return taken.map { ($0.job, $0.outcome!) }
    }

    /// Stops the pool: drops the jobs no worker has started, waits for the running ones to end,
    /// and lets the threads exit. Returns every job not taken back (done or not), in submission
    /// order, so the caller owns them again. Later calls return nothing.
    @discardableResult
    public func stop() -> [Job] {
        shared.update { $0.isStopping = true }
        return shared.wait { state -> [Job]? in
            guard state.busy == 0 else { return nil }
            defer { state.slots.removeAll() }
            return state.slots.map(\.job)
        }
    }

    /// One worker thread's loop.
    private final class Worker: @unchecked Sendable {
        // @unchecked: `work` is used by this worker's thread alone.
        let shared: Monitor<State>
        let work: (Job) throws -> Output

        init(shared: Monitor<State>, work: @escaping (Job) throws -> Output) {
            self.shared = shared
            self.work = work
        }

        func run() {
            while let (number, job) = next() {
                let outcome = Result { try work(job) }
                shared.update { state in
                    if let index = state.slots.firstIndex(where: { $0.number == number }) {
                        state.slots[index].outcome = outcome
                    }
                    state.busy -= 1
                }
            }
        }

        /// The oldest job not started, waiting for one; nil once the pool stops.
        private func next() -> (Int, Job)? {
            shared.wait { state -> (Int, Job)?? in
                if state.isStopping { return .some(nil) }
                guard let index = state.slots.firstIndex(where: { !$0.isStarted }) else { return nil }
                state.slots[index].isStarted = true
                state.busy += 1
                return .some((state.slots[index].number, state.slots[index].job))
            }
        }
    }
}
