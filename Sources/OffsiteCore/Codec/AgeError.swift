import Foundation

/// Why reading, writing or decrypting an age file or key failed. Messages never contain key
/// material or passphrases.
public enum AgeError: UserFacingError, Equatable {
    /// The input does not start with the age header line (or is empty).
    case notAnAgeFile
    /// The input is an age file of a version other than v1.
    case unsupportedVersion
    /// The header breaks the age v1 grammar or a stanza's rules; the reason says where.
    case malformedHeader(String)
    /// The header is larger than this implementation buffers.
    case headerTooLarge(limit: Int)
    /// No identity unwrapped any stanza; `tried` is how many identities were tried.
    case noIdentityMatched(tried: Int)
    /// The file is passphrase-encrypted but identities were given.
    case fileIsPassphraseEncrypted
    /// A passphrase was given but the file is encrypted to recipients' keys.
    case fileIsNotPassphraseEncrypted
    /// The scrypt stanza did not unwrap with the passphrase given.
    case wrongPassphrase
    /// The file's scrypt work factor exceeds the allowed maximum.
    case workFactorTooLarge(found: Int, maximum: Int)
    /// A work factor asked for when encrypting is out of range.
    case invalidWorkFactor(Int)
    /// An empty passphrase was given for encryption.
    case emptyPassphrase
    /// Encryption was asked for with no recipients.
    case noRecipients
    /// The header MAC did not verify after the file key was unwrapped.
    case headerMACMismatch
    /// Payload chunk `index` (counted from 0) did not authenticate.
    case chunkAuthenticationFailed(index: UInt64)
    /// The final payload chunk is empty although earlier chunks exist.
    case emptyFinalChunk
    /// The input ended inside the header or before the final payload chunk.
    case truncated
    /// Bytes follow the final payload chunk.
    case trailingData
    /// An X25519 exchange gave the all-zero shared secret (a low-order public key).
    case allZeroSharedSecret
    /// A recipient string (`age1…`) could not be parsed; the reason says why.
    case invalidRecipient(String)
    /// An identity string (`AGE-SECRET-KEY-1…`) could not be parsed; the reason says why.
    case invalidIdentity(String)
    /// A line of an identity file could not be parsed.
    case invalidIdentityFileLine(line: Int, reason: String)
    /// An identity file holds no identities.
    case emptyIdentityFile
    /// Data was written to a codec after `finish()` or after it failed.
    case streamClosed
    /// libsodium failed in a way that is not about the input.
    case cryptoFailure(String)

    /// What failed, in one line without secrets.
    public var message: String {
        switch self {
        case .notAnAgeFile:
            return "not an age file: it does not start with the age-encryption.org header"
        case .unsupportedVersion:
            return "unsupported age format version (only age-encryption.org/v1 is supported)"
        case .malformedHeader(let reason):
            return "malformed age header: \(reason)"
        case .headerTooLarge(let limit):
            return "age header is larger than \(limit) bytes; refusing to buffer more"
        case .noIdentityMatched(let tried):
            return "no identity matches this age file (tried \(tried) identit\(tried == 1 ? "y" : "ies"))"
        case .fileIsPassphraseEncrypted:
            return "this age file is encrypted with a passphrase, not to an identity's public key"
        case .fileIsNotPassphraseEncrypted:
            return "this age file is encrypted to public keys, not with a passphrase"
        case .wrongPassphrase:
            return "wrong passphrase: the age scrypt stanza does not unwrap"
        case .workFactorTooLarge(let found, let maximum):
            return "age scrypt work factor 2^\(found) is larger than the allowed maximum 2^\(maximum)"
        case .invalidWorkFactor(let factor):
            return "scrypt work factor \(factor) is out of range (1...22)"
        case .emptyPassphrase:
            return "the passphrase is empty"
        case .noRecipients:
            return "no age recipients given to encrypt to"
        case .headerMACMismatch:
            return "age header MAC mismatch: the file was tampered with or the key is wrong"
        case .chunkAuthenticationFailed(let index):
            return "age payload chunk \(index) failed authentication: the file is tampered or corrupt"
        case .emptyFinalChunk:
            return "malformed age payload: the final chunk is empty"
        case .truncated:
            return "age file is truncated: it ended before the final payload chunk"
        case .trailingData:
            return "age file has trailing data after its final payload chunk"
        case .allZeroSharedSecret:
            return "X25519 key agreement gave an all-zero shared secret (invalid or malicious public key)"
        case .invalidRecipient(let reason):
            return "invalid age recipient: \(reason)"
        case .invalidIdentity(let reason):
            return "invalid age identity: \(reason)"
        case .invalidIdentityFileLine(let line, let reason):
            return "identity file line \(line): \(reason)"
        case .emptyIdentityFile:
            return "identity file contains no identities"
        case .streamClosed:
            return "age stream already finished or failed"
        case .cryptoFailure(let what):
            return "cryptography failure: \(what)"
        }
    }

    /// What to try, where there is something useful to say.
    public var hint: String? {
        switch self {
        case .noIdentityMatched:
            return "decrypt with the identity whose public key (age1…) the backup was encrypted to"
        case .fileIsPassphraseEncrypted:
            return "decrypt with the passphrase instead of an identity file"
        case .fileIsNotPassphraseEncrypted:
            return "decrypt with an identity file instead of a passphrase"
        case .workFactorTooLarge:
            return "the file may be hostile; if you trust where it came from, set encryption.scryptWorkFactor to at least its factor"
        case .invalidRecipient:
            return "a recipient is the public key printed by `age-keygen` or `offsite keygen`, starting with age1"
        case .invalidIdentity, .invalidIdentityFileLine, .emptyIdentityFile:
            return "an identity file is what `age-keygen` or `offsite keygen` writes: lines starting with AGE-SECRET-KEY-1"
        default:
            return nil
        }
    }
}
