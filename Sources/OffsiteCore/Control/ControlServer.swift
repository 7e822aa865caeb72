import Foundation

/// The control endpoint of `offsite run`: an `HTTPServer` answering with a `ControlRouter` for
/// `delegate`, its events written to the agent's log at debug level (never a header, a body or
/// a token).
public final class ControlServer: @unchecked Sendable {
    /// The configuration it serves.
    public let config: HTTPConfig
    private let server: HTTPServer
    private let logger: Logger

    /// Prepares the endpoint; `start` listens.
    public init(config: HTTPConfig, delegate: any ControlDelegate, logger: Logger, limits: HTTPLimits = HTTPLimits(),
                startWait: Duration = .seconds(30)) {
        self.config = config
        self.logger = logger
        let router = ControlRouter(delegate: delegate, token: config.token, startWait: startWait)
        server = HTTPServer(address: config.listen, limits: limits, log: { event, fields in
            logger.log(event == "http.failed" ? .warn : .debug, event, fields: fields.map { ($0.0, $0.1 as Any) })
        }, handler: { router.respond(to: $0) })
    }

    /// The port it listens on.
    public var port: Int { server.port }

    /// Binds and starts serving; throws `HTTPServerError` when the address cannot be bound.
    public func start() throws {
        try server.start()
        logger.info("http.listening", ["address": config.listen.description, "port": server.port,
                                       "token": config.token == nil ? "none: only /healthz and /metrics answer" : "configured"])
    }

    /// Stops serving.
    public func stop() {
        server.stop()
    }
}
