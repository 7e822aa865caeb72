import Foundation

/// Decrypts an age v1 file written to it in pieces of any size and writes the plaintext to
/// `next`, each chunk as soon as it authenticates. Holds at most the header and one sealed chunk.
/// `finish()` fails, without finishing `next`, unless a valid final chunk ended the stream.
public final class AgeDecryptor: ByteSink {
    private enum Key {
        case identities([AgeX25519Identity])
        case passphrase(SecretBytes, maximumWorkFactor: Int)
    }

    private enum Phase {
        case header
        case nonce
        case payload
        case finished
    }

    private let next: any ByteSink
    private var key: Key?
    private var phase = Phase.header
    private var failure: (any Error)?
    private var parser = AgeHeaderParser()
    private var fileKey: [UInt8] = []
    private var nonce: [UInt8] = []
    private var payloadKey: [UInt8] = []
    private let sealed: UnsafeMutableRawBufferPointer
    private let opened: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var counter: UInt64 = 0
    private var sawFinalChunk = false

    /// Decrypts with X25519 identities; any one of them may match a stanza.
    public convenience init(identities: [AgeX25519Identity], next: any ByteSink) throws(AgeError) {
        try self.init(key: .identities(identities), next: next)
    }

    /// Decrypts a passphrase-encrypted file, refusing scrypt work factors above 2^`maxWorkFactor`.
    public convenience init(passphrase: String, maxWorkFactor: Int = 22, next: any ByteSink) throws(AgeError) {
        var bytes = Array(passphrase.utf8)
        defer { AgePrimitives.wipe(&bytes) }
        try self.init(key: .passphrase(SecretBytes(copying: bytes), maximumWorkFactor: maxWorkFactor), next: next)
    }

    private init(key: Key, next: any ByteSink) throws(AgeError) {
        try AgePrimitives.ensureReady()
        self.key = key
        self.next = next
        sealed = .allocate(byteCount: AgePayload.sealedChunkSize, alignment: 16)
        opened = .allocate(byteCount: AgePayload.chunkSize, alignment: 16)
    }

    deinit {
        AgePrimitives.wipe(&fileKey)
        AgePrimitives.wipe(&payloadKey)
        AgePrimitives.wipe(opened)
        sealed.deallocate()
        opened.deallocate()
    }

    /// Consumes the next piece of the age file.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if let failure { throw failure }
        guard phase != .finished else { throw AgeError.streamClosed }
        do {
            var offset = 0
            while offset < bytes.count {
                let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
                switch phase {
                case .header:
                    guard let (header, consumed) = try parser.consume(rest) else { return }
                    offset += consumed
                    try unlock(header)
                    phase = .nonce
                case .nonce:
                    let count = min(AgePayload.nonceSize - nonce.count, rest.count)
                    nonce += rest[0..<count]
                    offset += count
                    if nonce.count == AgePayload.nonceSize {
                        payloadKey = AgePayload.payloadKey(fileKey: fileKey, nonce: nonce)
                        AgePrimitives.wipe(&fileKey)
                        phase = .payload
                    }
                case .payload:
                    guard !sawFinalChunk else { throw AgeError.trailingData }
                    let count = min(AgePayload.sealedChunkSize - buffered, rest.count)
                    UnsafeMutableRawBufferPointer(rebasing: sealed[buffered..<(buffered + count)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: rest[0..<count]))
                    buffered += count
                    offset += count
                    if buffered == AgePayload.sealedChunkSize { try openFullChunk() }
                case .finished:
                    throw AgeError.streamClosed
                }
            }
        } catch {
            fail(error)
            throw error
        }
    }

    /// Checks that the stream ended with a valid final chunk, then finishes `next`.
    public func finish() throws {
        if let failure { throw failure }
        guard phase != .finished else { throw AgeError.streamClosed }
        do {
            switch phase {
            case .header:
                throw parser.isEmpty ? AgeError.notAnAgeFile : AgeError.truncated
            case .nonce:
                throw AgeError.truncated
            case .payload:
                if !sawFinalChunk { try openLastChunk() }
            case .finished:
                throw AgeError.streamClosed
            }
        } catch {
            fail(error)
            throw error
        }
        phase = .finished
        try next.finish()
    }

    private func fail(_ error: any Error) {
        failure = error
        key = nil
        AgePrimitives.wipe(&fileKey)
        AgePrimitives.wipe(&payloadKey)
        AgePrimitives.wipe(opened)
    }

    // MARK: Payload

    /// A full sealed chunk is either a middle chunk or the final one: the final flag is
    /// authenticated, so at most one of the two nonces opens it.
    private func openFullChunk() throws {
        let ciphertext = UnsafeRawBufferPointer(sealed)
        if let length = AgePrimitives.open(key: payloadKey, nonce: AgePayload.chunkNonce(counter: counter, isFinal: false),
                                           ciphertext: ciphertext, into: opened) {
            try emit(length)
        } else if let length = AgePrimitives.open(key: payloadKey, nonce: AgePayload.chunkNonce(counter: counter, isFinal: true),
                                                  ciphertext: ciphertext, into: opened) {
            sawFinalChunk = true
            try emit(length)
        } else {
            throw AgeError.chunkAuthenticationFailed(index: counter)
        }
    }

    /// At the end of the stream, whatever is buffered must be the final chunk.
    private func openLastChunk() throws {
        guard buffered > 0 else { throw AgeError.truncated }
        let ciphertext = UnsafeRawBufferPointer(rebasing: sealed[0..<buffered])
        guard buffered >= AgePrimitives.tagSize,
              let length = AgePrimitives.open(key: payloadKey, nonce: AgePayload.chunkNonce(counter: counter, isFinal: true),
                                              ciphertext: ciphertext, into: opened) else {
            throw AgeError.chunkAuthenticationFailed(index: counter)
        }
        guard length > 0 || counter == 0 else { throw AgeError.emptyFinalChunk }
        sawFinalChunk = true
        try emit(length)
    }

    private func emit(_ length: Int) throws {
        counter += 1
        buffered = 0
        try next.write(UnsafeRawBufferPointer(rebasing: opened[0..<length]))
    }

    // MARK: Header

    /// Unwraps the file key from the header's stanzas and verifies the header MAC.
    private func unlock(_ header: AgeHeaderParser.Header) throws(AgeError) {
        guard let key else { throw .streamClosed }
        self.key = nil
        let hasScrypt = header.stanzas.contains { $0.arguments.first == "scrypt" }
        if hasScrypt && header.stanzas.count > 1 {
            throw .malformedHeader("an scrypt stanza must be the only stanza")
        }
        switch key {
        case .identities(let identities):
            if hasScrypt { throw .fileIsPassphraseEncrypted }
            fileKey = try Self.unwrap(header.stanzas, identities: identities)
        case .passphrase(let passphrase, let maximumWorkFactor):
            guard hasScrypt else { throw .fileIsNotPassphraseEncrypted }
            fileKey = try Self.unwrap(header.stanzas[0], passphrase: passphrase, maximumWorkFactor: maximumWorkFactor)
        }
        var macKey = AgePayload.headerKey(fileKey: fileKey)
        let mac = AgePrimitives.hmacSHA256(key: macKey, header.authenticatedBytes)
        AgePrimitives.wipe(&macKey)
        guard AgePrimitives.constantTimeEqual(mac, header.mac) else { throw .headerMACMismatch }
    }

    private static func unwrap(_ stanzas: [AgeStanza], identities: [AgeX25519Identity]) throws(AgeError) -> [UInt8] {
        for stanza in stanzas where stanza.arguments.first == "X25519" {
            guard stanza.arguments.count == 2,
                  let share = AgeBase64.decode(Array(stanza.arguments[1].utf8)), share.count == AgePrimitives.keySize else {
                throw .malformedHeader("an X25519 stanza must have one argument, a 32-byte base64 ephemeral share")
            }
            guard stanza.body.count == AgePayload.fileKeySize + AgePrimitives.tagSize else {
                throw .malformedHeader("an X25519 stanza body must be 32 bytes")
            }
            for identity in identities {
                guard var shared = identity.secret.withUnsafeBytes({
                    AgePrimitives.x25519SharedSecret(secret: $0, publicKey: share)
                }) else { throw .allZeroSharedSecret }
                var wrapKey = AgePayload.x25519WrapKey(sharedSecret: shared, ephemeralShare: share,
                                                       recipient: identity.recipient.publicKey)
                AgePrimitives.wipe(&shared)
                let fileKey = AgePrimitives.openWithZeroNonce(key: wrapKey, ciphertext: stanza.body)
                AgePrimitives.wipe(&wrapKey)
                if let fileKey { return fileKey }
            }
        }
        throw .noIdentityMatched(tried: identities.count)
    }

    private static func unwrap(_ stanza: AgeStanza, passphrase: SecretBytes, maximumWorkFactor: Int) throws(AgeError) -> [UInt8] {
        guard stanza.arguments.count == 3,
              let salt = AgeBase64.decode(Array(stanza.arguments[1].utf8)), salt.count == 16 else {
            throw .malformedHeader("an scrypt stanza must have two arguments: a 16-byte base64 salt and a work factor")
        }
        let factorText = stanza.arguments[2]
        guard let first = factorText.utf8.first, first != UInt8(ascii: "0"), factorText.utf8.count <= 9,
              factorText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let workFactor = Int(factorText) else {
            throw .malformedHeader("the scrypt work factor is not a decimal number without leading zeros")
        }
        guard workFactor <= maximumWorkFactor, workFactor < 64 else {
            throw .workFactorTooLarge(found: workFactor, maximum: maximumWorkFactor)
        }
        guard stanza.body.count == AgePayload.fileKeySize + AgePrimitives.tagSize else {
            throw .malformedHeader("an scrypt stanza body must be 32 bytes")
        }
        var passphraseBytes = passphrase.copiedBytes
        defer { AgePrimitives.wipe(&passphraseBytes) }
        var wrapKey = try AgePayload.scryptWrapKey(passphrase: passphraseBytes, salt: salt, workFactor: workFactor)
        defer { AgePrimitives.wipe(&wrapKey) }
        guard let fileKey = AgePrimitives.openWithZeroNonce(key: wrapKey, ciphertext: stanza.body) else {
            throw .wrongPassphrase
        }
        return fileKey
    }
}
