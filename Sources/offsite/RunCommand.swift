import Foundation
import OffsiteCore

/// `offsite run`: the agent, until SIGTERM or SIGINT.
enum RunCommand {
    static let help = """
    usage: offsite run [--config FILE]

    The sidecar: watches the databases (databases[] and watch.dir) and the file sets (files[]),
    takes backups when they are due — schedule.every, per-target cron schedules, on change with
    schedule.onChange.minInterval, at startup and at shutdown — keeps the local rotation, ships to
    every target, applies each target's retention, and records its state for `offsite status` and
    `offsite healthcheck`. With "continuous", each WAL database's commits leave the host as change
    objects every continuous.interval.

    SIGTERM or SIGINT: in-flight work may finish until shutdownTimeout (default 30s), then it is
    cancelled; the shutdown backup follows when configured; exit 0. A second signal exits at once.
    Give Docker a stop_grace_period longer than shutdownTimeout plus one backup.

    With "http" configured it also listens (default 127.0.0.1:8080): GET /healthz, GET /metrics
    (Prometheus), and with a token (http.tokenFile) GET /api/status, the status page at GET /,
    and POST /api/backup with Authorization: Bearer TOKEN and an optional JSON body
    {"db": "crm", "target": "s3", "reason": "before CSV import"}.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["config"], flags: [])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        guard let config = setup.config else {
            throw UsageError("offsite run needs a configuration",
                             hint: "give --config FILE or OFFSITE_CONFIG, or set OFFSITE_TARGET and OFFSITE_DATA_DIR")
        }
        let logger = Logger(config: config.log)
        for warning in config.warnings { logger.warn("config.warning", ["detail": warning]) }
        let agent = try Agent(config: config, encryption: try setup.encryption(), keys: try setup.decryptionKeys(), logger: logger)
        let endpoint = config.http.map { ControlServer(config: $0, delegate: agent, logger: logger) }

        let sources = [SIGTERM, SIGINT].map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let name = number == SIGTERM ? "TERM" : "INT"
                if agent.requestStop() {
                    logger.info("agent.signal", ["signal": name, "action": "stopping"])
                } else {
                    logger.warn("agent.signal", ["signal": name, "action": "exiting at once"])
                    exit(128 + number)
                }
            }
            source.resume()
            return source
        }
        try agent.run(whenLocked: { try endpoint?.start() })
        endpoint?.stop()
        withExtendedLifetime(sources) {}
        return 0
    }
}
