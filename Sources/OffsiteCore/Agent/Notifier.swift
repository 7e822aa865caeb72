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
public final class WebhookNotifier: Sendable {
    private let delivery: WebhookDelivery
    private let queue = BoundedQueue<Notification>(capacity: 100)

    /// Creates a notifier posting to `url` (a secret: it often carries a token, so it is never logged).
    public init(url: String, client: HTTPClient = HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(10), totalTimeout: .seconds(30))),
                retry: RetryPolicy = RetryPolicy(maximumAttempts: 5, initialDelay: .seconds(1), maximumDelay: .seconds(30)),
                onDeliveryFailure: @escaping @Sendable (Notification, String) -> Void) {
        let delivery = WebhookDelivery(url: url, transport: RetryingHTTPClient(name: "webhook", http: client, policy: retry),
                                       onFailure: onDeliveryFailure)
        self.delivery = delivery
        _ = JoinableThread(name: "offsite-webhook") { [queue] in
            // Ends when the queue is closed (`stop`, or the notifier goes away) and empty.
            while let notification = try queue.take() { delivery.deliver(notification) }
        }
    }

    deinit {
        queue.close()
    }

    /// Queues `notification` for delivery and returns at once.
    public func send(_ notification: Notification) {
        do {
            for dropped in try queue.putDroppingOldest(notification) {
                delivery.onFailure(dropped, "the notification queue is full")
            }
        } catch {
            delivery.onFailure(notification, "the notifier has stopped")
        }
    }

    /// Waits until every queued notification was delivered or given up, at most `timeout`.
    @discardableResult
    public func drain(timeout: TimeInterval) -> Bool {
        queue.waitUntilDrained(before: Date().addingTimeInterval(timeout))
    }

    /// Stops the delivery thread after the queue is empty.
    public func stop() {
        queue.close()
    }
}

/// How one notification is posted: with retries, failures told to `onFailure`.
private struct WebhookDelivery: Sendable {
    let url: String
    let transport: RetryingHTTPClient
    let onFailure: @Sendable (Notification, String) -> Void

    func deliver(_ notification: Notification) {
        let request = HTTPRequest(method: "POST", url: url,
                                  headers: [("Content-Type", "application/json"), ("User-Agent", "offsite/\(LibraryVersions.offsite)")],
                                  body: .data(notification.json))
        do {
            try transport.run("notify") { _ in
                let response = try transport.perform(request)
                guard response.isSuccess else { throw WebhookStatusError(status: response.status) }
            }
        } catch let error as WebhookStatusError {
            onFailure(notification, "the webhook answered HTTP \(error.status)")
        } catch let error as HTTPTransportError {
            onFailure(notification, "the webhook could not be reached: \(error.detail)")
        } catch {
            onFailure(notification, "\(error)")
        }
    }
}

/// A webhook answered with a status outside 2xx.
struct WebhookStatusError: TransientFailure {
    var status: Int

    /// 5xx, 408 and 429 may pass.
    var mayPass: Bool { HTTPRetryClassification.isRetryable(status: status) }
}
