import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A small HTTP/1.1 server on POSIX sockets for the control endpoint: one connection, one
/// request, `Connection: close`.
///
/// One thread of its own owns every socket: it accepts, reads requests without blocking, writes
/// responses and closes, each step with a deadline (`HTTPLimits`); a crowd of slow or idle
/// clients costs a few kilobytes each, and at the connection cap the oldest of them is dropped to
/// make room. Each whole request is handed to `handler` on a thread of its own (at most
/// `maximumHandlers` at once, the rest wait in line); the handler never touches the socket. So
/// nothing a client sends or fails to send can block the handler threads, the agent or another
/// client for longer than the deadlines.
public final class HTTPServer: @unchecked Sendable {
    /// Answers one request; runs on a thread of its own, may block briefly.
    public typealias Handler = @Sendable (HTTPServerRequest) -> HTTPServerResponse
    /// Receives what the server has to say about requests and clients: an event name
    /// (`http.request`, `http.rejected`, `http.timeout`, `http.evicted`, `http.failed`) and
    /// fields. Never given a header value or a body.
    public typealias EventLog = @Sendable (_ event: String, _ fields: [(String, String)]) -> Void

    /// Where the server listens (the port may be 0 until `start`; see `port`).
    public let address: ListenAddress
    /// The bounds every client is held to.
    public let limits: HTTPLimits
    private let handler: Handler
    private let log: EventLog

    private let lock = NSLock()
    private var listener: Int32 = -1
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1
    private var boundPort = 0
    private var stopRequested = false
    private var isClosed = false
    private var finished: [(id: UInt64, response: HTTPServerResponse)] = []
    private let loopEnded = DispatchSemaphore(value: 0)

    // Owned by the loop thread.
    private var connections: [UInt64: Connection] = [:]
    private var nextID: UInt64 = 0
    private var activeHandlers = 0
    private var waiting: [(id: UInt64, request: HTTPServerRequest)] = []
    private var connectionCap = 0
    private var acceptPausedUntil: UInt64 = 0

    /// Creates a server; `start` binds and begins serving.
    public init(address: ListenAddress, limits: HTTPLimits = HTTPLimits(), log: @escaping EventLog = { _, _ in },
                handler: @escaping Handler) {
        self.address = address
        self.limits = limits
        self.log = log
        self.handler = handler
    }

    /// The port the server listens on (the configured one, or the one the system chose for 0).
    public var port: Int { lock.withLock { boundPort } }

    /// Binds, listens and starts the serving thread. Throws `HTTPServerError` when the address
    /// cannot be bound (in use, not this host's, a privileged port).
    public func start() throws(HTTPServerError) {
        let socketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd = socket(address.family == .ipv4 ? AF_INET : AF_INET6, socketType, 0)
        guard fd >= 0 else { throw HTTPServerError(address: address, operation: "socket", code: errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound: Int32
        switch address.family {
        case .ipv4:
            var socketAddress = sockaddr_in()
            socketAddress.sin_family = sa_family_t(AF_INET)
            socketAddress.sin_port = in_port_t(UInt16(address.port).bigEndian)
            _ = inet_pton(AF_INET, address.host, &socketAddress.sin_addr)
            bound = withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .ipv6:
            var socketAddress = sockaddr_in6()
            socketAddress.sin6_family = sa_family_t(AF_INET6)
            socketAddress.sin6_port = in_port_t(UInt16(address.port).bigEndian)
            _ = inet_pton(AF_INET6, address.host, &socketAddress.sin6_addr)
            bound = withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw HTTPServerError(address: address, operation: "bind", code: code)
        }
        guard listen(fd, 128) == 0 else {
            let code = errno
            close(fd)
            throw HTTPServerError(address: address, operation: "listen", code: code)
        }
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            let code = errno
            close(fd)
            throw HTTPServerError(address: address, operation: "pipe", code: code)
        }
        for end in pipeEnds { HTTPServer.makeNonBlockingAndPrivate(end) }
        lock.withLock {
            listener = fd
            wakeRead = pipeEnds[0]
            wakeWrite = pipeEnds[1]
            boundPort = HTTPServer.localPort(of: fd) ?? address.port
        }
        connectionCap = HTTPServer.connectionCap(limits.maximumConnections)
        let thread = Thread { [self] in
            runLoop()
            loopEnded.signal()
        }
        thread.name = "offsite-http"
        thread.start()
    }

    /// Stops listening, closes every connection and waits for the serving thread to end.
    /// Requests still in a handler are dropped when it returns. Safe to call more than once.
    public func stop() {
        let first: Bool = lock.withLock {
            guard !stopRequested, listener >= 0 else { return false }
            stopRequested = true
            return true
        }
        guard first else { return }
        wake()
        loopEnded.wait()
        lock.withLock {
            // A handler finishing later must not write into a descriptor the process reuses.
            isClosed = true
            close(wakeRead)
            close(wakeWrite)
        }
    }

    // MARK: - The serving loop

    private enum Phase {
        case reading
        case handling
        case writing(bytes: [UInt8], offset: Int, deadline: UInt64)
        case lingering(deadline: UInt64, dropped: Int)
    }

    private final class Connection {
        let id: UInt64
        let fd: Int32
        let acceptedAt: UInt64
        var lastActivity: UInt64
        var buffer: [UInt8] = []
        var phase = Phase.reading
        var request: HTTPServerRequest?

        init(id: UInt64, fd: Int32, now: UInt64) {
            self.id = id
            self.fd = fd
            acceptedAt = now
            lastActivity = now
        }
    }

    private func runLoop() {
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        let (listenerFD, wakeFD) = lock.withLock { (listener, wakeRead) }
        while !lock.withLock({ stopRequested }) {
            var now = monotonicNanoseconds()
            var descriptors = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            let accepting = now >= acceptPausedUntil
            descriptors.append(pollfd(fd: accepting ? listenerFD : -1, events: Int16(POLLIN), revents: 0))
            var polled: [UInt64] = []
            var nextDeadline = now + 1_000_000_000
            if !accepting { nextDeadline = min(nextDeadline, acceptPausedUntil) }
            for (id, connection) in connections {
                let events: Int32
                let deadline: UInt64
                switch connection.phase {
                case .reading:
                    events = Int32(POLLIN)
                    deadline = readingDeadline(connection)
                case .handling:
                    continue
                case .writing(_, _, let writeDeadline):
                    events = Int32(POLLOUT)
                    deadline = writeDeadline
                case .lingering(let lingerDeadline, _):
                    events = Int32(POLLIN)
                    deadline = lingerDeadline
                }
                descriptors.append(pollfd(fd: connection.fd, events: Int16(events), revents: 0))
                polled.append(id)
                nextDeadline = min(nextDeadline, deadline)
            }
            let timeout = nextDeadline > now ? Int32(min((nextDeadline - now) / 1_000_000 + 1, 1000)) : 0
            let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
            if ready < 0 && errno != EINTR {
                log("http.failed", [("operation", "poll"), ("reason", String(cString: strerror(errno)))])
                Thread.sleep(forTimeInterval: 0.05)
                continue
            }
            now = monotonicNanoseconds()
            if descriptors[0].revents != 0 {
                drainWakePipe(wakeFD)
                collectFinishedResponses(now: now)
            }
            for (index, id) in polled.enumerated() where descriptors[index + 2].revents != 0 {
                service(id, events: Int32(descriptors[index + 2].revents), now: now, scratch: &scratch)
            }
            if accepting && descriptors[1].revents != 0 { acceptConnections(listenerFD, now: now) }
            expireDeadlines(now: monotonicNanoseconds())
        }
        for id in Array(connections.keys) { closeConnection(id) }
        close(listenerFD)
    }

    private func readingDeadline(_ connection: Connection) -> UInt64 {
        min(connection.acceptedAt + nanoseconds(limits.requestTimeout),
            connection.lastActivity + nanoseconds(limits.idleTimeout))
    }

    private func acceptConnections(_ listenerFD: Int32, now: UInt64) {
        for _ in 0..<64 {
            let fd = accept(listenerFD, nil, nil)
            if fd >= 0 { HTTPServer.makeNonBlockingAndPrivate(fd) }
            if fd < 0 {
                let code = errno
                if code == EINTR || code == ECONNABORTED { continue }
                if code == EMFILE || code == ENFILE {
                    // Out of descriptors: make room if a client can give one up, else wait a little.
                    if !evictOne() {
                        acceptPausedUntil = now + 100_000_000
                        log("http.failed", [("operation", "accept"), ("reason", String(cString: strerror(code)))])
                        return
                    }
                    continue
                }
                return
            }
            if connections.count >= connectionCap && !evictOne() {
                close(fd)
                continue
            }
            nextID += 1
            connections[nextID] = Connection(id: nextID, fd: fd, now: now)
        }
    }

    /// Closes the connection that is done (lingering) or has been sending its request the
    /// longest; false when every connection is being answered.
    private func evictOne() -> Bool {
        var victim: (id: UInt64, lingering: Bool, since: UInt64)?
        for (id, connection) in connections {
            let lingering: Bool
            switch connection.phase {
            case .lingering: lingering = true
            case .reading: lingering = false
            case .handling, .writing: continue
            }
            if let current = victim, (current.lingering && !lingering)
                || (current.lingering == lingering && current.since <= connection.acceptedAt) {
                continue
            }
            victim = (id, lingering, connection.acceptedAt)
        }
        guard let victim else { return false }
        if !victim.lingering { log("http.evicted", [("reason", "connection cap \(connectionCap) reached")]) }
        closeConnection(victim.id)
        return true
    }

    private func service(_ id: UInt64, events: Int32, now: UInt64, scratch: inout [UInt8]) {
        guard let connection = connections[id] else { return }
        switch connection.phase {
        case .reading:
            let count = scratch.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                closeConnection(id)
                return
            }
            guard count > 0 else { return }
            connection.buffer.append(contentsOf: scratch[0..<count])
            connection.lastActivity = now
            switch parseHTTPRequest(connection.buffer, limits: limits) {
            case .incomplete:
                break
            case .invalid(let status, let reason):
                log("http.rejected", [("status", String(status)), ("reason", reason)])
                respond(connection, HTTPServerResponse.text(status, "\(status) \(HTTPServerResponse.reasonPhrase(status)): \(reason)\n"),
                        includingBody: true, now: now)
            case .complete(let request, _):
                connection.buffer = []
                connection.phase = .handling
                connection.request = request
                if activeHandlers < limits.maximumHandlers {
                    startHandler(id, request)
                } else {
                    waiting.append((id, request))
                }
            }
        case .writing:
            continueWriting(connection, now: now)
        case .lingering(let deadline, let dropped):
            let count = scratch.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 && dropped + count < 8 << 20 {
                connection.phase = .lingering(deadline: deadline, dropped: dropped + count)
            } else if count >= 0 || (errno != EAGAIN && errno != EINTR) {
                closeConnection(id)
            }
        case .handling:
            break
        }
    }

    private func startHandler(_ id: UInt64, _ request: HTTPServerRequest) {
        activeHandlers += 1
        let handler = self.handler
        let thread = Thread { [weak self] in
            let response = handler(request)
            self?.handlerFinished(id, response)
        }
        thread.name = "offsite-http-handler"
        thread.start()
    }

    /// Called on a handler's thread: hands the response to the loop.
    private func handlerFinished(_ id: UInt64, _ response: HTTPServerResponse) {
        lock.withLock {
            guard !isClosed else { return }
            finished.append((id, response))
        }
        wake()
    }

    private func collectFinishedResponses(now: UInt64) {
        let responses: [(id: UInt64, response: HTTPServerResponse)] = lock.withLock {
            defer { finished = [] }
            return finished
        }
        for (id, response) in responses {
            activeHandlers -= 1
            guard let connection = connections[id], let request = connection.request else { continue }
            let milliseconds = Double(now - connection.acceptedAt) / 1_000_000
            log("http.request", [("method", request.method), ("path", request.path), ("status", String(response.status)),
                                 ("ms", String(format: "%.1f", milliseconds))])
            respond(connection, response, includingBody: request.method != "HEAD", now: now)
        }
        while activeHandlers < limits.maximumHandlers, !waiting.isEmpty {
            let next = waiting.removeFirst()
            if connections[next.id] != nil { startHandler(next.id, next.request) }
        }
    }

    private func respond(_ connection: Connection, _ response: HTTPServerResponse, includingBody: Bool, now: UInt64) {
        connection.phase = .writing(bytes: response.serialized(includingBody: includingBody), offset: 0,
                                    deadline: now + nanoseconds(limits.writeTimeout))
        continueWriting(connection, now: now)
    }

    private func continueWriting(_ connection: Connection, now: UInt64) {
        guard case .writing(let bytes, var offset, let deadline) = connection.phase else { return }
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes {
                send(connection.fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if count > 0 {
                offset += count
                continue
            }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                connection.phase = .writing(bytes: bytes, offset: offset, deadline: deadline)
                return
            }
            closeConnection(connection.id)
            return
        }
        // Everything is sent: say so, and read what the client may still send until it closes,
        // so that it sees the response rather than a reset.
        _ = shutdown(connection.fd, Int32(SHUT_WR))
        connection.phase = .lingering(deadline: now + nanoseconds(limits.lingerTimeout), dropped: 0)
    }

    private func expireDeadlines(now: UInt64) {
        for (id, connection) in connections {
            switch connection.phase {
            case .reading:
                guard now >= readingDeadline(connection) else { continue }
                if connection.buffer.isEmpty {
                    closeConnection(id)
                } else {
                    log("http.timeout", [("received", String(connection.buffer.count))])
                    respond(connection, HTTPServerResponse.text(408, "408 Request Timeout: the request did not arrive in time\n"),
                            includingBody: true, now: now)
                }
            case .writing(_, _, let deadline), .lingering(let deadline, _):
                if now >= deadline { closeConnection(id) }
            case .handling:
                continue
            }
        }
    }

    private func closeConnection(_ id: UInt64) {
        guard let connection = connections.removeValue(forKey: id) else { return }
        close(connection.fd)
    }

    private func wake() {
        lock.withLock {
            guard !isClosed, wakeWrite >= 0 else { return }
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    private func drainWakePipe(_ fd: Int32) {
        var bytes = [UInt8](repeating: 0, count: 256)
        while read(fd, &bytes, bytes.count) > 0 {}
    }

    // MARK: - Helpers

    /// Sets `O_NONBLOCK` and `FD_CLOEXEC` (no child process inherits a client's socket).
    private static func makeNonBlockingAndPrivate(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
    }

    private static func localPort(of fd: Int32) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        default:
            return nil
        }
    }

    /// `wanted`, or fewer when the process may open few descriptors: a quarter of the soft limit
    /// leaves the rest to the agent (databases, targets, snapshots).
    private static func connectionCap(_ wanted: Int) -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else {
            return wanted
        }
        return max(8, min(wanted, Int(limit.rlim_cur / 4)))
    }
}

/// Nanoseconds on a clock that never jumps.
private func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

private func nanoseconds(_ duration: Duration) -> UInt64 {
    let (seconds, attoseconds) = duration.components
    return UInt64(max(seconds, 0)) * 1_000_000_000 + UInt64(max(attoseconds, 0) / 1_000_000_000)
}

/// The control endpoint could not listen.
public struct HTTPServerError: UserFacingError, Equatable {
    /// The address it tried.
    public var address: ListenAddress
    /// The system call that failed (`bind`, `listen`, …).
    public var operation: String
    /// The `errno` it failed with.
    public var code: Int32

    /// Creates an error.
    public init(address: ListenAddress, operation: String, code: Int32) {
        self.address = address
        self.operation = operation
        self.code = code
    }

    /// `cannot listen on 127.0.0.1:8080: Address already in use`.
    public var message: String {
        "cannot listen on \(address) (\(operation)): \(String(cString: strerror(code)))"
    }

    /// What to try for the usual causes.
    public var hint: String? {
        switch code {
        case EADDRINUSE: return "another process listens there; choose another port in http.listen"
        case EACCES: return "ports below 1024 need privileges; choose a port such as 8080 in http.listen"
        case EADDRNOTAVAIL: return "no network interface of this host has that address; use 127.0.0.1 or 0.0.0.0"
        default: return nil
        }
    }

    /// The message.
    public var description: String { message }
}
