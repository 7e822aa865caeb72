import Foundation
import OffsiteCore

/// What `CRMGenerator.generate` produced.
public struct CRMStats: Sendable, Equatable {
    /// Rows per table, by table name.
    public var rowCounts: [String: Int]
    /// The size of the database file in bytes.
    public var fileBytes: Int64
    /// Wall-clock time the generation took.
    public var duration: Duration

    /// Generation speed in MiB of database file per second.
    public var mebibytesPerSecond: Double {
        duration.seconds > 0 ? Double(fileBytes) / 1_048_576 / duration.seconds : 0
    }

    /// One line for people: size, time, speed and row counts.
    public var summary: String {
        let rows = rowCounts.keys.sorted().map { "\($0)=\(rowCounts[$0] ?? 0)" }.joined(separator: " ")
        return String(format: "%.1f MiB in %.2f s (%.1f MiB/s): ", Double(fileBytes) / 1_048_576, duration.seconds, mebibytesPerSecond) + rows
    }
}

/// Builds a realistic small-business CRM database of a requested size, deterministically from a seed.
public enum CRMGenerator {
    /// Creates a new WAL-mode CRM database at `path` of about `sizeMiB` MiB (±5%); the same seed
    /// and size give the same rows. Refuses to overwrite an existing file.
    public static func generate(at path: String, sizeMiB: Int, seed: UInt64) throws -> CRMStats {
        guard sizeMiB >= 1 else { throw CRMError.invalidSize(sizeMiB) }
        for suffix in ["", "-wal", "-shm", "-journal"] where FileManager.default.fileExists(atPath: path + suffix) {
            throw CRMError.fileExists(path + suffix)
        }
        let clock = ContinuousClock()
        let started = clock.now
        let counts: [String: Int]
        do {
            let database = try SQLiteDatabase(path: path, mode: .create)
            // Bulk loading: no journal and no fsync while filling; the file becomes WAL at the end.
            try database.execute("""
                PRAGMA page_size = 4096;
                PRAGMA journal_mode = OFF;
                PRAGMA synchronous = OFF;
                PRAGMA cache_size = -131072;
                PRAGMA temp_store = MEMORY;
                """)
            try database.execute("BEGIN")
            try database.execute(CRMSchema.statements)
            // The run (and its prepared statements) must be gone before the journal mode can change.
            counts = try {
                let run = try GenerationRun(database: database, seed: seed, sizeMiB: sizeMiB)
                try run.fill(targetBytes: Int64(sizeMiB) * 1_048_576)
                return run.counts
            }()
            try database.prepare("UPDATE app_counters SET n = ? WHERE name = 'activity_logs'")
                .run([.integer(Int64(counts["activity_logs"] ?? 0))])
            try database.prepare("UPDATE app_counters SET n = ? WHERE name = 'comments'")
                .run([.integer(Int64(counts["comments"] ?? 0))])
            try database.execute("COMMIT")
            let mode = try database.scalarText("PRAGMA journal_mode = WAL")
            guard mode == "wal" else { throw CRMError.journalModeUnchanged(path, mode ?? "unknown") }
        } catch {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            throw error
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        return CRMStats(rowCounts: counts, fileBytes: size, duration: clock.now - started)
    }
}

/// One generation: a simulated business clock that advances in ten-minute steps through working
/// hours, and the rows each step produces, until the file is big enough.
private final class GenerationRun {
    let database: SQLiteDatabase
    let rows: CRMRows
    let pageCount: SQLiteStatement
    let pageSize: Int64
    var users = 0, leads = 0, clients = 0, comments = 0, attendance = 0, notifications = 0, activityLogs = 0

    /// Rows per table so far.
    var counts: [String: Int] {
        ["users": users, "leads": leads, "clients": clients, "comments": comments, "attendance": attendance,
         "notifications": notifications, "activity_logs": activityLogs]
    }

    /// Monday 2021-01-04 08:00 UTC.
    var now: Int64 = 1_609_718_400 + 8 * 3600
    var userIDs: [Int64] = []
    var leadStatuses: [UInt8] = [0]  // index = lead id; slot 0 unused
    var clientCount: Int64 = 0
    var commentCount: Int64 = 0

    init(database: SQLiteDatabase, seed: UInt64, sizeMiB: Int) throws {
        self.database = database
        rows = try CRMRows(database: database, seed: seed)
        pageCount = try database.prepare("PRAGMA page_count")
        pageSize = try database.scalarInt("PRAGMA page_size") ?? 4096
        let staff = min(60, 8 + sizeMiB / 20)
        for _ in 0..<staff {
            userIDs.append(try rows.insertUser(at: now - Int64(rows.text.random.within(30 * 86_400...900 * 86_400))))
        }
        users = staff
        for _ in 0..<(10 + staff) {
            clientCount = try rows.insertClient(at: now - Int64(rows.text.random.within(86_400...700 * 86_400)),
                                                ownerID: rows.text.random.pick(userIDs))
        }
        clients = Int(clientCount)
        try startDay()
    }

    func currentBytes() throws -> Int64 {
        try pageCount.bind([])
        guard try pageCount.step() else { return 0 }
        return pageCount.int64(at: 0) * pageSize
    }

    func fill(targetBytes: Int64) throws {
        var committedAt = try currentBytes()
        while true {
            try step()
            let bytes = try currentBytes()
            if bytes >= targetBytes { break }
            if bytes - committedAt > 64 * 1_048_576 {
                try database.execute("COMMIT; BEGIN")
                committedAt = bytes
            }
        }
    }

    private var randomUser: Int64 { rows.text.random.pick(userIDs) }

    /// A recent id in 1…newest, skewed towards the newest (people work on fresh leads).
    private func recent(_ newest: Int64, window: Int) -> Int64 {
        let span = Int(min(newest, Int64(window)))
        let u = rows.text.random.unit()
        return newest - Int64(Double(span) * u * u)
    }

    private func startDay() throws {
        let midnight = now - now % 86_400
        for user in userIDs where rows.text.random.chance(0.9) {
            try rows.insertAttendance(userID: user, day: midnight)
            attendance += 1
        }
    }

    /// Ten minutes of business.
    private func step() throws {
        var time = now
        func tick() -> Int64 {
            time += Int64(rows.text.random.within(1...35))
            return time
        }
        var activities = 0
        if rows.text.random.chance(0.8) {
            let owner = randomUser
            let lead = try rows.insertLead(at: tick(), ownerID: owner)
            leadStatuses.append(0)
            leads += 1
            try rows.insertActivity(at: time, userID: owner, action: "lead.created", entityType: "lead", entityID: lead,
                                    details: "\"changes\":{\"status\":[null,\"new\"],\"owner_id\":[null,\(owner)]}")
            try rows.insertNotification(at: time, userID: owner, entityType: "lead", entityID: lead, isOld: true)
            notifications += 1
            activities += 1
        }
        let newestLead = Int64(leadStatuses.count - 1)
        for _ in 0..<(newestLead > 0 ? 3 : 0) {
            let lead = recent(newestLead, window: 100)
            let old = Int(leadStatuses[Int(lead)])
            if old < 5 {
                let new = rows.text.random.chance(0.15) ? 6 : old + 1
                let user = randomUser
                try rows.updateLeadStatus(leadID: lead, status: new, at: tick())
                leadStatuses[Int(lead)] = UInt8(new)
                let statuses = CRMVocabulary.leadStatuses
                try rows.insertActivity(at: time, userID: user, action: "lead.status_changed", entityType: "lead",
                                        entityID: lead, details: "\"changes\":{\"status\":[\"\(statuses[old])\",\"\(statuses[new])\"]}")
                activities += 1
                if new == 5 {
                    clientCount = try rows.insertClient(at: tick(), ownerID: user)
                    try rows.convertLead(leadID: lead, toClient: clientCount, at: time)
                    clients += 1
                    try rows.insertActivity(at: time, userID: user, action: "client.created", entityType: "client",
                                            entityID: clientCount, details: "\"converted_from_lead\":\(lead)")
                    try rows.insertNotification(at: time, userID: user, entityType: "client", entityID: clientCount, isOld: true)
                    notifications += 1
                    activities += 1
                }
            }
        }
        for _ in 0..<rows.text.random.within(1...5) {
            let author = randomUser
            let onLead = newestLead > 0 && rows.text.random.chance(0.65)
            let leadID = onLead ? recent(newestLead, window: 600) : nil
            let clientID = onLead ? nil : recent(clientCount, window: 2000)
            commentCount = try rows.insertComment(at: tick(), authorID: author, leadID: leadID, clientID: clientID)
            comments += 1
            let entityType = onLead ? "lead" : "client"
            let entityID = leadID ?? clientID ?? 0
            try rows.insertActivity(at: time, userID: author, action: "comment.added", entityType: entityType,
                                    entityID: entityID, details: "\"comment_id\":\(commentCount)")
            activities += 1
            if rows.text.random.chance(0.3) {
                try rows.insertNotification(at: time, userID: randomUser, entityType: entityType, entityID: entityID, isOld: true)
                notifications += 1
            }
        }
        while activities < 10 {
            let action = rows.text.random.pick(CRMVocabulary.actions)
            let onLead = newestLead > 0 && rows.text.random.chance(0.6)
            let entityID = onLead ? recent(newestLead, window: 1000) : recent(clientCount, window: 3000)
            try rows.insertActivity(at: tick(), userID: randomUser, action: action,
                                    entityType: onLead ? "lead" : "client", entityID: entityID)
            activities += 1
        }
        activityLogs += activities

        now += 600
        let secondOfDay = now % 86_400
        if secondOfDay >= 18 * 3600 {
            now = now - secondOfDay + 86_400 + 8 * 3600
            while crmWeekday(now) >= 5 { now += 86_400 }
            try startDay()
        }
    }
}
