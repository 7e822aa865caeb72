import Foundation

/// Sizes and derivations shared by the age encryptor and decryptor.
enum AgePayload {
    /// Plaintext bytes per STREAM chunk.
    static let chunkSize = 64 * 1024
    /// Ciphertext bytes of a full chunk.
    static let sealedChunkSize = chunkSize + AgePrimitives.tagSize
    /// Bytes of the payload nonce that precedes the chunks.
    static let nonceSize = 16
    /// Bytes of the file key.
    static let fileKeySize = 16
    /// Prefix of the scrypt salt.
    static let scryptSaltLabel = Array("age-encryption.org/v1/scrypt".utf8)
    /// HKDF info of X25519 wrap keys.
    static let x25519Info = Array("age-encryption.org/v1/X25519".utf8)
    /// Largest scrypt work factor this codec writes (age reads up to 2^22 by default).
    static let maximumWorkFactor = 22

    /// The 12-byte ChaCha20-Poly1305 nonce of chunk `counter`: 11-byte big-endian counter, final flag.
    static func chunkNonce(counter: UInt64, isFinal: Bool) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: 12)
        for index in 0..<8 { nonce[3 + index] = UInt8(truncatingIfNeeded: counter >> UInt64(8 * (7 - index))) }
        nonce[11] = isFinal ? 1 : 0
        return nonce
    }

    /// HMAC key of the header MAC.
    static func headerKey(fileKey: [UInt8]) -> [UInt8] {
        AgePrimitives.hkdfSHA256(inputKey: fileKey, salt: [], info: Array("header".utf8))
    }

    /// Key of the payload chunks.
    static func payloadKey(fileKey: [UInt8], nonce: [UInt8]) -> [UInt8] {
        AgePrimitives.hkdfSHA256(inputKey: fileKey, salt: nonce, info: Array("payload".utf8))
    }

    /// Wrap key of an X25519 stanza.
    static func x25519WrapKey(sharedSecret: [UInt8], ephemeralShare: [UInt8], recipient: [UInt8]) -> [UInt8] {
        AgePrimitives.hkdfSHA256(inputKey: sharedSecret, salt: ephemeralShare + recipient, info: x25519Info)
    }

    /// Wrap key of an scrypt stanza.
    static func scryptWrapKey(passphrase: [UInt8], salt: [UInt8], workFactor: Int) throws(AgeError) -> [UInt8] {
        try AgePrimitives.scrypt(passphrase: passphrase, salt: scryptSaltLabel + salt, logN: workFactor)
    }
}

/// Encrypts everything written to it into the age v1 format and writes the result to `next`:
/// the header, the payload nonce, then 64 KiB ChaCha20-Poly1305 STREAM chunks. Holds at most one
/// chunk of plaintext.
public final class AgeEncryptor: ByteSink {
    private let next: any ByteSink
    private var pendingHeader: [UInt8]?
    private var payloadKey: [UInt8]
    private let plaintext: UnsafeMutableRawBufferPointer
    private let ciphertext: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var counter: UInt64 = 0
    private var isClosed = false

    /// Encrypts to one or more X25519 recipients (an X25519 stanza each).
    public convenience init(recipients: [AgeX25519Recipient], next: any ByteSink) throws(AgeError) {
        try AgePrimitives.ensureReady()
        guard !recipients.isEmpty else { throw .noRecipients }
        var fileKey = AgePrimitives.randomBytes(AgePayload.fileKeySize)
        defer { AgePrimitives.wipe(&fileKey) }
        var stanzas: [AgeStanza] = []
        for recipient in recipients {
            let ephemeralSecret = SecretBytes(copying: AgePrimitives.randomBytes(AgePrimitives.keySize))
            let share = ephemeralSecret.withUnsafeBytes { AgePrimitives.x25519PublicKey(secret: $0) }
            guard var shared = ephemeralSecret.withUnsafeBytes({
                AgePrimitives.x25519SharedSecret(secret: $0, publicKey: recipient.publicKey)
            }) else { throw .allZeroSharedSecret }
            var wrapKey = AgePayload.x25519WrapKey(sharedSecret: shared, ephemeralShare: share, recipient: recipient.publicKey)
            AgePrimitives.wipe(&shared)
            let body = AgePrimitives.sealWithZeroNonce(key: wrapKey, plaintext: fileKey)
            AgePrimitives.wipe(&wrapKey)
            stanzas.append(AgeStanza(arguments: ["X25519", String(decoding: AgeBase64.encode(share), as: UTF8.self)], body: body))
        }
        self.init(fileKey: fileKey, stanzas: stanzas, next: next)
    }

    /// Encrypts with a passphrase: one scrypt stanza (alone, as the spec requires) with
    /// N = 2^`workFactor`, r = 8, p = 1.
    public convenience init(passphrase: String, workFactor: Int = 18, next: any ByteSink) throws(AgeError) {
        try AgePrimitives.ensureReady()
        guard (1...AgePayload.maximumWorkFactor).contains(workFactor) else { throw .invalidWorkFactor(workFactor) }
        var passphraseBytes = Array(passphrase.utf8)
        defer { AgePrimitives.wipe(&passphraseBytes) }
        guard !passphraseBytes.isEmpty else { throw .emptyPassphrase }
        var fileKey = AgePrimitives.randomBytes(AgePayload.fileKeySize)
        defer { AgePrimitives.wipe(&fileKey) }
        let salt = AgePrimitives.randomBytes(16)
        var wrapKey = try AgePayload.scryptWrapKey(passphrase: passphraseBytes, salt: salt, workFactor: workFactor)
        let body = AgePrimitives.sealWithZeroNonce(key: wrapKey, plaintext: fileKey)
        AgePrimitives.wipe(&wrapKey)
        let stanza = AgeStanza(arguments: ["scrypt", String(decoding: AgeBase64.encode(salt), as: UTF8.self), String(workFactor)], body: body)
        self.init(fileKey: fileKey, stanzas: [stanza], next: next)
    }

    private init(fileKey: [UInt8], stanzas: [AgeStanza], next: any ByteSink) {
        self.next = next
        var header = AgeHeader.renderWithoutMAC(stanzas)
        var macKey = AgePayload.headerKey(fileKey: fileKey)
        let mac = AgePrimitives.hmacSHA256(key: macKey, header)
        AgePrimitives.wipe(&macKey)
        header += AgeHeader.renderMACLineTail(mac)
        let nonce = AgePrimitives.randomBytes(AgePayload.nonceSize)
        pendingHeader = header + nonce
        payloadKey = AgePayload.payloadKey(fileKey: fileKey, nonce: nonce)
        plaintext = .allocate(byteCount: AgePayload.chunkSize, alignment: 16)
        ciphertext = .allocate(byteCount: AgePayload.sealedChunkSize, alignment: 16)
    }

    deinit {
        AgePrimitives.wipe(&payloadKey)
        AgePrimitives.wipe(plaintext)
        plaintext.deallocate()
        ciphertext.deallocate()
    }

    /// Encrypts `bytes`; a full chunk is sealed (as not final) only once more data follows it.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !isClosed else { throw AgeError.streamClosed }
        guard !bytes.isEmpty else { return }
        do {
            try writeHeaderIfPending()
            var offset = 0
            while offset < bytes.count {
                if buffered == AgePayload.chunkSize { try sealChunk(isFinal: false) }
                let count = min(AgePayload.chunkSize - buffered, bytes.count - offset)
                UnsafeMutableRawBufferPointer(rebasing: plaintext[buffered..<(buffered + count)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
                buffered += count
                offset += count
            }
        } catch {
            isClosed = true
            throw error
        }
    }

    /// Seals the buffered bytes as the final chunk (empty only when nothing was written) and
    /// finishes `next`.
    public func finish() throws {
        guard !isClosed else { throw AgeError.streamClosed }
        isClosed = true
        try writeHeaderIfPending()
        try sealChunk(isFinal: true)
        AgePrimitives.wipe(plaintext)
        try next.finish()
    }

    private func writeHeaderIfPending() throws {
        guard let header = pendingHeader else { return }
        pendingHeader = nil
        try next.write(header)
    }

    private func sealChunk(isFinal: Bool) throws {
        let nonce = AgePayload.chunkNonce(counter: counter, isFinal: isFinal)
        let length = AgePrimitives.seal(key: payloadKey, nonce: nonce,
                                        plaintext: UnsafeRawBufferPointer(rebasing: plaintext[0..<buffered]),
                                        into: ciphertext)
        counter += 1
        buffered = 0
        try next.write(UnsafeRawBufferPointer(rebasing: ciphertext[0..<length]))
    }
}
