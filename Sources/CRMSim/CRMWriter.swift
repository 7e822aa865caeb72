import Foundation
import OffsiteCore

/// What a `CRMWriter` run did and how the database felt to it.
public struct WriterReport: Sendable, Equatable, Codable {
    /// Transactions committed.
    public var committed: Int
    /// Transactions that failed because the database was busy or locked (after the busy timeout).
    public var busyErrors: Int
    /// Transactions that failed for any other reason.
    public var otherErrors: Int
    /// The first failure's message, if any.
    public var firstError: String?
    /// Median BEGIN…COMMIT time of committed transactions, in milliseconds.
    public var latencyP50Milliseconds: Double
    /// 99th percentile BEGIN…COMMIT time, in milliseconds.
    public var latencyP99Milliseconds: Double
    /// Longest BEGIN…COMMIT time, in milliseconds.
    public var latencyMaxMilliseconds: Double
    /// The rate asked for, in transactions per second.
    public var targetRate: Double
    /// Commits per second over the run.
    public var achievedRate: Double
    /// The longest time between two consecutive commits (or from the start to the first), in
    /// milliseconds: how long the application's writes looked frozen.
    public var longestStallMilliseconds: Double
    /// How long the run lasted, in seconds.
    public var elapsedSeconds: Double

    /// Whether any transaction failed.
    public var hasErrors: Bool { busyErrors + otherErrors > 0 }

    /// One line for people.
    public var summary: String {
        String(format: "committed %d in %.2f s (%.1f/s of %.1f/s target), busy errors %d, other errors %d, "
               + "latency p50 %.2f ms p99 %.2f ms max %.2f ms, longest stall %.1f ms",
               committed, elapsedSeconds, achievedRate, targetRate, busyErrors, otherErrors,
               latencyP50Milliseconds, latencyP99Milliseconds, latencyMaxMilliseconds, longestStallMilliseconds)
    }
}

/// One committed transaction: when it began (seconds from the run's start) and how long it took.
public struct WriterSample: Sendable, Equatable {
    public var beganSeconds: Double
    public var milliseconds: Double
}

/// Imitates the live CRM application: short write transactions at a steady rate on its own
/// connection (WAL, synchronous=NORMAL, 5 s busy timeout), each adding an activity log entry and
/// sometimes a comment, a status change, a new lead or a notification, and keeping
/// `app_counters` exact in the same transaction.
///
/// Use `run(duration:)` on the calling thread, or `start()` … `stop()` to write from a background
/// thread while something else (a backup) runs. Sendable because every mutable field is guarded
/// by `condition`; the SQLite connection lives only on the thread that writes.
public final class CRMWriter: @unchecked Sendable {
    /// The database written to.
    public let path: String
    /// Target transactions per second.
    public let rate: Double
    /// Seed for the random choices of what each transaction does.
    public let seed: UInt64

    private let condition = NSCondition()
    private var stopRequested = false
    private var isRunning = false
    private var outcome: Result<WriterReport, any Error>?
    private var recordedTimeline: [WriterSample] = []

    /// Every committed transaction of the last run: when it began and how long it took.
    public var timeline: [WriterSample] {
        condition.lock()
        defer { condition.unlock() }
        return recordedTimeline
    }

    /// Prepares a writer for the CRM database at `path` at `rate` transactions per second.
    public init(path: String, rate: Double, seed: UInt64 = 1) throws {
        guard rate > 0, rate.isFinite else { throw CRMError.invalidRate(rate) }
        self.path = path
        self.rate = rate
        self.seed = seed
    }

    /// Writes on the calling thread for `duration`, then reports. Not while `start()`ed.
    public func run(duration: Duration) throws -> WriterReport {
        condition.lock()
        precondition(!isRunning, "CRMWriter.run(duration:) called while running in the background")
        stopRequested = false
        condition.unlock()
        return try work(for: duration)
    }

    /// Starts writing on a background thread until `stop()`, which must be called: the thread
    /// keeps the writer alive until then.
    public func start() {
        condition.lock()
        precondition(!isRunning, "CRMWriter.start() called while already running")
        isRunning = true
        stopRequested = false
        outcome = nil
        condition.unlock()
        let thread = Thread { [self] in
            let result = Result { try work(for: nil) }
            condition.lock()
            outcome = result
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "crm-writer"
        thread.start()
    }

    /// Stops the background writer started by `start()`, waits for its last transaction and reports.
    public func stop() throws -> WriterReport {
        condition.lock()
        precondition(isRunning, "CRMWriter.stop() called without start()")
        stopRequested = true
        condition.broadcast()
        while outcome == nil { condition.wait() }
        let result = outcome!
        outcome = nil
        isRunning = false
        condition.unlock()
        return try result.get()
    }

    /// Writes `count` application transactions at once on the calling thread, on a connection whose
    /// automatic checkpoints are off (its `-wal` keeps every frame until someone checkpoints);
    /// `afterEach` runs after each commit with its number, from 1. For building change chains.
    public func writeWithoutCheckpoints(_ count: Int, afterEach: (Int) throws -> Void) throws {
        let session = try WriterSession(path: path, seed: seed)
        try session.database.execute("PRAGMA wal_autocheckpoint = 0")
        for number in 1...max(count, 1) where count > 0 {
            try session.writeOneTransaction()
            try afterEach(number)
        }
    }

    /// Sleeps until `instant` unless a stop is requested first; returns false when stopping.
    private func wait(until instant: ContinuousClock.Instant) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stopRequested {
            let remaining = ContinuousClock.now.duration(to: instant)
            if remaining <= .zero { return true }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        return false
    }

    private func work(for duration: Duration?) throws -> WriterReport {
        let session = try WriterSession(path: path, seed: seed)
        let clock = ContinuousClock()
        let started = clock.now
        let end = duration.map { started + $0 }
        let interval = Duration.seconds(1 / rate)
        var latencies: [Double] = []
        var samples: [WriterSample] = []
        var busyErrors = 0, otherErrors = 0
        var firstError: String?
        var lastCommit = started
        var longestStall = Duration.zero
        var index = 0
        while true {
            // Absolute deadlines: a slow transaction does not push back the ones after it.
            let deadline = started + interval * index
            if let end, deadline >= end {
                _ = wait(until: end)  // a timed run lasts its whole duration
                break
            }
            guard wait(until: deadline) else { break }
            index += 1
            let begin = clock.now
            do {
                try session.writeOneTransaction()
                let committed = clock.now
                latencies.append((committed - begin).milliseconds)
                samples.append(WriterSample(beganSeconds: (begin - started).seconds, milliseconds: (committed - begin).milliseconds))
                longestStall = max(longestStall, committed - lastCommit)
                lastCommit = committed
            } catch let error as SQLiteError where error.isBusy {
                busyErrors += 1
                firstError = firstError ?? error.message
            } catch {
                otherErrors += 1
                firstError = firstError ?? "\(error)"
            }
        }
        let finished = clock.now
        longestStall = max(longestStall, finished - lastCommit)
        condition.lock()
        recordedTimeline = samples
        condition.unlock()
        latencies.sort()
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : latencies[Int((Double(latencies.count - 1) * p).rounded())]
        }
        let elapsed = (finished - started).seconds
        return WriterReport(
            committed: latencies.count, busyErrors: busyErrors, otherErrors: otherErrors, firstError: firstError,
            latencyP50Milliseconds: percentile(0.5), latencyP99Milliseconds: percentile(0.99),
            latencyMaxMilliseconds: latencies.last ?? 0, targetRate: rate,
            achievedRate: elapsed > 0 ? Double(latencies.count) / elapsed : 0,
            longestStallMilliseconds: longestStall.milliseconds, elapsedSeconds: elapsed)
    }
}

/// The writer's connection and the application's transaction.
private final class WriterSession {
    let database: SQLiteDatabase
    let rows: CRMRows
    let userIDs: [Int64]
    var newestLead: Int64
    var newestClient: Int64
    let leadStatus: SQLiteStatement
    let bumpCounter: SQLiteStatement

    init(path: String, seed: UInt64) throws {
        database = try SQLiteDatabase(path: path, mode: .readWrite, busyTimeout: .seconds(5))
        try database.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON")
        guard try database.scalarInt(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'app_counters'") == 1 else {
            throw CRMError.notACRMDatabase(path)
        }
        rows = try CRMRows(database: database, seed: seed)
        userIDs = try database.column("SELECT id FROM users WHERE is_active ORDER BY id").compactMap { Int64($0) }
        newestLead = try database.scalarInt("SELECT max(id) FROM leads") ?? 0
        newestClient = try database.scalarInt("SELECT max(id) FROM clients") ?? 0
        guard !userIDs.isEmpty, newestClient > 0 else { throw CRMError.notACRMDatabase(path) }
        leadStatus = try database.prepare("SELECT status FROM leads WHERE id = ?")
        bumpCounter = try database.prepare("UPDATE app_counters SET n = n + 1 WHERE name = ?")
    }

    private var now: Int64 { Int64(Date().timeIntervalSince1970) }

    private func recent(_ newest: Int64, window: Int) -> Int64 {
        let span = Int(min(newest, Int64(window)))
        let u = rows.text.random.unit()
        return max(1, newest - Int64(Double(span) * u * u))
    }

    /// One BEGIN IMMEDIATE … COMMIT; rolls back and rethrows on failure.
    func writeOneTransaction() throws {
        let user = rows.text.random.pick(userIDs)
        let choice = rows.text.random.unit()
        let time = now
        var createdLead: Int64?
        try database.execute("BEGIN IMMEDIATE")
        do {
            if choice < 0.30 {
                let onLead = newestLead > 0 && rows.text.random.chance(0.65)
                let leadID = onLead ? recent(newestLead, window: 600) : nil
                let clientID = onLead ? nil : recent(newestClient, window: 2000)
                let comment = try rows.insertComment(at: time, authorID: user, leadID: leadID, clientID: clientID)
                try bumpCounter.run([.text("comments")])
                try rows.insertActivity(at: time, userID: user, action: "comment.added",
                                        entityType: onLead ? "lead" : "client", entityID: leadID ?? clientID,
                                        details: "\"comment_id\":\(comment)")
            } else if choice < 0.50, newestLead > 0 {
                let lead = recent(newestLead, window: 300)
                try leadStatus.bind([.integer(lead)])
                let current = try leadStatus.step() ? leadStatus.text(at: 0) ?? "new" : "new"
                try leadStatus.bind([])
                let statuses = CRMVocabulary.leadStatuses
                let old = statuses.firstIndex(of: current) ?? 0
                let new = old >= 5 ? old : (rows.text.random.chance(0.15) ? 6 : old + 1)
                try rows.updateLeadStatus(leadID: lead, status: new, at: time)
                try rows.insertActivity(at: time, userID: user, action: "lead.status_changed", entityType: "lead",
                                        entityID: lead, details: "\"changes\":{\"status\":[\"\(current)\",\"\(statuses[new])\"]}")
            } else if choice < 0.55 {
                let lead = try rows.insertLead(at: time, ownerID: user)
                createdLead = lead
                try rows.insertActivity(at: time, userID: user, action: "lead.created", entityType: "lead", entityID: lead,
                                        details: "\"changes\":{\"status\":[null,\"new\"],\"owner_id\":[null,\(user)]}")
                try rows.insertNotification(at: time, userID: user, entityType: "lead", entityID: lead, isOld: false)
            } else {
                let action = rows.text.random.pick(CRMVocabulary.actions)
                let onLead = newestLead > 0 && rows.text.random.chance(0.6)
                try rows.insertActivity(at: time, userID: user, action: action, entityType: onLead ? "lead" : "client",
                                        entityID: onLead ? recent(newestLead, window: 1000) : recent(newestClient, window: 3000))
            }
            try bumpCounter.run([.text("activity_logs")])
            try database.execute("COMMIT")
            // Only a committed lead may be referred to by later transactions.
            if let createdLead { newestLead = createdLead }
        } catch {
            try? database.execute("ROLLBACK")
            throw error
        }
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }

    /// The duration in milliseconds, as a Double.
    var milliseconds: Double { seconds * 1000 }
}
