import Foundation

extension Duration {
    /// Parses a configuration duration: whole numbers with units, largest first or not
    /// (`"90s"`, `"5m"`, `"1h30m"`, `"26h"`, `"7d"`, `"2w"`, `"250ms"`), or plain digits meaning
    /// seconds (`"3600"`). Nil for anything else, including negative or empty text.
    public init?(configText text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { return nil }
        if trimmed.allSatisfy(\.isASCIIDigit) {
            guard let seconds = Int64(trimmed) else { return nil }
            self = .seconds(seconds)
            return
        }
        var milliseconds: Int64 = 0
        var rest = Substring(trimmed)
        while !rest.isEmpty {
            let digits = rest.prefix(while: \.isASCIIDigit)
            guard !digits.isEmpty, let number = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix(while: { $0.isLetter })
            rest = rest.dropFirst(unit.count)
            let scale: Int64
            switch unit {
            case "ms": scale = 1
            case "s": scale = 1000
            case "m": scale = 60_000
            case "h": scale = 3_600_000
            case "d": scale = 86_400_000
            case "w": scale = 604_800_000
            default: return nil
            }
            let (product, overflow) = number.multipliedReportingOverflow(by: scale)
            guard !overflow else { return nil }
            let (sum, overflow2) = milliseconds.addingReportingOverflow(product)
            guard !overflow2 else { return nil }
            milliseconds = sum
        }
        self = .milliseconds(milliseconds)
    }

    /// The duration in seconds, for `Date` arithmetic.
    public var timeInterval: TimeInterval {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    /// Compact text in the configuration's own units: `"7d"`, `"1h30m"`, `"90s"` → `"1m30s"`, `"0s"`.
    public var configText: String {
        let parts = components
        var seconds = parts.seconds
        let milliseconds = parts.attoseconds / 1_000_000_000_000_000
        guard seconds > 0 || milliseconds > 0 else { return "0s" }
        var text = ""
        for (unit, size) in [("d", Int64(86_400)), ("h", 3_600), ("m", 60), ("s", 1)] where seconds >= size {
            text += "\(seconds / size)\(unit)"
            seconds %= size
        }
        if milliseconds > 0 { text += "\(milliseconds)ms" }
        return text
    }
}

extension Character {
    /// Whether this is one of `0`…`9` (and not some other script's digit).
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
