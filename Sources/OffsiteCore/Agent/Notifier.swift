import Foundation

/// Something the operator should hear about.
public struct Notification: Sendable, Equatable {
    /// `backup.failed`, `backup.recovered`, `backup.succeeded`, `prune.failed`, `verify.failed`, ….
    public var event: String
    /// The database's name; empty for what concerns the agent as a whole (its state file).
    public var database: String
    /// The target's name, when one is involved.
    public var target: String?
    /// The backup's id, when one is involved.
    public var backupID: String?
    /// Why it failed, one line without secrets.
    public var reason: String?
    /// When it happened.
    public var time: Date

    /// Creates a notification.
    public init(event: String, database: String, target: String? = nil, backupID: String? = nil,
                reason: String? = nil, time: Date = Date()) {
        self.event = event
        self.database = database
        self.target = target
        self.backupID = backupID
        self.reason = reason
        self.time = time
    }

    /// The JSON body posted to the webhook.
    public var json: Data {
        var object: [String: Any] = [
            "event": event, "time": ISO8601DateFormatter().string(from: time), "host": ProcessInfo.processInfo.hostName,
        ]
        if !database.isEmpty { object["database"] = database }
        if let target { object["target"] = target }
        if let backupID { object["backupId"] = backupID }
        if let reason { object["reason"] = reason }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    }
}

/// Posts notifications to a webhook from its own thread, retrying with backoff, so a slow or
/// failing receiver never holds up a backup. The queue is bounded: when it is full the oldest
/// waiting notification is dropped (and reported through `onDeliveryFailure`).
public final class WebhookNotifier: @unchecked Sendable {
    private let url: String
    private let client: HTTPClient
    private let retry: RetryPolicy
    private let onDeliveryFailure: @Sendable (Notification, String) -> Void
    private let condition = NSCondition()
    private var queue: [Notification] = []
    private var busy = false
    private var stopped = false
    private let capacity = 100

    /// Creates a notifier posting to `url` (a secret: it often carries a token, so it is never logged).
    public init(url: String, client: HTTPClient = HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(10), totalTimeout: .seconds(30))),
                retry: RetryPolicy = RetryPolicy(maximumAttempts: 5, initialDelay: .seconds(1), maximumDelay: .seconds(30)),
                onDeliveryFailure: @escaping @Sendable (Notification, String) -> Void) {
        self.url = url
        self.client = client
        self.retry = retry
        self.onDeliveryFailure = onDeliveryFailure
        let thread = Thread { [weak self] in self?.deliverLoop() }
        thread.name = "offsite-webhook"
        thread.start()
    }

    /// Queues `notification` for delivery and returns at once.
    public func send(_ notification: Notification) {
        condition.lock()
        var dropped: Notification?
        if queue.count >= capacity { dropped = queue.removeFirst() }
        queue.append(notification)
        condition.signal()
        condition.unlock()
        if let dropped { onDeliveryFailure(dropped, "the notification queue is full") }
    }

    /// Waits until every queued notification was delivered or given up, at most `timeout`.
    @discardableResult
    public func drain(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while !queue.isEmpty || busy {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// Stops the delivery thread after the queue is empty.
    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func deliverLoop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopped { condition.wait() }
            if queue.isEmpty && stopped {
                condition.unlock()
                return
            }
            let next = queue.removeFirst()
            busy = true
            condition.unlock()
            deliver(next)
            condition.lock()
            busy = false
            condition.broadcast()
            condition.unlock()
        }
    }

    private func deliver(_ notification: Notification) {
        let request = HTTPRequest(method: "POST", url: url,
                                  headers: [("Content-Type", "application/json"), ("User-Agent", "offsite/\(LibraryVersions.offsite)")],
                                  body: .data(notification.json))
        do {
            try retry.run(isRetryable: { error in
                if let error = error as? HTTPTransportError { return error.isRetryable }
                if let error = error as? WebhookStatusError { return HTTPRetryClassification.isRetryable(status: error.status) }
                return false
            }) { _ in
                let response = try client.perform(request)
                guard response.isSuccess else { throw WebhookStatusError(status: response.status) }
            }
        } catch let error as WebhookStatusError {
            onDeliveryFailure(notification, "the webhook answered HTTP \(error.status)")
        } catch let error as HTTPTransportError {
            onDeliveryFailure(notification, "the webhook could not be reached: \(error.detail)")
        } catch {
            onDeliveryFailure(notification, "\(error)")
        }
    }
}

/// A webhook answered with a status outside 2xx.
struct WebhookStatusError: Error {
    var status: Int
}
