import CCurl
import Foundation

/// A small blocking HTTP client on libcurl: one request at a time per call, any number of calls
/// in parallel from different threads. Idle connections are kept for reuse. libcurl's proxy
/// environment variables (`https_proxy`, `no_proxy`, …) apply as usual.
///
/// With credentials, the first request goes without them and the server's 401 names its
/// scheme; the client keeps it, so later requests carry credentials at once (Basic), or with
/// the Digest nonce the handle already holds: one round trip instead of two.
///
/// `perform` blocks the calling thread: call it from a dedicated thread, never from the Swift
/// concurrency pool. A `Cancellation` given to `perform` aborts the transfer within about a
/// tenth of a second of being raised: the transfer is driven in steps of at most 100 ms, and
/// libcurl's progress callback, called at each step, stops it.
public final class HTTPClient: @unchecked Sendable {
    /// The linked libcurl's version (`7.88.1`).
    public static var libraryVersion: String { String(cString: offsite_curl_version()) }

    /// The settings every request uses.
    public let options: HTTPClientOptions
    private let lock = NSLock()
    private var idleHandles: [CurlHandle] = []
    private var learnedScheme: HTTPAuthenticationScheme?

    /// Creates a client.
    public init(options: HTTPClientOptions = HTTPClientOptions()) {
        _ = HTTPClient.globalInitialization
        self.options = options
    }

    private static let globalInitialization: Void = { _ = offsite_curl_global_init() }()

    /// Sends `request` and waits for the whole response. With a `sink`, a 2xx body is streamed
    /// into it (without finishing it) and any other body is collected into the response, so an
    /// error body never reaches the sink. `onHead` sees the final status and headers before any
    /// body byte. Throws `HTTPTransportError` when no complete response arrived,
    /// `OperationCancelled` when `cancellation` was raised, and rethrows what the sink threw.
    public func perform(_ request: HTTPRequest, streamingInto sink: (any ByteSink)? = nil,
                        onHead: ((_ status: Int, _ headers: [(name: String, value: String)]) -> Void)? = nil,
                        cancellation: Cancellation? = nil) throws -> HTTPResponse {
        try cancellation?.check()
        let curl = try takeHandle()
        let handle = curl.easy
        var reusable = true
        defer { giveBack(curl, reusable: reusable) }

        let transfer = Transfer(body: request.body, sink: sink, collectedBodyLimit: options.collectedBodyLimit, onHead: onHead,
                                cancellation: cancellation)
        try transfer.openBody()
        defer { transfer.closeBody() }

        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }
        // The handle outlives this request: it must not keep pointers to what is freed here.
        defer {
            _ = offsite_curl_setopt_list(handle, CURLOPT_HTTPHEADER, nil)
            _ = offsite_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, nil)
        }
        for header in request.headers {
            headerList = curl_slist_append(headerList, "\(header.name): \(header.value)")
        }
        // No `Expect: 100-continue` round trip: some stores handle it badly and it costs a wait.
        headerList = curl_slist_append(headerList, "Expect:")

        let context = Unmanaged.passUnretained(transfer).toOpaque()
        // Handles are reused without curl_easy_reset, which would forget the Digest nonce and the
        // scheme picked: every option a request may set is set here, to its default if unused.
        var setup: [CURLcode] = [
            offsite_curl_setopt_long(handle, CURLOPT_HTTPGET, 1),
            offsite_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, nil),
            offsite_curl_setopt_offset(handle, CURLOPT_INFILESIZE_LARGE, -1),
            offsite_curl_setopt_data_function(handle, CURLOPT_READFUNCTION, readCallback),
            offsite_curl_setopt_pointer(handle, CURLOPT_READDATA, context),
            offsite_curl_setopt_seek_function(handle, seekCallback),
            offsite_curl_setopt_pointer(handle, CURLOPT_SEEKDATA, context),
            offsite_curl_setopt_string(handle, CURLOPT_URL, request.url),
            offsite_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1),
            offsite_curl_setopt_long(handle, CURLOPT_PATH_AS_IS, 1),
            offsite_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0),
            offsite_curl_setopt_list(handle, CURLOPT_HTTPHEADER, headerList),
            offsite_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(options.connectTimeout)),
            offsite_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1),
            offsite_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, max(1, milliseconds(options.stallTimeout) / 1000)),
            offsite_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, options.totalTimeout.map(milliseconds) ?? 0),
            offsite_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, options.verifiesTLS ? 1 : 0),
            offsite_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, options.verifiesTLS ? 2 : 0),
            offsite_curl_setopt_data_function(handle, CURLOPT_HEADERFUNCTION, headerCallback),
            offsite_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, context),
            offsite_curl_setopt_data_function(handle, CURLOPT_WRITEFUNCTION, writeCallback),
            offsite_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context),
            offsite_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0),
            offsite_curl_setopt_progress_function(handle, progressCallback),
            offsite_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, context),
        ]
        if let credentials = options.credentials {
            // One scheme, once learned: libcurl then sends credentials without asking first.
            let scheme = authenticationScheme
            let basic = scheme.map { $0 == .basic } ?? credentials.allowsBasic
            let digest = scheme.map { $0 == .digest } ?? credentials.allowsDigest
            setup += [
                offsite_curl_setopt_string(handle, CURLOPT_USERNAME, credentials.username),
                offsite_curl_setopt_string(handle, CURLOPT_PASSWORD, credentials.password.value),
                offsite_curl_setopt_long(handle, CURLOPT_HTTPAUTH, Int(offsite_curl_auth_mask(basic ? 1 : 0, digest ? 1 : 0))),
            ]
        }
        let method = request.method.uppercased()
        if method == "HEAD" {
            setup.append(offsite_curl_setopt_long(handle, CURLOPT_NOBODY, 1))
        } else if method == "PUT" || method == "POST" || request.body.length > 0 {
            setup += [
                offsite_curl_setopt_long(handle, CURLOPT_UPLOAD, 1),
                offsite_curl_setopt_offset(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.length)),
            ]
            if method != "PUT" { setup.append(offsite_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)) }
        } else if method != "GET" {
            setup.append(offsite_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method))
        }
        if let failed = setup.first(where: { $0 != CURLE_OK }) {
            reusable = false
            throw HTTPTransportError(code: Int(failed.rawValue), detail: "setting up the request failed: \(curlMessage(failed))",
                                     isRetryable: false)
        }

        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errorBuffer.deallocate() }
        _ = offsite_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)

        let code = curl.perform()
        if let sinkError = transfer.sinkError { throw sinkError }
        if let bodyError = transfer.bodyError { throw bodyError }
        if transfer.wasCancelled {
            reusable = false
            throw OperationCancelled()
        }
        guard code == CURLE_OK else {
            reusable = false
            let detail = String(cString: errorBuffer)
            let message = detail.isEmpty ? curlMessage(code) : detail
            let codeValue = Int(code.rawValue)
            if transfer.collectedTooMuch {
                throw HTTPTransportError(code: codeValue, detail: "the response body is larger than \(options.collectedBodyLimit) bytes",
                                         isRetryable: false)
            }
            throw HTTPTransportError(code: codeValue, detail: message,
                                     isRetryable: HTTPRetryClassification.isRetryable(curlCode: codeValue))
        }
        var status = 0
        _ = offsite_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        if let credentials = options.credentials {
            learnScheme(from: transfer.challenges, finalStatus: status, credentials: credentials)
        }
        return HTTPResponse(status: status, headers: transfer.headers, body: transfer.collected,
                            streamedByteCount: transfer.streamedByteCount)
    }

    /// The scheme the server asked for, once a request has learned it.
    var authenticationScheme: HTTPAuthenticationScheme? {
        lock.lock()
        defer { lock.unlock() }
        return learnedScheme
    }

    /// Keeps the scheme the 401 challenges of a request offered; a request that still ended in
    /// 401 forgets it, so the next one asks the server afresh.
    private func learnScheme(from challenges: [String], finalStatus: Int, credentials: HTTPCredentials) {
        let offered = HTTPAuthenticationScheme.preferred(offeredBy: challenges, allowsBasic: credentials.allowsBasic,
                                                         allowsDigest: credentials.allowsDigest)
        guard finalStatus == 401 || offered != nil else { return }
        lock.lock()
        learnedScheme = finalStatus == 401 ? nil : offered
        lock.unlock()
    }

    private func takeHandle() throws -> CurlHandle {
        lock.lock()
        let idle = idleHandles.popLast()
        lock.unlock()
        if let idle { return idle }
        guard let handle = CurlHandle() else {
            throw HTTPTransportError(code: -1, detail: "libcurl could not create a handle", isRetryable: false)
        }
        return handle
    }

    private func giveBack(_ handle: CurlHandle, reusable: Bool) {
        guard reusable else { return }
        lock.lock()
        idleHandles.append(handle)
        lock.unlock()
    }

    private func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds) * 1000 + Int(duration.components.attoseconds / 1_000_000_000_000_000)
    }

    private func curlMessage(_ code: CURLcode) -> String {
        String(cString: curl_easy_strerror(code))
    }
}

/// A libcurl easy handle and the multi handle that drives it. The pair lives as long as the handle
/// is reused: the multi handle keeps the connections, the easy handle the Digest nonce.
private final class CurlHandle {
    let easy: UnsafeMutableRawPointer
    let multi: UnsafeMutableRawPointer

    init?() {
        guard let easy = curl_easy_init() else { return nil }
        guard let multi = curl_multi_init() else {
            curl_easy_cleanup(easy)
            return nil
        }
        self.easy = easy
        self.multi = multi
    }

    deinit {
        curl_multi_cleanup(multi)
        curl_easy_cleanup(easy)
    }

    /// Runs the transfer set up on the easy handle to its end; returns its result. Waits at most
    /// 100 ms at a time, so the progress callback (which stops a cancelled transfer) runs at
    /// least that often even while the server says nothing.
    func perform() -> CURLcode {
        guard curl_multi_add_handle(multi, easy) == CURLM_OK else { return CURLE_FAILED_INIT }
        defer { curl_multi_remove_handle(multi, easy) }
        var running: Int32 = 1
        while true {
            guard curl_multi_perform(multi, &running) == CURLM_OK else { return CURLE_FAILED_INIT }
            if running == 0 { break }
            guard curl_multi_poll(multi, nil, 0, 100, nil) == CURLM_OK else { return CURLE_FAILED_INIT }
        }
        var queued: Int32 = 0
        while let message = curl_multi_info_read(multi, &queued) {
            if message.pointee.msg == CURLMSG_DONE { return message.pointee.data.result }
        }
        return CURLE_FAILED_INIT
    }
}

/// The state one transfer's callbacks share: the body being sent, the headers and body received.
private final class Transfer {
    let body: HTTPRequestBody
    let sink: (any ByteSink)?
    let collectedBodyLimit: Int
    var bodyPosition: Int64 = 0
    var fileDescriptor: Int32 = -1
    var status = 0
    var headers: [(name: String, value: String)] = []
    /// The `WWW-Authenticate` values of every 401 received.
    var challenges: [String] = []
    var collected = Data()
    var streamedByteCount: Int64 = 0
    var sinkError: Error?
    var bodyError: Error?
    var collectedTooMuch = false
    let onHead: ((Int, [(name: String, value: String)]) -> Void)?
    let cancellation: Cancellation?
    /// Whether the progress callback stopped the transfer because `cancellation` was raised.
    var wasCancelled = false

    init(body: HTTPRequestBody, sink: (any ByteSink)?, collectedBodyLimit: Int,
         onHead: ((Int, [(name: String, value: String)]) -> Void)?, cancellation: Cancellation?) {
        self.body = body
        self.sink = sink
        self.collectedBodyLimit = collectedBodyLimit
        self.onHead = onHead
        self.cancellation = cancellation
    }

    /// Whether the transfer may go on (the progress callback's answer).
    func mayContinue() -> Bool {
        if cancellation?.isCancelled == true { wasCancelled = true }
        return !wasCancelled
    }

    func openBody() throws {
        guard case let .file(path, _, _) = body else { return }
        fileDescriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard fileDescriptor >= 0 else {
            throw HTTPTransportError(code: -1, detail: "cannot read \(path): \(String(cString: strerror(errno)))", isRetryable: false)
        }
    }

    func closeBody() {
        if fileDescriptor >= 0 { close(fileDescriptor) }
    }

    /// Fills `buffer` with the next body bytes; returns how many, 0 at the end.
    func readBody(into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        let remaining = body.length - bodyPosition
        let count = Int(min(Int64(capacity), remaining))
        guard count > 0 else { return 0 }
        switch body {
        case .empty:
            return 0
        case let .data(data):
            data.withUnsafeBytes { bytes in
                buffer.copyMemory(from: bytes.baseAddress! + Int(bodyPosition), byteCount: count)
            }
        case let .file(path, offset, _):
            let got = pread(fileDescriptor, buffer, count, off_t(offset + bodyPosition))
            guard got > 0 else {
                bodyError = HTTPTransportError(code: -1, detail: "reading \(path) for upload failed", isRetryable: false)
                return nil
            }
            bodyPosition += Int64(got)
            return got
        }
        bodyPosition += Int64(count)
        return count
    }

    func receiveHeader(_ line: String) {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("HTTP/") {
            // A new response starts (after a 100 Continue or an authentication 401): forget the previous one's headers and body.
            headers.removeAll()
            collected.removeAll()
            let parts = trimmed.split(separator: " ")
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        } else if let colon = trimmed.firstIndex(of: ":") {
            let name = trimmed[..<colon].lowercased()
            let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.append((name, value))
            if status == 401, name == "www-authenticate" { challenges.append(value) }
        } else if trimmed.isEmpty, status >= 200 {
            onHead?(status, headers)
        }
    }

    /// Takes received body bytes; returns false to abort the transfer.
    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if let sink, (200..<300).contains(status) {
            do {
                try sink.write(bytes)
                streamedByteCount += Int64(bytes.count)
                return true
            } catch {
                sinkError = error
                return false
            }
        }
        guard collected.count + bytes.count <= collectedBodyLimit else {
            collectedTooMuch = true
            return false
        }
        collected.append(contentsOf: bytes)
        return true
    }
}

private func transfer(_ context: UnsafeMutableRawPointer?) -> Transfer {
    Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
}

private let headerCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    buffer, size, count, context in
    let length = size * count
    guard let buffer, length > 0 else { return length }
    let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: length), as: UTF8.self)
    transfer(context).receiveHeader(line)
    return length
}

private let writeCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    buffer, size, count, context in
    let length = size * count
    guard let buffer, length > 0 else { return length }
    return transfer(context).receiveBody(UnsafeRawBufferPointer(start: buffer, count: length)) ? length : 0
}

private let readCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    buffer, size, count, context in
    guard let buffer else { return 0 }
    return transfer(context).readBody(into: buffer, capacity: size * count) ?? offsite_curl_read_abort()
}

private let seekCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, Int32) -> Int32 = {
    context, offset, origin in
    let state = transfer(context)
    guard origin == SEEK_SET, offset >= 0, Int64(offset) <= state.body.length else { return 2 }  // CURL_SEEKFUNC_CANTSEEK
    state.bodyPosition = Int64(offset)
    return 0  // CURL_SEEKFUNC_OK
}

private let progressCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> Int32 = {
    context, _, _, _, _ in
    transfer(context).mayContinue() ? 0 : 1  // non-zero aborts with CURLE_ABORTED_BY_CALLBACK
}
