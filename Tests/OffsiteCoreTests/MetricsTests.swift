import Foundation
import Testing
@testable import OffsiteCore

@Suite struct MetricsTests {
    /// One database and one target that never ran: every counter at 0, no timestamps.
    @Test func aFreshAgentHasZeroCountersAndNoMadeUpTimes() {
        var state = AgentState()
        state.recordStart(at: controlNow, pid: 1)
        let snapshot = ControlSnapshot(state: state, databases: ["crm"], targets: [ControlTarget(name: "usb", kind: .folder)],
                                       maxAge: .seconds(3600), now: controlNow, version: "1.2.3")
        #expect(renderMetrics(snapshot) == """
            # HELP offsite_build_info The running offsite's version, as a label; always 1.
            # TYPE offsite_build_info gauge
            offsite_build_info{version="1.2.3"} 1
            # HELP offsite_agent_start_time_seconds When the running agent started, as a Unix timestamp.
            # TYPE offsite_agent_start_time_seconds gauge
            offsite_agent_start_time_seconds 1795317420
            # HELP offsite_healthy 1 when every database has an off-site copy younger than health.maxAge on every target (as offsite healthcheck), else 0.
            # TYPE offsite_healthy gauge
            offsite_healthy 1
            # HELP offsite_database_backup_running 1 while a backup of the database runs or waits to start, else 0.
            # TYPE offsite_database_backup_running gauge
            offsite_database_backup_running{database="crm"} 0
            # HELP offsite_backups_total Backups that reached the target.
            # TYPE offsite_backups_total counter
            offsite_backups_total{database="crm",target="usb"} 0
            # HELP offsite_backup_failures_total Backups that failed to reach the target.
            # TYPE offsite_backup_failures_total counter
            offsite_backup_failures_total{database="crm",target="usb"} 0
            # HELP offsite_backup_consecutive_failures Failures since the last backup that reached the target.
            # TYPE offsite_backup_consecutive_failures gauge
            offsite_backup_consecutive_failures{database="crm",target="usb"} 0
            # HELP offsite_shipped_bytes_total Bytes stored on the target by backups (compressed and encrypted), since the agent began counting them.
            # TYPE offsite_shipped_bytes_total counter
            offsite_shipped_bytes_total{database="crm",target="usb"} 0

            """)
    }

    @Test(arguments: [
        #"offsite_build_info{version="0.1.0"} 1"#,
        "offsite_agent_start_time_seconds 1795310220",
        "offsite_healthy 1",
        #"offsite_database_last_change_timestamp_seconds{database="crm"} 1795317120"#,
        #"offsite_database_last_snapshot_timestamp_seconds{database="crm"} 1795316820"#,
        #"offsite_database_snapshot_bytes{database="crm"} 4194304"#,
        #"offsite_database_backup_running{database="crm"} 1"#,
        #"offsite_database_backup_running{database="ledger"} 0"#,
        #"offsite_backups_total{database="crm",target="s3"} 2"#,
        #"offsite_backups_total{database="crm",target="nas"} 1"#,
        #"offsite_backups_total{database="ledger",target="s3"} 1"#,
        #"offsite_backups_total{database="ledger",target="nas"} 0"#,
        #"offsite_backup_failures_total{database="crm",target="nas"} 1"#,
        #"offsite_backup_failures_total{database="crm",target="s3"} 0"#,
        #"offsite_backup_consecutive_failures{database="crm",target="nas"} 1"#,
        #"offsite_shipped_bytes_total{database="crm",target="s3"} 2048576"#,
        #"offsite_shipped_bytes_total{database="ledger",target="s3"} 2048"#,
        #"offsite_last_success_timestamp_seconds{database="crm",target="s3"} 1795316830"#,
        #"offsite_last_success_timestamp_seconds{database="crm",target="nas"} 1795313820"#,
        #"offsite_last_failure_timestamp_seconds{database="crm",target="nas"} 1795316830"#,
        #"offsite_last_backup_bytes{database="crm",target="s3"} 1048576"#,
        #"offsite_last_backup_duration_seconds{database="crm",target="s3"} 1.25"#,
        #"offsite_last_backup_duration_seconds{database="ledger",target="s3"} 0.125"#,
        #"offsite_next_run_timestamp_seconds{database="crm",target="s3"} 1795319220"#,
        #"offsite_stored_bytes{database="crm",target="s3"} 3145728"#,
        #"offsite_stored_backups{database="crm",target="s3"} 3"#,
        #"offsite_last_verify_timestamp_seconds{database="crm",target="s3"} 1795317320"#,
        #"offsite_last_verify_success{database="crm",target="s3"} 1"#,
        "# TYPE offsite_backups_total counter",
        "# TYPE offsite_last_success_timestamp_seconds gauge",
    ])
    func showsWhatTheStateKnows(line: String) {
        let text = renderMetrics(sampleControlSnapshot(busy: ["crm"]))
        #expect(text.split(separator: "\n").contains(Substring(line)), "missing: \(line)")
    }

    @Test(arguments: [
        // Values the state does not have are left out rather than shown as 0.
        #"offsite_last_success_timestamp_seconds{database="ledger",target="nas"}"#,
        #"offsite_last_failure_timestamp_seconds{database="crm",target="s3"}"#,
        #"offsite_last_backup_duration_seconds{database="crm",target="nas"}"#,
        #"offsite_database_snapshot_bytes{database="ledger"}"#,
        #"offsite_stored_bytes{database="ledger""#,
        // No continuous protection yet: no lag.
        "offsite_replication_lag_seconds",
    ])
    func leavesOutWhatItDoesNotKnow(prefix: String) {
        let text = renderMetrics(sampleControlSnapshot())
        #expect(!text.contains(prefix), "unexpected: \(prefix)")
    }

    @Test func theReplicationLagAppearsOnceContinuousProtectionReportsIt() {
        let lags = [ReplicationLag(database: "crm", target: "s3", seconds: 1.5), ReplicationLag(database: "crm", target: "nas", seconds: 0)]
        let lines = renderMetrics(sampleControlSnapshot(lags: lags)).split(separator: "\n").map(String.init)
        #expect(lines.contains("# TYPE offsite_replication_lag_seconds gauge"))
        #expect(lines.contains(#"offsite_replication_lag_seconds{database="crm",target="nas"} 0"#))
        #expect(lines.contains(#"offsite_replication_lag_seconds{database="crm",target="s3"} 1.5"#))
    }

    @Test func everyFamilyHasHelpAndTypeOnceAndSamplesFollowTheirType() {
        let lines = renderMetrics(sampleControlSnapshot()).split(separator: "\n").map(String.init)
        var declared: [String] = []
        var current: String?
        for line in lines {
            if line.hasPrefix("# HELP ") {
                let name = String(line.dropFirst(7).prefix { $0 != " " })
                #expect(!declared.contains(name), "\(name) declared twice")
                declared.append(name)
                current = name
            } else if line.hasPrefix("# TYPE ") {
                #expect(line.hasPrefix("# TYPE \(current ?? "?") "))
                let type = line.split(separator: " ").last.map(String.init)
                #expect((type == "counter") == current!.hasSuffix("_total"), "\(line)")
            } else {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                #expect(name == current, "\(line) outside its family")
                #expect(name.hasPrefix("offsite_"))
            }
        }
        #expect(declared.count >= 15)
    }

    @Test(arguments: [
        (0.0, "0"), (42.0, "42"), (1.5, "1.5"), (0.125, "0.125"), (2.0004, "2"), (1795317420.25, "1795317420.25"),
        (-3.0, "-3"), (Double.nan, "NaN"), (Double.infinity, "+Inf"),
    ])
    func formatsValues(value: Double, text: String) {
        #expect(formatMetricValue(value) == text)
    }

    @Test func escapesLabelValues() {
        #expect(escapeLabelValue(#"a"b\c"# + "\nd") == #"a\"b\\c\nd"#)
    }
}
