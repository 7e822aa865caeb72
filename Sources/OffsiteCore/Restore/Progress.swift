import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Shows how far a long transfer has got — bytes, rate, time left — on one terminal line that it
/// rewrites with `\r`. It stays silent for the first `delay` (a short transfer shows nothing) and
/// redraws at most once per `interval`. Only for a terminal: never create one for logs or pipes
/// (`forTerminal` returns nil when standard error is not a TTY).
public final class ProgressMeter {
    /// What is being transferred (`crm 20261122T031700Z-manual`).
    public let label: String
    /// The total number of bytes, when known.
    public var total: Int64?
    private let delay: Double
    private let interval: Double
    private let now: () -> Double
    private let draw: (String) -> Void
    private var start: Double?
    private var lastDraw: Double = -.infinity
    private var drawn = false
    private(set) var bytes: Int64 = 0

    /// A meter that passes each line to `draw`; `now` gives monotonic seconds.
    public init(label: String, total: Int64? = nil, delay: Double = 1, interval: Double = 0.25,
                now: @escaping () -> Double = ProgressMeter.monotonicSeconds, draw: @escaping (String) -> Void) {
        self.label = label
        self.total = total
        self.delay = delay
        self.interval = interval
        self.now = now
        self.draw = draw
    }

    /// A meter drawing on standard error when it is a terminal; nil otherwise.
    public static func forTerminal(label: String, total: Int64? = nil) -> ProgressMeter? {
        guard isatty(STDERR_FILENO) != 0 else { return nil }
        return ProgressMeter(label: label, total: total) { line in
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    /// Seconds on the monotonic clock.
    public static func monotonicSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// Notes that `count` more bytes went through; redraws when it is time to.
    public func advance(by count: Int) {
        bytes += Int64(count)
        let current = now()
        guard let start else {
            self.start = current
            return
        }
        guard current - start >= delay, current - lastDraw >= interval else { return }
        lastDraw = current
        drawn = true
        draw("\r\u{1B}[K" + describe(elapsed: current - start))
    }

    /// Ends the line when anything was drawn (with the final figures), so later output starts on a new line.
    public func end() {
        guard drawn, let start else { return }
        draw("\r\u{1B}[K" + describe(elapsed: now() - start) + "\n")
        drawn = false
    }

    /// `label  12.0 MiB of 48.0 MiB  25%  6.0 MiB/s  0:06 left`.
    func describe(elapsed: Double) -> String {
        formatProgress(label: label, bytes: bytes, total: total, elapsed: elapsed)
    }
}

/// One progress line: bytes, of how many, percentage, rate and time left (when the total is known).
public func formatProgress(label: String, bytes: Int64, total: Int64?, elapsed: Double) -> String {
    let rate = elapsed > 0 ? Double(bytes) / elapsed : 0
    var parts = [label]
    if let total, total > 0 {
        parts.append("\(formatBytes(bytes)) of \(formatBytes(total))")
        parts.append("\(min(100, bytes * 100 / total))%")
    } else {
        parts.append(formatBytes(bytes))
    }
    parts.append("\(formatBytes(Int64(rate)))/s")
    if let total, rate > 0, total > bytes {
        parts.append("\(formatClock(Double(total - bytes) / rate)) left")
    }
    return parts.joined(separator: "  ")
}

/// `m:ss`, or `h:mm:ss` from an hour on.
func formatClock(_ seconds: Double) -> String {
    let whole = Int(seconds.rounded(.up))
    let (hours, minutes, rest) = (whole / 3600, whole / 60 % 60, whole % 60)
    return hours > 0 ? String(format: "%d:%02d:%02d", hours, minutes, rest) : String(format: "%d:%02d", minutes, rest)
}

/// Passes bytes on to the next sink unchanged and tells a `ProgressMeter` how many went by.
public final class ProgressSink: ByteSink {
    let next: any ByteSink
    let meter: ProgressMeter

    /// Creates a sink in front of `next` reporting to `meter`.
    public init(next: any ByteSink, meter: ProgressMeter) {
        self.next = next
        self.meter = meter
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try next.write(bytes)
        meter.advance(by: bytes.count)
    }

    public func finish() throws { try next.finish() }
}
