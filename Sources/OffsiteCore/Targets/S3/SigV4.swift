import Foundation

/// SHA-256 and HMAC-SHA256 (from the libsodium wrapper, `AgePrimitives`) for request signing and
/// payload hashes.
enum S3Hash {
    /// The SHA-256 of `bytes`.
    static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        AgePrimitives.sha256(bytes)
    }

    /// The SHA-256 of `data`.
    static func sha256(_ data: Data) -> [UInt8] {
        data.withUnsafeBytes { sha256($0) }
    }

    /// HMAC-SHA256 of `message` under `key` of any length.
    static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        AgePrimitives.hmacSHA256(key: key, message)
    }

    /// Lower-case hexadecimal.
    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 15)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The hex SHA-256 of an empty payload.
    static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}

/// Percent-encoding as SigV4 and S3 want it: everything but the RFC 3986 unreserved characters
/// is `%XX` with upper-case hex; the same text is used on the wire and in the signature.
enum S3Encoding {
    /// Encodes `text`; `/` stays as it is when `keepingSlashes` (object key paths), else `%2F`.
    static func encode(_ text: String, keepingSlashes: Bool = false) -> String {
        let hexDigits = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: "/") where keepingSlashes:
                out.append(byte)
            default:
                out += [UInt8(ascii: "%"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The canonical query string: names and values encoded, sorted by name then value, `name=value`
    /// joined by `&` (a parameter without a value is `name=`). Send exactly this on the wire.
    static func canonicalQuery(_ parameters: [(name: String, value: String)]) -> String {
        let encoded: [(name: String, value: String)] = parameters.map { (encode($0.name), encode($0.value)) }
        let sorted = encoded.sorted { (left, right) -> Bool in
            left.name == right.name ? left.value < right.value : left.name < right.name
        }
        return sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }
}

/// AWS Signature Version 4 for S3 with a signed payload hash (no chunked or unsigned modes).
struct SigV4Signer: Sendable {
    /// The access key id (not secret; it names the key).
    let accessKeyId: String
    /// The secret access key.
    let secretAccessKey: Secret
    /// The session token of temporary credentials, sent as `x-amz-security-token`.
    let sessionToken: Secret?
    /// The signing region (`us-east-1`, `auto`, …).
    let region: String
    /// The signing service.
    var service = "s3"

    /// `20130524T000000Z` for `date`, in UTC.
    static func timestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    /// The headers to add to a request: `x-amz-date`, `x-amz-content-sha256`, the session token
    /// when there is one, and `Authorization`. `headers` must hold every other header to sign
    /// (`host` first of all); `canonicalURI` is the encoded path as sent, `canonicalQuery` the
    /// query string as sent (see `S3Encoding.canonicalQuery`).
    func signedHeaders(method: String, canonicalURI: String, canonicalQuery: String,
                       headers: [(name: String, value: String)], payloadHash: String, date: Date) -> [(name: String, value: String)] {
        let stamp = Self.timestamp(date)
        var added: [(name: String, value: String)] = [("x-amz-content-sha256", payloadHash), ("x-amz-date", stamp)]
        if let sessionToken { added.append(("x-amz-security-token", sessionToken.value)) }
        let request = canonicalRequest(method: method, canonicalURI: canonicalURI, canonicalQuery: canonicalQuery,
                                       headers: headers + added, payloadHash: payloadHash)
        let scope = "\(String(stamp.prefix(8)))/\(region)/\(service)/aws4_request"
        let toSign = stringToSign(timestamp: stamp, scope: scope, canonicalRequest: request.text)
        let signature = S3Hash.hex(S3Hash.hmacSHA256(key: signingKey(day: String(stamp.prefix(8))), message: Array(toSign.utf8)))
        let authorization = "AWS4-HMAC-SHA256 Credential=\(accessKeyId)/\(scope),SignedHeaders=\(request.signedHeaders),Signature=\(signature)"
        return added + [("Authorization", authorization)]
    }

    /// The canonical request text and its signed-header list.
    func canonicalRequest(method: String, canonicalURI: String, canonicalQuery: String,
                          headers: [(name: String, value: String)], payloadHash: String) -> (text: String, signedHeaders: String) {
        let normalized = headers
            .map { (name: $0.name.lowercased(), value: Self.collapseSpaces($0.value)) }
            .sorted { $0.name < $1.name }
        let canonicalHeaders = normalized.map { "\($0.name):\($0.value)\n" }.joined()
        let signed = normalized.map(\.name).joined(separator: ";")
        let text = [method, canonicalURI, canonicalQuery, canonicalHeaders, signed, payloadHash].joined(separator: "\n")
        return (text, signed)
    }

    /// The string to sign for a canonical request.
    func stringToSign(timestamp: String, scope: String, canonicalRequest: String) -> String {
        "AWS4-HMAC-SHA256\n\(timestamp)\n\(scope)\n\(S3Hash.hex(S3Hash.sha256(Data(canonicalRequest.utf8))))"
    }

    /// The day's signing key: HMAC chain over date, region, service and `aws4_request`.
    func signingKey(day: String) -> [UInt8] {
        var key = S3Hash.hmacSHA256(key: Array("AWS4\(secretAccessKey.value)".utf8), message: Array(day.utf8))
        for part in [region, service, "aws4_request"] {
            key = S3Hash.hmacSHA256(key: key, message: Array(part.utf8))
        }
        return key
    }

    /// Trims a header value and collapses runs of spaces into one, as SigV4 requires.
    private static func collapseSpaces(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
    }
}
