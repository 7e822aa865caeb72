import Foundation

/// A folder on a WebDAV server: Nextcloud, ownCloud, NAS boxes, Apache mod_dav, nginx, rclone.
/// Basic or Digest authentication through libcurl. Uploads are spooled to a local file so the
/// PUT has a known length, go to a temporary name and are renamed with MOVE; listings walk
/// folders with `PROPFIND Depth: 1`. All methods block the calling thread.
public final class WebDAVTarget: Target {
    public let name: String
    public let location: String
    /// The local folder where uploads are spooled before they are sent (files 0600, deleted after).
    public let spoolFolder: URL
    let client: WebDAVClient
    let knownFolders = KnownFolders()

    /// Names of upload temporaries start with this; listings hide them and
    /// `removeStaleTemporaries(olderThan:)` deletes them. Not a dot-file: some servers (nginx's
    /// dav-ext module) leave those out of listings, and a leftover nobody lists is never removed.
    public static let temporaryNamePrefix = "offsite-upload-"
    /// What temporaries were called before: still hidden and removed where a server lists them.
    static let formerTemporaryNamePrefix = ".offsite-upload-"

    /// Opens the target `config` describes (kind `.webDAV`); uploads spool into `spoolFolder`
    /// (nil: the system's temporary folder). Every request it makes follows `control`
    /// (cancellation, retry reports).
    public convenience init(config: TargetConfig, spoolFolder: URL? = nil, control: RequestControl = RequestControl()) throws {
        try self.init(config: config, spoolFolder: spoolFolder, retryPolicy: RetryPolicy(), control: control)
    }

    /// Opens the target with a specific retry policy (tests use short waits).
    convenience init(config: TargetConfig, spoolFolder: URL?, retryPolicy: RetryPolicy, control: RequestControl = RequestControl()) throws {
        guard let settings = config.store.webDAV else {
            throw TargetError.failed(target: config.name, operation: "open",
                                     detail: "\(config.url) is not a webdav+http:// or webdav+https:// URL", hint: nil, isPermanent: true)
        }
        try self.init(name: config.name, settings: settings, spoolFolder: spoolFolder, retryPolicy: retryPolicy, control: control)
    }

    /// Opens the folder `settings` describe, as the target `name`.
    init(name: String, settings: WebDAVTargetSettings, spoolFolder: URL?, retryPolicy: RetryPolicy, control: RequestControl) throws {
        guard let components = URLComponents(url: settings.baseURL, resolvingAgainstBaseURL: false),
              let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = components.host, !host.isEmpty else {
            throw TargetError.failed(target: name, operation: "open",
                                     detail: "\(settings.baseURL) is not a webdav+http:// or webdav+https:// URL", hint: nil,
                                     isPermanent: true)
        }
        let hostText = host.contains(":") ? "[\(host)]" : host
        let origin = "\(scheme)://\(hostText)\(components.port.map { ":\($0)" } ?? "")"
        var basePath = components.percentEncodedPath
        while basePath.hasSuffix("/") { basePath.removeLast() }
        self.name = name
        self.location = "\(origin)\(basePath.isEmpty ? "/" : basePath)"
        self.spoolFolder = spoolFolder ?? FileManager.default.temporaryDirectory
        self.client = WebDAVClient(targetName: name, origin: origin, basePath: basePath,
                                   http: HTTPClient(options: settings.connection.clientOptions(credentials: settings.credentials)),
                                   retryPolicy: retryPolicy, control: control)
    }

    public func makeUpload(key: String) throws -> any TargetUpload {
        try checkKey(key, operation: "upload \(key)")
        return try WebDAVUpload(target: self, key: key)
    }

    public func list(prefix: String) throws -> [RemoteObject] {
        let folder = prefix.lastIndex(of: "/").map { String(prefix[...$0]) } ?? ""
        var objects: [RemoteObject] = []
        try walk(folder: folder, operation: "list \(prefix.isEmpty ? "/" : prefix)", descendingInto: { child in
            child.hasPrefix(prefix) || prefix.hasPrefix(child)
        }, visit: { key, resource in
            if key.hasPrefix(prefix), !Self.isTemporaryName(resource.name) {
                objects.append(RemoteObject(key: key, size: resource.size ?? 0, modified: resource.modified))
            }
        })
        return objects.sorted { $0.key < $1.key }
    }

    public func download(key: String, into sink: any ByteSink) throws {
        try checkKey(key, operation: "download \(key)")
        // A retry after some bytes resumes with a Range request pinned to the same version by its
        // ETag; a server that ignores Range has the bytes already delivered skipped.
        let resuming = ResumingDownload(sink, target: name, key: key)
        let request = HTTPRequest(method: "GET", url: client.url(ofPath: client.path(of: key)))
        _ = try client.send(request, operation: "download \(key)", key: key, streamingInto: resuming,
                            onHead: resuming.receiveHead) { attempt in
            attempt.headers = []
            if resuming.delivered > 0 {
                attempt.headers.append(("Range", "bytes=\(resuming.delivered)-"))
                if let etag = resuming.etag { attempt.headers.append(("If-Match", etag)) }
            }
        }
    }

    public func delete(key: String) throws {
        try checkKey(key, operation: "delete \(key)")
        try deleteObject(atPath: client.path(of: key), displayKey: key)
    }

    /// The size of the object at `key` (PROPFIND `Depth: 0`); throws `notFound` when it does not exist.
    public func size(key: String) throws -> Int64 {
        try checkKey(key, operation: "read size of \(key)")
        guard let size = try size(ofPath: client.path(of: key), displayKey: key) else {
            throw TargetError.notFound(target: name, key: key)
        }
        return size
    }

    /// Deletes the upload temporaries under this target that were last touched more than `age`
    /// ago: what a crash or a lost connection left behind. Returns how many. Call at startup.
    /// With `folder`, only those under that top-level folder (one database's).
    public func removeStaleTemporaries(olderThan age: Duration, inFolder folder: String? = nil) throws -> Int {
        let cutoff = Date().addingTimeInterval(-(Double(age.components.seconds) + Double(age.components.attoseconds) / 1e18))
        let scope = folder.map { "\($0)/" } ?? ""
        var stale: [(key: String, path: String)] = []
        try walk(folder: "", operation: "look for stale uploads", descendingInto: { $0.hasPrefix(scope) }, visit: { key, resource in
            guard key.hasPrefix(scope), Self.isTemporaryName(resource.name) else { return }
            // The newest of the name's start time and the server's modification time, so an
            // upload still streaming is not taken for stale.
            let started = Self.startTime(ofTemporaryName: resource.name) ?? .distantPast
            if max(started, resource.modified ?? .distantPast) <= cutoff {
                stale.append((key, client.path(of: key)))
            }
        })
        for temporary in stale {
            try deleteObject(atPath: temporary.path, displayKey: temporary.key)
        }
        return stale.count
    }

    // MARK: - Internals

    /// A fresh temporary name; it records when the upload started.
    static func makeTemporaryName() -> String {
        let random = (0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        return "\(temporaryNamePrefix)\(Int(Date().timeIntervalSince1970))-\(random).tmp"
    }

    /// Whether `name` is an upload temporary's, by this version or an earlier one.
    static func isTemporaryName(_ name: String) -> Bool {
        name.hasPrefix(temporaryNamePrefix) || name.hasPrefix(formerTemporaryNamePrefix)
    }

    /// When the upload that made a temporary name started, from the name.
    static func startTime(ofTemporaryName name: String) -> Date? {
        guard let prefix = [temporaryNamePrefix, formerTemporaryNamePrefix].first(where: name.hasPrefix) else { return nil }
        let seconds = name.dropFirst(prefix.count).prefix { $0.isNumber }
        return Double(seconds).map(Date.init(timeIntervalSince1970:))
    }

    /// Lists `folder` (a target-relative folder key, `` or ending in `/`) with `Depth: 1`, calls
    /// `visit` for each object, and recurses into child folders `descendingInto` accepts (given
    /// as keys ending in `/`). A missing folder has nothing in it; any other failure throws.
    func walk(folder: String, operation: String, descendingInto: (String) -> Bool,
              visit: (String, DAVResource) throws -> Void) throws {
        let path = client.path(of: folder)
        guard let resources = try client.propfind(path: path, depth: 1, operation: operation) else { return }
        let folderPath = WebDAVClient.decoded(path)
        let folderName = folderPath == "/" ? "" : String(folderPath[folderPath.index(after: folderPath.lastIndex(of: "/")!)...])
        var children: [String] = []
        for resource in resources {
            if resource.path == folderPath { continue }
            let parent = resource.path.lastIndex(of: "/").map { String(resource.path[..<$0]) } ?? ""
            // A server behind a proxy may report paths with another base; its own entry then
            // still ends in the folder's name and is a collection.
            if (parent.isEmpty ? "/" : parent) != folderPath, resource.isCollection, resource.name == folderName,
               resources.first == resource {
                continue
            }
            guard !resource.name.isEmpty else { continue }
            let key = folder + resource.name
            if resource.isCollection {
                if descendingInto(key + "/") { children.append(key + "/") }
            } else {
                try visit(key, resource)
            }
        }
        for child in children {
            try walk(folder: child, operation: operation, descendingInto: descendingInto, visit: visit)
        }
    }

    /// The size of the object at an encoded path, or nil when it does not exist.
    func size(ofPath path: String, displayKey: String) throws -> Int64? {
        let operation = "read size of \(displayKey)"
        guard let resources = try client.propfind(path: path, depth: 0, operation: operation) else { return nil }
        guard let resource = resources.first(where: { !$0.isCollection }) ?? resources.first else { return nil }
        if resource.isCollection { return nil }
        if let size = resource.size { return size }
        // No getcontentlength in the listing: ask with HEAD.
        let response = try client.send(HTTPRequest(method: "HEAD", url: client.url(ofPath: path)), operation: operation,
                                       key: displayKey, accepting: [404])
        if response.status == 404 { return nil }
        guard let length = response.header("content-length").flatMap({ Int64($0) }) else {
            throw TargetError.failed(target: name, operation: operation, detail: "the server reported no size",
                                     hint: nil, isPermanent: true)
        }
        return length
    }

    /// DELETE of an encoded path; a missing object counts as deleted.
    func deleteObject(atPath path: String, displayKey: String) throws {
        _ = try client.send(HTTPRequest(method: "DELETE", url: client.url(ofPath: path)), operation: "delete \(displayKey)",
                            key: displayKey, accepting: [404])
    }

    /// Makes sure the folder at an encoded path (ending in `/`) exists, creating missing folders
    /// one level at a time with MKCOL: 201 created, 405 already there (rclone says 201 for that
    /// too), 409 its parent is missing, so the parent is made first.
    func ensureFolder(atPath path: String, displayKey: String) throws {
        guard path != "/", !knownFolders.contains(path) else { return }
        let operation = "create folder \(displayKey)"
        let request = HTTPRequest(method: "MKCOL", url: client.url(ofPath: path))
        let response = try client.send(request, operation: operation, accepting: [405, 409])
        if response.status == 409 {
            let parent = Self.parent(ofFolderPath: path)
            try ensureFolder(atPath: parent, displayKey: WebDAVClient.decoded(parent))
            _ = try client.send(request, operation: operation, accepting: [405])
        }
        knownFolders.insert(path)
    }

    /// After a PUT or MOVE into `folder` failed with `status`, once per upload: forgets every
    /// folder this target remembers, asks the server whether the folder is there (PROPFIND) and
    /// makes it again when it is not. Returns true when it was made again, so sending once more
    /// can succeed; false when it was there, could not be looked at, or was checked already.
    func recreateFolderIfMissing(_ folder: UploadFolder, afterFailedStatus status: Int) throws -> Bool {
        guard !folder.isChecked, Self.mayMeanMissingFolder(failedStatus: status) else { return false }
        folder.isChecked = true
        knownFolders.removeAll()
        do {
            if try client.propfind(path: folder.path, depth: 0, operation: "look at folder \(folder.displayKey)") != nil { return false }
        } catch {
            return false  // A folder that cannot be looked at leaves the upload's own failure to report.
        }
        try ensureFolder(atPath: folder.path, displayKey: folder.displayKey)
        return true
    }

    /// Whether a PUT or MOVE that failed with `status` may have failed because its folder was
    /// deleted: every failure but 401 (the credentials, not the folder). Servers answer a PUT into
    /// a missing folder with 409 (Apache, rclone, wsgidav), 500 (nginx: its rename() fails) or 404,
    /// and a MOVE out of one with 403 (rclone) or 404.
    static func mayMeanMissingFolder(failedStatus status: Int) -> Bool {
        !(200..<300).contains(status) && status != 401
    }

    /// The encoded path of the folder holding the folder at `path` (both end in `/`).
    static func parent(ofFolderPath path: String) -> String {
        var trimmed = path
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "/" }
        return String(trimmed[...slash])
    }

    /// Refuses keys that cannot name an object: empty, a folder, or with `.` or `..` parts.
    func checkKey(_ key: String, operation: String) throws {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, !key.hasPrefix("/"), !key.hasSuffix("/"), parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw TargetError.failed(target: name, operation: operation, detail: "\"\(key)\" is not a valid object key",
                                     hint: nil, isPermanent: true)
        }
    }
}

/// Folder paths known to exist on the server, so uploads skip MKCOL after the first.
final class KnownFolders: @unchecked Sendable {
    private let lock = NSLock()
    private var paths: Set<String> = []

    func contains(_ path: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return paths.contains(path)
    }

    func insert(_ path: String) {
        lock.lock()
        paths.insert(path)
        lock.unlock()
    }

    func removeAll() {
        lock.lock()
        paths.removeAll()
        lock.unlock()
    }
}

