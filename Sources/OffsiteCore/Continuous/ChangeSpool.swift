import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The frames capture copied out of a database's write-ahead log, kept on local disk until they
/// are shipped and compacted: one record per frame (its page number, then the page), and in memory
/// only an index of the transactions. Memory does not grow with a transaction's size (a VACUUM
/// writes every page): frames go straight to the file.
///
/// The files are not fsynced: after a crash the agent resumes from the log itself or starts a new
/// chain (docs/CONTINUOUS.md §1, §3). The frames are kept in segment files of at most
/// `framesPerSegment` frames (`PATH.0`, `PATH.1`, …); `discard(upTo:)` removes the segments no
/// kept transaction needs. Capture appends on one thread while shipping reads committed frames on
/// another: every method takes the spool's lock.
public final class ChangeSpool: @unchecked Sendable {
    /// One committed transaction in the spool.
    public struct Transaction: Sendable, Equatable {
        /// Its first frame's number in the spool (frames are numbered from 0 in the order written).
        public var firstFrame: Int64
        /// How many frames it has.
        public var frameCount: Int
        /// The database's size in pages after it.
        public var pageCount: UInt32
        /// When the agent saw it committed.
        public var committedAt: Date

        /// The number after its last frame.
        public var endFrame: Int64 { firstFrame + Int64(frameCount) }
    }

    /// The spool's files are this path with `.0`, `.1`, … appended.
    public let path: String
    /// The most frames one segment file holds.
    public let framesPerSegment: Int64
    /// The database's page size.
    public let pageSize: Int
    /// The committed transactions still in the spool, oldest first.
    public var transactions: [Transaction] { lock.withLock { committed } }
    /// Frames written, committed or not.
    public var frameCount: Int64 { lock.withLock { written } }
    private let lock = NSLock()
    private var committed: [Transaction] = []
    private var newest: Transaction?
    private var written: Int64 = 0
    /// Frames written since the last commit (a transaction being copied).
    private var openFrames: Int64 = 0
    /// Open segment files, by segment number.
    private var segments: [Int64: Int32] = [:]
    private var record: [UInt8]

    /// Creates an empty spool at `path` (files mode 0600) for pages of `pageSize` bytes, removing
    /// the segments an earlier spool there left.
    public init(path: String, pageSize: Int, framesPerSegment: Int64 = 16384) throws {
        self.path = path
        self.pageSize = pageSize
        self.framesPerSegment = max(framesPerSegment, 1)
        try makePrivateDirectory(parentDirectory(of: path))
        ChangeSpool.removeSegments(of: path)
        record = [UInt8](repeating: 0, count: 4 + pageSize)
    }

    deinit {
        for descriptor in segments.values { close(descriptor) }
    }

    /// Removes every segment file of a spool at `path`.
    public static func removeSegments(of path: String) {
        let folder = parentDirectory(of: path)
        let prefix = (path as NSString).lastPathComponent + "."
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        where name.hasPrefix(prefix) && Int64(name.dropFirst(prefix.count)) != nil {
            unlink("\(folder)/\(name)")
        }
    }

    /// The descriptor of the segment holding frame `number`, opened (created) when needed.
    private func segment(for number: Int64) throws -> (descriptor: Int32, offset: off_t) {
        let index = number / framesPerSegment
        let offset = off_t(number % framesPerSegment) * off_t(recordSize)
        if let descriptor = segments[index] { return (descriptor, offset) }
        let descriptor = try openDescriptor("\(path).\(index)", O_RDWR | O_CREAT, 0o600, operation: "open")
        segments[index] = descriptor
        return (descriptor, offset)
    }

    /// The size of one record: page number and page.
    public var recordSize: Int { 4 + pageSize }

    /// Appends one frame of the transaction being copied.
    public func append(page: UInt32, content: UnsafeRawBufferPointer) throws {
        precondition(content.count == pageSize, "a frame holds one page")
        lock.lock()
        defer { lock.unlock() }
        withUnsafeBytes(of: page.bigEndian) { record.replaceSubrange(0..<4, with: $0) }
        record.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: 4).copyMemory(from: content.baseAddress!, byteCount: pageSize) }
        let (descriptor, offset) = try segment(for: written)
        try record.withUnsafeBytes { bytes in
            var done = 0
            while done < bytes.count {
                let written = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, offset + off_t(done))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw FileIOError(operation: "write", path: path, code: errno)
                }
                done += written
            }
        }
        written += 1
        openFrames += 1
    }

    /// Ends the transaction being copied: its last frame carries the database's size `pageCount`.
    public func commit(pageCount: UInt32, at date: Date) {
        lock.withLock {
            let transaction = Transaction(firstFrame: written - openFrames, frameCount: Int(openFrames), pageCount: pageCount,
                                          committedAt: date)
            committed.append(transaction)
            newest = transaction
            openFrames = 0
        }
    }

    /// The newest transaction committed into the spool, kept after it is discarded.
    public var newestTransaction: Transaction? { lock.withLock { newest } }

    /// Forgets the frames of a transaction that was not committed in the spool (copying it failed).
    public func abandonOpenTransaction() {
        lock.withLock {
            written -= openFrames
            openFrames = 0
        }
    }

    /// Reads frame `number`: its page number and the page, into `page` (pageSize bytes).
    public func readFrame(_ number: Int64, into page: UnsafeMutableRawBufferPointer) throws -> UInt32 {
        precondition(page.count == pageSize, "a frame holds one page")
        var header = [UInt8](repeating: 0, count: 4)
        let (descriptor, offset) = try lock.withLock { try segment(for: number) }
        try header.withUnsafeMutableBytes { try readFully(descriptor, into: $0, at: offset) }
        try readFully(descriptor, into: page, at: offset + 4)
        return header.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) }
    }

    /// Drops the transactions that end at or before frame `end` from the index, and removes the
    /// segment files no kept frame is in.
    public func discard(upTo end: Int64) {
        lock.lock()
        defer { lock.unlock() }
        committed.removeAll { $0.endFrame <= end }
        let firstKept = committed.first?.firstFrame ?? (written - openFrames)
        for index in segments.keys.sorted() where (index + 1) * framesPerSegment <= firstKept {
            close(segments[index]!)
            segments[index] = nil
            unlink("\(path).\(index)")
        }
    }

    /// Removes the spool's files.
    public func remove() {
        lock.lock()
        defer { lock.unlock() }
        for descriptor in segments.values { close(descriptor) }
        segments = [:]
        ChangeSpool.removeSegments(of: path)
    }

    private func readFully(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws {
        var done = 0
        while done < buffer.count {
            let got = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, offset + off_t(done))
            if got < 0 {
                if errno == EINTR { continue }
                throw FileIOError(operation: "read", path: path, code: errno)
            }
            if got == 0 { throw FileIOError(operation: "read", path: path, code: EIO) }
            done += got
        }
    }
}
