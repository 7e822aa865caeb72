import OffsiteCore

/// The consistency rule a transactionally consistent copy of the CRM database always satisfies:
/// every counter in `app_counters` equals the row count of the table it names. The writer updates
/// rows and counters in one transaction, so a torn copy shows up as a mismatch.
public enum CRMInvariant {
    /// Every way the database at `path` breaks the invariant, one line each; empty when it holds.
    /// Reads all counts in one read transaction, so it is safe on a live database.
    public static func violations(inDatabaseAt path: String) throws -> [String] {
        let database = try SQLiteDatabase(path: path, mode: .readOnly)
        try database.execute("BEGIN")
        defer { try? database.execute("COMMIT") }
        let hasCounters = try database.scalarInt(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'app_counters'") ?? 0
        guard hasCounters == 1 else { throw CRMError.notACRMDatabase(path) }
        var problems: [String] = []
        for table in CRMSchema.countedTables {
            let statement = try database.prepare("SELECT n FROM app_counters WHERE name = ?")
            try statement.bind([.text(table)])
            let counter: Int64? = try statement.step() ? statement.int64(at: 0) : nil
            let rows = try database.scalarInt("SELECT count(*) FROM \(table)") ?? 0
            if let counter {
                if counter != rows { problems.append("app_counters says \(table) has \(counter) rows, the table has \(rows)") }
            } else {
                problems.append("app_counters has no counter for \(table) (the table has \(rows) rows)")
            }
        }
        return problems
    }

    /// Whether the database at `path` satisfies the invariant (see `violations(inDatabaseAt:)`).
    public static func check(databaseAt path: String) throws -> Bool {
        try violations(inDatabaseAt: path).isEmpty
    }
}
