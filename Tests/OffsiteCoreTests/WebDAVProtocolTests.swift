import Foundation
import Testing
@testable import OffsiteCore

/// The WebDAV pieces that need no server: the multistatus reader, dates, paths and error mapping.
@Suite struct WebDAVProtocolTests {
    @Test func readsApacheStyleAnswersWithPerResponseNamespacePrefixes() throws {
        // Apache declares `lp1` for DAV: on each response and mixes it with `D`.
        let body = """
            <?xml version="1.0" encoding="utf-8"?>
            <D:multistatus xmlns:D="DAV:">
            <D:response xmlns:lp2="http://apache.org/dav/props/" xmlns:lp1="DAV:">
            <D:href>/dav/backups/</D:href>
            <D:propstat><D:prop><lp1:resourcetype><D:collection/></lp1:resourcetype>
            <lp1:getlastmodified>Sun, 22 Nov 2026 03:52:54 GMT</lp1:getlastmodified></D:prop>
            <D:status>HTTP/1.1 200 OK</D:status></D:propstat>
            </D:response>
            <D:response xmlns:lp2="http://apache.org/dav/props/" xmlns:lp1="DAV:">
            <D:href>/dav/backups/crm%20main/</D:href>
            <D:propstat><D:prop><lp1:resourcetype><D:collection/></lp1:resourcetype></D:prop>
            <D:status>HTTP/1.1 200 OK</D:status></D:propstat>
            </D:response>
            <D:response xmlns:lp2="http://apache.org/dav/props/" xmlns:lp1="DAV:">
            <D:href>/dav/backups/a%2Bb%C3%BC.bin</D:href>
            <D:propstat><D:prop><lp1:resourcetype/><lp1:getcontentlength>1234</lp1:getcontentlength>
            <lp1:getlastmodified>Sun, 22 Nov 2026 03:52:54 GMT</lp1:getlastmodified><lp2:executable>F</lp2:executable></D:prop>
            <D:status>HTTP/1.1 200 OK</D:status></D:propstat>
            </D:response>
            </D:multistatus>
            """
        let resources = try #require(DAVMultistatus.parse(Data(body.utf8), requestPath: "/dav/backups"))
        let modified = Date(timeIntervalSince1970: 1_795_319_574)
        #expect(resources == [
            DAVResource(href: "/dav/backups/", path: "/dav/backups", isCollection: true, size: nil, modified: modified),
            DAVResource(href: "/dav/backups/crm%20main/", path: "/dav/backups/crm main", isCollection: true),
            DAVResource(href: "/dav/backups/a%2Bb%C3%BC.bin", path: "/dav/backups/a+bü.bin", isCollection: false, size: 1234,
                        modified: modified),
        ])
        #expect(resources.map(\.name) == ["backups", "crm main", "a+bü.bin"])
    }

    @Test func readsAbsoluteHrefsDefaultNamespacesAndLowerCasePercentEncoding() throws {
        // Nextcloud-like: absolute URLs; others use a default namespace and lower-case escapes.
        let body = """
            <multistatus xmlns="DAV:"><response><href>https://nas.example:8443/remote.php/dav/files/u/off%20site/</href>
            <propstat><prop><resourcetype><collection/></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat></response>
            <response><href>https://nas.example:8443/remote.php/dav/files/u/off%20site/x%c3%a9.age?ignored=1</href>
            <propstat><prop><getcontentlength>7</getcontentlength><resourcetype/></prop><status>HTTP/1.1 200 OK</status></propstat>
            <propstat><prop><getlastmodified/></prop><status>HTTP/1.1 404 Not Found</status></propstat></response>
            </multistatus>
            """
        let resources = try #require(DAVMultistatus.parse(Data(body.utf8), requestPath: "/remote.php/dav/files/u/off site"))
        #expect(resources.map(\.path) == ["/remote.php/dav/files/u/off site", "/remote.php/dav/files/u/off site/xé.age"])
        #expect(resources.map(\.isCollection) == [true, false])
        #expect(resources[1].size == 7)
        #expect(resources[1].modified == nil, "a property in a 404 propstat is absent")
    }

    @Test func readsOddPrefixesEntitiesCdataAndRelativeHrefs() throws {
        let body = """
            <?xml version="1.0"?><!-- generated --><!DOCTYPE multistatus [ <!ENTITY x "y"> ]>
            <ns0:multistatus xmlns:ns0='DAV:' xmlns:z="urn:other"><ns0:response>
            <ns0:href><![CDATA[/dav/a%26b/]]></ns0:href>
            <ns0:propstat><ns0:prop><ns0:resourcetype><ns0:collection /></ns0:resourcetype></ns0:prop>
            <ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response>
            <ns0:response><ns0:href>c&amp;d.bin</ns0:href><ns0:propstat><ns0:prop>
            <ns0:getcontentlength>12</ns0:getcontentlength><z:getcontentlength>99</z:getcontentlength>
            <z:resourcetype><z:collection/></z:resourcetype></ns0:prop>
            <ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response>
            <ns0:response><ns0:href>/dav/a%26b/gone.bin</ns0:href><ns0:status>HTTP/1.1 404 Not Found</ns0:status></ns0:response>
            </ns0:multistatus>
            """
        let resources = try #require(DAVMultistatus.parse(Data(body.utf8), requestPath: "/dav/a&b/"))
        #expect(resources.map(\.path) == ["/dav/a&b", "/dav/a&b/c&d.bin"])
        #expect(resources[1].size == 12, "only DAV: properties count")
        #expect(!resources[1].isCollection, "a collection element in another namespace is not a DAV collection")
    }

    @Test func refusesWhatIsNotADAVMultistatus() {
        #expect(DAVMultistatus.parse(Data("<html><body>Login</body></html>".utf8), requestPath: "/") == nil)
        #expect(DAVMultistatus.parse(Data("<multistatus xmlns=\"urn:not-dav\"></multistatus>".utf8), requestPath: "/") == nil)
        #expect(DAVMultistatus.parse(Data("<D:multistatus xmlns:D=\"DAV:\"><D:response>".utf8), requestPath: "/") == nil)
        #expect(DAVMultistatus.parse(Data("<D:multistatus xmlns:D=\"DAV:\"></D:multistatus>".utf8), requestPath: "/") == [])
    }

    @Test func readsHTTPDatesInEveryFormServersUse() {
        let expected = Date(timeIntervalSince1970: 784_111_777)  // 1994-11-06 08:49:37 UTC
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == expected)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == expected)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == expected)
        #expect(HTTPDate.parse("1994-11-06T08:49:37Z") == expected)
        #expect(HTTPDate.parse("1994-11-06T08:49:37.250Z").map { abs($0.timeIntervalSince(expected) - 0.25) < 0.001 } == true)
        #expect(HTTPDate.parse("yesterday") == nil)
    }

    @Test func encodesKeysSegmentBySegmentUnderTheBasePath() {
        let client = WebDAVClient(targetName: "nas", origin: "https://nas.example", basePath: "/dav/off%20site",
                                  http: HTTPClient(), retryPolicy: RetryPolicy())
        #expect(client.path(of: "crm/20261122T031700Z-manual.sqlite3.gz.age") == "/dav/off%20site/crm/20261122T031700Z-manual.sqlite3.gz.age")
        #expect(client.path(of: "a b/c+d;e&f%g/ü.bin") == "/dav/off%20site/a%20b/c%2Bd%3Be%26f%25g/%C3%BC.bin")
        #expect(client.path(of: "crm/") == "/dav/off%20site/crm/")
        #expect(client.path(of: "") == "/dav/off%20site/")
        #expect(client.url(ofPath: client.path(of: "x")) == "https://nas.example/dav/off%20site/x")
        #expect(WebDAVClient.decoded("/dav/off%20site/a%20b/") == "/dav/off site/a b")
        let atRoot = WebDAVClient(targetName: "nas", origin: "http://h", basePath: "", http: HTTPClient(), retryPolicy: RetryPolicy())
        #expect(atRoot.path(of: "") == "/")
        #expect(atRoot.path(of: "db/a") == "/db/a")
        #expect(WebDAVTarget.parent(ofFolderPath: "/dav/a/b/") == "/dav/a/")
        #expect(WebDAVTarget.parent(ofFolderPath: "/dav/") == "/")
    }

    @Test func temporaryNamesCarryTheirStartTime() throws {
        let name = WebDAVTarget.makeTemporaryName()
        #expect(name.hasPrefix(WebDAVTarget.temporaryNamePrefix))
        #expect(!name.hasPrefix("."), "servers that hide dot-files must still list temporaries")
        #expect(WebDAVTarget.isTemporaryName(name))
        let started = try #require(WebDAVTarget.startTime(ofTemporaryName: name))
        #expect(abs(started.timeIntervalSinceNow) < 5)
        #expect(WebDAVTarget.startTime(ofTemporaryName: "20261122T031700Z-manual.sqlite3.gz.age") == nil)
        #expect(!WebDAVTarget.isTemporaryName("20261122T031700Z-manual.sqlite3.gz.age"))
        #expect(WebDAVTarget.makeTemporaryName() != name)
        // An earlier version's name.
        #expect(WebDAVTarget.isTemporaryName(".offsite-upload-1795319574-0a1b2c3d4e5f.tmp"))
        #expect(WebDAVTarget.startTime(ofTemporaryName: ".offsite-upload-1795319574-0a1b2c3d4e5f.tmp")
                == Date(timeIntervalSince1970: 1_795_319_574))
    }

    @Test(arguments: [
        // status, method, kind of error, permanent
        (401, "GET", "authentication", true),
        (403, "PROPFIND", "authentication", true),
        (403, "MOVE", "failed", true),  // rclone: a missing source or folder
        (404, "GET", "notFound", true),
        (405, "MKCOL", "failed", true),
        (409, "PUT", "failed", true),
        (413, "PUT", "failed", true),
        (507, "PUT", "failed", true),  // full: retrying cannot help
        (423, "MOVE", "failed", false),
        (429, "PUT", "failed", false),
        (408, "PUT", "failed", false),
        (500, "MOVE", "failed", false),  // Apache: a MOVE into a missing folder
        (502, "GET", "failed", false),
        (503, "PROPFIND", "failed", false),
        (400, "MOVE", "failed", true),  // Apache: a path-only Destination
    ])
    func mapsStatusesOntoTargetErrors(status: Int, method: String, kind: String, isPermanent: Bool) {
        let error = WebDAVClient.failure(status: status, method: method, target: "nas", operation: "do \(method)", key: "db/a.bin")
        switch error {
        case .authentication: #expect(kind == "authentication")
        case .notFound: #expect(kind == "notFound")
        case .failed: #expect(kind == "failed")
        }
        #expect(error.isPermanent == isPermanent)
        #expect(error.message.hasPrefix("target nas: "))
        if case .failed = error { #expect(error.message.contains("HTTP \(status)")) }
    }

    @Test(arguments: [
        // status, whether the folder is checked (and made again when missing) before a retry
        (409, true),  // Apache, rclone, wsgidav: a PUT into a missing folder
        (500, true),  // nginx: its rename() into the missing folder fails
        (404, true),  // other servers' PUT; a MOVE whose source went with its folder
        (403, true),  // rclone: a MOVE whose folder is gone
        (503, true),
        (507, true),  // any failure the server answers: one PROPFIND costs little
        (401, false),  // the credentials, not the folder
        (200, false),
        (201, false),
        (204, false),
    ])
    func checksTheFolderAfterAnyFailedPutOrMoveButAnAuthenticationOne(status: Int, checks: Bool) {
        #expect(WebDAVTarget.mayMeanMissingFolder(failedStatus: status) == checks)
    }

    @Test(arguments: [
        // WWW-Authenticate values of the 401s, Basic allowed, Digest allowed, the scheme kept
        (["Basic realm=\"offsite-test\""], true, true, HTTPAuthenticationScheme?.some(.basic)),
        (["Digest realm=\"x\", nonce=\"n\", algorithm=MD5, qop=\"auth\""], true, true, .digest),
        (["Basic realm=\"x\"", "Digest realm=\"x\", nonce=\"n\""], true, true, .digest),  // two headers
        (["Digest realm=\"x\", nonce=\"n\", Basic realm=\"x\""], true, true, .digest),  // two in one
        (["Digest realm=\"x\", nonce=\"n\", Basic realm=\"x\""], true, false, .basic),  // Digest not allowed
        (["digest realm=\"x\""], true, true, .digest),  // scheme names are case-insensitive
        (["Basic realm=\"x\""], false, true, nil),  // Basic offered, not allowed
        (["Bearer realm=\"x\", error=\"invalid_token\""], true, true, nil),
        (["NTLM", "Negotiate"], true, true, nil),
        ([], true, true, nil),  // no 401: nothing learned
    ] as [([String], Bool, Bool, HTTPAuthenticationScheme?)])
    func keepsTheSchemeTheServerAskedFor(challenges: [String], allowsBasic: Bool, allowsDigest: Bool,
                                         expected: HTTPAuthenticationScheme?) {
        #expect(HTTPAuthenticationScheme.preferred(offeredBy: challenges, allowsBasic: allowsBasic, allowsDigest: allowsDigest) == expected)
    }

    @Test func namesTheFullTargetAndSaysWhatToDo() {
        let full = WebDAVClient.failure(status: 507, method: "PUT", target: "nas", operation: "upload db/a.bin", key: "db/a.bin")
        #expect(full.message == "target nas: upload db/a.bin failed: HTTP 507 Insufficient Storage")
        #expect(full.hint?.contains("full") == true)
        let missing = WebDAVClient.failure(status: 404, method: "GET", target: "nas", operation: "download db/a.bin", key: "db/a.bin")
        #expect(missing == .notFound(target: "nas", key: "db/a.bin"))
        let auth = WebDAVClient.failure(status: 401, method: "PROPFIND", target: "nas", operation: "list /", key: nil)
        #expect(auth.message == "target nas: authentication failed: list /: HTTP 401 Unauthorized")
    }

    @Test func resumedDownloadsSkipWhatWasAlreadyDelivered() throws {
        let sink = DataSink()
        let resuming = ResumingDownload(sink, target: "nas", key: "db/a.bin")
        resuming.receiveHead(status: 401, headers: [])  // Digest's first round: ignored
        resuming.receiveHead(status: 200, headers: [("etag", "\"v1\"")])
        try resuming.write(Data("hello ".utf8))
        #expect(resuming.etag == "\"v1\"")
        // The connection broke; the retry got the whole object again: the first bytes are dropped.
        resuming.receiveHead(status: 200, headers: [])
        try resuming.write(Data("hello wo".utf8))
        // Broke again; this server honours Range with 206, or with 200 and a Content-Range.
        resuming.receiveHead(status: 206, headers: [("content-range", "bytes 8-10/11")])
        try resuming.write(Data("r".utf8))
        resuming.receiveHead(status: 200, headers: [("content-range", "bytes 9-10/11")])
        try resuming.write(Data("ld".utf8))
        #expect(sink.data == Data("hello world".utf8))
        #expect(resuming.delivered == 11)
        // A range that starts after what was delivered would leave a hole: refused.
        resuming.receiveHead(status: 206, headers: [("content-range", "bytes 20-30/31")])
        #expect(throws: TargetError.self) { try resuming.write(Data("x".utf8)) }
        let weak = ResumingDownload(DataSink(), target: "nas", key: "k")
        weak.receiveHead(status: 200, headers: [("etag", "W/\"3-660d\"")])
        #expect(weak.etag == nil, "a weak ETag cannot pin the version")
    }

    @Test func opensWithWholeCredentialsAndNamesNoSecret() throws {
        let url = "webdav+https://nas.example/dav"
        var config = TargetConfig(name: "nas", url: url, location: try TargetLocation(parsing: url))
        guard case var .webDAV(settings) = config.store else { throw TestFailure("not a WebDAV store") }
        settings.credentials = HTTPCredentials(username: "backup", password: Secret("pw"))
        config.store = .webDAV(settings)
        let target = try #require(try makeTarget(config) as? WebDAVTarget)
        #expect(target.client.http.options.credentials?.username == "backup")
        #expect(target.location == "https://nas.example/dav")
        #expect(!target.location.contains("pw"))
        #expect(throws: TargetError.self) { try target.makeUpload(key: "../escape.bin") }
        #expect(throws: TargetError.self) { try target.makeUpload(key: "db/") }
    }
}
