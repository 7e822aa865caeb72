import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where capture stands in a database's write-ahead log: the log's generation (its salts) and
/// the last frame copied, with that frame's cumulative checksum (the header's, for frame 0).
public struct WALCursor: Codable, Sendable, Equatable {
    /// The log header's salts, the 8 bytes as stored.
    public var salt: [UInt8]
    /// The last frame copied (0: none of this generation yet).
    public var frame: UInt32
    /// The cumulative checksum after that frame.
    public var checksum: [UInt32]
    /// Whether the log's checksums use big-endian words (its magic's low bit).
    public var bigEndianChecksums: Bool
    /// The database's page size.
    public var pageSize: Int
}

/// Why capture cannot go on without a hole: the chain breaks and a new one starts from a new full
/// backup.
public struct CaptureGap: Error, Equatable, CustomStringConvertible {
    /// What happened.
    public var reason: String
    public var description: String { reason }
}

/// Copies every committed transaction of one WAL-mode database out of its write-ahead log, as the
/// application commits, without starving the application's checkpoints (docs/CONTINUOUS.md §1).
///
/// Two read-only connections take turns holding a read transaction (a *pin*): while a pin is held
/// the log cannot restart past what the pin protects, so a frame is never overwritten before it
/// was copied. `step()` begins a pin on the idle connection, reads the wal-index header, copies the
/// frames up to its last committed frame (checking salts and cumulative checksums, and that the
/// run ends on the header's checksum), and releases the older pin. When the application
/// checkpointed and everything is copied, a top-up checkpoint on a third connection completes the
/// checkpoint and the pin moves to slot 0, so the application's next writer restarts the log as it
/// would have without offsite. Not thread-safe: one thread drives it.
public final class WALCapture {
    /// The database.
    public let path: String
    /// Where capture stands; nil before the first step.
    public private(set) var cursor: WALCursor?
    /// The database's page size (it cannot change while it is in WAL mode).
    public let pageSize: Int
    /// The log frames the application must reach before a top-up checkpoint is done regardless
    /// of whether it checkpointed itself (SQLite's default autocheckpoint threshold).
    public var topUpThreshold: UInt32 = 1000
    /// The log frames past which capture restarts the log itself, when the application's
    /// checkpoints could not: a writer that never pauses gives no moment at which the log is
    /// fully checkpointed and only a slot-0 pin is held, so without this the log would grow
    /// without end. A fifth over the top-up threshold: what the writer adds while a restart waits
    /// for its turn (at most `restartPatience`) still leaves the log under twice the threshold.
    public var restartThreshold: UInt32 { topUpThreshold + topUpThreshold / 5 }
    /// How long a restart may wait for the application's writer and for the pins to be handed
    /// over; the application's writers wait on their busy handler meanwhile.
    public var restartPatience: Duration = .milliseconds(50)
    /// How many restarts capture ran itself, and how many of them were busy; for tests and figures.
    public private(set) var restarts = 0
    public private(set) var busyRestarts = 0
    /// After a busy restart, the log frames to reach before the next try.
    private var nextRestartAt: UInt32 = 0

    private let pins: [SQLiteDatabase]
    private let beginStatements: [SQLiteStatement]
    private let checkpointer: SQLiteDatabase
    private let index: WALIndex
    private var held: Int?
    private var log: Int32 = -1
    private var logIdentity: (device: UInt64, inode: UInt64)?
    private var lastBackfilled: UInt32 = 0
    /// How many top-up checkpoints were run, and how many let the log restart; for tests.
    public private(set) var topUps = 0

    /// Opens the connections and maps the wal-index of the WAL-mode database at `path`. Throws
    /// `CaptureGap` when the database is not in WAL mode (it then gets full backups only).
    public init(path: String) throws {
        self.path = path
        let checkpointer = try SQLiteDatabase(path: path, mode: .readWrite, busyTimeout: .milliseconds(100))
        try checkpointer.disableCheckpointOnClose()
        guard try checkpointer.scalarText("PRAGMA journal_mode")?.lowercased() == "wal" else {
            throw CaptureGap(reason: "\(path) is not in WAL mode: it gets full backups only")
        }
        _ = try checkpointer.scalarInt("SELECT count(*) FROM sqlite_schema")
        pageSize = Int(try checkpointer.scalarInt("PRAGMA page_size") ?? 4096)
        self.checkpointer = checkpointer
        index = try checkpointer.mapWALIndex()
        var pins: [SQLiteDatabase] = []
        var statements: [SQLiteStatement] = []
        for _ in 0..<2 {
            let pin = try SQLiteDatabase(path: path, mode: .readOnly, busyTimeout: .milliseconds(100))
            try pin.disableCheckpointOnClose()
            pins.append(pin)
            statements.append(try pin.prepare("SELECT 1 FROM sqlite_schema LIMIT 1"))
        }
        self.pins = pins
        self.beginStatements = statements
    }

    deinit {
        for index in pins.indices where pins[index].isInTransaction { try? pins[index].execute("COMMIT") }
        if log >= 0 { close(log) }
    }

    /// The wal-index header as it is now, or nil when it could not be read consistently.
    public func header() -> WALIndexHeader? {
        index.header()
    }

    /// Whether every frame committed as of `header` was copied (a log that restarted and holds no
    /// frame yet: the pins saw to it that the generation before was copied whole).
    public func hasCopiedEverything(of header: WALIndexHeader) -> Bool {
        guard let cursor else { return false }
        return header.maxFrame == 0 || (header.salt == cursor.salt && header.maxFrame == cursor.frame)
    }

    /// Starts capturing at the log's current end: what is committed so far is not copied (a base
    /// taken after this holds it). Pins the log first.
    public func startAtCurrentEnd() throws {
        try pinAgain()
        guard let header = try readHeaderPatiently() else { throw CaptureGap(reason: "the wal-index of \(path) could not be read") }
        cursor = try cursorAtEnd(of: header)
        lastBackfilled = header.backfilled
    }

    /// Continues from `saved` (a cursor kept across a restart of the agent): only when the log is
    /// still in the same generation and still holds the frame the cursor names, with the same
    /// checksum — no restart happened while nothing pinned the log. Throws `CaptureGap` otherwise.
    public func resume(from saved: WALCursor) throws {
        try pinAgain()
        guard let header = try readHeaderPatiently() else { throw CaptureGap(reason: "the wal-index of \(path) could not be read") }
        guard header.salt == saved.salt, header.maxFrame >= saved.frame, pageSize == saved.pageSize else {
            throw CaptureGap(reason: "the write-ahead log restarted while offsite was not running")
        }
        try openLogIfNeeded()
        if saved.frame > 0 {
            let frame = try readFrames(from: saved.frame, count: 1, pageSize: saved.pageSize)
            guard frame.count == 24 + saved.pageSize,
                  Array(frame[16..<24]) == bigEndianBytes(saved.checksum[0]) + bigEndianBytes(saved.checksum[1]) else {
                throw CaptureGap(reason: "the write-ahead log no longer holds the last frame offsite copied")
            }
        }
        cursor = saved
        lastBackfilled = header.backfilled
    }

    /// Copies what was committed since the last step into `spool` (committed transactions only);
    /// returns how many transactions it copied. Throws `CaptureGap` when a frame cannot be
    /// accounted for. Keeps the pin hand-over going and runs the top-up checkpoint when it is due.
    @discardableResult
    public func step(into spool: ChangeSpool, now: () -> Date = Date.init) throws -> Int {
        let (copied, header) = try copyCommitted(into: spool, now: now)
        guard let header else { return copied }
        try topUpIfDue(header)
        try restartIfOverdue(into: spool, now: now)
        return copied
    }

    /// Pins again, copies what was committed since the cursor and releases the older pin; the
    /// header read, or nil when there is nothing to go on from (no header, or a new generation
    /// with no frame yet).
    private func copyCommitted(into spool: ChangeSpool, now: () -> Date) throws -> (Int, WALIndexHeader?) {
        guard var cursor else { throw CaptureGap(reason: "capture has not started") }
        try pinAgain()
        guard let header = try readHeaderPatiently() else { return (0, nil) }
        var copied = 0
        if header.salt != cursor.salt {
            // A new generation. The pins guarantee the old one was copied whole (docs §1).
            guard header.maxFrame > 0 else {
                releaseOlderPin()
                return (0, nil)
            }
            cursor = try startOfGeneration(header)
        }
        if header.maxFrame < cursor.frame {
            throw CaptureGap(reason: "the write-ahead log holds fewer frames (\(header.maxFrame)) than were copied (\(cursor.frame)) in the same generation")
        }
        if header.maxFrame > cursor.frame {
            do {
                copied = try copyFrames(upTo: header, cursor: &cursor, into: spool, committedAt: now())
            } catch {
                spool.abandonOpenTransaction()
                throw error
            }
        }
        self.cursor = cursor
        releaseOlderPin()
        return (copied, header)
    }

    /// Restarts the log when it holds `restartThreshold` frames or more (see there): a RESTART
    /// checkpoint on the third connection, whose busy handler keeps copying what is committed and
    /// handing the pins over — to the newest frame while it waits for readers to reach the end of
    /// the log, then to slot 0 once the log is fully checkpointed — for at most `restartPatience`.
    /// The application's writers wait meanwhile, as they would for their own RESTART checkpoint.
    private func restartIfOverdue(into spool: ChangeSpool, now: () -> Date) throws {
        guard let header = index.header(), let cursor, header.salt == cursor.salt,
              header.maxFrame >= max(restartThreshold, nextRestartAt) else { return }
        let deadline = ContinuousClock.now + restartPatience
        var failure: Error?
        let result = try withoutActuallyEscaping(now) { now in
            try checkpointer.withBusyHandler(restoring: .milliseconds(100), { [self] _ in
                guard failure == nil, ContinuousClock.now < deadline else { return false }
                do {
                    _ = try copyCommitted(into: spool, now: now)
                } catch {
                    failure = error
                    return false
                }
                usleep(50)
                return true
            }) {
                // What a passive checkpoint can do first is not done while the application's writers wait.
                _ = try checkpointer.checkpoint()
                return try checkpointer.checkpoint(restart: true)
            }
        }
        if let failure { throw failure }
        restarts += 1
        if result.busy {
            busyRestarts += 1
            nextRestartAt = header.maxFrame + topUpThreshold / 10
        } else {
            nextRestartAt = 0
        }
        lastBackfilled = index.header()?.backfilled ?? lastBackfilled
    }

    // MARK: Pins

    /// Begins a read transaction on the idle connection (the older pin stays held).
    private func pinAgain() throws {
        let next = held.map { 1 - $0 } ?? 0
        if pins[next].isInTransaction { try pins[next].execute("COMMIT") }
        try pins[next].execute("BEGIN")
        let statement = beginStatements[next]
        do {
            _ = try statement.step()
            try statement.bind([])
        } catch {
            try? pins[next].execute("COMMIT")
            throw error
        }
        if let older = held { pendingRelease = older }
        held = next
    }

    private var pendingRelease: Int?

    /// Ends the older pin, once the newer one protects everything not yet copied.
    private func releaseOlderPin() {
        guard let older = pendingRelease else { return }
        pendingRelease = nil
        try? pins[older].execute("COMMIT")
    }

    /// When the application checkpointed (or the log grew past the threshold) and everything is
    /// copied, finishes the checkpoint and moves the pin to slot 0, so the application's next
    /// writer restarts the log; also moves the pin to slot 0 whenever the log is fully
    /// checkpointed, so the application's RESTART and TRUNCATE checkpoints complete.
    private func topUpIfDue(_ header: WALIndexHeader) throws {
        let applicationCheckpointed = header.backfilled > lastBackfilled
        lastBackfilled = header.backfilled
        guard let cursor, header.salt == cursor.salt, cursor.frame == header.maxFrame, header.maxFrame > 0 else { return }
        if header.backfilled == header.maxFrame {
            // Whether the held pin got slot 0 cannot be seen for sure (a checkpointer holding read
            // lock 0 at that moment sends it to a slot > 0): pin again, which costs microseconds.
            try pinAgain()
            releaseOlderPin()
            return
        }
        guard applicationCheckpointed || header.maxFrame >= topUpThreshold else { return }
        let result = try checkpointer.checkpoint()
        topUps += 1
        guard !result.busy, let after = index.header() else { return }
        lastBackfilled = after.backfilled
        guard after.salt == header.salt, after.backfilled == after.maxFrame, after.maxFrame == cursor.frame else { return }
        try pinAgain()
        releaseOlderPin()
    }

    // MARK: Reading the log

    private func readHeaderPatiently() throws -> WALIndexHeader? {
        for _ in 0..<50 {
            if let header = index.header() { return header }
            usleep(200)
        }
        return nil
    }

    private func cursorAtEnd(of header: WALIndexHeader) throws -> WALCursor {
        try openLogIfNeeded()
        if header.maxFrame == 0 {
            // Nothing in this generation yet; the next frames start it.
            return WALCursor(salt: header.salt, frame: 0, checksum: [0, 0], bigEndianChecksums: false, pageSize: pageSize)
        }
        let logHeader = try readLogHeader(expecting: header)
        return WALCursor(salt: header.salt, frame: header.maxFrame, checksum: [header.frameChecksum.0, header.frameChecksum.1],
                         bigEndianChecksums: logHeader.bigEndian, pageSize: pageSize)
    }

    private func startOfGeneration(_ header: WALIndexHeader) throws -> WALCursor {
        try openLogIfNeeded()
        let logHeader = try readLogHeader(expecting: header)
        return WALCursor(salt: header.salt, frame: 0, checksum: logHeader.checksum, bigEndianChecksums: logHeader.bigEndian,
                         pageSize: pageSize)
    }

    /// The log file's header: its byte order and checksum, checked against the wal-index.
    private func readLogHeader(expecting header: WALIndexHeader) throws -> (bigEndian: Bool, checksum: [UInt32]) {
        var bytes = [UInt8](repeating: 0, count: 32)
        guard try readLog(into: &bytes, at: 0) == 32 else { throw CaptureGap(reason: "the write-ahead log's header is missing") }
        let magic = readBigEndian(bytes, 0)
        guard magic & 0xffff_fffe == 0x377f_0682 else { throw CaptureGap(reason: "the write-ahead log's header is not valid") }
        let bigEndian = magic & 1 == 1
        guard Array(bytes[16..<24]) == header.salt, Int(readBigEndian(bytes, 8)) == pageSize else {
            throw CaptureGap(reason: "the write-ahead log's header does not match its index")
        }
        var checksum: [UInt32] = [0, 0]
        bytes.withUnsafeBytes { walChecksum(UnsafeRawBufferPointer(rebasing: $0[0..<24]), bigEndian: bigEndian, into: &checksum) }
        guard checksum[0] == readBigEndian(bytes, 24), checksum[1] == readBigEndian(bytes, 28) else {
            throw CaptureGap(reason: "the write-ahead log's header checksum is wrong")
        }
        return (bigEndian, checksum)
    }

    /// Copies frames `cursor.frame + 1 ... header.maxFrame` into `spool`, checking each; a commit
    /// frame ends each transaction. Returns how many transactions were copied.
    private func copyFrames(upTo header: WALIndexHeader, cursor: inout WALCursor, into spool: ChangeSpool,
                            committedAt: Date) throws -> Int {
        let pageSize = cursor.pageSize
        guard spool.pageSize == pageSize else { throw CaptureGap(reason: "the database's page size changed") }
        let frameSize = 24 + pageSize
        var transactions = 0
        var open = false
        var checksum = cursor.checksum
        var frame = cursor.frame
        let batch = max(1, (1 << 20) / frameSize)
        while frame < header.maxFrame {
            let count = Int(min(UInt32(batch), header.maxFrame - frame))
            let bytes = try readFrames(from: frame + 1, count: count, pageSize: pageSize)
            guard bytes.count == count * frameSize else {
                throw CaptureGap(reason: "the write-ahead log ends before its last committed frame")
            }
            try bytes.withUnsafeBytes { raw in
                for index in 0..<count {
                    let start = index * frameSize
                    let frameHeader = UnsafeRawBufferPointer(rebasing: raw[start..<start + 24])
                    let content = UnsafeRawBufferPointer(rebasing: raw[start + 24..<start + frameSize])
                    guard Array(frameHeader[8..<16]) == cursor.salt else {
                        throw CaptureGap(reason: "frame \(frame + UInt32(index) + 1) of the write-ahead log belongs to another generation")
                    }
                    walChecksum(UnsafeRawBufferPointer(rebasing: frameHeader[0..<8]), bigEndian: cursor.bigEndianChecksums, into: &checksum)
                    walChecksum(content, bigEndian: cursor.bigEndianChecksums, into: &checksum)
                    guard checksum[0] == loadBigEndian(frameHeader, 16), checksum[1] == loadBigEndian(frameHeader, 20) else {
                        throw CaptureGap(reason: "frame \(frame + UInt32(index) + 1) of the write-ahead log fails its checksum")
                    }
                    try spool.append(page: loadBigEndian(frameHeader, 0), content: content)
                    open = true
                    let commitSize = loadBigEndian(frameHeader, 4)
                    if commitSize != 0 {
                        spool.commit(pageCount: commitSize, at: committedAt)
                        transactions += 1
                        open = false
                    }
                }
            }
            frame += UInt32(count)
        }
        guard !open else { throw CaptureGap(reason: "the last committed frame of the write-ahead log is not a commit frame") }
        guard checksum[0] == header.frameChecksum.0, checksum[1] == header.frameChecksum.1 else {
            throw CaptureGap(reason: "the frames copied do not end on the checksum the wal-index holds")
        }
        cursor.frame = frame
        cursor.checksum = checksum
        return transactions
    }

    /// Opens the log file (once; again when it was replaced). Its descriptor carries no SQLite lock.
    private func openLogIfNeeded() throws {
        var info = stat()
        let walPath = path + "-wal"
        guard stat(walPath, &info) == 0 else { throw CaptureGap(reason: "\(walPath) is missing") }
        let identity = (UInt64(info.st_dev), UInt64(info.st_ino))
        if log >= 0, let current = logIdentity, current == identity { return }
        if log >= 0 {
            close(log)
            log = -1
            if cursor != nil { throw CaptureGap(reason: "\(walPath) was replaced") }
        }
        log = open(walPath, O_RDONLY | O_CLOEXEC)
        guard log >= 0 else { throw FileIOError(operation: "open", path: walPath, code: errno) }
        logIdentity = identity
    }

    private func readFrames(from first: UInt32, count: Int, pageSize: Int) throws -> [UInt8] {
        try openLogIfNeeded()
        var bytes = [UInt8](repeating: 0, count: count * (24 + pageSize))
        let read = try readLog(into: &bytes, at: 32 + Int64(first - 1) * Int64(24 + pageSize))
        return read == bytes.count ? bytes : Array(bytes.prefix(read))
    }

    private func readLog(into bytes: inout [UInt8], at offset: Int64) throws -> Int {
        var done = 0
        while done < bytes.count {
            let got = bytes.withUnsafeMutableBytes { pread(log, $0.baseAddress! + done, $0.count - done, off_t(offset) + off_t(done)) }
            if got < 0 {
                if errno == EINTR { continue }
                throw FileIOError(operation: "read", path: path + "-wal", code: errno)
            }
            if got == 0 { break }
            done += got
        }
        return done
    }
}

/// Adds `bytes` (a multiple of 8) to the cumulative WAL checksum `checksum` (walformat.html:
/// 32-bit words in the log's byte order, s1 += x0 + s2, s2 += x1 + s1).
func walChecksum(_ bytes: UnsafeRawBufferPointer, bigEndian: Bool, into checksum: inout [UInt32]) {
    var s1 = checksum[0], s2 = checksum[1]
    var offset = 0
    while offset + 8 <= bytes.count {
        var x0 = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        var x1 = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
        if bigEndian {
            x0 = UInt32(bigEndian: x0)
            x1 = UInt32(bigEndian: x1)
        } else {
            x0 = UInt32(littleEndian: x0)
            x1 = UInt32(littleEndian: x1)
        }
        s1 = s1 &+ x0 &+ s2
        s2 = s2 &+ x1 &+ s1
        offset += 8
    }
    checksum = [s1, s2]
}

private func readBigEndian(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
}

private func loadBigEndian(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
    UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}

private func bigEndianBytes(_ value: UInt32) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian, Array.init)
}
