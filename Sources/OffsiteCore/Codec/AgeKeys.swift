import Foundation

/// An age X25519 public key (`age1…`): what backups are encrypted to.
public struct AgeX25519Recipient: Sendable, Hashable, CustomStringConvertible {
    /// The Bech32 prefix of recipients, as written (lowercase).
    static let humanReadablePart = "age"

    /// The 32-byte Curve25519 public key.
    let publicKey: [UInt8]

    init(publicKey: [UInt8]) {
        precondition(publicKey.count == AgePrimitives.keySize)
        self.publicKey = publicKey
    }

    /// Parses a recipient string such as `age1zvkyg2lq…`.
    public init(parsing string: String) throws(AgeError) {
        let decoded: (humanReadablePart: String, data: [UInt8])
        do throws(Bech32.DecodingError) {
            decoded = try Bech32.decode(string)
        } catch {
            throw .invalidRecipient("the string \(error.description)")
        }
        guard decoded.humanReadablePart.lowercased() == Self.humanReadablePart else {
            throw .invalidRecipient("it does not start with age1")
        }
        guard decoded.data.count == AgePrimitives.keySize else {
            throw .invalidRecipient("it holds \(decoded.data.count) bytes, not a 32-byte X25519 public key")
        }
        self.init(publicKey: decoded.data)
    }

    /// The canonical lowercase `age1…` encoding.
    public var encoded: String {
        Bech32.encode(humanReadablePart: Self.humanReadablePart, data: publicKey)
    }

    /// The `age1…` encoding (a public key is not secret).
    public var description: String { encoded }
}

/// An age X25519 secret key (`AGE-SECRET-KEY-1…`): what restores need. Its bytes live in
/// memory that is zeroed when the last copy of the identity goes away.
public struct AgeX25519Identity: Sendable, CustomStringConvertible {
    /// The Bech32 prefix of identities, as written (uppercase).
    static let humanReadablePart = "AGE-SECRET-KEY-"

    /// The 32 random secret bytes (the X25519 scalar, unclamped as age stores it).
    let secret: SecretBytes

    /// The matching public key.
    public let recipient: AgeX25519Recipient

    private init(secretBytes: inout [UInt8]) {
        secret = SecretBytes(copying: secretBytes)
        AgePrimitives.wipe(&secretBytes)
        recipient = AgeX25519Recipient(publicKey: secret.withUnsafeBytes { AgePrimitives.x25519PublicKey(secret: $0) })
    }

    /// A fresh identity from the operating system's CSPRNG.
    public static func generate() -> AgeX25519Identity {
        var bytes = AgePrimitives.randomBytes(AgePrimitives.keySize)
        return AgeX25519Identity(secretBytes: &bytes)
    }

    /// Parses an identity string such as `AGE-SECRET-KEY-1…`. Errors never echo the string.
    public init(parsing string: String) throws(AgeError) {
        var decoded: (humanReadablePart: String, data: [UInt8])
        do throws(Bech32.DecodingError) {
            decoded = try Bech32.decode(string)
        } catch {
            throw .invalidIdentity("the key \(error.description)")
        }
        defer { AgePrimitives.wipe(&decoded.data) }
        guard decoded.humanReadablePart.uppercased() == Self.humanReadablePart else {
            if decoded.humanReadablePart.uppercased().hasPrefix("AGE-PLUGIN-")
                || decoded.humanReadablePart.uppercased().hasPrefix("AGE-SECRET-KEY-PQ-") {
                throw .invalidIdentity("only X25519 identities (AGE-SECRET-KEY-1…) are supported, not plugin or post-quantum keys")
            }
            throw .invalidIdentity("it does not start with AGE-SECRET-KEY-1")
        }
        guard decoded.data.count == AgePrimitives.keySize else {
            throw .invalidIdentity("it holds \(decoded.data.count) bytes, not a 32-byte X25519 secret key")
        }
        self.init(secretBytes: &decoded.data)
    }

    /// The uppercase `AGE-SECRET-KEY-1…` encoding. This is the secret: never log it.
    public var encoded: String {
        var bytes = secret.copiedBytes
        defer { AgePrimitives.wipe(&bytes) }
        return Bech32.encode(humanReadablePart: Self.humanReadablePart, data: bytes, uppercase: true)
    }

    /// A redacted description naming only the public key, so printing an identity leaks nothing.
    public var description: String { "AgeX25519Identity(\(recipient.encoded))" }
}

/// The identity file format that `age-keygen` writes and `age -i` reads.
public enum AgeIdentityFile {
    /// Parses an identity file: `#` comment lines, blank lines and one `AGE-SECRET-KEY-1…` per
    /// line; errors name the line but never echo its contents.
    public static func parse(_ contents: String) throws(AgeError) -> [AgeX25519Identity] {
        var identities: [AgeX25519Identity] = []
        var lineNumber = 0
        for rawLine in contents.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            lineNumber += 1
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            do throws(AgeError) {
                identities.append(try AgeX25519Identity(parsing: line))
            } catch {
                let reason: String
                if case .invalidIdentity(let why) = error { reason = why } else { reason = error.message }
                throw .invalidIdentityFileLine(line: lineNumber, reason: "not a valid age identity: \(reason)")
            }
        }
        guard !identities.isEmpty else { throw .emptyIdentityFile }
        return identities
    }

    /// The text `age-keygen` writes for `identity`: creation time, public key, secret key.
    public static func render(identity: AgeX25519Identity, created: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return """
            # created: \(formatter.string(from: created))
            # public key: \(identity.recipient.encoded)
            \(identity.encoded)

            """
    }
}
