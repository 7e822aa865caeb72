import Foundation

/// One XML element with its namespace resolved: servers pick any prefix for `DAV:` (`D:`, `d:`,
/// `ns0:`, `lp1:`, or none with a default namespace), so elements are matched on namespace and
/// local name, never on the prefix.
struct NamespacedElement: Equatable {
    /// The namespace URI, or empty when the element has none.
    var namespace: String
    /// The name without its prefix.
    var name: String
    /// The text directly inside the element, entities decoded.
    var text = ""
    /// Child elements in document order.
    var children: [NamespacedElement] = []

    /// The `DAV:` namespace.
    static let dav = "DAV:"

    /// The first child called `name` in `namespace`.
    func child(_ name: String, namespace: String = NamespacedElement.dav) -> NamespacedElement? {
        children.first { $0.name == name && $0.namespace == namespace }
    }

    /// Every child called `name` in `namespace`.
    func children(_ name: String, namespace: String = NamespacedElement.dav) -> [NamespacedElement] {
        children.filter { $0.name == name && $0.namespace == namespace }
    }
}

/// A small namespace-aware XML reader for WebDAV answers: elements, attributes (for `xmlns`
/// declarations), text, entities and CDATA; it skips declarations, comments, processing
/// instructions and a DOCTYPE. Not a validating parser.
enum NamespacedXMLReader {
    /// Parses `data` and returns the root element, or nil when it is not well-formed enough.
    static func parse(_ data: Data) -> NamespacedElement? {
        let bytes = [UInt8](data)
        var stack: [(element: NamespacedElement, qualifiedName: String, scope: [String: String])] = []
        var root: NamespacedElement?
        var index = 0
        let lessThan = UInt8(ascii: "<")

        func append(_ element: NamespacedElement) {
            if stack.isEmpty { root = element } else { stack[stack.count - 1].element.children.append(element) }
        }

        while index < bytes.count {
            if bytes[index] != lessThan {
                let start = index
                while index < bytes.count, bytes[index] != lessThan { index += 1 }
                if !stack.isEmpty { stack[stack.count - 1].element.text += decodeEntities(bytes[start..<index]) }
                continue
            }
            if matches(bytes, at: index, "<![CDATA[") {
                guard let end = find(bytes, "]]>", from: index + 9) else { return nil }
                if !stack.isEmpty { stack[stack.count - 1].element.text += String(decoding: bytes[(index + 9)..<end], as: UTF8.self) }
                index = end + 3
                continue
            }
            if matches(bytes, at: index, "<!--") {
                guard let end = find(bytes, "-->", from: index + 4) else { return nil }
                index = end + 3
                continue
            }
            if matches(bytes, at: index, "<?") {
                guard let end = find(bytes, "?>", from: index + 2) else { return nil }
                index = end + 2
                continue
            }
            if matches(bytes, at: index, "<!") {
                // A DOCTYPE, possibly with an internal subset in brackets.
                guard var end = find(bytes, ">", from: index) else { return nil }
                if let bracket = find(bytes, "[", from: index), bracket < end {
                    guard let subsetEnd = find(bytes, "]", from: bracket), let after = find(bytes, ">", from: subsetEnd) else { return nil }
                    end = after
                }
                index = end + 1
                continue
            }
            guard let close = tagEnd(bytes, from: index + 1) else { return nil }
            let inner = bytes[(index + 1)..<close]
            index = close + 1
            if inner.first == UInt8(ascii: "/") {
                let name = String(decoding: inner.dropFirst(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                guard let open = stack.popLast(), open.qualifiedName == name else { return nil }
                var finished = open.element
                finished.text = finished.text.trimmingCharacters(in: .whitespacesAndNewlines)
                append(finished)
                continue
            }
            let selfClosing = inner.last == UInt8(ascii: "/")
            guard let tag = parseTag(selfClosing ? inner.dropLast() : inner) else { return nil }
            var scope = stack.last?.scope ?? ["xml": "http://www.w3.org/XML/1998/namespace"]
            for (attribute, value) in tag.attributes {
                if attribute == "xmlns" {
                    scope[""] = value
                } else if attribute.hasPrefix("xmlns:") {
                    scope[String(attribute.dropFirst(6))] = value
                }
            }
            let prefix: String
            let localName: String
            if let colon = tag.name.firstIndex(of: ":") {
                prefix = String(tag.name[..<colon])
                localName = String(tag.name[tag.name.index(after: colon)...])
            } else {
                prefix = ""
                localName = tag.name
            }
            let element = NamespacedElement(namespace: scope[prefix] ?? "", name: localName)
            if selfClosing {
                append(element)
            } else {
                stack.append((element, tag.name, scope))
            }
        }
        return stack.isEmpty ? root : nil
    }

    /// The index of the `>` that ends the tag starting at `start`, skipping quoted attribute values.
    private static func tagEnd(_ bytes: [UInt8], from start: Int) -> Int? {
        var quote: UInt8?
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            if let open = quote {
                if byte == open { quote = nil }
            } else if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                quote = byte
            } else if byte == UInt8(ascii: ">") {
                return index
            }
            index += 1
        }
        return nil
    }

    /// The name and attributes inside a start tag.
    private static func parseTag(_ inner: ArraySlice<UInt8>) -> (name: String, attributes: [(String, String)])? {
        let text = Array(inner)
        var index = 0
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        while index < text.count, !isSpace(text[index]) { index += 1 }
        let name = String(decoding: text[0..<index], as: UTF8.self)
        guard !name.isEmpty else { return nil }
        var attributes: [(String, String)] = []
        while true {
            while index < text.count, isSpace(text[index]) { index += 1 }
            guard index < text.count else { break }
            let nameStart = index
            while index < text.count, text[index] != UInt8(ascii: "="), !isSpace(text[index]) { index += 1 }
            let attribute = String(decoding: text[nameStart..<index], as: UTF8.self)
            while index < text.count, isSpace(text[index]) { index += 1 }
            guard index < text.count, text[index] == UInt8(ascii: "=") else { return nil }
            index += 1
            while index < text.count, isSpace(text[index]) { index += 1 }
            guard index < text.count, text[index] == UInt8(ascii: "\"") || text[index] == UInt8(ascii: "'") else { return nil }
            let quote = text[index]
            index += 1
            let valueStart = index
            while index < text.count, text[index] != quote { index += 1 }
            guard index < text.count else { return nil }
            attributes.append((attribute, decodeEntities(text[valueStart..<index])))
            index += 1
        }
        return (name, attributes)
    }

    /// Text with the five predefined entities and numeric character references decoded.
    static func decodeEntities<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.contains("&") else { return text }
        var result = ""
        var rest = text[...]
        while let ampersand = rest.firstIndex(of: "&") {
            result += rest[..<ampersand]
            guard let semicolon = rest[ampersand...].firstIndex(of: ";"),
                  rest.distance(from: ampersand, to: semicolon) <= 10 else {
                result += "&"
                rest = rest[rest.index(after: ampersand)...]
                continue
            }
            let entity = rest[rest.index(after: ampersand)..<semicolon]
            var replacement: String?
            switch entity {
            case "lt": replacement = "<"
            case "gt": replacement = ">"
            case "amp": replacement = "&"
            case "quot": replacement = "\""
            case "apos": replacement = "'"
            default:
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    replacement = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String(Character($0)) }
                } else if entity.hasPrefix("#") {
                    replacement = UInt32(entity.dropFirst()).flatMap(Unicode.Scalar.init).map { String(Character($0)) }
                }
            }
            if let replacement {
                result += replacement
                rest = rest[rest.index(after: semicolon)...]
            } else {
                result += "&"
                rest = rest[rest.index(after: ampersand)...]
            }
        }
        return result + rest
    }

    private static func matches(_ bytes: [UInt8], at index: Int, _ literal: String) -> Bool {
        let pattern = Array(literal.utf8)
        guard index + pattern.count <= bytes.count else { return false }
        for offset in 0..<pattern.count where bytes[index + offset] != pattern[offset] { return false }
        return true
    }

    private static func find(_ bytes: [UInt8], _ literal: String, from start: Int) -> Int? {
        let pattern = Array(literal.utf8)
        var index = start
        while index + pattern.count <= bytes.count {
            if matches(bytes, at: index, literal) { return index }
            index += 1
        }
        return nil
    }
}

/// One resource of a PROPFIND answer.
struct DAVResource: Equatable {
    /// The href exactly as the server sent it (entities decoded).
    var href: String
    /// The path the href names, percent-decoded, without a trailing `/` (the root is `/`).
    var path: String
    /// Whether it is a collection (a folder): its resourcetype says so or its href ends in `/`.
    var isCollection: Bool
    /// `getcontentlength`, when reported.
    var size: Int64?
    /// `getlastmodified`, when reported and readable.
    var modified: Date?

    /// The last path segment (the resource's own name), empty for the root.
    var name: String {
        path == "/" ? "" : String(path[path.index(after: path.lastIndex(of: "/") ?? path.startIndex)...])
    }
}

/// Reads a 207 Multi-Status answer to PROPFIND.
enum DAVMultistatus {
    /// The body asking for only the properties the target needs: less work for servers that
    /// compute quotas or locks for `allprop`.
    static let propfindBody = Data("""
        <?xml version="1.0" encoding="utf-8"?>
        <D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>
        """.utf8)

    /// The resources in `data`, or nil when it is not a `DAV:multistatus` document. Responses
    /// whose status is not 2xx, and properties in a non-2xx propstat, are left out.
    /// `requestPath` (percent-decoded) resolves relative hrefs.
    static func parse(_ data: Data, requestPath: String) -> [DAVResource]? {
        guard let root = NamespacedXMLReader.parse(data), root.name == "multistatus", root.namespace == NamespacedElement.dav else {
            return nil
        }
        var resources: [DAVResource] = []
        for response in root.children("response") {
            guard let href = response.child("href")?.text, !href.isEmpty,
                  let path = decodedPath(ofHref: href, requestPath: requestPath) else { continue }
            if let status = response.child("status"), !isSuccess(status.text) { continue }
            var resource = DAVResource(href: href, path: normalized(path), isCollection: path.hasSuffix("/") && path != "/")
            for propstat in response.children("propstat") {
                if let status = propstat.child("status"), !isSuccess(status.text) { continue }
                guard let properties = propstat.child("prop") else { continue }
                if let type = properties.child("resourcetype"), type.child("collection") != nil {
                    resource.isCollection = true
                }
                if let length = properties.child("getcontentlength"), let size = Int64(length.text) {
                    resource.size = size
                }
                if let modified = properties.child("getlastmodified") {
                    resource.modified = HTTPDate.parse(modified.text)
                }
            }
            resources.append(resource)
        }
        return resources
    }

    /// Whether a status line (`HTTP/1.1 200 OK`) is 2xx.
    static func isSuccess(_ statusLine: String) -> Bool {
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let code = Int(parts[1]) else { return false }
        return (200..<300).contains(code)
    }

    /// The percent-decoded path of an href: an absolute URL (`http://host/dav/a%20b`), an
    /// absolute path (`/dav/a%20b`) or, rarely, a path relative to `requestPath`.
    static func decodedPath(ofHref href: String, requestPath: String) -> String? {
        var text = href.trimmingCharacters(in: .whitespacesAndNewlines)
        if let schemeEnd = text.range(of: "://") {
            let afterScheme = text[schemeEnd.upperBound...]
            text = afterScheme.firstIndex(of: "/").map { String(afterScheme[$0...]) } ?? "/"
        }
        if let end = text.firstIndex(where: { $0 == "?" || $0 == "#" }) { text = String(text[..<end]) }
        let decoded = text.removingPercentEncoding ?? text
        if decoded.hasPrefix("/") { return decoded }
        let base = requestPath.hasSuffix("/") ? requestPath : requestPath + "/"
        return base + decoded
    }

    /// `path` with runs of `/` collapsed and no trailing `/` (the root stays `/`).
    static func normalized(_ path: String) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        return "/" + parts.joined(separator: "/")
    }
}

/// HTTP dates as servers write `getlastmodified`: RFC 1123 (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`), asctime (`Sun Nov  6 08:49:37 1994`), and
/// ISO 8601 from servers that ignore the RFC.
enum HTTPDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// The date `text` names, or nil.
    static func parse(_ text: String) -> Date? {
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" }).map(String.init)
        var month: Int?
        var time: [Int]?
        var numbers: [String] = []
        for token in tokens {
            if let index = months.firstIndex(of: token.prefix(3).lowercased()), token.count >= 3, Int(token) == nil {
                month = index + 1
            } else if token.contains(":") {
                let parts = token.split(separator: ":").compactMap { Int($0) }
                if parts.count == 3 { time = parts }
            } else if token.allSatisfy(\.isNumber) {
                numbers.append(token)
            }
        }
        guard let month, let time, numbers.count == 2 else { return parseISO8601(text) }
        let yearText = numbers.first { $0.count == 4 } ?? numbers[1]
        guard let dayText = numbers.first(where: { $0 != yearText }) ?? (numbers[0] == numbers[1] ? numbers[0] : nil),
              let day = Int(dayText), var year = Int(yearText) else { return nil }
        if yearText.count == 2 { year += year >= 70 ? 1900 : 2000 }
        var components = DateComponents()
        components.year = year
        components.month = month
        components.day = day
        components.hour = time[0]
        components.minute = time[1]
        components.second = time[2]
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: components)
    }

    private static func parseISO8601(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}
