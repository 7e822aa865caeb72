import Foundation
import Testing
@testable import OffsiteCore

/// The pieces of the S3 target that need no server: signing, encoding, MD5, XML, part sizes, retries.
@Suite struct S3UnitTests {
    /// AWS's published example keys and date (S3 API reference, "Signature Calculations for the
    /// Authorization Header"): 2013-05-24T00:00:00Z.
    let signer = SigV4Signer(accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                             sessionToken: nil, region: "us-east-1")
    let exampleDate = Date(timeIntervalSince1970: 1_369_353_600)

    @Test func signsTheAWSGetObjectExample() {
        let headers: [(name: String, value: String)] = [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9")]
        let canonical = signer.canonicalRequest(
            method: "GET", canonicalURI: "/test.txt", canonicalQuery: "",
            headers: headers + [("x-amz-content-sha256", S3Hash.emptyPayloadHash), ("x-amz-date", "20130524T000000Z")],
            payloadHash: S3Hash.emptyPayloadHash)
        #expect(canonical.text == """
            GET
            /test.txt

            host:examplebucket.s3.amazonaws.com
            range:bytes=0-9
            x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            x-amz-date:20130524T000000Z

            host;range;x-amz-content-sha256;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signer.stringToSign(timestamp: "20130524T000000Z", scope: "20130524/us-east-1/s3/aws4_request", canonicalRequest: canonical.text)
            .hasSuffix("\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"))
        let signed = signer.signedHeaders(method: "GET", canonicalURI: "/test.txt", canonicalQuery: "", headers: headers,
                                          payloadHash: S3Hash.emptyPayloadHash, date: exampleDate)
        #expect(signed.first { $0.name == "Authorization" }?.value == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(signed.first { $0.name == "x-amz-date" }?.value == "20130524T000000Z")
    }

    @Test func signsTheAWSListObjectsExampleWithItsQuery() {
        let query = S3Encoding.canonicalQuery([("prefix", "J"), ("max-keys", "2")])
        #expect(query == "max-keys=2&prefix=J")
        let signed = signer.signedHeaders(method: "GET", canonicalURI: "/", canonicalQuery: query,
                                          headers: [("host", "examplebucket.s3.amazonaws.com")],
                                          payloadHash: S3Hash.emptyPayloadHash, date: exampleDate)
        #expect(signed.last?.value.hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true)
    }

    @Test func signsTheAWSPutObjectExampleWithAnEncodedKey() {
        let payload = Data("Welcome to Amazon S3.".utf8)
        let hash = S3Hash.hex(S3Hash.sha256(payload))
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let path = "/" + S3Encoding.encode("test$file.text", keepingSlashes: true)
        #expect(path == "/test%24file.text")
        let signed = signer.signedHeaders(method: "PUT", canonicalURI: path, canonicalQuery: "",
                                          headers: [("host", "examplebucket.s3.amazonaws.com"), ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                                                    ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
                                          payloadHash: hash, date: exampleDate)
        #expect(signed.last?.value == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func sessionTokensAreSentAndSigned() {
        let withToken = SigV4Signer(accessKeyId: "AKID", secretAccessKey: Secret("secret"), sessionToken: Secret("token/+="), region: "auto")
        let signed = withToken.signedHeaders(method: "GET", canonicalURI: "/", canonicalQuery: "", headers: [("host", "h")],
                                             payloadHash: S3Hash.emptyPayloadHash, date: exampleDate)
        #expect(signed.contains { $0.name == "x-amz-security-token" && $0.value == "token/+=" })
        #expect(signed.last?.value.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,") == true)
        #expect(signed.last?.value.contains("/20130524/auto/s3/aws4_request") == true)
    }

    @Test func encodesQueriesAndKeysTheSameWayForTheWireAndTheSignature() {
        // `/` in a query value is %2F (curl 7.88's own signer got this wrong); in a key path it stays.
        #expect(S3Encoding.canonicalQuery([("list-type", "2"), ("prefix", "dir/")]) == "list-type=2&prefix=dir%2F")
        #expect(S3Encoding.canonicalQuery([("uploads", ""), ("prefix", "a b+c=d&e")]) == "prefix=a%20b%2Bc%3Dd%26e&uploads=")
        #expect(S3Encoding.canonicalQuery([("b", "2"), ("a", "9"), ("a", "1")]) == "a=1&a=9&b=2")
        #expect(S3Encoding.canonicalQuery([("continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")])
            == "continuation-token=1ueGcxLPRx1Tr%2FXYExHnhbYLgveDs2J%2Fwm36Hy4vbOwM%3D")
        #expect(S3Encoding.encode("crm/2026 ü~_-.x", keepingSlashes: true) == "crm/2026%20%C3%BC~_-.x")
        #expect(S3Encoding.encode("a/b") == "a%2Fb")
    }

    @Test func resolvesAddressing() {
        let custom = S3Endpoint.resolve(endpoint: URL(string: "https://minio.local:9000"), bucket: "b", region: "us-east-1", pathStyle: nil)
        #expect(custom.isPathStyle && custom.hostHeader == "minio.local:9000")
        #expect(custom.canonicalURI(bucket: "b", key: "p/x y") == "/b/p/x%20y")
        #expect(custom.canonicalURI(bucket: "b", key: nil) == "/b")
        let virtual = S3Endpoint.resolve(endpoint: URL(string: "https://r2.example"), bucket: "b", region: "auto", pathStyle: false)
        #expect(!virtual.isPathStyle && virtual.hostHeader == "b.r2.example" && virtual.canonicalURI(bucket: "b", key: nil) == "/")
        let aws = S3Endpoint.resolve(endpoint: nil, bucket: "backups", region: "eu-west-1", pathStyle: nil)
        #expect(aws == S3Endpoint(scheme: "https", host: "backups.s3.eu-west-1.amazonaws.com", port: nil, isPathStyle: false, basePath: ""))
        let dotted = S3Endpoint.resolve(endpoint: nil, bucket: "my.backups", region: "us-east-1", pathStyle: nil)
        #expect(dotted.isPathStyle && dotted.host == "s3.us-east-1.amazonaws.com")
    }

    @Test func md5MatchesTheRFC1321TestSuite() {
        let vectors = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            (String(repeating: "1234567890", count: 8), "57edf4a22be3c955ac49da2e2107b67a"),
        ]
        for (input, expected) in vectors {
            #expect(S3Hash.hex(MD5.digest(Data(input.utf8))) == expected, "MD5(\"\(input)\")")
        }
    }

    @Test func md5OfChunksEqualsMD5OfTheWhole() {
        var generator = SplitMix64(seed: 3)
        let data = Data((0..<10_000).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        for chunk in [1, 7, 63, 64, 65, 1000] {
            var md5 = MD5()
            var offset = 0
            while offset < data.count {
                let end = min(offset + chunk, data.count)
                data[offset..<end].withUnsafeBytes { md5.update($0) }
                offset = end
            }
            #expect(md5.finalize() == MD5.digest(data), "chunks of \(chunk)")
        }
        // Padding edge cases: messages of 55, 56 and 64 bytes.
        #expect(S3Hash.hex(MD5.digest(Data(repeating: 0x61, count: 55))) == "ef1772b6dff9a122358552954ad0df65")
        #expect(S3Hash.hex(MD5.digest(Data(repeating: 0x61, count: 56))) == "3b0c8ac703f828b04c6c197006d17218")
        #expect(S3Hash.hex(MD5.digest(Data(repeating: 0x61, count: 64))) == "014842d480b571495a4a0363793f7367")
    }

    @Test func readsAListObjectsV2PageWithAContinuationToken() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Name>bucket</Name><Prefix>backups/crm/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
              <IsTruncated>true</IsTruncated>
              <Contents><Key>backups/crm/20261122T031700Z-manual.sqlite3.gz.age</Key>
                <LastModified>2026-11-22T03:17:05.000Z</LastModified><ETag>&quot;abc&quot;</ETag>
                <Size>12345</Size><StorageClass>STANDARD</StorageClass></Contents>
              <Contents><Key>backups/crm/a&amp;b &lt;c&gt; &#233;.bin</Key><LastModified>2026-11-22T03:18:00Z</LastModified><Size>0</Size></Contents>
              <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
              <!-- a comment --><Owner/>
            </ListBucketResult>
            """
        let page = try #require(S3ListPage.parse(Data(xml.utf8)))
        #expect(page.isTruncated)
        #expect(page.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        #expect(page.objects.map(\.key) == ["backups/crm/20261122T031700Z-manual.sqlite3.gz.age", "backups/crm/a&b <c> é.bin"])
        #expect(page.objects.map(\.size) == [12345, 0])
        #expect(page.objects[0].modified == Date(timeIntervalSince1970: 1_795_317_425))
        #expect(page.objects[1].modified == Date(timeIntervalSince1970: 1_795_317_480))

        let last = try #require(S3ListPage.parse(Data("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>".utf8)))
        #expect(!last.isTruncated && last.objects.isEmpty && last.nextContinuationToken == nil)
        #expect(S3ListPage.parse(Data("<ListBucketResult><Contents><Key>x</Key></Contents></ListBucketResult>".utf8)) == nil,
                "an entry without a size is an unreadable page, not a skipped object")
        #expect(S3ListPage.parse(Data("<ListBucketResult><Contents>".utf8)) == nil, "a cut-off page is unreadable")
    }

    @Test func readsErrorBodiesAndUploadListings() throws {
        let error = """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message>
            <StringToSign>AWS4-HMAC-SHA256…</StringToSign><RequestId>4442587FB7D0A2F9</RequestId></Error>
            """
        #expect(S3ErrorBody.parse(Data(error.utf8)) == S3ErrorBody(code: "SignatureDoesNotMatch",
                                                                     message: "The request signature we calculated does not match the signature you provided."))
        #expect(S3ErrorBody.parse(Data("<html>bad gateway</html>".utf8)) == nil)
        #expect(S3ErrorBody.parse(Data()) == nil)
        let uploads = """
            <ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>p/b</NextKeyMarker><NextUploadIdMarker>id2</NextUploadIdMarker>
            <Upload><Key>p/a</Key><UploadId>id1</UploadId><Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
            <Upload><Key>p/b</Key><UploadId>id2</UploadId><Initiated>2010-11-10T20:48:34.000Z</Initiated></Upload></ListMultipartUploadsResult>
            """
        let page = try #require(S3UploadsPage.parse(Data(uploads.utf8)))
        #expect(page.uploads.map(\.uploadID) == ["id1", "id2"])
        #expect(page.isTruncated && page.nextKeyMarker == "p/b" && page.nextUploadIDMarker == "id2")
    }

    @Test func partSizeIsAtLeastFiveMiBAndGrowsToCoverLargeObjects() {
        #expect(S3PartSizing.partSize(configured: nil, expectedSize: nil) == 16 << 20)
        #expect(S3PartSizing.partSize(configured: 1 << 20, expectedSize: nil) == 5 << 20)
        #expect(S3PartSizing.partSize(configured: nil, expectedSize: 200 << 20) == 5 << 20, "known size: the smallest parts")
        #expect(S3PartSizing.partSize(configured: nil, expectedSize: 48 << 30) == 5 << 20)
        #expect(S3PartSizing.partSize(configured: 8 << 20, expectedSize: 1 << 30) == 8 << 20)
        let large: Int64 = 200 << 30
        let grown = S3PartSizing.partSize(configured: nil, expectedSize: large)
        #expect(grown == 21 << 20)
        #expect(Int64(grown) * 10_000 >= large && Int64(grown - (1 << 20)) * 10_000 < large)
        #expect(S3PartSizing.partSize(configured: nil, expectedSize: 1 << 50) == 5 << 30, "capped at S3's largest part")
    }

    @Test func classifiesWhatIsWorthRetrying() {
        for status in [500, 502, 503, 504, 408, 429] { #expect(HTTPRetryClassification.isRetryable(status: status), "\(status)") }
        for status in [400, 401, 403, 404, 409, 412] { #expect(!HTTPRetryClassification.isRetryable(status: status), "\(status)") }
        for code in [6, 7, 28, 52, 55, 56] { #expect(HTTPRetryClassification.isRetryable(curlCode: code), "curl \(code)") }
        for code in [1, 3, 23, 42, 60, 77] { #expect(!HTTPRetryClassification.isRetryable(curlCode: code), "curl \(code)") }

        func classify(_ code: String, _ status: Int) -> TargetError {
            S3Client.classify(code: code, status: status, target: "s3", operation: "list", detail: code)
        }
        #expect(classify("SignatureDoesNotMatch", 403) == .authentication(target: "s3", detail: "list: SignatureDoesNotMatch"))
        #expect(classify("InvalidAccessKeyId", 403).isPermanent)
        #expect(classify("RequestTimeTooSkewed", 403).hint?.contains("clock") == true)
        #expect(classify("AuthorizationHeaderMalformed", 400).hint?.contains("region") == true)
        #expect(classify("NoSuchBucket", 404).hint?.contains("bucket") == true)
        #expect(!classify("SlowDown", 503).isPermanent)
        #expect(!classify("InternalError", 500).isPermanent)
        #expect(!classify("ServiceUnavailable", 503).isPermanent)
        #expect(classify("InvalidArgument", 400).isPermanent)
        #expect(!classify("HTTP502", 502).isPermanent)
    }

    @Test func retryWaitsGrowAndAreCapped() throws {
        let policy = RetryPolicy(maximumAttempts: 4, initialDelay: .milliseconds(1), maximumDelay: .milliseconds(4))
        #expect(policy.delayCap(afterAttempt: 1) == .milliseconds(1))
        #expect(policy.delayCap(afterAttempt: 2) == .milliseconds(2))
        #expect(policy.delayCap(afterAttempt: 3) == .milliseconds(4))
        #expect(policy.delayCap(afterAttempt: 10) == .milliseconds(4))
        var generator = SplitMix64(seed: 1)
        for attempt in 1...5 { #expect(policy.delay(afterAttempt: attempt, using: &generator) <= policy.delayCap(afterAttempt: attempt)) }
    }

    @Test func errorsNeverCarryTheSecret() {
        let client = S3Client(targetName: "s3", bucket: "b",
                              endpoint: S3Endpoint.resolve(endpoint: URL(string: "http://127.0.0.1:1"), bucket: "b", region: "r", pathStyle: nil),
                              signer: SigV4Signer(accessKeyId: "AKID", secretAccessKey: Secret("very-secret-value"), sessionToken: nil, region: "r"),
                              http: HTTPClient(), retryPolicy: RetryPolicy(maximumAttempts: 1))
        let body = "<Error><Code>AccessDenied</Code><Message>key very-secret-value is wrong</Message></Error>"
        let error = client.failure(HTTPResponse(status: 403, body: Data(body.utf8)), operation: "list")
        #expect(!error.message.contains("very-secret-value"))
        #expect(error.message.contains("AccessDenied") && error.message.contains("target s3"))
    }

    @Test func connectionFailuresAreRetryableTargetErrors() throws {
        // Nothing listens on port 1: a refused connection is transient, named, and retried.
        var settings = S3TargetSettings(bucket: "b", prefix: "p")
        settings.endpoint = URL(string: "http://127.0.0.1:1")
        settings.credentials = S3Credentials(accessKeyId: "AKID", secretAccessKey: Secret("secret-for-test"))
        let target = try S3Target(name: "nowhere", settings: settings,
                                  retryPolicy: RetryPolicy(maximumAttempts: 2, initialDelay: .milliseconds(1)), control: RequestControl())
        do {
            _ = try target.list(prefix: "")
            Issue.record("listing an unreachable endpoint must fail")
        } catch let error as TargetError {
            #expect(!error.isPermanent)
            #expect(error.message.hasPrefix("target nowhere: list / failed:"), "\(error.message)")
            #expect(error.message.contains("curl error 7"))
        }
    }

    @Test func refusesToOpenWithoutCredentials() {
        let config = TargetConfig(name: "s3", url: "s3://b", location: .s3(bucket: "b", prefix: ""))
        #expect(throws: TargetError.self) { try S3Target(config: config) }
        #expect(throws: Never.self) { _ = try makeTarget(config.with(credentials: ("AKID", "secret"))) }
    }
}

private extension TargetConfig {
    func with(credentials: (String, String)) -> TargetConfig {
        guard var settings = store.s3 else { return self }
        settings.credentials = S3Credentials(accessKeyId: credentials.0, secretAccessKey: Secret(credentials.1))
        return TargetConfig(name: name, url: url, store: .s3(settings))
    }
}
