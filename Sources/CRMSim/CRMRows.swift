import OffsiteCore

/// Prepared statements and row builders for the CRM tables, shared by the generator (historic
/// data) and the writer (live traffic). Not thread-safe: one per connection.
final class CRMRows {
    let database: SQLiteDatabase
    var text: CRMText

    private let insertUserStatement: SQLiteStatement
    private let insertLeadStatement: SQLiteStatement
    private let insertClientStatement: SQLiteStatement
    private let insertCommentStatement: SQLiteStatement
    private let insertAttendanceStatement: SQLiteStatement
    private let insertNotificationStatement: SQLiteStatement
    private let insertActivityStatement: SQLiteStatement
    private let updateLeadStatusStatement: SQLiteStatement
    private let convertLeadStatement: SQLiteStatement

    init(database: SQLiteDatabase, seed: UInt64) throws {
        self.database = database
        text = CRMText(seed: seed)
        insertUserStatement = try database.prepare("""
            INSERT INTO users (email, full_name, role, phone, password_hash, is_active, settings, created_at, last_login_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insertLeadStatement = try database.prepare("""
            INSERT INTO leads (first_name, last_name, email, phone, company, title, source, status, score,
                estimated_value_cents, owner_id, custom_fields, notes, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insertClientStatement = try database.prepare("""
            INSERT INTO clients (company_name, contact_name, email, phone, address, city, country, industry,
                owner_id, status, lifetime_value_cents, custom_fields, notes, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insertCommentStatement = try database.prepare("""
            INSERT INTO comments (author_id, lead_id, client_id, body, created_at, edited_at) VALUES (?, ?, ?, ?, ?, ?)
            """)
        insertAttendanceStatement = try database.prepare("""
            INSERT INTO attendance (user_id, work_date, check_in_at, check_out_at, location, note) VALUES (?, ?, ?, ?, ?, ?)
            """)
        insertNotificationStatement = try database.prepare("""
            INSERT INTO notifications (user_id, kind, title, body, payload, is_read, created_at, read_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insertActivityStatement = try database.prepare("""
            INSERT INTO activity_logs (user_id, action, entity_type, entity_id, payload, ip_address, user_agent, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        updateLeadStatusStatement = try database.prepare("""
            UPDATE leads SET status = ?, score = ?, updated_at = ? WHERE id = ?
            """)
        convertLeadStatement = try database.prepare("""
            UPDATE leads SET client_id = ?, updated_at = ? WHERE id = ?
            """)
    }

    // MARK: Rows

    /// Inserts one staff member; returns its id.
    @discardableResult
    func insertUser(at time: Int64) throws -> Int64 {
        let first = text.firstName(), last = text.lastName()
        let email = "\(first.lowercased()).\(last.lowercased())\(database.lastInsertRowID + 1)@ourcrm.example"
        let settings = """
            {"theme":"\(text.random.chance(0.3) ? "dark" : "light")","language":"\(text.random.pick(CRMVocabulary.languages))",\
            "timezone":"\(text.random.pick(CRMVocabulary.timezones))","notifications":{"email":\(text.random.chance(0.7)),\
            "desktop":\(text.random.chance(0.5)),"digest":"\(text.random.chance(0.5) ? "daily" : "weekly")"},\
            "dashboard":{"widgets":["pipeline","tasks","calendar"\(text.random.chance(0.4) ? ",\"leaderboard\"" : "")]}}
            """
        try insertUserStatement.run([
            .text(email), .text("\(first) \(last)"), .text(text.random.pick(CRMVocabulary.roles)),
            .text(text.phone()), .text("$2b$12$" + text.hex(53)), .integer(1), .text(settings),
            .text(text.timestamp(time)), .text(text.timestamp(time + Int64(text.random.below(86_400)))),
        ])
        return database.lastInsertRowID
    }

    /// Inserts one new lead owned by `ownerID`; returns its id.
    @discardableResult
    func insertLead(at time: Int64, ownerID: Int64) throws -> Int64 {
        let first = text.firstName(), last = text.lastName()
        let company: String? = text.random.chance(0.8) ? text.company() : nil
        let source = text.random.pick(CRMVocabulary.leadSources)
        let fields = """
            {"budget":"\(text.random.pick(CRMVocabulary.budgets))","preferred_contact":"\(text.random.pick(CRMVocabulary.preferredContacts))",\
            "timezone":"\(text.random.pick(CRMVocabulary.timezones))","employees":\(text.random.within(1...250)),\
            "tags":\(text.tagList()),"newsletter":\(text.random.chance(0.4)),"utm_source":"\(source)"}
            """
        let notes: SQLiteStatement.Value = text.random.chance(0.7) ? .text(text.paragraph(sentences: 1...3)) : .null
        try insertLeadStatement.run([
            .text(first), .text(last), .text(text.email(first: first, last: last, company: company)),
            .text(text.phone()), company.map { .text($0) } ?? .null,
            .text(text.random.pick(CRMVocabulary.jobTitles)), .text(source), .text("new"),
            .integer(Int64(text.random.below(40))), .integer(Int64(text.random.within(2...400) * 2500)),
            .integer(ownerID), .text(fields), notes, .text(text.timestamp(time)), .text(text.timestamp(time)),
        ])
        return database.lastInsertRowID
    }

    /// Moves a lead to `status` (an index into `CRMVocabulary.leadStatuses`).
    func updateLeadStatus(leadID: Int64, status: Int, at time: Int64) throws {
        try updateLeadStatusStatement.run([
            .text(CRMVocabulary.leadStatuses[status]), .integer(Int64(status * 15 + text.random.below(15))),
            .text(text.timestamp(time)), .integer(leadID),
        ])
    }

    /// Records that a won lead became `clientID`.
    func convertLead(leadID: Int64, toClient clientID: Int64, at time: Int64) throws {
        try convertLeadStatement.run([.integer(clientID), .text(text.timestamp(time)), .integer(leadID)])
    }

    /// Inserts one client owned by `ownerID`; returns its id.
    @discardableResult
    func insertClient(at time: Int64, ownerID: Int64) throws -> Int64 {
        let company = text.company()
        let first = text.firstName(), last = text.lastName()
        let (city, country) = text.random.pick(CRMVocabulary.cities)
        let fields = """
            {"seats":\(text.random.within(1...60)),"billing_cycle":"\(text.random.chance(0.6) ? "monthly" : "annual")",\
            "plan":"\(text.random.pick(CRMVocabulary.products))","vat_id":"\(country)\(text.random.within(100_000_000...999_999_999))",\
            "tags":\(text.tagList()),"renewal_month":"\(text.random.pick(CRMVocabulary.months))",\
            "account_health":\(text.random.within(1...10))}
            """
        let notes: SQLiteStatement.Value = text.random.chance(0.8) ? .text(text.paragraph(sentences: 1...4)) : .null
        try insertClientStatement.run([
            .text(company), .text("\(first) \(last)"), .text(text.email(first: first, last: last, company: company)),
            .text(text.phone()), .text(text.address()), .text(city), .text(country),
            .text(text.random.pick(CRMVocabulary.industries)), .integer(ownerID),
            .text(text.random.pick(CRMVocabulary.clientStatuses)), .integer(Int64(text.random.below(5_000_000))),
            .text(fields), notes, .text(text.timestamp(time)), .text(text.timestamp(time)),
        ])
        return database.lastInsertRowID
    }

    /// Inserts one comment on a lead or a client (exactly one of the two); returns its id.
    @discardableResult
    func insertComment(at time: Int64, authorID: Int64, leadID: Int64?, clientID: Int64?) throws -> Int64 {
        let edited: SQLiteStatement.Value = text.random.chance(0.1)
            ? .text(text.timestamp(time + Int64(text.random.within(60...7200)))) : .null
        try insertCommentStatement.run([
            .integer(authorID), leadID.map { .integer($0) } ?? .null, clientID.map { .integer($0) } ?? .null,
            .text(text.paragraph(sentences: 1...4)), .text(text.timestamp(time)), edited,
        ])
        return database.lastInsertRowID
    }

    /// Inserts one day of attendance for `userID`, starting on the day of `day` (midnight UTC).
    func insertAttendance(userID: Int64, day: Int64) throws {
        let checkIn = day + Int64(text.random.within(7 * 3600 + 1800...9 * 3600 + 1800))
        let checkOut = day + Int64(text.random.within(16 * 3600 + 1800...19 * 3600))
        let note: SQLiteStatement.Value = text.random.chance(0.1) ? .text(text.sentence()) : .null
        try insertAttendanceStatement.run([
            .integer(userID), .text(text.date(day)), .text(text.timestamp(checkIn)), .text(text.timestamp(checkOut)),
            .text(text.random.pick(CRMVocabulary.locations)), note,
        ])
    }

    /// Inserts one notification for `userID` about an entity.
    func insertNotification(at time: Int64, userID: Int64, entityType: String, entityID: Int64, isOld: Bool) throws {
        let (kind, title) = text.random.pick(CRMVocabulary.notificationKinds)
        let isRead = isOld && text.random.chance(0.85)
        text.put(#"{"entity_type":""#); text.put(entityType)
        text.put(#"","entity_id":"#); text.put(Int(entityID))
        text.put(#","url":"/"#); text.put(entityType); text.put("s/"); text.put(Int(entityID))
        text.put(#"","priority":""#); text.put(text.random.chance(0.2) ? "high" : "normal")
        text.put(#"","channels":["in_app""#)
        if text.random.chance(0.5) { text.put(#","email""#) }
        text.put("]}")
        let payload = text.take()
        try insertNotificationStatement.run([
            .integer(userID), .text(kind), .text(title), .text(text.sentence()), .text(payload),
            .integer(isRead ? 1 : 0), .text(text.timestamp(time)),
            isRead ? .text(text.timestamp(time + Int64(text.random.within(30...172_800)))) : .null,
        ])
    }

    /// Inserts one activity log entry with a JSON payload; `details` is extra JSON members
    /// (without braces, may be empty).
    func insertActivity(at time: Int64, userID: Int64?, action: String, entityType: String, entityID: Int64?,
                        details: String = "") throws {
        let agent = text.random.below(CRMVocabulary.userAgents.count)
        let (browser, system, device) = CRMVocabulary.userAgentSummaries[agent]
        text.put(#"{"request":{"id":""#)
        text.putHex(8); text.put("-"); text.putHex(4); text.put("-"); text.putHex(4); text.put("-"); text.putHex(4)
        text.put("-"); text.putHex(12)
        text.put(#"","method":""#)
        text.put(action.hasSuffix(".viewed") || action.hasPrefix("search") ? "GET" : "POST")
        text.put(#"","path":"/"#); text.put(entityType); text.put("s")
        if let entityID { text.put("/"); text.put(Int(entityID)) }
        text.put(#"","referer":""#)
        if text.random.chance(0.5) {
            text.put("/"); text.put(entityType); text.put("s?status=")
            text.put(text.random.pick(CRMVocabulary.leadStatuses)); text.put("&page="); text.put(text.random.within(1...12))
        } else {
            text.put("/dashboard")
        }
        text.put(#"","status":200,"duration_ms":"#); text.put(text.random.within(4...480))
        text.put(#","queries":"#); text.put(text.random.within(1...40))
        text.put(#"},"client":{"browser":""#); text.put(browser)
        text.put(#"","os":""#); text.put(system)
        text.put(#"","device":""#); text.put(device)
        text.put(#""},"session":""#); text.putHex(24); text.put(#"""#)
        if !details.isEmpty { text.put(","); text.put(details) }
        text.put("}")
        let payload = text.take()
        text.putUserAgent(agent)
        let userAgent = text.take()
        try insertActivityStatement.run([
            userID.map { .integer($0) } ?? .null, .text(action), .text(entityType), entityID.map { .integer($0) } ?? .null,
            .text(payload), .text(text.ipAddress()), .text(userAgent),
            .text(text.timestamp(time)),
        ])
    }
}
