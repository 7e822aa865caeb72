import Foundation

/// The snapshot in the Prometheus text exposition format (version 0.0.4), every name prefixed
/// `offsite_`, base units (`_seconds`, `_bytes`), counters ending in `_total`, times as Unix
/// timestamps (`_timestamp_seconds`). Per database (`database` label) and per database and
/// configured target (`database`, `target`): backups and failures counted, the last success and
/// failure, the size and duration of the last backup, bytes shipped, the next run, what the
/// target stores, the last restore drill, and the replication lag once continuous protection
/// reports one. A value the state does not have yet is left out, never made up; counters of a
/// database and target that never ran are 0.
public func renderMetrics(_ snapshot: ControlSnapshot) -> String {
    var output = MetricsOutput()
    let state = snapshot.state

    output.family("offsite_build_info", .gauge, "The running offsite's version, as a label; always 1.",
                  [([("version", snapshot.version)], 1)])
    output.family("offsite_agent_start_time_seconds", .gauge, "When the running agent started, as a Unix timestamp.",
                  state.agentStartedAt.map { [([], $0.timeIntervalSince1970)] } ?? [])
    output.family("offsite_healthy", .gauge,
                  "1 when every database has an off-site copy younger than health.maxAge on every target (as offsite healthcheck), else 0.",
                  [([], snapshot.health.isHealthy ? 1 : 0)])

    let databases = snapshot.databases
    func perDatabase(_ value: (String, DatabaseState?) -> Double?) -> [MetricsOutput.Sample] {
        databases.compactMap { name in value(name, state.databases[name]).map { ([("database", name)], $0) } }
    }
    output.family("offsite_database_last_change_timestamp_seconds", .gauge,
                  "When the agent last saw the database change, as a Unix timestamp.",
                  perDatabase { $1?.lastChangeAt?.timeIntervalSince1970 })
    output.family("offsite_database_last_snapshot_timestamp_seconds", .gauge,
                  "When the database's last snapshot was taken, as a Unix timestamp.",
                  perDatabase { $1?.lastSnapshot?.time.timeIntervalSince1970 })
    output.family("offsite_database_snapshot_bytes", .gauge, "The size of the database's last snapshot.",
                  perDatabase { $1?.lastSnapshot.map { Double($0.bytes) } })
    output.family("offsite_database_backup_running", .gauge,
                  "1 while a backup of the database runs or waits to start, else 0.",
                  perDatabase { name, _ in snapshot.busyDatabases.contains(name) ? 1 : 0 })

    let targets = snapshot.targets.map(\.name)
    func perTarget(_ value: (TargetState?) -> Double?) -> [MetricsOutput.Sample] {
        databases.flatMap { database in
            targets.compactMap { target in
                value(state.target(target, of: database)).map { ([("database", database), ("target", target)], $0) }
            }
        }
    }
    output.family("offsite_backups_total", .counter, "Backups that reached the target.",
                  perTarget { Double($0?.successCount ?? 0) })
    output.family("offsite_backup_failures_total", .counter, "Backups that failed to reach the target.",
                  perTarget { Double($0?.failureCount ?? 0) })
    output.family("offsite_backup_consecutive_failures", .gauge, "Failures since the last backup that reached the target.",
                  perTarget { Double($0?.consecutiveFailures ?? 0) })
    output.family("offsite_shipped_bytes_total", .counter,
                  "Bytes stored on the target by backups (compressed and encrypted), since the agent began counting them.",
                  perTarget { Double($0?.shippedBytes ?? 0) })
    output.family("offsite_last_success_timestamp_seconds", .gauge,
                  "When the last backup reached the target, as a Unix timestamp.",
                  perTarget { $0?.lastSuccess?.time.timeIntervalSince1970 })
    output.family("offsite_last_failure_timestamp_seconds", .gauge,
                  "When the last backup to the target failed, as a Unix timestamp.",
                  perTarget { $0?.lastFailure?.time.timeIntervalSince1970 })
    output.family("offsite_last_backup_bytes", .gauge,
                  "The size on the target of the last backup that reached it (compressed and encrypted).",
                  perTarget { $0?.lastSuccess.map { Double($0.bytes) } })
    output.family("offsite_last_backup_duration_seconds", .gauge,
                  "How long the last backup that reached the target took, from the start of the snapshot to the end of the upload.",
                  perTarget { $0?.lastSuccess?.seconds })
    output.family("offsite_next_run_timestamp_seconds", .gauge,
                  "When the next scheduled backup to the target is due, as a Unix timestamp.",
                  perTarget { $0?.nextRunAt?.timeIntervalSince1970 })
    output.family("offsite_stored_bytes", .gauge, "What the database's backups take on the target, as last listed.",
                  perTarget { $0?.listing.map { Double($0.storedBytes) } })
    output.family("offsite_stored_backups", .gauge, "How many backups of the database the target holds, as last listed.",
                  perTarget { $0?.listing.map { Double($0.objectCount) } })
    output.family("offsite_last_verify_timestamp_seconds", .gauge,
                  "When the last restore drill of a backup on the target ran, as a Unix timestamp.",
                  perTarget { $0?.lastVerify?.time.timeIntervalSince1970 })
    output.family("offsite_last_verify_success", .gauge, "1 when the last restore drill passed, 0 when it failed.",
                  perTarget { $0?.lastVerify.map { $0.ok ? 1 : 0 } })
    // Continuous protection: present once the agent ships committed changes and reports a lag.
    output.family("offsite_replication_lag_seconds", .gauge,
                  "The age of the newest committed change of the database not yet on the target (continuous protection).",
                  snapshot.replicationLags.sorted { ($0.database, $0.target) < ($1.database, $1.target) }.map {
                      ([("database", $0.database), ("target", $0.target)], $0.seconds)
                  })
    return output.text
}

/// Builds the exposition text one metric family at a time.
struct MetricsOutput {
    /// A metric type as the `# TYPE` line names it.
    enum Kind: String {
        case counter, gauge
    }

    /// Label pairs and a value.
    typealias Sample = (labels: [(String, String)], value: Double)

    private(set) var text = ""

    /// Adds `name` with its HELP and TYPE lines and `samples`; nothing when there are no samples.
    mutating func family(_ name: String, _ kind: Kind, _ help: String, _ samples: [Sample]) {
        guard !samples.isEmpty else { return }
        text += "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
        for sample in samples {
            let labels = sample.labels.map { "\($0.0)=\"\(escapeLabelValue($0.1))\"" }.joined(separator: ",")
            text += name + (labels.isEmpty ? "" : "{\(labels)}") + " " + formatMetricValue(sample.value) + "\n"
        }
    }
}

/// A sample value: whole numbers without a fraction, others with up to three decimals.
func formatMetricValue(_ value: Double) -> String {
    if value.isNaN { return "NaN" }
    if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
    if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
    var text = String(format: "%.3f", value)
    while text.hasSuffix("0") { text.removeLast() }
    if text.hasSuffix(".") { text.removeLast() }
    return text
}

/// A label value with `\`, `"` and line feeds escaped.
func escapeLabelValue(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        .replacingOccurrences(of: "\n", with: "\\n")
}

/// HELP text with `\` and line feeds escaped.
private func escapeHelp(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
}
