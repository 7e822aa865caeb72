import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A snapshot copy in the making, shared between the thread that copies and a thread that reads
/// the copy behind it (to compress it while the rest is still being copied).
///
/// The copying side calls `begin`, then `advance` after every step, and finally `finish`; the
/// reading side waits with `waitForStart` and reads with `read(into:from:)` and `finalPrefix`.
/// Bytes are only handed out once they are final in the file. The first `unstableBytes` (the
/// first page of a paced copy, which SQLite rewrites when the copy ends) are final only once the
/// copy has ended.
public final class SnapshotProgress: @unchecked Sendable {
    // @unchecked: every stored property is read and written under `condition`.
    private let condition = NSCondition()
    private var path: String?
    private var expected: Int64 = 0
    private var unstable: Int64 = 0
    private var ready: Int64 = 0
    private var outcome: Result<Int64, any Error>?
    private var advanced = false

    /// Creates the shared state of one copy.
    public init() {}

    // MARK: the copying side

    /// The copy has begun into `path`; it will hold about `expectedBytes`, and its first
    /// `unstableBytes` may change until it ends.
    func begin(path: String, expectedBytes: Int64, unstableBytes: Int64) {
        update {
            self.path = path
            expected = expectedBytes
            unstable = unstableBytes
            ready = 0
        }
    }

    /// The first `byteCount` bytes of the file are final (but for the unstable ones).
    func advance(to byteCount: Int64) {
        update {
            ready = max(ready, byteCount)
            advanced = true
        }
    }

    /// Whether any bytes were announced as final.
    var hasAdvanced: Bool {
        condition.withLock { advanced }
    }

    /// The copy is complete (the whole file is final) or failed; wakes the reader either way.
    public func finish(_ result: Result<SnapshotCopy, any Error>) {
        let size: Result<Int64, any Error> = result.flatMap { copy in
            Result { try fileSize(at: copy.temporaryPath) }
        }
        update {
            if path == nil, case let .success(copy) = result { path = copy.temporaryPath }
            outcome = size
        }
    }

    private func update(_ change: () -> Void) {
        condition.lock()
        change()
        condition.broadcast()
        condition.unlock()
    }

    // MARK: the reading side

    /// Waits until the copy has begun (or failed); returns the size it expects, or throws why the
    /// copy failed before it began.
    public func waitForStart() throws -> Int64 {
        condition.lock()
        defer { condition.unlock() }
        while path == nil && outcome == nil { condition.wait() }
        if path == nil, case let .failure(error)? = outcome { throw error }
        if case let .success(size)? = outcome { return size }
        return expected
    }

    /// Whether bytes before `offset` can change until the copy ends (so a reader that wants to
    /// start early has to start after them). Valid once `waitForStart` has returned.
    public func isStable(from offset: Int64) -> Bool {
        condition.withLock { offset >= unstable }
    }

    /// Whether the copy has ended, well or not.
    public var hasEnded: Bool {
        condition.withLock { outcome != nil }
    }

    /// Waits for the copy to end and returns its first `count` bytes (fewer if it is shorter).
    public func finalPrefix(count: Int) throws -> [UInt8] {
        _ = try waitForEnd()
        return try readPrefix(of: condition.withLock { path! }, count: count)
    }

    /// Reads the copy from `start` to its end into `sink` as it becomes final; returns the bytes
    /// read. Throws the copy's own error when it fails, or the sink's.
    public func read(into sink: any ByteSink, from start: Int64 = 0, bufferSize: Int = 1 << 20) throws -> Int64 {
        _ = try waitForStart()
        let path = condition.withLock { self.path! }
        let descriptor = try openDescriptor(path, O_RDONLY, operation: "open")
        defer { close(descriptor) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bufferSize, 1), alignment: 16)
        defer { buffer.deallocate() }
        var offset = start
        while true {
            let (limit, isEnd) = try waitForBytes(after: offset)
            if limit > offset {
                try writeRange(of: descriptor, from: offset, to: limit, into: sink, buffer: buffer, path: path)
                offset = limit
            }
            if isEnd { return offset - start }
        }
    }

    /// Waits until the copy has ended; returns its size or throws its error.
    private func waitForEnd() throws -> Int64 {
        condition.lock()
        defer { condition.unlock() }
        while outcome == nil { condition.wait() }
        return try outcome!.get()
    }

    /// Waits until bytes after `offset` are final or the copy has ended.
    private func waitForBytes(after offset: Int64) throws -> (limit: Int64, isEnd: Bool) {
        condition.lock()
        defer { condition.unlock() }
        while (ready <= offset || offset < unstable) && outcome == nil { condition.wait() }
        switch outcome {
        case let .success(size)?: return (size, true)
        case let .failure(error)?: throw error
        case nil: return (ready, false)
        }
    }
}
