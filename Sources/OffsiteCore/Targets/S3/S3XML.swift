import Foundation

/// One element of a small XML document: its local name, text and child elements.
struct XMLNode: Equatable {
    /// The element name without a namespace prefix.
    var name: String
    /// The text directly inside the element, entities decoded.
    var text = ""
    /// Child elements in document order.
    var children: [XMLNode] = []

    /// The first child called `name`.
    func child(_ name: String) -> XMLNode? { children.first { $0.name == name } }
    /// Every child called `name`.
    func children(_ name: String) -> [XMLNode] { children.filter { $0.name == name } }
    /// The text of the first child called `name`.
    func text(of name: String) -> String? { child(name)?.text }
}

/// A small XML reader for the few S3 response shapes used here: elements, text, entities,
/// CDATA; it skips the declaration, comments and attributes. Not a validating parser.
enum XMLReader {
    /// Parses `data` and returns the root element, or nil when it is not well-formed enough.
    static func parse(_ data: Data) -> XMLNode? {
        let bytes = [UInt8](data)
        var stack: [XMLNode] = []
        var root: XMLNode?
        var index = 0
        while index < bytes.count {
            if bytes[index] != UInt8(ascii: "<") {
                let start = index
                while index < bytes.count, bytes[index] != UInt8(ascii: "<") { index += 1 }
                if !stack.isEmpty { stack[stack.count - 1].text += decodeEntities(bytes[start..<index]) }
                continue
            }
            if matches(bytes, at: index, "<![CDATA[") {
                guard let end = find(bytes, "]]>", from: index + 9) else { return nil }
                if !stack.isEmpty { stack[stack.count - 1].text += String(decoding: bytes[(index + 9)..<end], as: UTF8.self) }
                index = end + 3
                continue
            }
            if matches(bytes, at: index, "<!--") {
                guard let end = find(bytes, "-->", from: index + 4) else { return nil }
                index = end + 3
                continue
            }
            guard let close = find(bytes, ">", from: index) else { return nil }
            let inner = bytes[(index + 1)..<close]
            index = close + 1
            guard let first = inner.first, first != UInt8(ascii: "?"), first != UInt8(ascii: "!") else { continue }
            if first == UInt8(ascii: "/") {
                guard var finished = stack.popLast(), localName(inner.dropFirst()) == finished.name else { return nil }
                finished.text = finished.text.trimmingCharacters(in: .whitespacesAndNewlines)
                if stack.isEmpty { root = finished } else { stack[stack.count - 1].children.append(finished) }
                continue
            }
            let selfClosing = inner.last == UInt8(ascii: "/")
            let node = XMLNode(name: localName(selfClosing ? inner.dropLast() : inner))
            if selfClosing {
                if stack.isEmpty { root = node } else { stack[stack.count - 1].children.append(node) }
            } else {
                stack.append(node)
            }
        }
        return stack.isEmpty ? root : nil
    }

    /// The tag name from the inside of a tag: up to the first space, without a namespace prefix.
    private static func localName(_ inner: ArraySlice<UInt8>) -> String {
        let name = inner.prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "\r") }
        let text = String(decoding: name, as: UTF8.self)
        if let colon = text.lastIndex(of: ":") { return String(text[text.index(after: colon)...]) }
        return text
    }

    private static func matches(_ bytes: [UInt8], at index: Int, _ literal: String) -> Bool {
        let pattern = Array(literal.utf8)
        return index + pattern.count <= bytes.count && Array(bytes[index..<(index + pattern.count)]) == pattern
    }

    private static func find(_ bytes: [UInt8], _ literal: String, from start: Int) -> Int? {
        let pattern = Array(literal.utf8)
        var index = start
        while index + pattern.count <= bytes.count {
            if bytes[index] == pattern[0], Array(bytes[index..<(index + pattern.count)]) == pattern { return index }
            index += 1
        }
        return nil
    }

    /// Decodes the five named entities and numeric character references.
    static func decodeEntities(_ raw: ArraySlice<UInt8>) -> String {
        let text = String(decoding: raw, as: UTF8.self)
        guard text.contains("&") else { return text }
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else { break }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                var scalar: UInt32?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    scalar = UInt32(entity.dropFirst(2), radix: 16)
                } else if entity.hasPrefix("#") {
                    scalar = UInt32(entity.dropFirst())
                }
                if let scalar, let character = Unicode.Scalar(scalar) {
                    out.unicodeScalars.append(character)
                } else {
                    out += rest[amp...semicolon]
                }
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return out + rest
    }
}

/// One page of a ListObjectsV2 answer.
struct S3ListPage: Equatable {
    /// The objects on this page, keys as the bucket has them.
    var objects: [RemoteObject]
    /// Whether more pages follow.
    var isTruncated: Bool
    /// The token for the next page, when truncated.
    var nextContinuationToken: String?

    /// Reads a `ListBucketResult` document.
    static func parse(_ data: Data) -> S3ListPage? {
        guard let root = XMLReader.parse(data), root.name == "ListBucketResult" else { return nil }
        var objects: [RemoteObject] = []
        for entry in root.children("Contents") {
            guard let key = entry.text(of: "Key"), let size = entry.text(of: "Size").flatMap({ Int64($0) }) else { return nil }
            objects.append(RemoteObject(key: key, size: size, modified: entry.text(of: "LastModified").flatMap(S3Time.parse)))
        }
        let truncated = root.text(of: "IsTruncated") == "true"
        let token = root.text(of: "NextContinuationToken").flatMap { $0.isEmpty ? nil : $0 }
        return S3ListPage(objects: objects, isTruncated: truncated, nextContinuationToken: token)
    }
}

/// One page of a ListMultipartUploads answer.
struct S3UploadsPage: Equatable {
    /// One open multipart upload.
    struct Upload: Equatable {
        var key: String
        var uploadID: String
        var initiated: Date?
    }

    var uploads: [Upload]
    var isTruncated: Bool
    var nextKeyMarker: String?
    var nextUploadIDMarker: String?

    /// Reads a `ListMultipartUploadsResult` document.
    static func parse(_ data: Data) -> S3UploadsPage? {
        guard let root = XMLReader.parse(data), root.name == "ListMultipartUploadsResult" else { return nil }
        var uploads: [Upload] = []
        for entry in root.children("Upload") {
            guard let key = entry.text(of: "Key"), let id = entry.text(of: "UploadId") else { return nil }
            uploads.append(Upload(key: key, uploadID: id, initiated: entry.text(of: "Initiated").flatMap(S3Time.parse)))
        }
        return S3UploadsPage(uploads: uploads, isTruncated: root.text(of: "IsTruncated") == "true",
                             nextKeyMarker: root.text(of: "NextKeyMarker"), nextUploadIDMarker: root.text(of: "NextUploadIdMarker"))
    }
}

/// An S3 `<Error>` body.
struct S3ErrorBody: Equatable {
    /// The S3 error code (`SignatureDoesNotMatch`, `NoSuchKey`, …).
    var code: String
    /// The server's message, or empty.
    var message: String

    /// Reads an `Error` document, or nil when `data` is not one.
    static func parse(_ data: Data) -> S3ErrorBody? {
        guard let root = XMLReader.parse(data), root.name == "Error", let code = root.text(of: "Code"), !code.isEmpty else { return nil }
        return S3ErrorBody(code: code, message: root.text(of: "Message") ?? "")
    }
}

/// S3 timestamps (`2009-10-12T17:50:30.000Z`).
enum S3Time {
    /// Parses an ISO 8601 timestamp with or without fractional seconds.
    static func parse(_ text: String) -> Date? {
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = withFraction.date(from: text) { return date }
        return ISO8601DateFormatter().date(from: text)
    }
}
