import Foundation

/// A secret from the configuration (a key, password or passphrase). It prints as `<redacted>`
/// in string interpolation, `print`, `debugPrint` and `dump`, so it cannot leak into logs or
/// error messages by accident; read `value` only where the secret is actually used.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// The secret itself. Never interpolate it into messages.
    public let value: String

    /// Wraps `value`.
    public init(_ value: String) {
        self.value = value
    }

    /// Always `<redacted>`.
    public var description: String { "<redacted>" }

    /// Always `<redacted>`.
    public var debugDescription: String { "<redacted>" }

    /// A mirror with no children, so `dump` shows nothing of the value.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
