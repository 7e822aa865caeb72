import Foundation

/// A streaming upload to S3. Bytes collect into one part-sized buffer; an object that fits in one
/// part is a single PUT at `commit()`. A larger one becomes a multipart upload: each full part is
/// handed to a pool of `concurrency` threads, and `write` waits while that many are in flight, so
/// memory stays at (concurrency + 1) parts. `commit()` completes the upload once every part
/// succeeded, then checks the size with HEAD; any failure, and `abort()`, aborts the multipart
/// upload so nothing is left behind.
final class S3Upload: TargetUpload {
    private let client: S3Client
    private let key: String
    private let displayKey: String
    private let partSize: Int
    private let concurrency: Int
    private let storageClass: String?

    private var buffer: Data
    private var uploadID: String?
    private var nextPartNumber = 1
    private var partETags: [Int: String] = [:]
    /// Sends the parts of the multipart upload, once there is one; each comes back with its ETag.
    private var parts: WorkerPool<S3Part, String>?
    private var totalBytes: Int64 = 0
    private var isFinished = false
    private var isClosed = false

    init(client: S3Client, key: String, displayKey: String, partSize: Int, concurrency: Int, storageClass: String?) {
        self.client = client
        self.key = key
        self.displayKey = displayKey
        self.partSize = partSize
        self.concurrency = max(1, concurrency)
        self.storageClass = storageClass
        self.buffer = Data(capacity: partSize)
    }

    deinit {
        // Dropped without commit or abort: do not leave a multipart upload open.
        if !isClosed, let uploadID {
            parts?.stop()
            abortRemote(uploadID)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !isClosed, !isFinished else { throw misuse("write after finish, commit or abort") }
        try collectParts(waiting: false)
        var offset = 0
        while offset < bytes.count {
            if buffer.count == partSize {
                // More bytes after a full buffer: this object needs multipart.
                try sendFullBuffer()
            }
            let take = min(partSize - buffer.count, bytes.count - offset)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)]))
            offset += take
            totalBytes += Int64(take)
        }
    }

    func finish() throws {
        guard !isClosed else { throw misuse("finish after commit or abort") }
        guard !isFinished else { return }
        try collectParts(waiting: false)
        if uploadID != nil, !buffer.isEmpty { try sendFullBuffer() }
        isFinished = true
    }

    func commit() throws {
        guard !isClosed else { throw misuse("commit after commit or abort") }
        if !isFinished { try finish() }
        guard let uploadID else {
            try putWhole()
            isClosed = true
            return
        }
        do {
            try collectParts(waiting: true)
            try complete(uploadID)
        } catch {
            abort()
            throw error
        }
        isClosed = true
        let size = try S3Size(client: client).size(key: key, displayKey: displayKey)
        guard size == totalBytes else {
            _ = try? client.send(S3Call(method: "DELETE", key: key), operation: "delete \(displayKey)", accepting: [404])
            throw TargetError.failed(target: client.targetName, operation: "upload \(displayKey)",
                                     detail: "the stored object has \(size) bytes, \(totalBytes) were sent; it was deleted",
                                     hint: nil, isPermanent: false)
        }
    }

    func abort() {
        guard !isClosed else { return }
        isClosed = true
        parts?.stop()
        parts = nil
        if let uploadID { abortRemote(uploadID) }
        buffer = Data()
    }

    // MARK: - Steps

    private func putWhole() throws {
        var call = S3Call(method: "PUT", key: key)
        call.attach(buffer, withMD5: false)
        if let storageClass { call.headers.append(("x-amz-storage-class", storageClass)) }
        _ = try client.send(call, operation: "upload \(displayKey)")
        buffer = Data()
    }

    private func start() throws -> String {
        var call = S3Call(method: "POST", key: key, query: [("uploads", "")])
        if let storageClass { call.headers.append(("x-amz-storage-class", storageClass)) }
        let response = try client.send(call, operation: "start upload of \(displayKey)")
        guard let id = XMLReader.parse(response.body)?.text(of: "UploadId"), !id.isEmpty else {
            throw TargetError.failed(target: client.targetName, operation: "start upload of \(displayKey)",
                                     detail: "the answer had no UploadId", hint: nil, isPermanent: true)
        }
        return id
    }

    /// Hands the buffer to the part threads, waiting while `concurrency` parts are in flight.
    private func sendFullBuffer() throws {
        if uploadID == nil { uploadID = try start() }
        guard let uploadID else { return }
        let partNumber = nextPartNumber
        guard partNumber <= S3PartSizing.maximumParts else {
            throw failAndAbort(TargetError.failed(target: client.targetName, operation: "upload \(displayKey)",
                                                  detail: "the object needs more than \(S3PartSizing.maximumParts) parts of \(partSize) bytes",
                                                  hint: "raise partSize for this target", isPermanent: true))
        }
        let pool = parts ?? makePartSenders(uploadID: uploadID)
        parts = pool
        while pool.inFlight >= concurrency { try collect(pool.takeFinished(waiting: true)) }
        pool.submit(S3Part(number: partNumber, data: buffer))
        // A fresh buffer: the part's memory goes back when its thread is done with it.
        buffer = Data(capacity: partSize)
        nextPartNumber += 1
    }

    /// `concurrency` threads that upload parts with retries (the same bytes each time) and
    /// return their ETags.
    private func makePartSenders(uploadID: String) -> WorkerPool<S3Part, String> {
        let (client, key, displayKey) = (client, key, displayKey)
        let send: (S3Part) throws -> String = { part in
            let call = S3Call.withBody("PUT", key: key, query: [("partNumber", String(part.number)), ("uploadId", uploadID)],
                                       data: part.data, withMD5: false)
            let operation = "upload part \(part.number) of \(displayKey)"
            let response = try client.send(call, operation: operation)
            guard let etag = response.header("etag"), !etag.isEmpty else {
                throw TargetError.failed(target: client.targetName, operation: operation, detail: "the answer had no ETag",
                                         hint: nil, isPermanent: true)
            }
            return etag
        }
        return WorkerPool(name: "offsite-s3-part", workers: Array(repeating: send, count: concurrency))
    }

    /// Records the ETags of the parts that are done (with `waiting`, of every part in flight);
    /// the first part that failed aborts the upload and is thrown.
    private func collectParts(waiting: Bool) throws {
        while let finished = parts?.takeFinished(waiting: waiting) { try collect(finished) }
    }

    /// Records a finished part's ETag, or aborts the upload and throws why the part failed.
    private func collect(_ finished: (job: S3Part, outcome: Result<String, any Error>)?) throws {
        guard let (part, outcome) = finished else { return }
        switch outcome {
        case let .success(etag): partETags[part.number] = etag
        case let .failure(error): throw failAndAbort(error)
        }
    }

    private func complete(_ uploadID: String) throws {
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for number in partETags.keys.sorted() {
            xml += "<Part><PartNumber>\(number)</PartNumber><ETag>\(escape(partETags[number]!))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let call = S3Call.withBody("POST", key: key, query: [("uploadId", uploadID)], data: Data(xml.utf8))
        let operation = "complete upload of \(displayKey)"
        _ = try client.transport.run(operation) { _ in
            let response = try client.sendOnce(call, operation: operation)
            // CompleteMultipartUpload can fail after a 200 status, with an error in the body.
            if S3ErrorBody.parse(response.body) != nil {
                throw client.failure(HTTPResponse(status: 500, body: response.body), operation: operation)
            }
            return response
        }
    }

    private func abortRemote(_ uploadID: String) {
        _ = try? client.send(S3Call(method: "DELETE", key: key, query: [("uploadId", uploadID)]),
                             operation: "abort upload of \(displayKey)", accepting: [404])
    }

    /// Aborts everything and returns `error` for throwing.
    private func failAndAbort(_ error: Error) -> Error {
        abort()
        return error
    }

    private func misuse(_ what: String) -> TargetError {
        .failed(target: client.targetName, operation: "upload \(displayKey)", detail: what, hint: nil, isPermanent: true)
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

/// One part of a multipart upload, on its way to a part thread.
struct S3Part {
    /// Its number, from 1.
    let number: Int
    /// Its bytes.
    let data: Data
}

/// HEAD of one object: its size, or `notFound`.
struct S3Size {
    let client: S3Client

    func size(key: String, displayKey: String) throws -> Int64 {
        let operation = "read size of \(displayKey)"
        let response = try client.send(S3Call(method: "HEAD", key: key), operation: operation, accepting: [404])
        if response.status == 404 { throw TargetError.notFound(target: client.targetName, key: displayKey) }
        guard let length = response.header("content-length").flatMap({ Int64($0) }) else {
            throw TargetError.failed(target: client.targetName, operation: operation, detail: "no Content-Length in the answer",
                                     hint: nil, isPermanent: true)
        }
        return length
    }
}
