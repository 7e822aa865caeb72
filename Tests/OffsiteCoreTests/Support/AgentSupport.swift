import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

// Helpers for the integration tests of `offsite run`: a workspace laid out for one agent, the
// built binary started in the background (its log in a file, stopped by signals), and a small
// webhook receiver. Every test uses its own folders, S3 prefix and ports, so tests run in parallel.

/// Where the agent under test ships its backups.
enum AgentTargetKind: String, CaseIterable, Sendable, CustomStringConvertible {
    /// A folder target (`file://…`).
    case folder
    /// The `rclone serve s3` test server.
    case s3

    var description: String { rawValue }
}

/// One agent's world: `data/` (the watched folder), `local/` (lock, state, local rotation),
/// `remote/` (the folder target) or a unique prefix on the S3 test server, an age identity,
/// and `config.json`.
final class AgentWorkspace: @unchecked Sendable {
    let folder: ScratchFolder
    let kind: AgentTargetKind
    let recipient: String
    /// The prefix on the S3 server (S3 only).
    let s3Prefix: String
    /// The target's name in the configuration.
    let targetName = "remote"

    var dataFolder: String { folder.file("data") }
    var localFolder: String { folder.file("local") }
    var remoteFolder: String { folder.file("remote") }
    var identity: String { folder.file("identity.txt") }
    var configPath: String { folder.file("config.json") }

    init(_ label: String, kind: AgentTargetKind = .folder) throws {
        folder = try ScratchFolder("agent-\(label)")
        self.kind = kind
        s3Prefix = uniqueS3Prefix(label)
        try FileManager.default.createDirectory(atPath: folder.file("data"), withIntermediateDirectories: true)
        let keygen = try OffsiteCoreTests.offsite(["keygen", "--output", "identity.txt"], in: folder)
        guard keygen.status == 0 else { throw TestFailure("keygen failed: \(keygen.standardError)") }
        recipient = keygen.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        if kind == .s3 { _ = try S3TestServer.shared(.rclone) }
    }

    /// The target's configuration entry; `extra` adds or replaces keys.
    func targetJSON(_ extra: [String: Any] = [:]) throws -> [String: Any] {
        var target: [String: Any]
        switch kind {
        case .folder:
            target = ["name": targetName, "url": "file://\(remoteFolder)"]
        case .s3:
            let server = try S3TestServer.shared(.rclone)
            let secretFile = folder.file("s3-secret")
            try Data(S3TestServer.secretAccessKey.utf8).write(to: URL(fileURLWithPath: secretFile))
            target = ["name": targetName, "url": "s3://\(S3TestServer.bucket)/\(s3Prefix)",
                      "endpoint": server.endpoint.absoluteString, "region": "us-east-1",
                      "accessKeyId": S3TestServer.accessKeyId, "secretAccessKeyFile": secretFile, "timeout": "20s"]
        }
        for (key, value) in extra { target[key] = value }
        return target
    }

    /// Writes `config.json`: the data folder watched, JSON logs at debug level, on-change backups
    /// every `minInterval`, no startup or shutdown backup unless asked; `extra` adds or replaces
    /// top-level keys.
    func writeConfig(minInterval: String = "2s", startup: Bool = false, shutdown: Bool = false,
                     target: [String: Any] = [:], extra: [String: Any] = [:]) throws {
        var config: [String: Any] = [
            "watch": ["dir": dataFolder],
            "local": ["dir": localFolder],
            "encryption": ["recipients": [recipient], "identityFile": identity],
            "schedule": ["every": "1h", "onChange": ["minInterval": minInterval], "startup": startup, "shutdown": shutdown],
            "targets": [try targetJSON(target)],
            "shutdownTimeout": "20s",
            "log": ["format": "json", "level": "debug"],
        ]
        for (key, value) in extra { config[key] = value }
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: configPath))
    }

    /// Copies the shared 4 MiB CRM database to `data/NAME.db`; returns its path.
    @discardableResult
    func addDatabase(_ name: String, from source: String? = nil) throws -> String {
        let path = "\(dataFolder)/\(name).db"
        try FileManager.default.copyItem(atPath: try source ?? CRMFixture.shared.get().path, toPath: path)
        return path
    }

    /// A target the test itself uses to look at what the agent shipped.
    func makeTestTarget() throws -> any Target {
        switch kind {
        case .folder: return FileTarget(name: targetName, root: remoteFolder)
        case .s3: return try S3TestServer.shared(.rclone).makeTarget(prefix: s3Prefix)
        }
    }

    /// The backups of `database` on the target, oldest first.
    func backups(of database: String) throws -> [RemoteBackup] {
        try listBackups(on: try makeTestTarget(), database: database)
    }

    /// The multipart uploads open under the workspace's prefix (S3 only; none for a folder).
    func openUploads() throws -> Int {
        guard kind == .s3 else { return 0 }
        do {
            return try S3TestServer.shared(.rclone).makeTarget(prefix: s3Prefix).openUploads().count
        } catch let error as TargetError where error.message.contains("NoSuchUpload") {
            // rclone's S3 server answers 404 NoSuchUpload until its bucket saw a multipart upload.
            return 0
        }
    }

    /// Runs `offsite ARGUMENTS --config config.json` to completion.
    func offsite(_ arguments: [String]) throws -> ToolResult {
        try OffsiteCoreTests.offsite(arguments + ["--config", configPath], in: folder)
    }

    /// Restores backup `id` of `database` with `offsite restore` into a new file; returns its path.
    func restore(_ database: String, id: BackupID) throws -> String {
        let output = folder.file("restored-\(database)-\(id).db")
        let result = try offsite(["restore", "--target", targetName, "--db", database, "--backup", id.description,
                                  "--output", output])
        guard result.status == 0 else { throw TestFailure("restore of \(id) failed: \(result.standardError)") }
        return output
    }

    /// Files that look temporary under `folder` (recursively): names starting with `.` (except the
    /// agent's lock, the state file and its lock) or containing `tmp`.
    static func temporaryFiles(under folder: String) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let relative = enumerator.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            if name == AgentLock.fileName || name == StateStore.fileName || name == StateStore.lockFileName { continue }
            if name.hasPrefix(".") || name.contains("tmp") { found.append(relative) }
        }
        return found.sorted()
    }
}

/// One line of the agent's JSON log.
struct AgentLogLine: @unchecked Sendable {
    let fields: [String: Any]
    var event: String { fields["event"] as? String ?? "" }
    var level: String { fields["level"] as? String ?? "" }
    /// A field as text (numbers and booleans as they print).
    subscript(key: String) -> String? {
        guard let value = fields[key] else { return nil }
        return value as? String ?? "\(value)"
    }
}

/// `offsite run` started in the background from the built binary, its standard output and error
/// going to a file in the workspace; stopped with SIGTERM (or killed with SIGKILL).
final class AgentProcess: @unchecked Sendable {
    let process = Process()
    let logPath: String
    private let logHandle: FileHandle

    /// The agent's process id.
    var pid: Int32 { process.processIdentifier }

    /// Starts `offsite run --config config.json` in the workspace; `label` names the log file.
    init(_ workspace: AgentWorkspace, label: String = "agent", environment: [String: String] = [:]) throws {
        let executable = "\(productsFolder)/offsite"
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw TestFailure("\(executable) is missing: run `swift build` before `swift test`")
        }
        logPath = workspace.folder.file("\(label)-\(UUID().uuidString.prefix(6)).log")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["run", "--config", workspace.configPath]
        var variables = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OFFSITE_") && !$0.key.hasPrefix("AWS_") }
        for (key, value) in environment { variables[key] = value }
        process.environment = variables
        process.currentDirectoryURL = URL(fileURLWithPath: workspace.folder.path)
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = logHandle
        process.standardError = logHandle
        try process.run()
    }

    deinit {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? logHandle.close()
    }

    /// Everything the agent wrote so far.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The log's JSON lines, in order (lines that are not JSON are left out).
    var lines: [AgentLogLine] {
        log.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return AgentLogLine(fields: object)
        }
    }

    /// The lines of `event` that match `predicate`.
    func events(_ event: String, where predicate: (AgentLogLine) -> Bool = { _ in true }) -> [AgentLogLine] {
        lines.filter { $0.event == event && predicate($0) }
    }

    /// Waits until the log holds `count` lines of `event` matching `predicate`; returns the last of them.
    @discardableResult
    func waitFor(_ event: String, count: Int = 1, timeout: TimeInterval = 20,
                 where predicate: @escaping @Sendable (AgentLogLine) -> Bool = { _ in true }) async throws -> AgentLogLine {
        do {
            return try await eventually(timeout: timeout, "\(count) × \(event) in the log") { () -> AgentLogLine? in
                let matching = self.events(event, where: predicate)
                return matching.count >= count ? matching[count - 1] : nil
            }
        } catch let failure as TestFailure {
            throw TestFailure("\(failure.description); the agent's log:\n\(log.suffix(3000))")
        }
    }

    /// Sends `signal` to the agent.
    func send(_ signal: Int32) {
        Glibc.kill(process.processIdentifier, signal)
    }

    /// Waits for the agent to exit; returns its exit status, or 128 + the signal that killed it.
    func waitForExit(timeout: TimeInterval = 30) async throws -> Int32 {
        try await eventually(timeout: timeout, "the agent (pid \(pid)) to exit") { () -> Bool? in
            self.process.isRunning ? nil : true
        }
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// Polls `condition` every 50 ms on the calling thread until it holds; throws, with the end of
    /// the log, when it does not within `timeout` seconds or the agent exits first.
    func waitUntil(_ what: String, timeout: TimeInterval = 30, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            guard Date() < deadline, process.isRunning else { throw TestFailure("no \(what): \(log.suffix(2000))") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// SIGTERM, then waits for the exit on the calling thread; returns the seconds it took.
    func terminateMeasured() -> TimeInterval {
        let asked = Date()
        send(SIGTERM)
        process.waitUntilExit()
        return Date().timeIntervalSince(asked)
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    func terminate(timeout: TimeInterval = 30) async throws -> Int32 {
        send(SIGTERM)
        return try await waitForExit(timeout: timeout)
    }

    /// SIGKILL, then waits for the process to be gone.
    func killHard() async throws {
        send(SIGKILL)
        _ = try await waitForExit(timeout: 10)
    }

    /// The agent's CPU time so far (user + system, in seconds) from `/proc/PID/stat`.
    func cpuSeconds() throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name (which is in parentheses and may contain spaces).
        guard let close = stat.lastIndex(of: ")") else { throw TestFailure("unreadable /proc/\(pid)/stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else {
            throw TestFailure("unreadable /proc/\(pid)/stat")
        }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Runs `body` on a thread of its own and returns its result. Waiting and timing run there, not
/// on the concurrency pool, which tests running synchronously in parallel may keep busy for
/// seconds at a time: a probe or a kill must happen when its moment comes.
func onThread<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Polls `probe` every 100 ms (on a thread of its own) until it returns a value; throws after
/// `timeout` seconds.
@discardableResult
func eventually<Value: Sendable>(timeout: TimeInterval, _ what: String,
                                 _ probe: @escaping @Sendable () throws -> Value?) async throws -> Value {
    try await onThread {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let value = try probe() { return value }
            if Date() > deadline { throw TestFailure("timed out after \(Int(timeout)) s waiting for \(what)") }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }
}

/// Sleeps `seconds` on a thread of its own, so the pause is as long as asked even when the
/// concurrency pool is busy.
func pause(_ seconds: TimeInterval) async throws {
    try await onThread { Thread.sleep(forTimeInterval: seconds) }
}

/// A small HTTP server on 127.0.0.1 (python3's http.server) that appends the body of every POST
/// as one line to a file and answers 204; it exits when the test process goes away.
final class WebhookReceiver: @unchecked Sendable {
    let process = Process()
    let bodiesPath: String
    let port: Int

    private static let script = """
        import http.server, os, sys, threading, time
        bodies, port_file = sys.argv[1], sys.argv[2]
        parent = os.getppid()
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
                with open(bodies, 'ab') as f:
                    f.write(body.replace(b'\\n', b' ') + b'\\n')
                self.send_response(204)
                self.end_headers()
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        with open(port_file + '.tmp', 'w') as f:
            f.write(str(server.server_address[1]))
        os.rename(port_file + '.tmp', port_file)
        def watch_parent():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)
        threading.Thread(target=watch_parent, daemon=True).start()
        server.serve_forever()
        """

    /// Starts the receiver, writing into `folder`.
    init(in folder: ScratchFolder) async throws {
        bodiesPath = folder.file("webhook-bodies.jsonl")
        let portFile = folder.file("webhook-port")
        process.executableURL = URL(fileURLWithPath: try locateTool("python3"))
        process.arguments = ["-c", Self.script, bodiesPath, portFile]
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let process = self.process
        port = try await eventually(timeout: 10, "the webhook receiver to start") { () -> Int? in
            guard process.isRunning else { throw TestFailure("the webhook receiver exited") }
            return (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0) }
        }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// The URL to configure as `notify.webhookUrl`.
    var url: String { "http://127.0.0.1:\(port)/hook" }

    /// Every body received so far, parsed as JSON objects.
    var notifications: [[String: Any]] {
        let text = (try? String(contentsOfFile: bodiesPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// Waits for a notification with `event`; returns it.
    @discardableResult
    func waitFor(event: String, timeout: TimeInterval = 20) async throws -> [String: Any] {
        let index = try await eventually(timeout: timeout, "a webhook with event \(event)") {
            self.notifications.firstIndex { $0["event"] as? String == event }
        }
        return notifications[index]
    }
}

/// A 64 MiB CRM database generated once per test process (seed 64), big enough that compressing
/// and shipping it takes seconds: the window the crash tests kill the agent in.
enum LargeCRMFixture {
    static let folder = FileManager.default.temporaryDirectory
        .appendingPathComponent("offsite-crm-large-\(ProcessInfo.processInfo.processIdentifier)")

    static let shared: Result<String, any Error> = Result {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: LargeCRMFixture.folder) }
        let path = folder.appendingPathComponent("large.db").path
        _ = try CRMGenerator.generate(at: path, sizeMiB: 64, seed: 64)
        return path
    }
}
