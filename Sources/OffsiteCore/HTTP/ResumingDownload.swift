import Foundation

/// Passes a download (S3 or WebDAV GET) through to the real sink, counting what was delivered so a
/// retry can resume with `Range` where a broken attempt stopped.
final class ResumingDownload: ByteSink {
    let sink: any ByteSink
    /// Bytes handed to the real sink so far.
    private(set) var delivered: Int64 = 0
    /// The object's ETag from the first answer.
    private(set) var etag: String?
    /// Bytes of the current answer still to drop (a full answer to a resumed request).
    private var skipping: Int64 = 0

    let target: String
    let key: String

    init(_ sink: any ByteSink, target: String, key: String) {
        self.sink = sink
        self.target = target
        self.key = key
    }

    /// Works out how many bytes of this answer were delivered before: the start of its
    /// Content-Range when it has one (some servers answer a range with 200), else all of them.
    func receiveHead(status: Int, headers: [(name: String, value: String)]) {
        guard (200..<300).contains(status) else { return }
        if etag == nil {
            // A weak ETag cannot be used with If-Match.
            etag = headers.first { $0.name == "etag" }?.value.trimmingCharacters(in: .whitespaces)
            if etag?.hasPrefix("W/") == true { etag = nil }
        }
        let range = headers.first { $0.name == "content-range" }?.value
        skipping = delivered - (range.flatMap(Self.rangeStart) ?? 0)
    }

    /// The first byte of `bytes START-END/TOTAL`.
    static func rangeStart(_ contentRange: String) -> Int64? {
        guard contentRange.hasPrefix("bytes ") else { return nil }
        return Int64(contentRange.dropFirst(6).prefix { $0.isNumber })
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard skipping >= 0 else {
            throw TargetError.failed(target: target, operation: "download \(key)",
                                     detail: "the server answered a resumed download with a later range", hint: nil, isPermanent: true)
        }
        var bytes = bytes
        if skipping > 0 {
            let dropped = Int(min(skipping, Int64(bytes.count)))
            skipping -= Int64(dropped)
            bytes = UnsafeRawBufferPointer(rebasing: bytes[dropped...])
            if bytes.isEmpty { return }
        }
        try sink.write(bytes)
        delivered += Int64(bytes.count)
    }

    func finish() throws {}
}
