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
public final class SnapshotProgress: Sendable {
    private struct State {
        var path: String?
        var expected: Int64 = 0
        var unstable: Int64 = 0
        var ready: Int64 = 0
        var outcome: Result<Int64, any Error>?
        var advanced = false
    }

    private let shared = Monitor(State())

    /// Creates the shared state of one copy.
    public init() {}

    // MARK: the copying side

    /// The copy has begun into `path`; it will hold about `expectedBytes`, and its first
    /// `unstableBytes` may change until it ends.
    func begin(path: String, expectedBytes: Int64, unstableBytes: Int64) {
        shared.update { state in
            state.path = path
            state.expected = expectedBytes
            state.unstable = unstableBytes
            state.ready = 0
        }
    }

    /// The first `byteCount` bytes of the file are final (but for the unstable ones).
    func advance(to byteCount: Int64) {
        shared.update { state in
            state.ready = max(state.ready, byteCount)
            state.advanced = true
        }
    }

    /// Whether any bytes were announced as final.
    var hasAdvanced: Bool {
        shared.read { $0.advanced }
    }

    /// The copy is complete (the whole file is final) or failed; wakes the reader either way.
    public func finish(_ result: Result<SnapshotCopy, any Error>) {
        let size: Result<Int64, any Error> = result.flatMap { copy in
            Result { try fileSize(at: copy.temporaryPath) }
        }
        shared.update { state in
            if state.path == nil, case let .success(copy) = result { state.path = copy.temporaryPath }
            state.outcome = size
        }
    }

    // MARK: the reading side

    /// Waits until the copy has begun (or failed); returns the size it expects, or throws why the
    /// copy failed before it began.
    public func waitForStart() throws -> Int64 {
        try shared.wait { state -> Int64? in
            switch (state.path, state.outcome) {
            case (nil, nil): return nil
            case let (nil, .failure(error)?): throw error
            case let (_, .success(size)?): return size
            default: return state.expected
            }
        }
    }

    /// Whether bytes before `offset` can change until the copy ends (so a reader that wants to
    /// start early has to start after them). Valid once `waitForStart` has returned.
    public func isStable(from offset: Int64) -> Bool {
        shared.read { offset >= $0.unstable }
    }

    /// Whether the copy has ended, well or not.
    public var hasEnded: Bool {
        shared.read { $0.outcome != nil }
    }

    /// Waits for the copy to end and returns its first `count` bytes (fewer if it is shorter).
    public func finalPrefix(count: Int) throws -> [UInt8] {
        let path = try shared.wait { state -> String? in
            guard let outcome = state.outcome else { return nil }
            _ = try outcome.get()
            return state.path
        }
        return try readPrefix(of: path, count: count)
    }

    /// Reads the copy from `start` to its end into `sink` as it becomes final; returns the bytes
    /// read. Throws the copy's own error when it fails, or the sink's.
    public func read(into sink: any ByteSink, from start: Int64 = 0, bufferSize: Int = 1 << 20) throws -> Int64 {
        _ = try waitForStart()
        let path = shared.read { $0.path! }
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

    /// Waits until bytes after `offset` are final or the copy has ended.
    private func waitForBytes(after offset: Int64) throws -> (limit: Int64, isEnd: Bool) {
        try shared.wait { state -> (Int64, Bool)? in
            switch state.outcome {
            case let .success(size)?: return (size, true)
            case let .failure(error)?: throw error
            case nil: return state.ready <= offset || offset < state.unstable ? nil : (state.ready, false)
            }
        }
    }
}
