import Foundation
import Testing
@testable import OffsiteCore

@Suite struct StatusPageTests {
    @Test(arguments: [
        // Every database, target and path; the last success and failure with its reason (escaped).
        "<h3>crm", "<h3>ledger", "id=\"db-crm\"", "id=\"db-ledger\"", "id=\"target-s3\"", "id=\"target-nas\"",
        "<h4>crm → s3</h4>", "<h4>crm → nas</h4>", "<h4>ledger → s3</h4>", "<h4>ledger → nas</h4>",
        "<p class=\"path\">/data/crm.db</p>", "<p class=\"path\">/data/ledger.sqlite</p>",
        "<code>20261122T030700Z-change</code>", "1.0 MiB in 1.2s",
        "507 Insufficient Storage &lt;full&gt;", "<span class=\"bad-text\">Failing</span>",
        // Times: relative, with the UTC time as a title.
        "<time datetime=\"2026-11-22T03:07:10Z\" title=\"2026-11-22 03:07:10 UTC\">9m ago</time>",
        "in 30m", "3.0 MiB in 3 backups", "2 ok, 0 failed", "1 ok, 1 failed",
        // Restore window placeholder, file sets ready for later, health.
        "full backups only (continuous protection is not configured)", "id=\"file-sets\"", "No file sets are configured.",
        "<section id=\"health\" class=\"card ok\"><h2>Healthy</h2>", "younger than 1d 2h on every target",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "agent pid 4242, started", "offsite 0.1.0",
    ])
    func showsTheState(fragment: String) {
        let page = renderStatusPage(sampleControlSnapshot(), backupForm: false)
        #expect(page.contains(fragment), "missing: \(fragment)")
    }

    @Test func hasNoScriptAndLoadsNothing() {
        let page = renderStatusPage(sampleControlSnapshot(), backupForm: true).lowercased()
        for forbidden in ["<script", "javascript:", " src=", "<link", "<iframe", "@import", "url("] {
            #expect(!page.contains(forbidden), "\(forbidden)")
        }
    }

    @Test func theBackUpNowFormPostsTheTokenForEachDatabase() {
        let without = renderStatusPage(sampleControlSnapshot(), backupForm: false)
        #expect(!without.contains("<form"))
        let page = renderStatusPage(sampleControlSnapshot(busy: ["ledger"]), backupForm: true)
        #expect(page.components(separatedBy: "<form method=\"post\" action=\"/backup\">").count == 3)
        #expect(page.contains("<input type=\"hidden\" name=\"db\" value=\"crm\">"))
        #expect(page.contains("<input type=\"hidden\" name=\"db\" value=\"ledger\">"))
        #expect(page.contains("<input type=\"password\" name=\"token\" required"))
        #expect(page.contains("<h3>ledger <span class=\"badge\">backing up</span></h3>"))
        // The busy database's button is disabled, the other's is not.
        #expect(page.components(separatedBy: "<button type=\"submit\" disabled>Back up now</button>").count == 2)
        #expect(page.components(separatedBy: "<button type=\"submit\">Back up now</button>").count == 2)
    }

    @Test func anUnhealthyAgentSaysWhy() {
        var snapshot = sampleControlSnapshot()
        snapshot.maxAge = .seconds(1800)
        let page = renderStatusPage(snapshot, backupForm: false)
        #expect(page.contains("<section id=\"health\" class=\"card bad\"><h2>Unhealthy</h2>"))
        #expect(page.contains("<li>crm on nas: newest off-site copy is 1h old (20261122T021700Z-scheduled), more than 30m; "
                              + "last failure 9m ago: WebDAV PUT https://nas.example/dav/crm/x: 507 Insufficient Storage &lt;full&gt;</li>"))
    }

    @Test func fileSetsAndReplicationLagAppearWhenThereAreAny() {
        var snapshot = sampleControlSnapshot(lags: [ReplicationLag(database: "crm", target: "s3", seconds: 1.5)])
        snapshot.fileSets = [ControlFileSet(name: "uploads", path: "/data/uploads")]
        let page = renderStatusPage(snapshot, backupForm: false)
        #expect(page.contains("<article class=\"card\" id=\"files-uploads\"><h3>uploads</h3>\n<p class=\"path\">/data/uploads</p>"))
        // A file set gets a row per target like a database, no restore window, no form.
        #expect(page.contains("<h4>uploads → s3</h4>") && page.contains("<h4>uploads → nas</h4>"))
        #expect(page.components(separatedBy: "<dt>Restore window</dt>").count == 3, "crm and ledger only")
        #expect(!page.contains("No file sets are configured."))
        #expect(page.contains("to the second, lagging s3 1.5s"))
    }

    @Test func theRestoreWindowSaysWhatAChainReachesOrWhyThereIsNone() {
        var snapshot = sampleControlSnapshot(lags: [ReplicationLag(database: "crm", target: "s3", seconds: 0.4)])
        snapshot.state.apply(.chain("crm", base: "20261122T030700Z-change", objects: 42, bytes: 3 << 20))
        snapshot.state.apply(.continuity("ledger", note: "ledger is not in WAL mode (journal_mode=delete)"))
        let page = renderStatusPage(snapshot, backupForm: false)
        #expect(page.contains("any commit since full backup <code>20261122T030700Z-change</code> (42 change objects, 3.0 MiB); "
                              + "not yet shipped: s3 0.40s"))
        #expect(page.contains("full backups only: ledger is not in WAL mode (journal_mode=delete)"))
    }

    @Test func escapesEverythingItShows() {
        var state = AgentState()
        state.recordDatabase("odd", path: "/data/a&b<c>\"'.db", at: controlNow)
        let snapshot = ControlSnapshot(state: state, databases: ["odd"], targets: [ControlTarget(name: "usb", kind: .folder)],
                                       maxAge: .seconds(3600), now: controlNow)
        let page = renderStatusPage(snapshot, backupForm: false)
        #expect(page.contains("/data/a&amp;b&lt;c&gt;&quot;&#39;.db"))
        #expect(!page.contains("a&b<c>"))
        #expect(escapeHTML("<a href='x'>&</a>") == "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;")
    }

    @Test func theSecurityPolicyAllowsExactlyThePagesStyleSheet() throws {
        let page = renderStatusPage(sampleControlSnapshot(), backupForm: true)
        let start = try #require(page.range(of: "<style>"))
        let end = try #require(page.range(of: "</style>"))
        let css = String(page[start.upperBound..<end.lowerBound])
        let hash = "sha256-" + Data(S3Hash.sha256(Data(css.utf8))).base64EncodedString()
        let policy = try #require(statusPageSecurityHeaders.first { $0.name == "Content-Security-Policy" }?.value)
        #expect(policy.contains("style-src '\(hash)'"))
        #expect(policy.hasPrefix("default-src 'none';"))
        #expect(policy.contains("form-action 'self'"))
        #expect(!policy.contains("script-src"))
    }

    @Test func anActionPageEscapesItsMessage() {
        let page = renderActionPage(title: "Backup started", message: "The backup <x> of crm has started.")
        #expect(page.contains("<h2>Backup started</h2><p>The backup &lt;x&gt; of crm has started.</p>"))
        #expect(page.contains("<a href=\"/\">Back to the status page</a>"))
    }
}
