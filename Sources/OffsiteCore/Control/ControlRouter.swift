import Foundation

/// Answers the control endpoint's requests:
///
/// | route | without a token configured | with one |
/// | --- | --- | --- |
/// | `GET /healthz` | 200 `ok`, or 503 with the problems | same |
/// | `GET /metrics` | Prometheus text | same |
/// | `GET /api/status` | 403 | the JSON of `offsite status --json` |
/// | `GET /` | 403 | the status page |
/// | `POST /api/backup` | 403 | needs `Authorization: Bearer TOKEN`: 202 with the id, 409 while that database is backed up |
/// | `POST /backup` (the page's form) | 403 | needs the `token` field: a page saying accepted or 409 |
///
/// `HEAD` is answered like `GET`. Other paths: 404; other methods: 405. Tokens are compared in
/// constant time and never written anywhere.
public struct ControlRouter: Sendable {
    /// The agent.
    public let delegate: any ControlDelegate
    /// The token actions need, or nil: then only `/healthz` and `/metrics` answer.
    public let token: Secret?
    /// How long a backup request waits for the backup to start (and get its id) before it is
    /// answered as queued.
    public let startWait: Duration

    /// Creates a router.
    public init(delegate: any ControlDelegate, token: Secret?, startWait: Duration = .seconds(30)) {
        self.delegate = delegate
        self.token = token
        self.startWait = startWait
    }

    /// The response to `request`.
    public func respond(to request: HTTPServerRequest) -> HTTPServerResponse {
        var response = route(request)
        response.headers.append(HTTPServerHeader("Cache-Control", "no-store"))
        return response
    }

    private func route(_ request: HTTPServerRequest) -> HTTPServerResponse {
        let method = request.method == "HEAD" ? "GET" : request.method
        switch (request.path, method) {
        case ("/healthz", "GET"):
            let report = delegate.controlSnapshot().health
            return report.isHealthy
                ? .text(200, "ok\n")
                : .text(503, report.problems.map { "unhealthy: \($0)\n" }.joined())
        case ("/metrics", "GET"):
            return HTTPServerResponse(status: 200, headers: [HTTPServerHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                                      body: Array(renderMetrics(delegate.controlSnapshot()).utf8))
        case ("/api/status", "GET"):
            guard token != nil else { return noTokenJSON() }
            return HTTPServerResponse(status: 200, headers: [HTTPServerHeader("Content-Type", "application/json")],
                                      body: Array(renderStatusJSON(delegate.controlSnapshot().state).utf8))
        case ("/api/backup", "POST"):
            guard let token else { return noTokenJSON() }
            guard let given = bearerToken(request.header("Authorization")), tokensMatch(given, token) else {
                return json(401, ["error": "missing or wrong token", "hint": "send Authorization: Bearer TOKEN (the token in http.tokenFile)"],
                            headers: [HTTPServerHeader("WWW-Authenticate", "Bearer realm=\"offsite\"")])
            }
            return apiBackup(request)
        case ("/", "GET"):
            guard token != nil else { return noTokenPage() }
            return HTTPServerResponse(status: 200, headers: statusPageSecurityHeaders,
                                      body: Array(renderStatusPage(delegate.controlSnapshot(), backupForm: true).utf8))
        case ("/backup", "POST"):
            guard let token else { return noTokenPage() }
            return formBackup(request, token: token)
        case ("/healthz", _), ("/metrics", _), ("/api/status", _), ("/", _):
            return .text(405, "405 Method Not Allowed: \(request.path) answers GET and HEAD\n",
                         headers: [HTTPServerHeader("Allow", "GET, HEAD")])
        case ("/api/backup", _), ("/backup", _):
            return .text(405, "405 Method Not Allowed: \(request.path) answers POST\n", headers: [HTTPServerHeader("Allow", "POST")])
        default:
            return .text(404, "404 Not Found: nothing at \(request.path); try /, /healthz, /metrics, /api/status or POST /api/backup\n")
        }
    }

    // MARK: - Backups

    /// What a backup request asks for, checked against what the agent knows.
    private struct BackupAsk {
        var database: String
        var target: String?
        var reason: String?
    }

    /// A request that cannot be taken: status and one-line message (and hint).
    private struct Refusal: Error {
        var status: Int
        var message: String
        var hint: String?
    }

    private func apiBackup(_ request: HTTPServerRequest) -> HTTPServerResponse {
        let fields: [String: String?]
        do {
            fields = try parseBackupBody(request.body)
        } catch let refusal as Refusal {
            return json(refusal.status, ["error": refusal.message, "hint": refusal.hint])
        } catch {
            return json(400, ["error": "\(error)"])
        }
        switch startBackup(fields) {
        case .success(let (ask, progress)):
            var answer: [String: Any?] = ["db": ask.database, "target": ask.target, "reason": ask.reason]
            switch progress {
            case .started(let id):
                answer["id"] = id.description
                answer["status"] = "started"
            case .queued:
                answer["id"] = .some(nil)
                answer["status"] = "queued"
            case .dropped(let why):
                return json(503, ["error": "the backup of \(ask.database) did not start: \(why)"])
            }
            return json(202, answer)
        case .failure(let refusal):
            let headers = refusal.status == 409 ? [HTTPServerHeader("Retry-After", "10")] : []
            return json(refusal.status, ["error": refusal.message, "hint": refusal.hint], headers: headers)
        }
    }

    private func formBackup(_ request: HTTPServerRequest, token: Secret) -> HTTPServerResponse {
        func page(_ status: Int, _ title: String, _ message: String) -> HTTPServerResponse {
            HTTPServerResponse(status: status, headers: statusPageSecurityHeaders,
                               body: Array(renderActionPage(title: title, message: message).utf8))
        }
        guard let form = decodeForm(request.body) else {
            return page(400, "Not a form", "The request body is not a form (application/x-www-form-urlencoded).")
        }
        guard let given = form["token"], tokensMatch(given, token) else {
            return page(403, "Wrong token", "The token is missing or wrong; nothing was started.")
        }
        let fields: [String: String?] = ["db": form["db"], "reason": form["reason"], "target": form["target"]]
        switch startBackup(fields) {
        case .success(let (ask, progress)):
            switch progress {
            case .started(let id):
                return page(202, "Backup started", "The backup \(id) of \(ask.database) has started.")
            case .queued:
                return page(202, "Backup queued", "The backup of \(ask.database) will start when the agent is free.")
            case .dropped(let why):
                return page(503, "Backup not started", "The backup of \(ask.database) did not start: \(why)")
            }
        case .failure(let refusal):
            let title = refusal.status == 409 ? "Already backing up" : "Not started"
            return page(refusal.status, title, refusal.message + (refusal.hint.map { " (\($0))" } ?? ""))
        }
    }

    /// Checks `fields` (db, target, reason) against the agent's databases and targets, asks the
    /// agent, and waits for the backup to start.
    private func startBackup(_ fields: [String: String?]) -> Result<(BackupAsk, ManualBackupTicket.Progress), Refusal> {
        let snapshot = delegate.controlSnapshot()
        let known = snapshot.databases
        let ask: BackupAsk
        do {
            ask = try resolveAsk(fields, snapshot: snapshot)
        } catch let refusal as Refusal {
            return .failure(refusal)
        } catch {
            return .failure(Refusal(status: 400, message: "\(error)"))
        }
        switch delegate.requestBackup(database: ask.database, target: ask.target, reason: ask.reason) {
        case .accepted(let ticket):
            return .success((ask, ticket.waitUntilSettled(timeout: startWait)))
        case .alreadyRunning:
            return .failure(Refusal(status: 409, message: "a backup of \(ask.database) is running or waiting to start",
                                    hint: "try again when it has finished"))
        case .unknownDatabase:
            return .failure(Refusal(status: 400, message: "no database named \(ask.database)",
                                    hint: "known: \(known.joined(separator: ", "))"))
        case .unknownTarget:
            return .failure(Refusal(status: 400, message: "no target named \(ask.target ?? "")",
                                    hint: "configured: \(snapshot.targets.map(\.name).joined(separator: ", "))"))
        case .stopping:
            return .failure(Refusal(status: 503, message: "the agent is stopping; its shutdown backup follows if configured"))
        }
    }

    private func resolveAsk(_ fields: [String: String?], snapshot: ControlSnapshot) throws -> BackupAsk {
        func value(_ key: String) -> String? {
            guard let text = fields[key] ?? nil else { return nil }
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return trimmed.isEmpty ? nil : trimmed
        }
        let database: String
        if let name = value("db") {
            guard snapshot.databases.contains(name) else {
                throw Refusal(status: 400, message: "no database named \(oneLine(name))",
                              hint: "known: \(snapshot.databases.joined(separator: ", "))")
            }
            database = name
        } else {
            guard snapshot.databases.count == 1 else {
                throw Refusal(status: 400, message: "which database? give \"db\"",
                              hint: snapshot.databases.isEmpty ? "no database is known yet"
                                                               : "known: \(snapshot.databases.joined(separator: ", "))")
            }
            database = snapshot.databases[0]
        }
        let target = value("target")
        if let target, !snapshot.targets.contains(where: { $0.name == target }) {
            throw Refusal(status: 400, message: "no target named \(oneLine(target))",
                          hint: "configured: \(snapshot.targets.map(\.name).joined(separator: ", "))")
        }
        let reason = value("reason").map(oneLine)
        if let reason, reason.count > maximumReasonLength {
            throw Refusal(status: 400, message: "the reason is longer than \(maximumReasonLength) characters")
        }
        return BackupAsk(database: database, target: target, reason: reason)
    }

    /// The body of `POST /api/backup`: empty, or a JSON object of strings (or nulls) with the
    /// keys `db`, `target` and `reason`.
    private func parseBackupBody(_ body: [UInt8]) throws -> [String: String?] {
        guard body.contains(where: { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D) }) else { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)), let fields = object as? [String: Any] else {
            throw Refusal(status: 400, message: "the body is not a JSON object",
                          hint: "send {\"db\": \"NAME\", \"target\": \"NAME\", \"reason\": \"TEXT\"}, every key optional")
        }
        var result: [String: String?] = [:]
        for (key, value) in fields {
            guard ["db", "target", "reason"].contains(key) else {
                throw Refusal(status: 400, message: "unknown key \"\(oneLine(key))\" in the body", hint: "known keys: db, target, reason")
            }
            if value is NSNull { result[key] = .some(nil); continue }
            guard let text = value as? String else {
                throw Refusal(status: 400, message: "\"\(key)\" must be a string")
            }
            result[key] = text
        }
        return result
    }

    // MARK: - Answers

    private func noTokenJSON() -> HTTPServerResponse {
        json(403, ["error": "the control endpoint has no token: only /healthz and /metrics answer",
                   "hint": "set http.tokenFile in the configuration"])
    }

    private func noTokenPage() -> HTTPServerResponse {
        HTTPServerResponse(status: 403, headers: statusPageSecurityHeaders, body: Array(renderActionPage(
            title: "No token configured",
            message: "This agent's control endpoint has no token, so only /healthz and /metrics answer. "
                + "Set http.tokenFile in its configuration to see this page.").utf8))
    }

    private func json(_ status: Int, _ object: [String: Any?], headers: [HTTPServerHeader] = []) -> HTTPServerResponse {
        let cleaned = object.mapValues { $0 ?? NSNull() }
        // Only strings, numbers and null: serialisation cannot fail.
        let data = (try? JSONSerialization.data(withJSONObject: cleaned, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return HTTPServerResponse(status: status, headers: [HTTPServerHeader("Content-Type", "application/json")] + headers,
                                  body: Array(data) + [0x0A])
    }
}

/// The token of an `Authorization: Bearer TOKEN` header, or nil.
func bearerToken(_ header: String?) -> String? {
    guard let header else { return nil }
    let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    let token = parts[1].trimmingCharacters(in: .whitespaces)
    return token.isEmpty ? nil : token
}

/// Whether `given` is the token, compared in time that does not depend on where they differ
/// or on the token's length.
func tokensMatch(_ given: String, _ token: Secret) -> Bool {
    AgePrimitives.secretsMatch(Array(given.utf8), Array(token.value.utf8))
}

/// The fields of an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte);
/// nil when it is not one. A field given twice keeps its first value.
func decodeForm(_ body: [UInt8]) -> [String: String]? {
    guard let text = String(bytes: body, encoding: .utf8) else { return nil }
    var fields: [String: String] = [:]
    for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard let name = decodeFormComponent(parts[0]) else { return nil }
        guard let value = parts.count == 2 ? decodeFormComponent(parts[1]) : "" else { return nil }
        if fields[name] == nil { fields[name] = value }
    }
    return fields
}

private func decodeFormComponent(_ text: Substring) -> String? {
    text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
}
