import Foundation
import Testing
@testable import OffsiteCore

/// The one retry layer: which failures it retries, what it reports, and how a cancellation stops
/// it — in a wait between attempts, in a transfer in flight, and in `offsite run` on SIGTERM.
@Suite struct RetryLayerTests {
    private static let transient = TargetError.failed(target: "s3", operation: "put", detail: "503", hint: nil, isPermanent: false)
    private static let permanent = TargetError.failed(target: "s3", operation: "put", detail: "400", hint: nil, isPermanent: true)

    @Test(arguments: [
        // (failures before success, permanent?, attempts made, retries reported, succeeds?)
        (0, false, 1, 0, true),
        (2, false, 3, 2, true),
        (9, false, 4, 3, false),  // transient, until attempts run out
        (9, true, 1, 0, false),  // permanent: never retried
    ])
    func retriesOnlyWhatMayPass(failures: Int, isPermanent: Bool, attempts: Int, reports: Int, succeeds: Bool) throws {
        let reported = Reports()
        let layer = RetryingHTTPClient(name: "s3", http: HTTPClient(),
                                       policy: RetryPolicy(maximumAttempts: 4, initialDelay: .milliseconds(1)),
                                       control: RequestControl { reported.add($0) })
        var made = 0
        let result = Result {
            try layer.run("upload x") { number -> Int in
                made += 1
                #expect(number == made)
                if number <= failures { throw isPermanent ? Self.permanent : Self.transient }
                return number
            }
        }
        #expect(made == attempts)
        #expect(((try? result.get()) != nil) == succeeds)
        #expect(reported.all.map(\.attempt) == Array(0..<reports).map { $0 + 1 })
        #expect(reported.all.allSatisfy { $0.target == "s3" && $0.operation == "upload x" && $0.maximumAttempts == 4 })
        #expect(reported.all.allSatisfy { $0.reason == Self.transient.message })
    }

    @Test func transportFailuresAndWebhookStatusesSayWhetherTheyMayPass() {
        #expect(HTTPTransportError(code: 7, detail: "refused", isRetryable: true).mayPass)
        #expect(!HTTPTransportError(code: 60, detail: "certificate", isRetryable: false).mayPass)
        #expect(WebhookStatusError(status: 503).mayPass && WebhookStatusError(status: 429).mayPass)
        #expect(!WebhookStatusError(status: 404).mayPass)
    }

    @Test func aCancellationWakesTheWaitBetweenAttempts() throws {
        let cancellation = Cancellation()
        let layer = RetryingHTTPClient(name: "s3", http: HTTPClient(),
                                       policy: RetryPolicy(maximumAttempts: 5, initialDelay: .seconds(60), maximumDelay: .seconds(60)),
                                       control: RequestControl(cancellation: cancellation))
        // Full jitter may draw a short wait: the attempts keep failing until the cancel comes.
        let attempt = JoinableThread(name: "test-retrying") { () -> Int in
            try layer.run("list") { _ in throw Self.transient }
        }
        Thread.sleep(forTimeInterval: 0.2)
        let cancelled = Date()
        cancellation.cancel()
        #expect(throws: OperationCancelled.self) { try attempt.join().get() }
        #expect(Date().timeIntervalSince(cancelled) < 1)
        var made = 0
        #expect(throws: OperationCancelled.self) { try layer.run("list") { _ in made += 1 } }
        #expect(made == 0, "nothing is attempted once cancelled")
    }
}

@Suite struct RemoteCancellationTests {
    @Test func anUploadThatKeepsRetryingStopsWithinASecondOfTheCancel() throws {
        let server = try S3TestServer.shared(.rclone)
        let proxy = try FaultyProxy(inFrontOf: server, mode: .unavailable)
        defer { proxy.stop() }
        let cancellation = Cancellation()
        let reports = Reports()
        let target = try server.makeTarget(prefix: uniqueS3Prefix("cancel"), port: proxy.port,
                                           retryPolicy: RetryPolicy(maximumAttempts: 50, initialDelay: .seconds(2), maximumDelay: .seconds(30)),
                                           control: RequestControl(cancellation: cancellation) { reports.add($0) })
        let uploading = JoinableThread(name: "test-upload") {
            try upload(Data(repeating: 1, count: 100_000), to: target, key: "db/never.bin")
        }
        let deadline = Date().addingTimeInterval(30)
        while reports.all.count < 2 {
            guard Date() < deadline, !uploading.hasEnded else { throw TestFailure("the upload did not retry: \(uploading.join())") }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let cancelled = Date()
        cancellation.cancel()
        #expect(throws: OperationCancelled.self) { try uploading.join().get() }
        let took = Date().timeIntervalSince(cancelled)
        #expect(took < 1, "returned \(String(format: "%.2f", took)) s after the cancel")
        #expect(reports.all.allSatisfy { $0.reason.contains("ServiceUnavailable") && $0.target == target.name })
        #expect(try proxy.faultCounts()["unavailable", default: 0] >= 2, "the requests reached the server answering 503")
    }

    @Test func aTransferTheServerNeverAnswersIsAbortedInFlight() throws {
        let server = try S3TestServer.shared(.rclone)
        let proxy = try FaultyProxy(inFrontOf: server, mode: .silent)
        defer { proxy.stop() }
        let cancellation = Cancellation()
        let target = try server.makeTarget(prefix: uniqueS3Prefix("silent"), port: proxy.port,
                                           control: RequestControl(cancellation: cancellation))
        let listing = JoinableThread(name: "test-list") { try target.list(prefix: "") }
        let deadline = Date().addingTimeInterval(30)
        while try proxy.faultCounts()["silent", default: 0] < 1 {
            guard Date() < deadline else { throw TestFailure("the request never reached the proxy") }
            Thread.sleep(forTimeInterval: 0.01)
        }
        Thread.sleep(forTimeInterval: 0.3)  // the request waits for an answer that never comes
        let cancelled = Date()
        cancellation.cancel()
        #expect(throws: OperationCancelled.self) { try listing.join().get() }
        let took = Date().timeIntervalSince(cancelled)
        #expect(took < 0.5, "the transfer in flight was aborted \(String(format: "%.2f", took)) s after the cancel")
    }
}

@Suite struct AgentRetryStopTests {
    @Test func sigtermWhileATargetRetriesEndsTheAgentWithinTheShutdownTimeout() async throws {
        let workspace = try AgentWorkspace("retry-stop", kind: .s3)
        try workspace.addDatabase("crm")
        let proxy = try FaultyProxy(inFrontOf: try S3TestServer.shared(.rclone), mode: .unavailable)
        defer { proxy.stop() }
        try workspace.writeConfig(startup: true, target: ["endpoint": "http://127.0.0.1:\(proxy.port)"],
                                  extra: ["shutdownTimeout": "2s"])
        let agent = try AgentProcess(workspace)
        // Waiting for the retries and signalling happen on a thread of their own: the concurrency
        // pool may be busy with other tests for seconds.
        let took = try await onThread { () -> TimeInterval in
            try agent.waitUntil("retry") { !agent.events("target.retry").isEmpty }
            return agent.terminateMeasured()
        }
        #expect(agent.process.terminationStatus == 0)
        #expect(took < 2 + 2, "stopped \(String(format: "%.1f", took)) s after SIGTERM with shutdownTimeout 2s")
        let retry = try #require(agent.events("target.retry").first)
        #expect(retry["target"] == workspace.targetName && retry.level == "warn")
        #expect(retry["reason"]?.contains("ServiceUnavailable") == true, "\(retry.fields)")
        #expect(agent.events("agent.deadline").count == 1, "the retries were still going when the deadline came")
        #expect(agent.events("agent.stop").first?.fields["cancelled"] as? Bool == true)
    }
}

/// Retry reports collected from the threads that make them.
private final class Reports: @unchecked Sendable {
    private let lock = NSLock()
    private var reports: [HTTPRetry] = []
    var all: [HTTPRetry] { lock.withLock { reports } }
    func add(_ report: HTTPRetry) { lock.withLock { reports.append(report) } }
}
