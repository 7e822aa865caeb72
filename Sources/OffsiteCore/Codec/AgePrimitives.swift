import CSodium
import Foundation

// The only file that talks to libsodium: the age codec, the S3 signer (SHA-256 and HMAC-SHA-256),
// the control endpoint's token check and file sets' content hash (`ContentHasher`) see the small
// Swift functions below. libsodium 1.0.18 has no HKDF, so HKDF-SHA-256 (RFC 5869) is built here
// on its incremental HMAC-SHA-256, which takes keys of any length (the X25519 salt is 64 bytes).

/// Whether libsodium initialised; `sodium_init` is idempotent and thread-safe, this runs it once.
private let sodiumIsReady: Bool = sodium_init() >= 0

/// Secret bytes on the heap that are zeroed when the last reference goes away.
final class SecretBytes: @unchecked Sendable {
    // Immutable after `init`, so sharing it across threads is safe.
    private let storage: UnsafeMutableRawBufferPointer

    /// Takes a copy of `bytes`; the caller still owns (and should wipe) its own copy.
    init(copying bytes: [UInt8]) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        storage = buffer
        count = bytes.count
    }

    /// The number of secret bytes.
    let count: Int

    /// Calls `body` with the secret bytes; the pointer must not escape.
    func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// A copy of the bytes as an array, for APIs that need one; wipe it after use.
    var copiedBytes: [UInt8] { withUnsafeBytes { Array($0) } }

    deinit {
        sodium_memzero(storage.baseAddress!, storage.count)
        storage.deallocate()
    }
}

/// The cryptographic building blocks of the age format, on libsodium.
enum AgePrimitives {
    /// Size of a ChaCha20-Poly1305 key, of an X25519 key and of an HMAC-SHA-256 output.
    static let keySize = 32
    /// Size of the Poly1305 tag appended to every sealed message.
    static let tagSize = 16

    /// Throws when libsodium could not be initialised (no usable randomness source).
    static func ensureReady() throws(AgeError) {
        if !sodiumIsReady { throw .cryptoFailure("libsodium failed to initialise") }
    }

    /// `count` bytes from the operating system's CSPRNG.
    static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(sodiumIsReady, "libsodium is not initialised")
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
        return bytes
    }

    /// Overwrites `bytes` with zeros in a way the compiler will not optimise away.
    static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { sodium_memzero(base, buffer.count) }
        }
    }

    /// Overwrites a raw buffer with zeros.
    static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        if let base = buffer.baseAddress { sodium_memzero(base, buffer.count) }
    }

    /// Compares two byte strings in time independent of their contents.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, !a.isEmpty else { return a.count == b.count }
        return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in
            sodium_memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0
        } }
    }

    /// Whether `given` equals `expected`, in time that depends on neither their contents nor
    /// where they differ nor their lengths: both are hashed (BLAKE2b-256) and the digests compared
    /// with `sodium_memcmp`. For tokens a client presents.
    static func secretsMatch(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
        precondition(sodiumIsReady, "libsodium is not initialised")
        func digest(_ bytes: [UInt8]) -> [UInt8] {
            var output = [UInt8](repeating: 0, count: Int(crypto_generichash_BYTES))
            _ = bytes.withUnsafeBufferPointer {
                crypto_generichash(&output, output.count, $0.baseAddress, UInt64($0.count), nil, 0)
            }
            return output
        }
        let left = digest(given)
        let right = digest(expected)
        return sodium_memcmp(left, right, left.count) == 0
    }

    /// Whether all bytes are zero, in constant time.
    static func isAllZero(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { sodium_is_zero($0.bindMemory(to: UInt8.self).baseAddress!, $0.count) == 1 }
    }

    // MARK: X25519

    /// X25519(scalar, basepoint): the public key of a secret scalar.
    static func x25519PublicKey(secret: UnsafeRawBufferPointer) -> [UInt8] {
        precondition(secret.count == keySize)
        var point = [UInt8](repeating: 0, count: keySize)
        _ = crypto_scalarmult_curve25519_base(&point, secret.bindMemory(to: UInt8.self).baseAddress!)
        return point
    }

    /// X25519(scalar, point); nil when the result is all zeros (a low-order point).
    static func x25519SharedSecret(secret: UnsafeRawBufferPointer, publicKey: [UInt8]) -> [UInt8]? {
        precondition(secret.count == keySize && publicKey.count == keySize)
        var shared = [UInt8](repeating: 0, count: keySize)
        let status = crypto_scalarmult_curve25519(
            &shared, secret.bindMemory(to: UInt8.self).baseAddress!, publicKey)
        // libsodium refuses low-order points itself (returns -1); check the output too, as the
        // age spec requires aborting on an all-zero shared secret whatever the library does.
        if status != 0 || isAllZero(shared) {
            wipe(&shared)
            return nil
        }
        return shared
    }

    /// The linked libsodium's version (`1.0.18`).
    static var libraryVersion: String { String(cString: sodium_version_string()) }

    // MARK: SHA-256, HMAC and HKDF

    /// The SHA-256 of `bytes`.
    static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = crypto_hash_sha256(&digest, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
        return digest
    }

    /// HMAC-SHA-256 of the concatenation of `parts` under `key` (any length).
    static func hmacSHA256(key: [UInt8], _ parts: [UInt8]...) -> [UInt8] {
        hmacSHA256(key: key, parts: parts)
    }

    /// HMAC-SHA-256 of the concatenation of `parts` under `key` (any length).
    static func hmacSHA256(key: [UInt8], parts: [[UInt8]]) -> [UInt8] {
        var state = crypto_auth_hmacsha256_state()
        // The header's nonnull attribute wants a valid pointer even for an empty key.
        let keyBytes = key.isEmpty ? [0] : key
        keyBytes.withUnsafeBufferPointer { _ = crypto_auth_hmacsha256_init(&state, $0.baseAddress!, key.count) }
        for part in parts where !part.isEmpty {
            part.withUnsafeBufferPointer {
                _ = crypto_auth_hmacsha256_update(&state, $0.baseAddress!, UInt64($0.count))
            }
        }
        var mac = [UInt8](repeating: 0, count: keySize)
        _ = crypto_auth_hmacsha256_final(&state, &mac)
        withUnsafeMutableBytes(of: &state) { wipe($0) }
        return mac
    }

    /// HKDF-SHA-256 (RFC 5869): extract with `salt`, expand with `info` to `length` bytes.
    static func hkdfSHA256(inputKey: [UInt8], salt: [UInt8], info: [UInt8], length: Int = keySize) -> [UInt8] {
        precondition(length > 0 && length <= 255 * keySize, "HKDF output length out of range")
        var pseudorandomKey = hmacSHA256(key: salt, inputKey)
        defer { wipe(&pseudorandomKey) }
        var output: [UInt8] = []
        output.reserveCapacity(length + keySize)
        var block: [UInt8] = []
        var counter: UInt8 = 1
        while output.count < length {
            let previous = block
            block = hmacSHA256(key: pseudorandomKey, previous, info, [counter])
            output.append(contentsOf: block)
            counter &+= 1
        }
        wipe(&block)
        if output.count > length {
            let extra = output.count - length
            output.withUnsafeMutableBytes { wipe(UnsafeMutableRawBufferPointer(rebasing: $0[length...])) }
            output.removeLast(extra)
        }
        return output
    }

    // MARK: ChaCha20-Poly1305 (IETF, RFC 7539)

    /// Encrypts `plaintext` into `output` (which holds at least `plaintext.count + tagSize`
    /// bytes); returns the ciphertext length.
    static func seal(key: [UInt8], nonce: [UInt8], plaintext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) -> Int {
        precondition(key.count == keySize && nonce.count == 12 && output.count >= plaintext.count + tagSize)
        var length: UInt64 = 0
        let dummy: UInt8 = 0
        withUnsafePointer(to: dummy) { dummyPointer in
            let message = plaintext.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? dummyPointer
            _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                output.baseAddress!.assumingMemoryBound(to: UInt8.self), &length,
                message, UInt64(plaintext.count), nil, 0, nil, nonce, key)
        }
        return Int(length)
    }

    /// Decrypts and authenticates `ciphertext` into `output` (at least `ciphertext.count - tagSize`
    /// bytes); returns the plaintext length, or nil when authentication fails.
    static func open(key: [UInt8], nonce: [UInt8], ciphertext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) -> Int? {
        precondition(key.count == keySize && nonce.count == 12)
        guard ciphertext.count >= tagSize, output.count >= ciphertext.count - tagSize else { return nil }
        var length: UInt64 = 0
        let status = crypto_aead_chacha20poly1305_ietf_decrypt(
            output.baseAddress!.assumingMemoryBound(to: UInt8.self), &length, nil,
            ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(ciphertext.count),
            nil, 0, nonce, key)
        return status == 0 ? Int(length) : nil
    }

    /// Seals a small message (a file key) with a zero nonce, as age's stanzas do.
    static func sealWithZeroNonce(key: [UInt8], plaintext: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: plaintext.count + tagSize)
        let nonce = [UInt8](repeating: 0, count: 12)
        output.withUnsafeMutableBytes { out in
            plaintext.withUnsafeBytes { _ = seal(key: key, nonce: nonce, plaintext: $0, into: out) }
        }
        return output
    }

    /// Opens a small message sealed with a zero nonce; nil when it does not authenticate.
    static func openWithZeroNonce(key: [UInt8], ciphertext: [UInt8]) -> [UInt8]? {
        guard ciphertext.count >= tagSize else { return nil }
        var output = [UInt8](repeating: 0, count: ciphertext.count - tagSize)
        let nonce = [UInt8](repeating: 0, count: 12)
        let length = output.withUnsafeMutableBytes { out in
            ciphertext.withUnsafeBytes { open(key: key, nonce: nonce, ciphertext: $0, into: out) }
        }
        if length == nil {
            wipe(&output)
            return nil
        }
        return output
    }

    // MARK: scrypt

    /// scrypt (RFC 7914) with N = 2^`logN`, returning `length` bytes.
    static func scrypt(passphrase: [UInt8], salt: [UInt8], logN: Int, r: UInt32 = 8, p: UInt32 = 1,
                       length: Int = keySize) throws(AgeError) -> [UInt8] {
        precondition(logN > 0 && logN < 64)
        var output = [UInt8](repeating: 0, count: length)
        let passphraseBytes = passphrase.isEmpty ? [0] : passphrase
        let status = passphraseBytes.withUnsafeBufferPointer { pass in
            salt.withUnsafeBufferPointer { saltBuffer in
                output.withUnsafeMutableBufferPointer { out in
                    crypto_pwhash_scryptsalsa208sha256_ll(
                        pass.baseAddress!, passphrase.count, saltBuffer.baseAddress!, salt.count,
                        UInt64(1) << UInt64(logN), r, p, out.baseAddress!, length)
                }
            }
        }
        if status != 0 {
            throw .cryptoFailure("scrypt with work factor \(logN) failed (not enough memory?)")
        }
        return output
    }
}

/// SHA-256 over bytes given piece by piece (libsodium's incremental API): the digests that link a
/// chain of change objects.
final class SHA256Hasher {
    private var state = crypto_hash_sha256_state()

    /// Starts a digest of nothing.
    init() {
        precondition(sodiumIsReady, "libsodium is not initialised")
        _ = crypto_hash_sha256_init(&state)
    }

    /// Adds `bytes` after the bytes so far.
    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    /// The 32-byte digest of everything added; the hasher is spent afterwards.
    func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = crypto_hash_sha256_final(&state, &digest)
        return digest
    }

    /// The digest of `bytes`.
    static func digest(of bytes: UnsafeRawBufferPointer) -> [UInt8] {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalize()
    }
}

/// BLAKE2b-256 (libsodium's `crypto_generichash`, no key), computed incrementally: the content hash
/// that names a file set's blobs. `b2sum -l 256` prints the same digest.
final class ContentHasher {
    /// Size of a digest in bytes.
    static let digestSize = 32
    private let state: UnsafeMutableRawPointer

    /// Starts a new digest.
    init() {
        precondition(sodiumIsReady, "libsodium is not initialised")
        // libsodium's state wants 64-byte alignment.
        state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        reset()
    }

    deinit {
        state.deallocate()
    }

    /// Forgets what was hashed and starts a new digest.
    func reset() {
        _ = crypto_generichash_init(OpaquePointer(state), nil, 0, Self.digestSize)
    }

    /// Adds `bytes` to the digest.
    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = crypto_generichash_update(OpaquePointer(state),
                                      base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    /// Ends the digest and returns it; call `reset()` before hashing again.
    func finish() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Self.digestSize)
        _ = crypto_generichash_final(OpaquePointer(state), &digest, Self.digestSize)
        return digest
    }

    /// The digest of `bytes` alone.
    static func digest(of bytes: UnsafeRawBufferPointer) -> [UInt8] {
        let hasher = ContentHasher()
        hasher.update(bytes)
        return hasher.finish()
    }
}
