import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// The control endpoint of `offsite run` as a process, through real clients: curl for every
/// route, promtool on the metrics, headless Chromium on the page, and a crowd of bad clients
/// while the agent goes on backing up.
@Suite struct ControlEndpointIntegrationTests {
    static let token = "integration-token-4f9a1c0b7e2d"

    /// A workspace with `crm` and `ledger`, two folder targets (`remote`, `usb`), a startup
    /// backup, and the endpoint on a free loopback port with the token in a file.
    static func makeWorkspace(_ label: String, minInterval: String = "2s", startup: Bool = true) throws -> (AgentWorkspace, Int) {
        let workspace = try AgentWorkspace(label)
        try workspace.addDatabase("crm")
        try workspace.addDatabase("ledger")
        let tokenFile = workspace.folder.file("token")
        try Data((token + "\n").utf8).write(to: URL(fileURLWithPath: tokenFile))
        let port = try freeLoopbackPort()
        try workspace.writeConfig(minInterval: minInterval, startup: startup, extra: [
            "targets": [try workspace.targetJSON(), ["name": "usb", "url": "file://\(workspace.folder.file("usb"))"]],
            "http": ["listen": "127.0.0.1:\(port)", "tokenFile": tokenFile],
        ])
        return (workspace, port)
    }

    @Test func everyRouteAnswersFromTheRunningAgent() async throws {
        let (workspace, port) = try Self.makeWorkspace("http-routes")
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("http.listening")
        try await agent.waitFor("backup.done", count: 4)
        let folder = workspace.folder

        let health = try curl("/healthz", port: port, in: folder)
        #expect(health.status == 200)
        #expect(health.body == "ok\n")

        let metrics = try curl("/metrics", port: port, in: folder)
        #expect(metrics.status == 200)
        for line in [#"offsite_backups_total{database="crm",target="remote"} 1"#, #"offsite_backups_total{database="ledger",target="usb"} 1"#,
                     "offsite_healthy 1"] {
            #expect(metrics.body.split(separator: "\n").contains(Substring(line)), "missing \(line)")
        }
        #expect(metrics.body.contains(#"offsite_last_backup_duration_seconds{database="crm",target="usb"} "#))
        let check = try runTool("promtool", ["check", "metrics"], in: folder, standardInput: metrics.body)
        #expect(check.status == 0, "promtool: \(check.standardOutput) \(check.standardError)")

        let status = try curl("/api/status", port: port, in: folder)
        #expect(status.status == 200)
        let command = try workspace.offsite(["status", "--json"])
        #expect(status.body == command.standardOutput, "the same JSON as offsite status --json")

        let page = try curl("/", port: port, in: folder)
        #expect(page.status == 200)
        #expect(page.body.contains("id=\"db-ledger\"") && page.body.contains("id=\"target-usb\""))

        // A manual backup with a reason: 202 with the id it is shipped under; list shows the reason.
        let body = folder.file("request.json")
        try Data(#"{"db": "crm", "target": "usb", "reason": "before CSV import"}"#.utf8).write(to: URL(fileURLWithPath: body))
        #expect(try curl("/api/backup", port: port, in: folder, ["--data-binary", "@\(body)"]).status == 401)
        #expect(try curl("/api/backup", port: port, in: folder, token: "wrong-token-0123456789", ["--data-binary", "@\(body)"]).status == 401)
        let accepted = try curl("/api/backup", port: port, in: folder, token: Self.token,
                                ["-H", "Content-Type: application/json", "--data-binary", "@\(body)"])
        #expect(accepted.status == 202, "\(accepted)")
        let answer = try JSONSerialization.jsonObject(with: Data(accepted.body.utf8)) as? [String: Any]
        let id = try #require((answer?["id"] as? String).flatMap { BackupID($0) }, "\(accepted.body)")
        #expect(id.kind == .manual)
        try await agent.waitFor("backup.done", where: { $0["id"] == id.description && $0["target"] == "usb" })
        #expect(agent.events("backup.requested").first?["reason"] == "before CSV import")
        #expect(try listBackups(on: FileTarget(name: "usb", root: folder.file("usb")), database: "crm").contains { $0.id == id })
        #expect(!(try workspace.backups(of: "crm").contains { $0.id == id }), "only the target asked for")
        let list = try workspace.offsite(["list", "--target", "usb", "--db", "crm"])
        let row = list.standardOutput.split(separator: "\n").first { $0.contains(id.description) }
        #expect(row?.hasSuffix("before CSV import") == true, "\(list.standardOutput)")

        // The page's form.
        let formBody = folder.file("form.txt")
        try Data("token=\(Self.token)&db=ledger&reason=from+the+page".utf8).write(to: URL(fileURLWithPath: formBody))
        let form = try curl("/backup", port: port, in: folder, ["--data-binary", "@\(formBody)"])
        #expect(form.status == 202, "\(form)")
        #expect(form.body.contains("of ledger has started"))
        try await agent.waitFor("backup.done", where: { $0["db"] == "ledger" && $0["id"]?.hasSuffix("-manual") == true })

        #expect(try curl("/nothing", port: port, in: folder).status == 404)
        #expect(agent.events("backup.failed").isEmpty, "log:\n\(agent.log)")
        #expect(!agent.log.contains(Self.token))
        #expect(try await agent.terminate() == 0)
        #expect(try RawClientProbe.isRefused(port: port), "the endpoint stops with the agent")
    }

    @Test func headlessChromiumShowsEveryDatabaseAndTarget() async throws {
        let (workspace, port) = try Self.makeWorkspace("http-page")
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("backup.done", count: 4)
        let chromium = try locateTool("chromium")
        let arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--user-data-dir=\(workspace.folder.file("chromium"))"]
        let dom = try runProgram(chromium, arguments + ["--dump-dom", "http://127.0.0.1:\(port)/"], in: workspace.folder)
        #expect(dom.status == 0, "\(dom.standardError.suffix(2000))")
        let html = dom.standardOutput
        for name in ["crm", "ledger"] {
            #expect(html.contains("<h3>\(name)</h3>"), "database \(name) missing from the DOM")
        }
        for name in ["remote", "usb"] {
            #expect(html.contains("id=\"target-\(name)\"><h3>\(name)</h3>"), "target \(name) missing from the DOM")
            #expect(html.contains("<h4>crm → \(name)</h4>") && html.contains("<h4>ledger → \(name)</h4>"))
        }
        #expect(html.contains("<button type=\"submit\">Back up now</button>"))

        let screenshot = workspace.folder.file("page.png")
        let shot = try runProgram(chromium, arguments + ["--hide-scrollbars", "--window-size=412,1200", "--screenshot=\(screenshot)",
                                                         "http://127.0.0.1:\(port)/"], in: workspace.folder)
        #expect(shot.status == 0, "\(shot.standardError.suffix(2000))")
        let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(png.count > 10_000)
        #expect(try await agent.terminate() == 0)
    }

    @Test func badClientsNeitherStopTheBackupsNorTheHealthCheck() async throws {
        let (workspace, port) = try Self.makeWorkspace("http-robust", minInterval: "1s", startup: false)
        let agent = try AgentProcess(workspace)
        try await agent.waitFor("http.listening")
        let writer = try CRMWriter(path: "\(workspace.dataFolder)/crm.db", rate: 20, seed: 7)
        writer.start()
        try await agent.waitFor("backup.done", where: { $0["db"] == "crm" })
        let doneBefore = agent.events("backup.done").count

        // The attack, every part on threads of its own, while curl asks /healthz twice a second.
        async let garbage: [Int] = withThrowingTaskGroup(of: Int.self) { group in
            for seed in 0..<20 {
                group.addTask {
                    try await onThread {
                        var random = SplitMix64(seed: UInt64(seed) + 1)
                        let bytes = (0..<4096).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                        let client = try RawClient(port: port)
                        client.send(bytes)
                        return RawClient.status(of: client.readResponse())
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        async let hugeHeader: Int = onThread {
            let client = try RawClient(port: port)
            client.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            client.send([UInt8](repeating: UInt8(ascii: "a"), count: 2 << 20))
            client.send("\r\n\r\n")
            return RawClient.status(of: client.readResponse())
        }
        async let slow: Int = onThread {
            let client = try RawClient(port: port)
            // One byte every half second, until the server answers.
            for byte in "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8 {
                if client.hasDataToRead || client.send([byte]) == 0 { break }
                Thread.sleep(forTimeInterval: 0.5)
            }
            return RawClient.status(of: client.readResponse())
        }
        async let crowd: [Int] = withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    try await onThread {
                        let client = try RawClient(port: port)
                        client.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                        return RawClient.status(of: client.readResponse())
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        async let probes: [(Int, TimeInterval)] = onThread {
            var results: [(Int, TimeInterval)] = []
            for _ in 0..<20 {
                let started = Date()
                let health = try curl("/healthz", port: port, in: workspace.folder)
                results.append((health.status, Date().timeIntervalSince(started)))
                Thread.sleep(forTimeInterval: 0.5)
            }
            return results
        }

        let garbageStatuses = try await garbage
        #expect(garbageStatuses.allSatisfy { $0 == 400 }, "\(garbageStatuses)")
        #expect(try await hugeHeader == 431)
        #expect(try await slow == 408)
        let crowdStatuses = try await crowd
        #expect(crowdStatuses.count == 200 && crowdStatuses.allSatisfy { $0 == 200 },
                "\(Dictionary(grouping: crowdStatuses, by: { $0 }).mapValues(\.count))")
        let probeResults = try await probes
        #expect(probeResults.allSatisfy { $0.0 == 200 }, "\(probeResults)")
        #expect(probeResults.allSatisfy { $0.1 < 5 }, "\(probeResults)")

        // The agent went on backing up the whole time, and the application was never blocked.
        let report = try writer.stop()
        #expect(!report.hasErrors, "\(report.summary)")
        let doneDuring = agent.events("backup.done").count - doneBefore
        #expect(doneDuring >= 2, "backups during the attack: \(doneDuring); log:\n\(agent.log.suffix(3000))")
        #expect(agent.events("backup.failed").isEmpty)
        #expect(try curl("/healthz", port: port, in: workspace.folder).status == 200)
        #expect(try await agent.terminate() == 0)
    }
}

/// Whether nothing listens on a loopback port any more.
enum RawClientProbe {
    static func isRefused(port: Int) throws -> Bool {
        do {
            _ = try RawClient(port: port)
            return false
        } catch {
            return true
        }
    }
}
