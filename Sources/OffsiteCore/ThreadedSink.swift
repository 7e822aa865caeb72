import Foundation

/// A bounded hand-off between two stages of a pipeline: bytes written to it are copied into a
/// queue and written to `next` by a dedicated consumer thread, so the writer (compression) does
/// not wait on what follows (encryption, the network, the disk) until `capacity` bytes are queued.
///
/// Errors travel both ways. When `next` fails, the consumer stops and the writer's next `write`
/// or `finish` throws that error. When the writer fails, it calls `abandon()`: the consumer
/// stops without finishing `next` (and the sink is safe to abort once `abandon()` returns).
/// `finish()` waits until every queued byte is written and `next` is finished, and throws its error.
/// Dropping the sink without either abandons it.
///
/// `next` is used only by the consumer thread from `init` until `finish()` or `abandon()`
/// returns; after that the caller may touch it again (commit, abort, discard).
public final class ThreadedSink: ByteSink {
    /// The default queue capacity: 2 MiB.
    public static let defaultCapacity = 2 << 20

    /// The most bytes queued at once (a single write larger than this is split).
    public let capacity: Int
    private let queue: BoundedQueue<Data>
    private let consumer: JoinableThread<Void>
    private var hasEnded = false

    /// Starts a consumer thread (named `name`) that writes to `next`; at most `capacity` bytes wait.
    /// A `background` consumer runs only on CPU time the application does not want (backups);
    /// otherwise it competes normally (a restore is usually what everyone is waiting for).
    public init(next: any ByteSink, capacity: Int = ThreadedSink.defaultCapacity, name: String = "offsite-pipeline",
                background: Bool = false) {
        self.capacity = max(capacity, 1)
        let queue = BoundedQueue<Data>(capacity: self.capacity, cost: \.count)
        self.queue = queue
        consumer = JoinableThread(name: name, background: background) {
            /// Runs a call on `next`; its failure ends the queue too, so the writer hears of it.
            func passingFailures(_ call: () throws -> Void) throws {
                do { try call() } catch {
                    queue.fail(error)
                    throw error
                }
            }
            // `take` throws once the writer abandoned the queue: `next` is then left as it is.
            while let chunk = try queue.take() {
                try passingFailures { try chunk.withUnsafeBytes { try next.write($0) } }
            }
            try passingFailures { try next.finish() }
        }
    }

    deinit {
        if !hasEnded { queue.abandon() }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !hasEnded else { throw PipelineError.streamEnded }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let count = min(capacity, bytes.count - offset)
            do { try queue.put(Data(bytes: base + offset, count: count)) } catch {
                hasEnded = true
                throw error
            }
            offset += count
        }
    }

    public func finish() throws {
        guard !hasEnded else { throw PipelineError.streamEnded }
        hasEnded = true
        queue.close()
        try consumer.join().get()
    }

    /// Stops the consumer without finishing `next` and waits until it no longer touches it.
    /// Drops whatever is still queued. Safe to call at any time, more than once.
    public func abandon() {
        hasEnded = true
        queue.abandon()
        _ = consumer.join()
    }
}
