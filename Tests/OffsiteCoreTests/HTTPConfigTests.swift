import Foundation
import Testing
@testable import OffsiteCore

/// A minimal valid document with `http` as its control endpoint section.
private func document(http: String) -> String {
    #"{"databases": [{"path": "/data/crm.db"}], "targets": [{"name": "usb", "url": "file:///mnt/usb"}], "#
        + #""encryption": "none", "http": \#(http)}"#
}

private func parse(_ json: String, environment: [String: String] = [:], base: String = "/etc/offsite") throws -> OffsiteConfig {
    try OffsiteConfig.parse(data: Data(json.utf8), environment: environment, baseDirectory: base)
}

private func failure(_ json: String, environment: [String: String] = [:], base: String = "/etc/offsite") -> ConfigError? {
    do {
        _ = try parse(json, environment: environment, base: base)
        return nil
    } catch {
        return error as? ConfigError
    }
}

@Suite struct ListenAddressTests {
    @Test(arguments: [
        ("127.0.0.1:8080", "127.0.0.1", 8080, ListenAddress.Family.ipv4, true, "127.0.0.1:8080"),
        ("127.9.8.7:1", "127.9.8.7", 1, .ipv4, true, "127.9.8.7:1"),
        ("localhost:9000", "127.0.0.1", 9000, .ipv4, true, "127.0.0.1:9000"),
        ("0.0.0.0:8080", "0.0.0.0", 8080, .ipv4, false, "0.0.0.0:8080"),
        ("192.0.2.10:65535", "192.0.2.10", 65535, .ipv4, false, "192.0.2.10:65535"),
        ("[::1]:8080", "::1", 8080, .ipv6, true, "[::1]:8080"),
        ("[::]:8080", "::", 8080, .ipv6, false, "[::]:8080"),
        ("[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80, .ipv6, true, "[::ffff:127.0.0.1]:80"),
        ("[2001:db8::1]:443", "2001:db8::1", 443, .ipv6, false, "[2001:db8::1]:443"),
    ])
    func parses(text: String, host: String, port: Int, family: ListenAddress.Family, loopback: Bool, shown: String) throws {
        let address = try ListenAddress(parsing: text)
        #expect(address.host == host)
        #expect(address.port == port)
        #expect(address.family == family)
        #expect(address.isLoopback == loopback)
        #expect(address.description == shown)
    }

    @Test(arguments: [
        ("8080", "no port"),
        (":8080", "no address"),
        ("127.0.0.1:", "not a port"),
        ("127.0.0.1:0", "not a port"),
        ("127.0.0.1:65536", "not a port"),
        ("127.0.0.1:80a", "not a port"),
        ("example.com:80", "not a numeric IP address"),
        ("256.0.0.1:80", "not a numeric IP address"),
        ("::1:8080", "in brackets"),
        ("[::1:8080", "closing ]"),
        ("[::1]8080", "no :PORT"),
        ("[nonsense]:80", "not a numeric IP address"),
    ])
    func rejects(text: String, fragment: String) {
        #expect(throws: ListenAddressError.self) { try ListenAddress(parsing: text) }
        do {
            _ = try ListenAddress(parsing: text)
        } catch {
            #expect(error.problem.contains(fragment), "\(error.problem)")
        }
    }
}

@Suite struct HTTPConfigTests {
    @Test func absentMeansNoEndpoint() throws {
        let config = try parse(#"{"databases": [{"path": "/data/crm.db"}], "targets": [{"name": "usb", "url": "file:///mnt/usb"}], "encryption": "none"}"#)
        #expect(config.http == nil)
    }

    @Test func defaultsToLoopbackWithoutAToken() throws {
        let config = try parse(document(http: "{}"))
        #expect(config.http == HTTPConfig(listen: try ListenAddress(parsing: "127.0.0.1:8080"), token: nil))
    }

    @Test func readsTheTokenFromItsFileRelativeToTheConfiguration() throws {
        let folder = try ScratchFolder("http-config")
        try "s3cr3t-token-0123456789\n".write(toFile: folder.file("token"), atomically: true, encoding: .utf8)
        let config = try parse(document(http: #"{"listen": "0.0.0.0:9090", "tokenFile": "token"}"#), base: folder.path)
        #expect(config.http?.listen == (try ListenAddress(parsing: "0.0.0.0:9090")))
        #expect(config.http?.token?.value == "s3cr3t-token-0123456789")
        #expect(!config.warnings.contains { $0.contains("http") })
    }

    @Test func anInlineTokenWorksWithAWarningThatNeverShowsIt() throws {
        let inline = try parse(document(http: #"{"token": "inline-token-0123456789"}"#))
        #expect(inline.http?.token?.value == "inline-token-0123456789")
        #expect(inline.warnings.contains { $0.contains("http.token") })
        #expect(!inline.warnings.joined().contains("inline-token-0123456789"))
        let fromVariable = try parse(document(http: #"{"token": "${TOKEN}"}"#), environment: ["TOKEN": "variable-token-0123456789"])
        #expect(fromVariable.http?.token?.value == "variable-token-0123456789")
        #expect(!fromVariable.warnings.contains { $0.contains("http") })
    }

    @Test(arguments: [
        (#"{"listen": "0.0.0.0:8080"}"#, "http.listen", "requires a token"),
        (#"{"listen": "[::]:8080"}"#, "http.listen", "requires a token"),
        (#"{"listen": "example.com:8080"}"#, "http.listen", "not a numeric IP address"),
        (#"{"listen": "127.0.0.1"}"#, "http.listen", "no port"),
        (#"{"listen": 8080}"#, "http.listen", "expected a string"),
        (#"{"listne": "127.0.0.1:8080"}"#, "http.listne", "did you mean \"listen\""),
        (#"{"token": "short"}"#, "http.token", "shorter than 16"),
        (#"{"token": "has space in the token"}"#, "http.token", "printable ASCII"),
        (#"{"token": "a-long-enough-token-1234", "tokenFile": "/x"}"#, "http.tokenFile", "cannot be combined"),
        (#"{"tokenFile": "/nonexistent/offsite-token"}"#, "http.tokenFile", "does not exist"),
        (#""127.0.0.1:8080""#, "http", "expected an object"),
    ])
    func rejects(http: String, keyPath: String, fragment: String) throws {
        let error = try #require(failure(document(http: http)))
        #expect(error.keyPath == keyPath)
        #expect(error.problem.contains(fragment), "\(error.problem)")
    }

    @Test func theErrorForAShortTokenDoesNotShowIt() throws {
        let folder = try ScratchFolder("http-config")
        try "tiny-secret\n".write(toFile: folder.file("token"), atomically: true, encoding: .utf8)
        let error = try #require(failure(document(http: #"{"tokenFile": "token"}"#), base: folder.path))
        #expect(error.keyPath == "http.tokenFile")
        #expect(!error.message.contains("tiny-secret"))
        #expect(error.hint?.contains("urandom") == true)
    }

    @Test func theSidecarVariablesConfigureTheEndpoint() throws {
        let folder = try ScratchFolder("http-config")
        try "variable-file-token-0123456789".write(toFile: folder.file("token"), atomically: true, encoding: .utf8)
        let base = ["OFFSITE_DATA_DIR": "/data", "OFFSITE_TARGET": "file:///mnt/usb", "OFFSITE_ENCRYPTION": "none"]
        #expect(try OffsiteConfig.fromEnvironment(base)?.http == nil)
        var environment = base
        environment["OFFSITE_HTTP_LISTEN"] = "0.0.0.0:8081"
        environment["OFFSITE_HTTP_TOKEN_FILE"] = folder.file("token")
        let config = try #require(try OffsiteConfig.fromEnvironment(environment))
        #expect(config.http?.listen == (try ListenAddress(parsing: "0.0.0.0:8081")))
        #expect(config.http?.token?.value == "variable-file-token-0123456789")
        environment["OFFSITE_HTTP_TOKEN_FILE"] = nil
        do {
            _ = try OffsiteConfig.fromEnvironment(environment)
            Issue.record("a public address without a token was accepted")
        } catch let error as ConfigError {
            #expect(error.keyPath == "OFFSITE_HTTP_LISTEN")
            #expect(error.problem.contains("requires a token"))
        }
    }
}
