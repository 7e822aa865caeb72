import Foundation
import Testing
@testable import OffsiteCore

/// A fixed moment: 2026-11-22 03:17:00 UTC.
let controlNow = Date(timeIntervalSince1970: 1_795_317_420)

/// A state with two databases and two targets: `crm` shipped to both (the last on `nas` failed
/// since), `ledger` shipped to `s3` only; every time relative to `controlNow`.
func sampleControlState() -> AgentState {
    var state = AgentState()
    state.recordStart(at: controlNow.addingTimeInterval(-7200), pid: 4242)
    state.recordDatabase("crm", path: "/data/crm.db", at: controlNow.addingTimeInterval(-7200))
    state.recordDatabase("ledger", path: "/data/ledger.sqlite", at: controlNow.addingTimeInterval(-7200))
    state.recordChange(of: "crm", at: controlNow.addingTimeInterval(-300))
    state.recordSnapshot(of: "crm", SnapshotRecord(time: controlNow.addingTimeInterval(-600), backupID: "20261122T030700Z-change",
                                                   bytes: 4_194_304, pageCount: 1024, pageSize: 4096))
    state.recordSuccess(database: "crm", target: "s3", at: controlNow.addingTimeInterval(-3600),
                        backupID: "20261122T021700Z-scheduled", bytes: 1_000_000, seconds: 2.5)
    state.recordSuccess(database: "crm", target: "s3", at: controlNow.addingTimeInterval(-590),
                        backupID: "20261122T030700Z-change", bytes: 1_048_576, seconds: 1.25)
    state.recordSuccess(database: "crm", target: "nas", at: controlNow.addingTimeInterval(-3600),
                        backupID: "20261122T021700Z-scheduled", bytes: 1_000_000)
    state.recordFailure(database: "crm", target: "nas", at: controlNow.addingTimeInterval(-590),
                        reason: "WebDAV PUT https://nas.example/dav/crm/x: 507 Insufficient Storage <full>")
    state.recordNextRun(database: "crm", target: "s3", at: controlNow.addingTimeInterval(1800), now: controlNow)
    state.recordListing(database: "crm", target: "s3", TargetListing(time: controlNow, objectCount: 3, storedBytes: 3_145_728))
    state.recordVerify(database: "crm", target: "s3", VerifyResult(time: controlNow.addingTimeInterval(-100),
                                                                   backupID: "20261122T030700Z-change", ok: true))
    state.recordSuccess(database: "ledger", target: "s3", at: controlNow.addingTimeInterval(-60),
                        backupID: "20261122T031600Z-startup", bytes: 2048, seconds: 0.125)
    return state
}

/// `sampleControlState` as the agent would show it, with targets `s3` and `nas`.
func sampleControlSnapshot(busy: Set<String> = [], lags: [ReplicationLag] = []) -> ControlSnapshot {
    ControlSnapshot(state: sampleControlState(), databases: ["crm", "ledger"],
                    targets: [ControlTarget(name: "s3", kind: .s3), ControlTarget(name: "nas", kind: .webDAV)],
                    maxAge: .seconds(26 * 3600), now: controlNow, busyDatabases: busy, replicationLags: lags,
                    version: "0.1.0")
}

/// A stand-in for the agent behind the control endpoint, for tests of the endpoint alone: it
/// answers with a fixed snapshot and records backup requests; a request for a busy database is
/// refused, others start at once under a fixed id (or stay queued, or are dropped).
final class TestControlDelegate: ControlDelegate, @unchecked Sendable {
    /// What happens to an accepted request.
    enum Behaviour {
        case start, stayQueued, drop
    }

    private let lock = NSLock()
    private var snapshotValue: ControlSnapshot
    private var requestsValue: [(database: String, target: String?, reason: String?)] = []
    var behaviour: Behaviour = .start
    var stopping = false

    init(_ snapshot: ControlSnapshot = sampleControlSnapshot()) {
        snapshotValue = snapshot
    }

    var requests: [(database: String, target: String?, reason: String?)] { lock.withLock { requestsValue } }

    /// Replaces the snapshot.
    func setSnapshot(_ snapshot: ControlSnapshot) { lock.withLock { snapshotValue = snapshot } }

    func controlSnapshot() -> ControlSnapshot { lock.withLock { snapshotValue } }

    func requestBackup(database: String, target: String?, reason: String?) -> ManualBackupAnswer {
        lock.withLock {
            if stopping { return .stopping }
            guard snapshotValue.databases.contains(database) else { return .unknownDatabase }
            if let target, !snapshotValue.targets.contains(where: { $0.name == target }) { return .unknownTarget }
            if snapshotValue.busyDatabases.contains(database) { return .alreadyRunning }
            requestsValue.append((database, target, reason))
            let ticket = ManualBackupTicket(database: database, target: target, reason: reason)
            switch behaviour {
            case .start: ticket.markStarted(BackupID(seconds: 1_795_317_420, kind: .manual))
            case .stayQueued: break
            case .drop: ticket.drop("the database file is gone")
            }
            return .accepted(ticket)
        }
    }
}
