import Foundation

/// How backups are encrypted: to age recipients (the host cannot read its own backups), to one
/// scrypt passphrase, or — only when the configuration says so — not at all.
public enum PayloadEncryption: Sendable {
    /// X25519 recipients (`age1…`).
    case recipients([AgeX25519Recipient])
    /// One scrypt passphrase with its work factor (log2 N).
    case passphrase(String, workFactor: Int)
    /// Plaintext gzip, chosen explicitly.
    case none

    /// The object format this encryption produces.
    public var format: PayloadFormat {
        if case .none = self { return .plain }
        return .encrypted
    }
}

/// What can decrypt a backup: identities, a passphrase, or both.
public struct DecryptionKeys: Sendable {
    /// X25519 identities (`AGE-SECRET-KEY-1…`).
    public var identities: [AgeX25519Identity]
    /// A scrypt passphrase.
    public var passphrase: String?
    /// The largest scrypt work factor a passphrase-encrypted object may ask for: the one configured
    /// for backups (default 18, age's). An object asking more could make a restore spend gigabytes
    /// of memory and minutes of CPU; anyone who can write to the bucket can make one.
    public var maximumWorkFactor: Int

    /// Creates a key set.
    public init(identities: [AgeX25519Identity] = [], passphrase: String? = nil, maximumWorkFactor: Int = 18) {
        self.identities = identities
        self.passphrase = passphrase
        self.maximumWorkFactor = maximumWorkFactor
    }

    /// Whether there is nothing to decrypt with.
    public var isEmpty: Bool { identities.isEmpty && passphrase == nil }
}

/// Builds the write side of a backup: bytes written to the result are gzip-compressed at `level`,
/// encrypted as `encryption` says, and passed to `sink`. Single-threaded; `runBackup` spreads the
/// same stages over threads.
public func makeBackupEncoder(level: Int, encryption: PayloadEncryption, into sink: any ByteSink) throws -> any ByteSink {
    try GzipCompressor(level: level, next: try makeEncryptor(encryption: encryption, into: sink))
}

/// The encryption stage alone: bytes written to the result are encrypted as `encryption` says
/// (or passed through for `.none`) and written to `sink`.
public func makeEncryptor(encryption: PayloadEncryption, into sink: any ByteSink) throws -> any ByteSink {
    switch encryption {
    case let .recipients(recipients): return try AgeEncryptor(recipients: recipients, next: sink)
    case let .passphrase(passphrase, workFactor): return try AgeEncryptor(passphrase: passphrase, workFactor: workFactor, next: sink)
    case .none: return sink
    }
}

/// Builds the read side: bytes of a stored object written to the result are decrypted (for the
/// encrypted format), decompressed and passed to `sink`.
public func makeRestoreDecoder(format: PayloadFormat, keys: DecryptionKeys, into sink: any ByteSink) throws -> any ByteSink {
    let decompressor = try GzipDecompressor(next: sink)
    switch format {
    case .plain:
        return decompressor
    case .encrypted:
        return try makeAgeDecryptor(keys: keys, next: decompressor)
    }
}

/// An age decryptor for `keys`: the identities, or the passphrase when there are none.
func makeAgeDecryptor(keys: DecryptionKeys, next: any ByteSink) throws -> AgeDecryptor {
    if let passphrase = keys.passphrase, keys.identities.isEmpty {
        return try AgeDecryptor(passphrase: passphrase, maxWorkFactor: keys.maximumWorkFactor, next: next)
    }
    guard !keys.identities.isEmpty else { throw RestoreError.noKey }
    return try AgeDecryptor(identities: keys.identities, next: next)
}

/// Passes every write to several sinks; a sink that fails is dropped and its error kept, so one
/// failing target does not stop the others.
public final class FanOutSink: ByteSink {
    /// The sinks still receiving bytes.
    public private(set) var active: [Int: any ByteSink]
    /// The error each dropped sink failed with, by its index.
    public private(set) var failures: [Int: Error] = [:]

    /// Creates a fan-out to `sinks`, identified by their index.
    public init(_ sinks: [any ByteSink]) {
        active = Dictionary(uniqueKeysWithValues: sinks.enumerated().map { ($0.offset, $0.element) })
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        for (index, sink) in active {
            do { try sink.write(bytes) } catch {
                failures[index] = error
                active[index] = nil
            }
        }
        if active.isEmpty, let first = failures.sorted(by: { $0.key < $1.key }).first { throw first.value }
    }

    public func finish() throws {
        for (index, sink) in active {
            do { try sink.finish() } catch {
                failures[index] = error
                active[index] = nil
            }
        }
        if active.isEmpty, let first = failures.sorted(by: { $0.key < $1.key }).first { throw first.value }
    }
}
