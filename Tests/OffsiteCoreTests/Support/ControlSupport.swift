import Foundation
import Testing
@testable import OffsiteCore

/// A fixed moment: 2026-11-22 03:17:00 UTC.
let controlNow = Date(timeIntervalSince1970: 1_795_317_420)

/// A state with two databases and two targets: `crm` shipped to both (the last on `nas` failed
/// since), `ledger` shipped to `s3` only; every time relative to `controlNow`.
func sampleControlState() -> AgentState {
    var state = AgentState()
    state.recordStart(at: controlNow.addingTimeInterval(-7200), pid: 4242)
    state.recordDatabase("crm", path: "/data/crm.db", at: controlNow.addingTimeInterval(-7200))
    state.recordDatabase("ledger", path: "/data/ledger.sqlite", at: controlNow.addingTimeInterval(-7200))
    state.recordChange(of: "crm", at: controlNow.addingTimeInterval(-300))
    state.recordSnapshot(of: "crm", SnapshotRecord(time: controlNow.addingTimeInterval(-600), backupID: "20261122T030700Z-change",
                                                   bytes: 4_194_304, pageCount: 1024, pageSize: 4096))
    state.recordSuccess(database: "crm", target: "s3", at: controlNow.addingTimeInterval(-3600),
                        backupID: "20261122T021700Z-scheduled", bytes: 1_000_000, seconds: 2.5)
    state.recordSuccess(database: "crm", target: "s3", at: controlNow.addingTimeInterval(-590),
                        backupID: "20261122T030700Z-change", bytes: 1_048_576, seconds: 1.25)
    state.recordSuccess(database: "crm", target: "nas", at: controlNow.addingTimeInterval(-3600),
                        backupID: "20261122T021700Z-scheduled", bytes: 1_000_000)
    state.recordFailure(database: "crm", target: "nas", at: controlNow.addingTimeInterval(-590),
                        reason: "WebDAV PUT https://nas.example/dav/crm/x: 507 Insufficient Storage <full>")
    state.recordNextRun(database: "crm", target: "s3", at: controlNow.addingTimeInterval(1800), now: controlNow)
    state.recordListing(database: "crm", target: "s3", TargetListing(time: controlNow, objectCount: 3, storedBytes: 3_145_728))
    state.recordVerify(database: "crm", target: "s3", VerifyResult(time: controlNow.addingTimeInterval(-100),
                                                                   backupID: "20261122T030700Z-change", ok: true))
    state.recordSuccess(database: "ledger", target: "s3", at: controlNow.addingTimeInterval(-60),
                        backupID: "20261122T031600Z-startup", bytes: 2048, seconds: 0.125)
    return state
}

/// `sampleControlState` as the agent would show it, with targets `s3` and `nas`.
func sampleControlSnapshot(busy: Set<String> = [], lags: [ReplicationLag] = []) -> ControlSnapshot {
    ControlSnapshot(state: sampleControlState(), databases: ["crm", "ledger"],
                    targets: [ControlTarget(name: "s3", kind: .s3), ControlTarget(name: "nas", kind: .webDAV)],
                    maxAge: .seconds(26 * 3600), now: controlNow, busyDatabases: busy, replicationLags: lags,
                    version: "0.1.0")
}

/// A stand-in for the agent behind the control endpoint, for tests of the endpoint alone: it
/// answers with a fixed snapshot and records backup requests; a request for a busy database is
/// refused, others start at once under a fixed id (or stay queued, or are dropped).
final class TestControlDelegate: ControlDelegate, @unchecked Sendable {
    /// What happens to an accepted request.
    enum Behaviour {
        case start, stayQueued, drop
    }

    private let lock = NSLock()
    private var snapshotValue: ControlSnapshot
    private var requestsValue: [(database: String, target: String?, reason: String?)] = []
    var behaviour: Behaviour = .start
    var stopping = false

    init(_ snapshot: ControlSnapshot = sampleControlSnapshot()) {
        snapshotValue = snapshot
    }

    var requests: [(database: String, target: String?, reason: String?)] { lock.withLock { requestsValue } }

    /// Replaces the snapshot.
    func setSnapshot(_ snapshot: ControlSnapshot) { lock.withLock { snapshotValue = snapshot } }

    func controlSnapshot() -> ControlSnapshot { lock.withLock { snapshotValue } }

    func requestBackup(database: String, target: String?, reason: String?) -> ManualBackupAnswer {
        lock.withLock {
            if stopping { return .stopping }
            guard snapshotValue.databases.contains(database) else { return .unknownDatabase }
            if let target, !snapshotValue.targets.contains(where: { $0.name == target }) { return .unknownTarget }
            if snapshotValue.busyDatabases.contains(database) { return .alreadyRunning }
            requestsValue.append((database, target, reason))
            let ticket = ManualBackupTicket(database: database, target: target, reason: reason)
            switch behaviour {
            case .start: ticket.markStarted(BackupID(seconds: 1_795_317_420, kind: .manual))
            case .stayQueued: break
            case .drop: ticket.drop("the database file is gone")
            }
            return .accepted(ticket)
        }
    }
}

/// What `curl` got back.
struct CurlResult: CustomStringConvertible {
    /// The status code (0 when curl got no response).
    let status: Int
    /// The last response's headers, names in lower case.
    let headers: [String: String]
    /// The body as text.
    let body: String
    /// curl's exit status.
    let exitStatus: Int32

    var description: String { "\(status) \(body.prefix(300))" }
}

/// Runs `curl` (a real client) against `http://127.0.0.1:PORT` + `path` with `arguments`; the
/// token, when given, goes in a header file (`-H @FILE`), never on the command line.
func curl(_ path: String, port: Int, in folder: ScratchFolder, token: String? = nil, _ arguments: [String] = [])
    throws -> CurlResult {
    let tag = UUID().uuidString.prefix(8)
    let headerFile = folder.file(".curl-headers-\(tag)")
    let bodyFile = folder.file(".curl-body-\(tag)")
    defer {
        unlink(headerFile)
        unlink(bodyFile)
    }
    var options = ["-sS", "--max-time", "30", "-D", headerFile, "-o", bodyFile, "-w", "%{http_code}"]
    if let token {
        let authorization = folder.file(".curl-auth-\(tag)")
        try Data("Authorization: Bearer \(token)\n".utf8).write(to: URL(fileURLWithPath: authorization))
        options += ["-H", "@\(authorization)"]
    }
    let result = try runTool("curl", options + arguments + ["http://127.0.0.1:\(port)\(path)"], in: folder)
    var headers: [String: String] = [:]
    let headerText = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
    // The last response block (after an interim 100 Continue, if any).
    let block = headerText.components(separatedBy: "\r\n\r\n").filter { !$0.isEmpty }.last ?? ""
    for line in block.split(separator: "\r\n").dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let body = (try? String(contentsOfFile: bodyFile, encoding: .utf8)) ?? ""
    return CurlResult(status: Int(result.standardOutput.trimmingCharacters(in: .whitespaces)) ?? 0, headers: headers,
                      body: body, exitStatus: result.status)
}

/// A client on a raw socket, for what `curl` cannot send: garbage, a request that trickles in,
/// a connection that says nothing.
final class RawClient {
    let fd: Int32

    /// Connects to 127.0.0.1:`port`.
    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestFailure("cannot connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends `bytes`; returns how many went out before an error (a server that closed).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { break }
            sent += count
        }
        return sent
    }

    /// Sends `text`.
    @discardableResult
    func send(_ text: String) -> Int { send(Array(text.utf8)) }

    /// Whether the server has sent something (or closed) that waits to be read.
    var hasDataToRead: Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }

    /// Reads until the server closes (or 30 s pass); the response as text.
    func readResponse() -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            data += buffer[0..<count]
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The status code of a response text, or 0.
    static func status(of response: String) -> Int {
        let parts = response.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1.1") else { return 0 }
        return Int(parts[1]) ?? 0
    }
}
