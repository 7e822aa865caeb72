import Foundation

// The status page a person reads in a browser: server-rendered HTML and one inline style sheet,
// readable on a phone, no script and nothing from elsewhere. The Content-Security-Policy that goes
// with it (`statusPageSecurityHeaders`) allows only that style sheet, by its hash.

/// The status page for `snapshot`: health, then each database with its last change and snapshot,
/// restore window and, per target, the last success and failure (with the reason), the next run
/// and what the target stores; then the file sets and the targets. With `backupForm`, each
/// database has a "Back up now" form that posts the token to `/backup`.
public func renderStatusPage(_ snapshot: ControlSnapshot, backupForm: Bool) -> String {
    let now = snapshot.now
    let state = snapshot.state
    var html = ""
    var facts: [String] = ["offsite \(escapeHTML(snapshot.version))"]
    if let started = state.agentStartedAt {
        facts.append("agent \(state.agentPID.map { "pid \($0), " } ?? "")started \(timeElement(started, now: now))")
    }
    facts.append("as of \(escapeHTML(formatUTC(now)))")
    if snapshot.isStopping { facts.append("<strong>stopping</strong>") }
    html += "<header><h1>offsite status</h1><p class=\"muted\">\(facts.joined(separator: " · "))</p></header>\n"

    let health = snapshot.health
    if health.isHealthy {
        html += "<section id=\"health\" class=\"card ok\"><h2>Healthy</h2><p>Every database has an off-site copy younger "
            + "than \(escapeHTML(formatSpan(snapshot.maxAge.timeInterval))) on every target.</p></section>\n"
    } else {
        html += "<section id=\"health\" class=\"card bad\"><h2>Unhealthy</h2><ul>"
            + health.problems.map { "<li>\(escapeHTML($0))</li>" }.joined() + "</ul></section>\n"
    }

    html += "<section id=\"databases\"><h2>Databases</h2>\n"
    if snapshot.databases.isEmpty { html += "<p class=\"muted\">No databases found yet.</p>\n" }
    for name in snapshot.databases {
        html += databaseCard(name, snapshot: snapshot, backupForm: backupForm)
    }
    html += "</section>\n"

    html += "<section id=\"file-sets\"><h2>File sets</h2>\n"
    if snapshot.fileSets.isEmpty {
        html += "<p class=\"muted\">No file sets are configured.</p>\n"
    } else {
        for fileSet in snapshot.fileSets {
            html += databaseCard(fileSet.name, snapshot: snapshot, backupForm: false, fileSetPath: fileSet.path)
        }
    }
    html += "</section>\n"

    html += "<section id=\"targets\"><h2>Targets</h2>\n<div class=\"grid\">\n"
    for target in snapshot.targets {
        html += targetCard(target, snapshot: snapshot)
    }
    html += "</div></section>\n"
    html += "<footer class=\"muted\">Also: <a href=\"/api/status\">/api/status</a> · <a href=\"/metrics\">/metrics</a> · "
        + "<a href=\"/healthz\">/healthz</a></footer>\n"
    return pageDocument(title: "offsite status", body: html)
}

/// A page answering a "Back up now" form: a title, one message and a link back.
public func renderActionPage(title: String, message: String) -> String {
    pageDocument(title: "offsite: \(title)", body: """
        <header><h1>offsite</h1></header>
        <section class="card"><h2>\(escapeHTML(title))</h2><p>\(escapeHTML(message))</p>
        <p><a href="/">Back to the status page</a></p></section>

        """)
}

/// The headers every HTML page goes out with: its type, and a Content-Security-Policy that
/// allows nothing but the page's own style sheet (no script from anywhere, no frames, forms only
/// to this server).
public let statusPageSecurityHeaders: [HTTPServerHeader] = [
    HTTPServerHeader("Content-Type", "text/html; charset=utf-8"),
    HTTPServerHeader("Content-Security-Policy",
                     "default-src 'none'; style-src '\(styleSheetHash)'; img-src 'self'; form-action 'self'; "
                         + "base-uri 'none'; frame-ancestors 'none'"),
    HTTPServerHeader("X-Content-Type-Options", "nosniff"),
    HTTPServerHeader("X-Frame-Options", "DENY"),
    HTTPServerHeader("Referrer-Policy", "no-referrer"),
]

// MARK: - Parts

/// A database's card; with `fileSetPath`, a file set's (no restore window, no form).
private func databaseCard(_ name: String, snapshot: ControlSnapshot, backupForm: Bool, fileSetPath: String? = nil) -> String {
    let now = snapshot.now
    let record = snapshot.state.databases[name]
    let busy = snapshot.busyDatabases.contains(name)
    let isFileSet = fileSetPath != nil
    var html = "<article class=\"card\" id=\"\(isFileSet ? "files" : "db")-\(escapeHTML(name))\"><h3>\(escapeHTML(name))"
    if busy { html += " <span class=\"badge\">backing up</span>" }
    html += "</h3>\n"
    if let path = fileSetPath ?? record?.path, !path.isEmpty { html += "<p class=\"path\">\(escapeHTML(path))</p>\n" }
    var rows: [(String, String)] = []
    rows.append(("Last change", record?.lastChangeAt.map { timeElement($0, now: now) } ?? "none seen"))
    if let snapshotRecord = record?.lastSnapshot {
        rows.append(("Last snapshot", "\(timeElement(snapshotRecord.time, now: now)) · \(escapeHTML(formatBytes(snapshotRecord.bytes)))"
                        + " · <code>\(escapeHTML(snapshotRecord.backupID))</code>"))
    } else {
        rows.append(("Last snapshot", "none yet"))
    }
    if !isFileSet { rows.append(("Restore window", restoreWindow(name, snapshot: snapshot))) }
    html += definitionList(rows)

    html += "<div class=\"grid\">\n"
    for target in snapshot.targets {
        let state = snapshot.state.target(target.name, of: name)
        var targetRows: [(String, String)] = []
        if let success = state?.lastSuccess {
            var text = "\(timeElement(success.time, now: now)) · \(escapeHTML(formatBytes(success.bytes)))"
            if let seconds = success.seconds { text += " in \(escapeHTML(formatDuration(seconds)))" }
            targetRows.append(("Last success", text + "<br><code>\(escapeHTML(success.backupID))</code>"))
        } else {
            targetRows.append(("Last success", "never"))
        }
        if let failure = state?.lastFailure {
            let streak = (state?.consecutiveFailures ?? 0) > 1 ? " (\(state!.consecutiveFailures) in a row)" : ""
            let label = state?.isFailing == true ? "<span class=\"bad-text\">Failing</span>" : "Last failure"
            targetRows.append((label, "\(timeElement(failure.time, now: now))\(streak): \(escapeHTML(failure.reason))"))
        }
        targetRows.append(("Next run", state?.nextRunAt.map { $0 <= now ? "due now" : timeElement($0, now: now) } ?? "not scheduled"))
        if let listing = state?.listing {
            targetRows.append(("Stored", "\(escapeHTML(formatBytes(listing.storedBytes))) in \(listing.objectCount) "
                               + (listing.objectCount == 1 ? "backup" : "backups")))
        }
        targetRows.append(("Backups", "\(state?.successCount ?? 0) ok, \(state?.failureCount ?? 0) failed"))
        if let verify = state?.lastVerify {
            targetRows.append(("Restore drill", "\(timeElement(verify.time, now: now)): "
                               + (verify.ok ? "ok" : "<span class=\"bad-text\">failed</span>: \(escapeHTML(verify.reason ?? "no reason given"))")))
        }
        let failing = state?.isFailing == true ? " failing" : ""
        html += "<div class=\"target\(failing)\"><h4>\(escapeHTML(name)) → \(escapeHTML(target.name))</h4>"
            + definitionList(targetRows) + "</div>\n"
    }
    html += "</div>\n"
    if backupForm {
        let disabled = snapshot.isStopping || busy ? " disabled" : ""
        html += """
            <form method="post" action="/backup">
            <input type="hidden" name="db" value="\(escapeHTML(name))">
            <label>Token <input type="password" name="token" required autocomplete="current-password"></label>
            <label>Reason <input type="text" name="reason" maxlength="\(maximumReasonLength)" placeholder="optional"></label>
            <button type="submit"\(disabled)>Back up now</button>
            </form>

            """
    }
    return html + "</article>\n"
}

private func targetCard(_ target: ControlTarget, snapshot: ControlSnapshot) -> String {
    let now = snapshot.now
    var newest: BackupSuccess?
    var stored: Int64 = 0
    var objects = 0
    var nextRun: Date?
    var failing: [String] = []
    for database in snapshot.databases {
        guard let state = snapshot.state.target(target.name, of: database) else { continue }
        if let success = state.lastSuccess, success.time > (newest?.time ?? .distantPast) { newest = success }
        if let listing = state.listing {
            stored += listing.storedBytes
            objects += listing.objectCount
        }
        if let next = state.nextRunAt, next < (nextRun ?? .distantFuture) { nextRun = next }
        if state.isFailing, let failure = state.lastFailure {
            failing.append("\(escapeHTML(database)) since \(timeElement(failure.time, now: now)): \(escapeHTML(failure.reason))")
        }
    }
    var rows: [(String, String)] = [("Kind", escapeHTML(targetKindName(target.kind)))]
    rows.append(("Newest copy", newest.map { "\(timeElement($0.time, now: now)) <code>\(escapeHTML($0.backupID))</code>" } ?? "none yet"))
    rows.append(("Next run", nextRun.map { $0 <= now ? "due now" : timeElement($0, now: now) } ?? "not scheduled"))
    rows.append(("Stored", objects == 0 ? "nothing listed yet" : "\(escapeHTML(formatBytes(stored))) in \(objects) "
                    + (objects == 1 ? "backup" : "backups")))
    if !failing.isEmpty {
        rows.append(("<span class=\"bad-text\">Failing</span>", failing.joined(separator: "<br>")))
    }
    let failingClass = failing.isEmpty ? "" : " failing"
    return "<article class=\"target\(failingClass)\" id=\"target-\(escapeHTML(target.name))\"><h3>\(escapeHTML(target.name))</h3>"
        + definitionList(rows) + "</article>\n"
}

/// What a restore can reach for `database`: full backups, until continuous protection reports a window.
/// What a restore of `database` can reach: any commit since the base of its chain of changes
/// (with how far each target lags), or full backups only, and why.
private func restoreWindow(_ database: String, snapshot: ControlSnapshot) -> String {
    let record = snapshot.state.databases[database]
    let lags = snapshot.replicationLags.filter { $0.database == database }
    let lagText = lags.map { "\(escapeHTML($0.target)) \(escapeHTML(formatDuration($0.seconds)))" }.joined(separator: ", ")
    if let chain = record?.chain {
        var text = "any commit since full backup <code>\(escapeHTML(chain.base))</code> (\(chain.objects) change "
            + "object\(chain.objects == 1 ? "" : "s"), \(escapeHTML(formatBytes(chain.bytes))))"
        if !lags.isEmpty { text += "; not yet shipped: " + lagText }
        return text
    }
    if !lags.isEmpty { return "to the second, lagging " + lagText }
    if let note = record?.continuity { return "full backups only: " + escapeHTML(note) }
    return "full backups only (continuous protection is not configured)"
}

private func definitionList(_ rows: [(String, String)]) -> String {
    "<dl>" + rows.map { "<dt>\($0.0)</dt><dd>\($0.1)</dd>" }.joined() + "</dl>"
}

/// `<time>` with the relative age as text and the UTC time as its title.
private func timeElement(_ date: Date, now: Date) -> String {
    "<time datetime=\"\(formatISO8601(date))\" title=\"\(escapeHTML(formatUTC(date)))\">\(escapeHTML(formatAge(date, now: now)))</time>"
}

private func formatDuration(_ seconds: Double) -> String {
    if seconds < 1 { return String(format: "%.2fs", seconds) }
    return seconds < 60 ? String(format: "%.1fs", seconds) : formatSpan(seconds)
}

private func targetKindName(_ kind: TargetKind) -> String {
    switch kind {
    case .s3: return "S3"
    case .webDAV: return "WebDAV"
    case .folder: return "folder"
    }
}

/// The longest reason a manual backup request may give.
let maximumReasonLength = 200

/// `text` with `&`, `<`, `>`, `"` and `'` escaped for HTML text and attribute values.
func escapeHTML(_ text: String) -> String {
    var result = ""
    result.reserveCapacity(text.count)
    for character in text {
        switch character {
        case "&": result += "&amp;"
        case "<": result += "&lt;"
        case ">": result += "&gt;"
        case "\"": result += "&quot;"
        case "'": result += "&#39;"
        default: result.append(character)
        }
    }
    return result
}

private func pageDocument(title: String, body: String) -> String {
    """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="referrer" content="no-referrer">
    <title>\(escapeHTML(title))</title>
    <style>\(styleSheet)</style>
    </head>
    <body>
    \(body)</body>
    </html>

    """
}

/// The page's only style sheet; the Content-Security-Policy names its hash.
let styleSheet = """
    *{box-sizing:border-box}:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f3f4f6;line-height:1.4}
    body{margin:0 auto;max-width:60rem;padding:.75rem}
    h1{font-size:1.35rem;margin:.25rem 0}h2{font-size:1.15rem;margin:1.25rem 0 .5rem}h3{font-size:1.05rem;margin:0 0 .25rem}
    h4{font-size:.95rem;margin:0 0 .25rem}
    .muted,.path{color:#57606a}.path,code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;overflow-wrap:anywhere}
    .card,.target{background:#fff;border:1px solid #d6dbe1;border-radius:.5rem;padding:.75rem;margin:.5rem 0}
    .target{margin:0;border-left:4px solid #2da44e}.target.failing{border-left-color:#cf222e}
    .card>h2:first-child{margin-top:0}.ok{background:#e8f6ec;border-color:#a6d8b4}.bad{background:#fdeeee;border-color:#f0a9a9}.bad-text{color:#b42318;font-weight:600}
    .grid{display:grid;gap:.5rem;grid-template-columns:repeat(auto-fit,minmax(17rem,1fr));margin-top:.5rem}
    dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .75rem;margin:.25rem 0}dt{color:#57606a}
    dd{margin:0;overflow-wrap:anywhere}ul{margin:.25rem 0;padding-left:1.25rem}
    .badge{font-size:.75rem;font-weight:600;padding:.1rem .5rem;border-radius:1rem;background:#fff1c2;vertical-align:middle}
    form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-end;margin-top:.75rem}label{display:flex;flex-direction:column;font-size:.85rem;color:#57606a}
    input{font:inherit;color:#1b1f24;padding:.35rem .5rem;border:1px solid #aab3bd;border-radius:.35rem;min-width:10rem}
    button{font:inherit;font-weight:600;padding:.45rem 1rem;border:0;border-radius:.35rem;background:#1f6feb;color:#fff}
    button[disabled]{background:#8c959f}a{color:#0969da}footer{margin:1.5rem 0 .5rem;font-size:.85rem}
    @media (max-width:32rem){dl{grid-template-columns:1fr}dt{font-size:.8rem;margin-top:.25rem}input{min-width:0;width:100%}label{flex:1 1 100%}}
    """

/// `sha256-…` of the style sheet, for the Content-Security-Policy.
let styleSheetHash = "sha256-" + Data(S3Hash.sha256(Data(styleSheet.utf8))).base64EncodedString()
