import Foundation
import Testing
@testable import OffsiteCore

/// Now: 2026-11-22T03:17:00Z.
private let now = Date(timeIntervalSince1970: 1_795_317_420)
private let maxAge = Duration.seconds(26 * 3600)

/// `hours` hours before now.
private func ago(_ hours: Double) -> Date { now.addingTimeInterval(-hours * 3600) }

/// A state built by `build`.
private func state(_ build: (inout AgentState) -> Void) -> AgentState {
    var state = AgentState()
    build(&state)
    return state
}

@Suite struct HealthTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let state: AgentState
        var databases = ["crm"]
        var targets = ["s3"]
        /// Substrings of the expected problems, in order; empty: healthy.
        let problems: [String]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "fresh copies on every target", state: state {
            $0.recordStart(at: ago(100), pid: 1)
            $0.recordDatabase("crm", path: "/data/crm.db", at: ago(100))
            $0.recordSuccess(database: "crm", target: "s3", at: ago(1), backupID: "a", bytes: 1)
            $0.recordSuccess(database: "crm", target: "nas", at: ago(25.9), backupID: "b", bytes: 1)
        }, targets: ["s3", "nas"], problems: []),
        Case(name: "a copy exactly maxAge old is still fine", state: state {
            $0.recordStart(at: ago(100), pid: 1)
            $0.recordSuccess(database: "crm", target: "s3", at: ago(26), backupID: "a", bytes: 1)
        }, problems: []),
        Case(name: "a copy older than maxAge", state: state {
            $0.recordStart(at: ago(100), pid: 1)
            $0.recordSuccess(database: "crm", target: "s3", at: ago(27), backupID: "20261121T001700Z-scheduled", bytes: 1)
        }, problems: ["crm on s3: newest off-site copy is 1d 3h old (20261121T001700Z-scheduled), more than 1d 2h"]),
        Case(name: "every target counts: one stale target is unhealthy", state: state {
            $0.recordStart(at: ago(100), pid: 1)
            $0.recordSuccess(database: "crm", target: "s3", at: ago(1), backupID: "a", bytes: 1)
            $0.recordSuccess(database: "crm", target: "nas", at: ago(30), backupID: "b", bytes: 1)
            $0.recordFailure(database: "crm", target: "nas", at: ago(0.5), reason: "connection refused")
        }, targets: ["s3", "nas"], problems: ["crm on nas: newest off-site copy is 1d 6h old (b)",
                                               "; last failure 30m ago: connection refused"]),
        Case(name: "a fresh deployment is healthy until its first deadline", state: state {
            $0.recordStart(at: ago(2), pid: 1)
            $0.recordFailure(database: "crm", target: "s3", at: ago(1), reason: "HTTP 503")
        }, problems: []),
        Case(name: "a deployment that never succeeded turns unhealthy after maxAge", state: state {
            $0.recordStart(at: ago(27), pid: 1)
            $0.recordDatabase("crm", path: "/data/crm.db", at: ago(27))
            $0.recordFailure(database: "crm", target: "s3", at: ago(26.5), reason: "first")
            $0.recordFailure(database: "crm", target: "s3", at: ago(0.1), reason: "HTTP 403 Forbidden")
        }, problems: ["crm on s3: no off-site copy yet after 1d 2h", "last failure 6m ago: HTTP 403 Forbidden"]),
        Case(name: "restarts do not restart the grace period", state: state {
            $0.recordStart(at: ago(30), pid: 1)
            $0.recordDatabase("crm", path: "/data/crm.db", at: ago(30))
            $0.recordFailure(database: "crm", target: "s3", at: ago(29), reason: "boom")
            $0.recordStart(at: ago(0.05), pid: 2)
        }, problems: ["crm on s3: no off-site copy yet"]),
        Case(name: "nor does a restart excuse a stale copy", state: state {
            $0.recordStart(at: ago(300), pid: 1)
            $0.recordSuccess(database: "crm", target: "s3", at: ago(40), backupID: "old", bytes: 1)
            $0.recordStart(at: ago(0.05), pid: 2)
        }, problems: ["crm on s3: newest off-site copy is 1d 16h old (old)"]),
        Case(name: "a database discovered recently gets its own grace period", state: state {
            $0.recordStart(at: ago(300), pid: 1)
            $0.recordSuccess(database: "crm", target: "s3", at: ago(1), backupID: "a", bytes: 1)
            $0.recordDatabase("new", path: "/data/new.db", at: ago(3))
        }, databases: ["crm", "new"], problems: []),
        Case(name: "a database discovered long ago without a copy", state: state {
            $0.recordStart(at: ago(300), pid: 1)
            $0.recordSuccess(database: "crm", target: "s3", at: ago(1), backupID: "a", bytes: 1)
            $0.recordDatabase("new", path: "/data/new.db", at: ago(30))
        }, databases: ["crm", "new"], problems: ["new on s3: no off-site copy yet"]),
        Case(name: "a target added to the configuration for this run has not been tried yet", state: state {
            $0.recordStart(at: ago(300), pid: 1)
            $0.recordDatabase("crm", path: "/data/crm.db", at: ago(300))
            $0.recordSuccess(database: "crm", target: "s3", at: ago(1), backupID: "a", bytes: 1)
            $0.recordStart(at: ago(0.1), pid: 2)
        }, targets: ["s3", "usb"], problems: []),
        Case(name: "a target configured long ago but never tried", state: state {
            $0.recordStart(at: ago(300), pid: 1)
            $0.recordDatabase("crm", path: "/data/crm.db", at: ago(300))
            $0.recordSuccess(database: "crm", target: "s3", at: ago(1), backupID: "a", bytes: 1)
        }, targets: ["s3", "usb"], problems: ["crm on usb: no off-site copy yet after 12d 12h"]),
        Case(name: "no state at all", state: AgentState(),
             problems: ["crm on s3: no off-site copy, and no record of the agent running"]),
        Case(name: "nothing to protect", state: AgentState(), databases: [], problems: []),
        Case(name: "problems are listed per database and target, sorted", state: state {
            $0.recordStart(at: ago(100), pid: 1)
        }, databases: ["zeta", "alpha"], targets: ["s3", "nas"],
             problems: ["alpha on nas", "alpha on s3", "zeta on nas", "zeta on s3"]),
    ]

    @Test(arguments: cases) func health(_ testCase: Case) {
        let report = evaluateHealth(state: testCase.state, databases: testCase.databases, targets: testCase.targets,
                                    maxAge: maxAge, now: now)
        #expect(report.isHealthy == testCase.problems.isEmpty, "\(report.problems)")
        if testCase.name.contains("sorted") {
            #expect(report.problems.map { String($0.prefix(while: { $0 != ":" })) } == testCase.problems)
        } else if !testCase.problems.isEmpty {
            #expect(report.problems.count == 1, "\(report.problems)")
            for fragment in testCase.problems {
                #expect(report.problems.first?.contains(fragment) == true, "\(report.problems) lacks \(fragment)")
            }
        }
    }

    @Test func turnsUnhealthyAtTheDeadlineAndHealthyAgainOnSuccess() {
        var state = AgentState()
        state.recordStart(at: ago(10), pid: 1)
        state.recordSuccess(database: "crm", target: "s3", at: ago(10), backupID: "a", bytes: 1)
        let deadline = ago(10).addingTimeInterval(maxAge.timeInterval)
        func healthy(at date: Date) -> Bool {
            evaluateHealth(state: state, databases: ["crm"], targets: ["s3"], maxAge: maxAge, now: date).isHealthy
        }
        #expect(healthy(at: deadline))
        #expect(!healthy(at: deadline.addingTimeInterval(1)))
        state.recordSuccess(database: "crm", target: "s3", at: deadline.addingTimeInterval(60), backupID: "b", bytes: 1)
        #expect(healthy(at: deadline.addingTimeInterval(61)))
    }
}
