import Foundation

extension TargetLocation {
    /// Parses a target URL: `s3://BUCKET/PREFIX`, `webdav+http(s)://HOST/PATH` or `file:///PATH`.
    /// Credentials in the URL are refused (they would leak into logs and listings) and the
    /// URL's text is then never repeated in the error. `keyPath` says where the URL came from.
    public init(parsing text: String, keyPath: String = "url") throws {
        func fail(_ problem: String, hint: String? = nil) -> ConfigError {
            ConfigError(keyPath: keyPath, problem: problem, hint: hint)
        }
        let supported = "expected s3://BUCKET/PREFIX, webdav+https://HOST/PATH, webdav+http://HOST/PATH or file:///PATH"
        guard let schemeEnd = text.range(of: "://") else {
            throw fail("not a target URL", hint: supported)
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        let afterScheme = text[schemeEnd.upperBound...]
        let authority = afterScheme.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if authority.contains("@") {
            throw fail("credentials must not be in the URL",
                       hint: scheme == "s3" ? "use accessKeyId and secretAccessKey or secretAccessKeyFile"
                                            : "use username and password or passwordFile")
        }
        guard let components = URLComponents(string: text) else { throw fail("not a valid URL") }
        if components.query != nil || components.fragment != nil {
            throw fail("a target URL must not have a query or a fragment")
        }
        switch scheme {
        case "s3":
            guard let bucket = components.host, !bucket.isEmpty else {
                throw fail("missing the bucket", hint: "expected s3://BUCKET/PREFIX")
            }
            guard components.port == nil else {
                throw fail("an s3:// URL has no port", hint: "put the server in \"endpoint\"")
            }
            let prefix = components.path.split(separator: "/").joined(separator: "/")
            self = .s3(bucket: bucket, prefix: prefix)
        case "webdav+http", "webdav+https":
            guard let host = components.host, !host.isEmpty else { throw fail("missing the server name") }
            var base = components
            base.scheme = String(scheme.dropFirst("webdav+".count))
            guard let url = base.url else { throw fail("not a valid URL") }
            self = .webDAV(baseURL: url)
        case "file":
            if let host = components.host, !host.isEmpty, host != "localhost" {
                throw fail("a file:// URL names a local folder, not a host", hint: "write file:///PATH (three slashes)")
            }
            let path = components.path
            guard path.hasPrefix("/"), path.count > 1 else {
                throw fail("expected an absolute folder: file:///PATH")
            }
            self = .folder(path: path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path)
        default:
            throw fail("unsupported scheme \"\(scheme)\"", hint: supported)
        }
    }
}
