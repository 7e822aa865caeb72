import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one line per event, in logfmt or JSON, to standard error (or a file descriptor or
/// closure): `time=2026-11-22T03:17:00Z level=info event=backup.done db=crm target=s3 bytes=1024`.
///
/// Values are rendered with `String(describing:)` (so a `Secret` prints as `<redacted>`), except
/// that numbers and booleans stay numbers and booleans in JSON, dates become ISO 8601 UTC,
/// durations their configuration form (`1m30s`), errors their one-line message, and nil
/// optionals are left out. Safe to use from any thread: each line is formatted first, then
/// written with one `write(2)` under a lock, so lines never interleave.
///
/// The agent should ignore SIGPIPE, so that a closed standard error cannot kill it.
public final class Logger: @unchecked Sendable {
    /// Where lines go.
    public enum Output: Sendable {
        /// Written to a file descriptor (2 is standard error), each line ending in `\n`.
        case fileDescriptor(Int32)
        /// Handed to a closure, one line at a time without the `\n`; called under the lock.
        case lines(@Sendable (String) -> Void)
    }

    /// The line format.
    public let format: LogConfig.Format
    /// The least severity written.
    public let level: LogConfig.Level
    private let output: Output
    private let clock: @Sendable () -> Date
    private let lock = NSLock()

    /// Creates a logger; `clock` supplies each line's time (tests pin it).
    public init(format: LogConfig.Format = .logfmt, level: LogConfig.Level = .info,
                output: Output = .fileDescriptor(2), clock: @escaping @Sendable () -> Date = { Date() }) {
        self.format = format
        self.level = level
        self.output = output
        self.clock = clock
    }

    /// Creates a logger with the configured format and level.
    public convenience init(config: LogConfig, output: Output = .fileDescriptor(2)) {
        self.init(format: config.format, level: config.level, output: output)
    }

    /// Whether events at `level` are written.
    public func isEnabled(_ level: LogConfig.Level) -> Bool {
        level >= self.level
    }

    /// Writes `event` with `fields` in their order, if `level` is enabled.
    public func log(_ level: LogConfig.Level, _ event: String, _ fields: KeyValuePairs<String, Any> = [:]) {
        guard isEnabled(level) else { return }
        emit(level, event, fields.map { ($0.key, $0.value) })
    }

    /// Writes `event` with fields given as a list of pairs (for fields built at run time).
    public func log(_ level: LogConfig.Level, _ event: String, fields: [(String, Any)]) {
        guard isEnabled(level) else { return }
        emit(level, event, fields)
    }

    /// Writes a debug event.
    public func debug(_ event: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.debug, event, fields) }
    /// Writes an info event.
    public func info(_ event: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.info, event, fields) }
    /// Writes a warning event.
    public func warn(_ event: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.warn, event, fields) }
    /// Writes an error event.
    public func error(_ event: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.error, event, fields) }

    private func emit(_ level: LogConfig.Level, _ event: String, _ fields: [(String, Any)]) {
        let line = Logger.formatLine(format: format, time: clock(), level: level, event: event, fields: fields)
        lock.lock()
        defer { lock.unlock() }
        switch output {
        case .lines(let consume):
            consume(line)
        case .fileDescriptor(let descriptor):
            var bytes = Array(line.utf8)
            bytes.append(UInt8(ascii: "\n"))
            bytes.withUnsafeBytes { buffer in
                var written = 0
                while written < buffer.count {
                    let result = write(descriptor, buffer.baseAddress! + written, buffer.count - written)
                    if result < 0 {
                        if errno == EINTR { continue }
                        return  // Nowhere to report a failing log; never crash over it.
                    }
                    written += result
                }
            }
        }
    }

    /// One line (without `\n`) for an event: `time`, `level` and `event` first, then the fields.
    /// Field names are reduced to letters, digits, `_`, `.` and `-`; one that repeats `time`,
    /// `level` or `event` gets a `_` appended.
    static func formatLine(format: LogConfig.Format, time: Date, level: LogConfig.Level, event: String,
                           fields: [(String, Any)]) -> String {
        var pairs: [(String, LogValue)] = [
            ("time", .string(formatISO8601(time))), ("level", .string(level.rawValue)), ("event", .string(event)),
        ]
        for (key, value) in fields {
            guard let rendered = LogValue(value) else { continue }
            var name = sanitizeKey(key)
            if ["time", "level", "event"].contains(name) { name += "_" }
            pairs.append((name, rendered))
        }
        switch format {
        case .logfmt:
            return pairs.map { "\($0.0)=\($0.1.logfmt)" }.joined(separator: " ")
        case .json:
            return "{" + pairs.map { "\(jsonString($0.0)):\($0.1.json)" }.joined(separator: ",") + "}"
        }
    }

    private static func sanitizeKey(_ key: String) -> String {
        let cleaned = String(key.unicodeScalars.map { scalar -> Character in
            let allowed = scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "_.-".unicodeScalars.contains(scalar))
            return allowed ? Character(scalar) : "_"
        })
        return cleaned.isEmpty ? "_" : cleaned
    }
}

/// A field value as it is written.
private enum LogValue {
    case string(String)
    case integer(String)
    case number(Double)
    case boolean(Bool)

    /// Renders `value`; nil for a nil optional (the field is left out).
    init?(_ value: Any) {
        if let optional = value as? any OptionalLogValue {
            guard let wrapped = optional.wrappedLogValue else { return nil }
            self.init(wrapped)
            return
        }
        switch value {
        case let value as Bool: self = .boolean(value)
        case let value as any BinaryInteger: self = .integer(String(describing: value))
        case let value as Double: self = .number(value)
        case let value as Float: self = .number(Double(value))
        case let value as Date: self = .string(formatISO8601(value))
        case let value as Duration: self = .string(value.configText)
        case let value as any UserFacingError: self = .string(value.message)
        default: self = .string(String(describing: value))
        }
    }

    var logfmt: String {
        switch self {
        case .string(let text): return logfmtString(text)
        case .integer(let text): return text
        case .number(let value): return value.isFinite ? String(value) : logfmtString(String(value))
        case .boolean(let value): return value ? "true" : "false"
        }
    }

    var json: String {
        switch self {
        case .string(let text): return jsonString(text)
        case .integer(let text): return text
        case .number(let value): return value.isFinite ? String(value) : jsonString(String(value))
        case .boolean(let value): return value ? "true" : "false"
        }
    }
}

/// Lets `LogValue` see through optionals hidden in `Any`.
private protocol OptionalLogValue {
    var wrappedLogValue: Any? { get }
}

extension Optional: OptionalLogValue {
    fileprivate var wrappedLogValue: Any? {
        switch self {
        case .some(let value): return value
        case .none: return nil
        }
    }
}

/// A logfmt value: bare when it is plain, otherwise double-quoted with `\"`, `\\`, `\n`, `\r`,
/// `\t` and `\u00XX` escapes, so a value can never break the line or fake another key.
func logfmtString(_ text: String) -> String {
    let needsQuotes = text.isEmpty || text.unicodeScalars.contains {
        $0.value <= 0x20 || $0.value == 0x7F || $0 == "=" || $0 == "\"" || $0 == "\\"
    }
    guard needsQuotes else { return text }
    return "\"" + escaped(text) + "\""
}

/// A JSON string literal.
func jsonString(_ text: String) -> String {
    "\"" + escaped(text) + "\""
}

/// Backslash escapes shared by logfmt and JSON (JSON's set, which logfmt readers accept).
private func escaped(_ text: String) -> String {
    var result = ""
    result.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029 {
                result += String(format: "\\u%04x", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result
}

/// `2026-11-22T03:17:00Z` (UTC; with `milliseconds`, `2026-11-22T03:17:00.123Z`).
func formatISO8601(_ date: Date, milliseconds: Bool = false) -> String {
    let interval = date.timeIntervalSince1970
    var seconds = Int64(interval.rounded(.down))
    var millis = Int(((interval - Double(seconds)) * 1000).rounded())
    if millis >= 1000 { seconds += 1; millis = 0 }  // rounded up into the next second
    var time = time_t(seconds)
    var parts = tm()
    gmtime_r(&time, &parts)
    let base = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    return milliseconds ? base + String(format: ".%03dZ", millis) : base + "Z"
}
