import Foundation

// MARK: - Health

/// What `healthcheck` found: healthy, or the problems that make it unhealthy.
public struct HealthReport: Sendable, Equatable {
    /// One line per database and target that lacks a recent enough off-site copy.
    public var problems: [String]

    /// Whether every database has a recent enough copy on every target.
    public var isHealthy: Bool { problems.isEmpty }

    /// Creates a report.
    public init(problems: [String]) {
        self.problems = problems
    }
}

/// Decides whether every database has an off-site copy younger than `maxAge` on **every** target
/// (an operator who configured a second target did so for a reason: losing it must show).
///
/// A database and target that never had a copy are still healthy during a grace period of
/// `maxAge` from when the agent first started with this state, first saw the database, or first
/// tried the target, whichever is latest (a database or target with no record yet counts from the
/// current run's start) — so a fresh deployment, a new database or a new target is healthy until
/// its first deadline. The grace period does not restart when the agent restarts, so a crash loop
/// cannot hide a target that never worked; and a copy that has grown too old is unhealthy at
/// once, restart or not. Without any state at all (the agent never ran) nothing is healthy.
///
/// `databases` and `targets` are the names to check (configured and discovered databases;
/// configured targets); with no databases there is nothing to protect and the report is healthy.
public func evaluateHealth(state: AgentState, databases: [String], targets: [String], maxAge: Duration,
                           now: Date) -> HealthReport {
    let limit = maxAge.timeInterval
    var problems: [String] = []
    // A file the agent found but cannot back up is data without an off-site copy.
    for (path, reason) in (state.unprotected ?? [:]).sorted(by: { $0.key < $1.key }) {
        problems.append("\(path) is not backed up: \(reason)")
    }
    for database in databases.sorted() {
        for target in targets.sorted() {
            let record = state.target(target, of: database)
            if let success = record?.lastSuccess, now.timeIntervalSince(success.time) <= limit { continue }
            // A database or target the state has no record of yet was added to the configuration
            // for this run: its grace starts with the run.
            let databaseStart = state.databases[database]?.firstSeenAt ?? state.agentStartedAt
            let targetStart = record?.firstSeenAt ?? state.agentStartedAt
            let graceStart = [state.firstStartedAt, databaseStart, targetStart].compactMap { $0 }.max()
            if let graceStart, record?.lastSuccess == nil, now.timeIntervalSince(graceStart) <= limit { continue }

            var problem = "\(database) on \(target): "
            if let success = record?.lastSuccess {
                problem += "newest off-site copy is \(formatSpan(now.timeIntervalSince(success.time))) old "
                    + "(\(success.backupID)), more than \(formatSpan(limit))"
            } else if graceStart == nil {
                problem += "no off-site copy, and no record of the agent running"
            } else {
                problem += "no off-site copy yet after \(formatSpan(now.timeIntervalSince(graceStart!)))"
            }
            if let failure = record?.lastFailure, record!.isFailing {
                problem += "; last failure \(formatAge(failure.time, now: now)): \(failure.reason)"
            }
            problems.append(problem)
        }
    }
    return HealthReport(problems: problems)
}

// MARK: - Status

/// The state as a table for `offsite status`, fitting a 100-column terminal: the agent, then per
/// database its last change and snapshot, and per target the last success (age and id), next
/// run, success and failure counts and stored size, with the last failure and its reason below
/// a failing target.
public func renderStatusTable(_ state: AgentState, now: Date) -> String {
    var lines: [String] = []
    if let started = state.agentStartedAt {
        let pid = state.agentPID.map { "pid \($0), " } ?? ""
        lines.append("agent: \(pid)started \(formatAge(started, now: now)) (\(formatISO8601(started)))")
    } else {
        lines.append("agent: has not run yet")
    }
    if state.databases.isEmpty {
        lines.append("")
        lines.append("no databases recorded yet")
    }
    for name in state.databases.keys.sorted() {
        let database = state.databases[name]!
        lines.append("")
        let label = database.isFileSet ? "\(name) (files)" : name
        lines.append(clip(database.path.isEmpty ? label : "\(label)  \(database.path)"))
        var facts: [String] = []
        if let changed = database.lastChangeAt { facts.append("changed \(formatAge(changed, now: now))") }
        if let snapshot = database.lastSnapshot {
            facts.append("snapshot \(formatAge(snapshot.time, now: now)) \(snapshot.backupID), \(formatBytes(snapshot.bytes))"
                         + (database.isFileSet ? " of files" : " (\(snapshot.pageCount) pages of \(snapshot.pageSize) B)"))
        }
        lines.append(clip("  " + (facts.isEmpty ? "no snapshot yet" : facts.joined(separator: "; "))))
        if let chain = database.chain {
            lines.append(clip("  changes: \(chain.objects) change object(s), \(formatBytes(chain.bytes)) since base \(chain.base)"))
        } else if let note = database.continuity {
            lines.append(clip("  changes: not shipped continuously: \(note)"))
        }
        guard !database.targets.isEmpty else {
            lines.append("  no off-site backups tried yet")
            continue
        }
        var rows: [[String]] = [["TARGET", "LAST SUCCESS", "NEXT RUN", "OK", "FAILED", "STORED"]]
        var notes: [Int: [String]] = [:]
        for targetName in database.targets.keys.sorted() {
            let target = database.targets[targetName]!
            let success = target.lastSuccess.map { "\(formatAge($0.time, now: now)) \($0.backupID)" } ?? "never"
            let next = target.nextRunAt.map { $0 <= now ? "due now" : formatAge($0, now: now) } ?? "-"
            let stored = target.listing.map { "\(formatBytes($0.storedBytes)) in \($0.objectCount)" } ?? "-"
            rows.append([targetName, success, next, String(target.successCount), String(target.failureCount), stored])
            var targetNotes: [String] = []
            if target.isFailing, let failure = target.lastFailure {
                let streak = target.consecutiveFailures > 1 ? " (\(target.consecutiveFailures) in a row)" : ""
                targetNotes.append("failing\(streak), \(formatAge(failure.time, now: now)): \(failure.reason)")
            }
            if database.chain != nil, let oldest = target.oldestUnshippedChange {
                targetNotes.append("replication lag \(formatSpan(now.timeIntervalSince(oldest))) (changes since \(formatISO8601(oldest)) not shipped)")
            }
            if let verify = target.lastVerify {
                targetNotes.append("verified \(formatAge(verify.time, now: now)) \(verify.backupID): "
                                   + (verify.ok ? "ok" : "FAILED: \(verify.reason ?? "no reason given")"))
            }
            if !targetNotes.isEmpty { notes[rows.count - 1] = targetNotes }
        }
        // A name longer than the name column gets a line of its own above its row.
        let nameWidth = min(rows.map { $0[0].count }.max()!, maximumNameWidth)
        var widths = (0..<6).map { column in rows.map { $0[column].count }.max()! }
        widths[0] = nameWidth
        let rightAligned: Set<Int> = [3, 4]
        for (index, row) in rows.enumerated() {
            var row = row
            if row[0].count > nameWidth {
                lines.append(clip("  " + row[0]))
                row[0] = ""
            }
            let cells = row.enumerated().map { column, cell in
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return rightAligned.contains(column) ? padding + cell : (column == 5 ? cell : cell + padding)
            }
            lines.append(clip("  " + cells.joined(separator: "  ")))
            let indent = String(repeating: " ", count: 2 + widths[0] + 2)
            for note in notes[index] ?? [] { lines.append(clip(indent + note)) }
        }
    }
    if let unprotected = state.unprotected, !unprotected.isEmpty {
        lines.append("")
        lines.append("not backed up:")
        for (path, reason) in unprotected.sorted(by: { $0.key < $1.key }) { lines.append(clip("  \(path): \(reason)")) }
    }
    if let counts = state.problemCounts, !counts.isEmpty {
        lines.append("")
        lines.append("other failures: " + counts.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        for problem in (state.problems ?? []).suffix(5).reversed() {
            let scope = [problem.database, problem.target].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " → ")
            lines.append(clip("  \(formatAge(problem.time, now: now)) \(problem.operation)\(scope.isEmpty ? "" : " " + scope): \(problem.reason)"))
        }
    }
    return lines.joined(separator: "\n") + "\n"
}

/// The state as JSON for `offsite status --json`: sorted keys, ISO 8601 UTC times, absent values
/// as `null`, databases and targets as arrays sorted by name:
/// `{"agent": {…}, "databases": [{"name", "path", "lastSnapshot", "targets": [{"name", "lastSuccess", …}]}]}`.
public func renderStatusJSON(_ state: AgentState, now: Date = Date()) -> String {
    func time(_ date: Date?) -> Any { date.map { formatISO8601($0) } ?? NSNull() }
    func value(_ value: Any?) -> Any { value ?? NSNull() }
    let databases: [[String: Any]] = state.databases.keys.sorted().map { name in
        let database = state.databases[name]!
        let targets: [[String: Any]] = database.targets.keys.sorted().map { targetName in
            let target = database.targets[targetName]!
            return [
                "name": targetName,
                "firstSeenAt": time(target.firstSeenAt),
                "lastSuccess": value(target.lastSuccess.map {
                    ["time": time($0.time), "backupId": $0.backupID, "bytes": $0.bytes] as [String: Any]
                }),
                "lastFailure": value(target.lastFailure.map { ["time": time($0.time), "reason": $0.reason] as [String: Any] }),
                "consecutiveFailures": target.consecutiveFailures,
                "successCount": target.successCount,
                "failureCount": target.failureCount,
                "nextRunAt": time(target.nextRunAt),
                "listing": value(target.listing.map {
                    ["time": time($0.time), "objectCount": $0.objectCount, "storedBytes": $0.storedBytes] as [String: Any]
                }),
                "lastVerify": value(target.lastVerify.map {
                    ["time": time($0.time), "backupId": $0.backupID, "ok": $0.ok, "reason": value($0.reason)] as [String: Any]
                }),
                "oldestUnshippedChange": time(target.oldestUnshippedChange),
                "replicationLagSeconds": database.chain == nil ? NSNull()
                    : (target.oldestUnshippedChange.map { max(0, now.timeIntervalSince($0)) } ?? 0) as Any,
            ]
        }
        return [
            "name": name,
            "path": database.path,
            "firstSeenAt": time(database.firstSeenAt),
            "lastChangeAt": time(database.lastChangeAt),
            "lastSnapshot": value(database.lastSnapshot.map {
                ["time": time($0.time), "backupId": $0.backupID, "bytes": $0.bytes, "pageCount": $0.pageCount,
                 "pageSize": $0.pageSize] as [String: Any]
            }),
            "targets": targets,
            "chain": value(database.chain.map { ["base": $0.base, "objects": $0.objects, "bytes": $0.bytes] as [String: Any] }),
            "continuity": value(database.continuity),
        ]
    }
    let problems: [[String: Any]] = (state.problems ?? []).map {
        ["time": time($0.time), "operation": $0.operation, "database": value($0.database), "target": value($0.target),
         "reason": $0.reason]
    }
    let root: [String: Any] = [
        "agent": ["pid": value(state.agentPID), "startedAt": time(state.agentStartedAt),
                  "firstStartedAt": time(state.firstStartedAt)] as [String: Any],
        "databases": databases,
        "problems": problems,
        "problemCounts": state.problemCounts ?? [:],
        "unprotected": state.unprotected ?? [:],
    ]
    // Only strings, numbers, booleans, null, arrays and dictionaries: serialisation cannot fail.
    let data = try! JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self) + "\n"
}

// MARK: - Human-readable times and sizes

/// `45s`, `5m`, `2h 5m`, `3d 4h` for a span of seconds (negative spans count as positive).
func formatSpan(_ seconds: TimeInterval) -> String {
    let total = Int64(abs(seconds).rounded(.down))
    if total < 60 { return "\(total)s" }
    if total < 3600 { return "\(total / 60)m" }
    if total < 86_400 {
        let minutes = total % 3600 / 60
        return minutes == 0 ? "\(total / 3600)h" : "\(total / 3600)h \(minutes)m"
    }
    let hours = total % 86_400 / 3600
    return hours == 0 ? "\(total / 86_400)d" : "\(total / 86_400)d \(hours)h"
}

/// `5m ago` for a past time, `in 5m` for a future one.
func formatAge(_ date: Date, now: Date) -> String {
    let seconds = now.timeIntervalSince(date)
    return seconds >= 0 ? "\(formatSpan(seconds)) ago" : "in \(formatSpan(seconds))"
}

/// `512 B`, `1.5 KiB`, `40.1 MiB`, `2.0 GiB`.
public func formatBytes(_ bytes: Int64) -> String {
    if bytes < 1024 { return "\(bytes) B" }
    var value = Double(bytes)
    for unit in ["KiB", "MiB", "GiB", "TiB"] {
        value /= 1024
        if value < 1024 || unit == "TiB" { return String(format: "%.1f", value) + " " + unit }
    }
    return "\(bytes) B"
}

/// The widest target name kept in its column; longer ones go on a line of their own.
private let maximumNameWidth = 12

/// `line` cut to 100 columns with `…`.
private func clip(_ line: String) -> String {
    line.count <= 100 ? line : String(line.prefix(99)) + "…"
}
