import Foundation

/// An upload to a WebDAV server. Bytes are spooled to a local file (mode 0600, without a name, so
/// nothing is left of it when the upload ends or the process dies), so the PUT carries a known
/// `Content-Length` (nginx and others refuse chunked uploads) and a retry re-sends the same
/// bytes. `commit()` creates missing folders, PUTs to a temporary name in the final folder,
/// checks the stored size, then MOVEs it onto the final name with `Overwrite: T`. Any failure
/// deletes the temporary: a partial PUT never lands on a final name. The folder may have been
/// deleted on the server since the target made it: the first failed PUT or MOVE has it checked
/// and, when it is gone, made again and the upload sent again.
final class WebDAVUpload: TargetUpload {
    private let target: WebDAVTarget
    private let key: String
    /// The spool: an unnamed `AtomicFile` the HTTP layer reads back through its `temporaryPath`.
    private let spool: AtomicFile
    private var byteCount: Int64 { spool.byteCount }
    private var isFinished = false
    private var isClosed = false

    init(target: WebDAVTarget, key: String) throws {
        self.target = target
        self.key = key
        let folder = target.spoolFolder
        if !FileManager.default.fileExists(atPath: folder.path) {
            try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o700])
        }
        do {
            spool = try AtomicFile(unnamedIn: folder.path)
        } catch let error as FileIOError {
            throw TargetError.failed(target: target.name, operation: "upload \(key)",
                                     detail: "cannot create a spool file: \(String(cString: strerror(error.code)))",
                                     hint: "check that the spool folder \(folder.path) exists and is writable", isPermanent: true)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !isClosed, !isFinished else { throw misuse("write after finish, commit or abort") }
        do { try spool.write(bytes) } catch let error as FileIOError {
            abort()
            throw TargetError.failed(target: target.name, operation: "upload \(key)",
                                     detail: "writing the spool file in \(target.spoolFolder.path) failed: \(String(cString: strerror(error.code)))",
                                     hint: "the upload is spooled locally before it is sent; free space there",
                                     isPermanent: false)
        }
    }

    func finish() throws {
        guard !isClosed else { throw misuse("finish after commit or abort") }
        isFinished = true
    }

    func commit() throws {
        guard !isClosed else { throw misuse("commit after commit or abort") }
        if !isFinished { try finish() }
        isClosed = true
        defer { spool.discard() }

        let client = target.client
        let folderKey = key.lastIndex(of: "/").map { String(key[...$0]) } ?? ""
        let folder = UploadFolder(path: client.path(of: folderKey), displayKey: folderKey.isEmpty ? "/" : folderKey)
        try target.ensureFolder(atPath: folder.path, displayKey: folder.displayKey)
        let temporaryKey = folderKey + WebDAVTarget.makeTemporaryName()
        let temporaryPath = client.path(of: temporaryKey)
        let finalPath = client.path(of: key)
        do {
            do {
                try send(to: temporaryPath, renamingTo: finalPath, folder: folder)
            } catch is FolderWasRecreated {
                // The folder, and the temporary in it, went away between the PUT and the MOVE.
                try send(to: temporaryPath, renamingTo: finalPath, folder: folder)
            }
        } catch {
            try? target.deleteObject(atPath: temporaryPath, displayKey: temporaryKey)
            throw error
        }
        // Some servers mangle a Destination they mis-parse (wsgidav cuts it at `;`) and still
        // answer 201: check the object really is under its final name.
        guard try target.size(ofPath: finalPath, displayKey: key) == byteCount else {
            throw TargetError.failed(target: target.name, operation: "upload \(key)",
                                     detail: "after the rename the object is not under its final name with \(byteCount) bytes",
                                     hint: "the server may mishandle characters such as ';' in names", isPermanent: true)
        }
    }

    func abort() {
        guard !isClosed else { return }
        isClosed = true
        spool.discard()
    }

    // MARK: - Steps

    /// PUTs the spool to the temporary, checks the size stored, and renames it onto the final name.
    private func send(to temporaryPath: String, renamingTo finalPath: String, folder: UploadFolder) throws {
        try put(temporaryPath, folder: folder)
        let stored = try target.size(ofPath: temporaryPath, displayKey: key)
        guard stored == byteCount else {
            throw TargetError.failed(target: target.name, operation: "upload \(key)",
                                     detail: "the server stored \(stored.map(String.init) ?? "no") bytes of \(byteCount)",
                                     hint: nil, isPermanent: false)
        }
        try move(from: temporaryPath, to: finalPath, folder: folder)
    }

    /// PUTs the spool to `path`; when the folder had to be made again, PUTs once more at once.
    private func put(_ path: String, folder: UploadFolder) throws {
        var headers: [(name: String, value: String)] = [("Content-Type", "application/octet-stream")]
        let http = target.client.http
        if http.options.credentials != nil, byteCount > 0, http.authenticationScheme != .basic {
            // Before the scheme is known, or with Digest (a new handle has no nonce, an old one's
            // may have gone stale), the server may answer 401 first: with 100-continue that comes
            // before the body, so the body is sent once. Basic credentials go with the request.
            headers.append(("Expect", "100-continue"))
        }
        let request = HTTPRequest(method: "PUT", url: target.client.url(ofPath: path), headers: headers,
                                  body: .file(path: spool.temporaryPath, offset: 0, length: byteCount))
        let operation = "upload \(key)"
        var attempts = 0
        try send(request, operation: operation, folder: folder, attempts: &attempts) {
            _ = try target.client.sendOnce(request, operation: operation)
        }
    }

    /// Renames the temporary onto the final name. A retried MOVE whose first attempt worked but
    /// lost its answer finds its source gone: that is success when the final object has the size.
    /// When the folder had to be made again, the temporary went with it: `FolderWasRecreated`.
    private func move(from temporaryPath: String, to finalPath: String, folder: UploadFolder) throws {
        let client = target.client
        let request = HTTPRequest(method: "MOVE", url: client.url(ofPath: temporaryPath),
                                  headers: [("Destination", client.url(ofPath: finalPath)), ("Overwrite", "T")])
        var attempts = 0
        do {
            try send(request, operation: "rename the upload of \(key) to its final name", folder: folder, attempts: &attempts) {
                throw FolderWasRecreated()
            }
        } catch let error as TargetError {
            guard attempts > 1,
                  (try? target.size(ofPath: temporaryPath, displayKey: key)) == .some(nil),
                  (try? target.size(ofPath: finalPath, displayKey: key)) == .some(byteCount) else { throw error }
        }
    }

    /// Sends a PUT or MOVE with the client's retries, counting `attempts`. A failure the server
    /// answers has the folder checked first (`WebDAVTarget.recreateFolderIfMissing`); when the
    /// folder was gone and is back, `afterRecreatingFolder` runs in place of the failure.
    private func send(_ request: HTTPRequest, operation: String, folder: UploadFolder, attempts: inout Int,
                      afterRecreatingFolder: () throws -> Void) throws {
        let client = target.client
        try client.transport.run(operation) { _ in
            attempts += 1
            let response = try client.sendOnce(request, operation: operation, accepting: WebDAVClient.failureStatuses)
            if response.isSuccess { return }
            if try target.recreateFolderIfMissing(folder, afterFailedStatus: response.status) {
                try afterRecreatingFolder()
                return
            }
            throw WebDAVClient.failure(status: response.status, method: request.method, target: client.targetName,
                                       operation: operation, key: nil)
        }
    }

    private func misuse(_ what: String) -> TargetError {
        .failed(target: target.name, operation: "upload \(key)", detail: what, hint: nil, isPermanent: true)
    }
}

/// The folder an upload goes into, and whether it was checked after a failed PUT or MOVE (once
/// per upload).
final class UploadFolder {
    /// The encoded path, ending in `/`.
    let path: String
    /// The folder's key for messages (`/` for the target's own folder).
    let displayKey: String
    var isChecked = false

    init(path: String, displayKey: String) {
        self.path = path
        self.displayKey = displayKey
    }
}

/// The folder of an upload was deleted on the server between its PUT and its MOVE and has been
/// made again: the temporary is gone and the upload must be sent again.
struct FolderWasRecreated: Error {}
