import Foundation

/// How big multipart parts are: equal-sized, never below S3's 5 MiB minimum, and grown so that
/// 10,000 parts (S3's maximum) cover the expected object. Unless configured, an object of known
/// size gets the smallest parts that cover it (5 MiB up to 48.8 GiB), which keeps the upload's
/// memory at (concurrency + 1) × 5 MiB; an object of unknown size gets 16 MiB (156 GiB).
public enum S3PartSizing {
    /// S3's smallest part (all parts but the last).
    public static let minimum = 5 << 20
    /// The default part size when the object's size is unknown.
    public static let standard = 16 << 20
    /// S3's largest part.
    public static let maximum = 5 << 30
    /// S3's most parts per upload.
    public static let maximumParts = 10_000

    /// The part size for an object of about `expectedSize` bytes (nil: unknown) with the
    /// configured size (nil: the default); grown to whole MiB when 10,000 parts would not do.
    public static func partSize(configured: Int?, expectedSize: Int64?) -> Int {
        var size = min(max(configured ?? (expectedSize == nil ? standard : minimum), minimum), maximum)
        if let expectedSize, expectedSize > Int64(size) * Int64(maximumParts) {
            let needed = (expectedSize + Int64(maximumParts) - 1) / Int64(maximumParts)
            let mebibyte = Int64(1 << 20)
            size = Int(min((needed + mebibyte - 1) / mebibyte * mebibyte, Int64(maximum)))
        }
        return size
    }
}

/// A bucket (and prefix) on AWS S3 or any S3-compatible store: Backblaze B2, Cloudflare R2,
/// MinIO, Wasabi, Ceph. Requests are SigV4-signed with the full payload hash; uploads stream
/// by multipart with a bounded number of parts in flight. All methods block the calling thread.
public final class S3Target: Target {
    public let name: String
    public let location: String
    /// The bucket.
    public let bucket: String
    /// The key prefix inside the bucket (no leading or trailing `/`; may be empty).
    public let prefix: String
    let client: S3Client
    let configuredPartSize: Int?
    let concurrency: Int
    let storageClass: String?

    /// Opens the target `config` describes (kind `.s3`); throws when credentials are missing.
    /// Every request it makes follows `control` (cancellation, retry reports).
    public convenience init(config: TargetConfig, control: RequestControl = RequestControl()) throws {
        try self.init(config: config, retryPolicy: RetryPolicy(), control: control)
    }

    /// Opens the target with a specific retry policy (tests use short waits).
    convenience init(config: TargetConfig, retryPolicy: RetryPolicy, control: RequestControl = RequestControl()) throws {
        guard let settings = config.store.s3 else {
            throw TargetError.failed(target: config.name, operation: "open", detail: "\(config.url) is not an s3:// URL",
                                     hint: nil, isPermanent: true)
        }
        try self.init(name: config.name, settings: settings, retryPolicy: retryPolicy, control: control)
    }

    /// Opens the bucket `settings` describe, as the target `name`.
    init(name: String, settings: S3TargetSettings, retryPolicy: RetryPolicy, control: RequestControl) throws {
        guard let credentials = settings.credentials else {
            throw TargetError.failed(target: name, operation: "open", detail: "no S3 credentials",
                                     hint: "set accessKeyId and secretAccessKey (or secretAccessKeyFile) for this target, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                                     isPermanent: true)
        }
        let region = (settings.region?.isEmpty == false ? settings.region : nil) ?? "us-east-1"
        let endpoint = S3Endpoint.resolve(endpoint: settings.endpoint, bucket: settings.bucket, region: region,
                                          pathStyle: settings.pathStyle)
        self.name = name
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.location = "s3://\(bucket)\(prefix.isEmpty ? "" : "/" + prefix) at \(endpoint.scheme)://\(endpoint.hostHeader)"
        self.client = S3Client(targetName: name, bucket: bucket, endpoint: endpoint,
                               signer: SigV4Signer(accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey,
                                                   sessionToken: credentials.sessionToken, region: region),
                               http: HTTPClient(options: settings.connection.clientOptions()), retryPolicy: retryPolicy,
                               control: control)
        self.configuredPartSize = settings.partSize
        self.concurrency = max(1, settings.concurrency ?? 2)
        self.storageClass = settings.storageClass
    }

    /// The bucket key of a target key.
    func objectKey(_ key: String) -> String {
        prefix.isEmpty ? key : "\(prefix)/\(key)"
    }

    public func makeUpload(key: String) throws -> any TargetUpload {
        makeUpload(key: key, expectedSize: nil)
    }

    /// Starts an upload to `key` whose size is about `expectedSize` bytes (nil: unknown), so the
    /// part size can grow to keep within 10,000 parts; the default part size covers 156 GiB.
    public func makeUpload(key: String, expectedSize: Int64?) -> any TargetUpload {
        S3Upload(client: client, key: objectKey(key), displayKey: key,
                 partSize: S3PartSizing.partSize(configured: configuredPartSize, expectedSize: expectedSize),
                 concurrency: concurrency, storageClass: storageClass)
    }

    public func list(prefix listPrefix: String) throws -> [RemoteObject] {
        let bucketPrefix = prefix.isEmpty ? listPrefix : "\(prefix)/\(listPrefix)"
        var objects: [RemoteObject] = []
        var token: String?
        var pages = 0
        repeat {
            var query: [(name: String, value: String)] = [("list-type", "2"), ("prefix", bucketPrefix)]
            if let token { query.append(("continuation-token", token)) }
            let operation = "list \(listPrefix.isEmpty ? "/" : listPrefix)"
            let response = try client.send(S3Call(method: "GET", key: nil, query: query), operation: operation)
            guard let page = S3ListPage.parse(response.body) else {
                throw TargetError.failed(target: name, operation: operation, detail: "the listing could not be read",
                                         hint: "check that the endpoint is an S3 API", isPermanent: true)
            }
            for object in page.objects where object.key.hasPrefix(bucketPrefix) {
                var relative = object
                relative.key = prefix.isEmpty ? object.key : String(object.key.dropFirst(prefix.count + 1))
                objects.append(relative)
            }
            if page.isTruncated, page.nextContinuationToken == nil || page.nextContinuationToken == token {
                throw TargetError.failed(target: name, operation: operation,
                                         detail: "the listing was truncated without a continuation token",
                                         hint: nil, isPermanent: true)
            }
            token = page.isTruncated ? page.nextContinuationToken : nil
            pages += 1
        } while token != nil && pages < 1_000_000
        return objects.sorted { $0.key < $1.key }
    }

    public func download(key: String, into sink: any ByteSink) throws {
        // A retry after some bytes resumes with a Range request, pinned to the same object
        // version by its ETag; a server that ignores Range has the bytes already seen skipped.
        let resuming = ResumingDownload(sink, target: name, key: key)
        let response = try client.send(S3Call(method: "GET", key: objectKey(key)), operation: "download \(key)", accepting: [404],
                                       streamingInto: resuming, onHead: resuming.receiveHead) { attempt in
            attempt.headers = []
            if resuming.delivered > 0 {
                attempt.headers.append(("range", "bytes=\(resuming.delivered)-"))
                if let etag = resuming.etag { attempt.headers.append(("if-match", etag)) }
            }
        }
        if response.status == 404 { throw TargetError.notFound(target: name, key: key) }
    }

    public func delete(key: String) throws {
        _ = try client.send(S3Call(method: "DELETE", key: objectKey(key)), operation: "delete \(key)", accepting: [404])
    }

    /// The size of the object at `key` (HEAD); throws `notFound` when it does not exist.
    public func size(key: String) throws -> Int64 {
        try S3Size(client: client).size(key: objectKey(key), displayKey: key)
    }

    /// Aborts the multipart uploads under this target's prefix that were started more than `age`
    /// ago (left behind by a crash); returns how many. Call at startup, before new uploads. With
    /// `folder`, only those under that top-level folder (one database's).
    public func abortStaleUploads(olderThan age: Duration, inFolder folder: String? = nil) throws -> Int {
        let cutoff = Date().addingTimeInterval(-(Double(age.components.seconds) + Double(age.components.attoseconds) / 1e18))
        var aborted = 0
        for upload in try openUploads(inFolder: folder) where (upload.initiated ?? .distantPast) <= cutoff {
            _ = try client.send(S3Call(method: "DELETE", key: upload.key, query: [("uploadId", upload.uploadID)]),
                                operation: "abort upload of \(upload.key)", accepting: [404])
            aborted += 1
        }
        return aborted
    }

    /// The multipart uploads open under this target's prefix, or under `folder` in it
    /// (ListMultipartUploads, every page).
    func openUploads(inFolder folder: String? = nil) throws -> [S3UploadsPage.Upload] {
        let bucketPrefix = objectKey(folder.map { "\($0)/" } ?? "")
        let operation = "list open uploads"
        var keyMarker: String?
        var idMarker: String?
        var uploads: [S3UploadsPage.Upload] = []
        while true {
            var query: [(name: String, value: String)] = [("uploads", ""), ("prefix", bucketPrefix)]
            if let keyMarker { query.append(("key-marker", keyMarker)) }
            if let idMarker { query.append(("upload-id-marker", idMarker)) }
            let response = try client.send(S3Call(method: "GET", key: nil, query: query), operation: operation)
            guard let page = S3UploadsPage.parse(response.body) else {
                throw TargetError.failed(target: name, operation: operation, detail: "the answer could not be read",
                                         hint: nil, isPermanent: true)
            }
            uploads += page.uploads.filter { $0.key.hasPrefix(bucketPrefix) }
            guard page.isTruncated else { break }
            guard page.nextKeyMarker != keyMarker || page.nextUploadIDMarker != idMarker,
                  page.nextKeyMarker != nil || page.nextUploadIDMarker != nil else {
                throw TargetError.failed(target: name, operation: operation, detail: "the listing was truncated without markers",
                                         hint: nil, isPermanent: true)
            }
            keyMarker = page.nextKeyMarker
            idMarker = page.nextUploadIDMarker
        }
        return uploads
    }

    /// Starts a multipart upload at `key` and leaves it open; returns its id (tests make stale uploads with it).
    func startMultipartUpload(key: String) throws -> String {
        let response = try client.send(S3Call(method: "POST", key: objectKey(key), query: [("uploads", "")]),
                                       operation: "start upload of \(key)")
        guard let id = XMLReader.parse(response.body)?.text(of: "UploadId") else {
            throw TargetError.failed(target: name, operation: "start upload of \(key)", detail: "no UploadId", hint: nil, isPermanent: true)
        }
        return id
    }

    /// Creates the bucket (for test servers; real deployments create buckets out of band).
    func createBucket() throws {
        _ = try client.send(S3Call(method: "PUT", key: nil), operation: "create bucket \(bucket)", accepting: [409])
    }
}

