import Foundation
@testable import OffsiteCore

/// Plaintext sizes around the 64 KiB chunk boundaries, plus a multi-megabyte one.
let agePlaintextSizes = [0, 1, 65_535, 65_536, 65_537, 3 * 65_536, 5 * 1024 * 1024 + 12_345]

/// Deterministic pseudo-random bytes (xorshift64), different for each seed.
func ageTestBytes(count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var state = seed | 1
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { buffer in
        var index = 0
        while index < count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            var word = state
            for _ in 0..<8 where index < count {
                buffer[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
    }
    return bytes
}

/// Writes `bytes` to `sink` in pieces of `pieceSize` (nil: all at once), without finishing it.
func ageWrite(_ bytes: [UInt8], to sink: any ByteSink, pieceSize: Int?) throws {
    try bytes.withUnsafeBytes { buffer in
        guard let pieceSize else {
            try sink.write(buffer)
            return
        }
        var offset = 0
        while offset < buffer.count {
            let end = min(offset + pieceSize, buffer.count)
            try sink.write(UnsafeRawBufferPointer(rebasing: buffer[offset..<end]))
            offset = end
        }
    }
}

/// Encrypts `plaintext` to `recipients` through our encryptor.
func ageEncrypt(_ plaintext: [UInt8], to recipients: [AgeX25519Recipient], pieceSize: Int? = nil) throws -> [UInt8] {
    let sink = DataSink()
    let encryptor = try AgeEncryptor(recipients: recipients, next: sink)
    try ageWrite(plaintext, to: encryptor, pieceSize: pieceSize)
    try encryptor.finish()
    guard sink.isFinished else { throw TestFailure("encryptor did not finish its sink") }
    return Array(sink.data)
}

/// Decrypts `ciphertext` with `identities` through our decryptor; returns the sink so callers
/// can check it was (or was not) finished.
func ageDecrypt(_ ciphertext: [UInt8], with identities: [AgeX25519Identity], pieceSize: Int? = nil) -> (sink: DataSink, error: (any Error)?) {
    let sink = DataSink()
    do {
        let decryptor = try AgeDecryptor(identities: identities, next: sink)
        try ageWrite(ciphertext, to: decryptor, pieceSize: pieceSize)
        try decryptor.finish()
        return (sink, nil)
    } catch {
        return (sink, error)
    }
}

/// Runs `age` under a pseudo-terminal (age reads passphrases only from a terminal), typing the
/// passphrase at every prompt. The passphrase travels in an environment variable, not argv.
func runAgeWithPassphrase(_ arguments: [String], passphrase: String, in directory: ScratchFolder) throws -> ToolResult {
    let script = directory.file("pty-age.py")
    try Data(ptyDriverScript.utf8).write(to: URL(fileURLWithPath: script))
    return try runTool("python3", [script, try locateTool("age")] + arguments, in: directory,
                          environment: ["OFFSITE_TEST_PASSPHRASE": passphrase])
}

/// Runs its arguments as a command on a new pseudo-terminal and answers each passphrase prompt.
private let ptyDriverScript = #"""
import os, pty, sys

passphrase = os.environ["OFFSITE_TEST_PASSPHRASE"].encode()
command = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(command[0], command)
transcript = b""
answered = 0
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    transcript += data
    prompts = transcript.lower().count(b"passphrase")
    while answered < prompts:
        os.write(fd, passphrase + b"\n")
        answered += 1
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.stderr.write(transcript.decode("utf-8", "replace"))
sys.exit(code)
"""#

/// Builds a passphrase-encrypted age file chunk by chunk, with the final flag where the caller
/// says, to produce streams our encryptor never writes. Uses a low work factor.
func forgeAgeFile(passphrase: String, chunks: [(plaintext: [UInt8], isFinal: Bool)]) throws -> [UInt8] {
    let fileKey = AgePrimitives.randomBytes(AgePayload.fileKeySize)
    let salt = AgePrimitives.randomBytes(16)
    let wrapKey = try AgePayload.scryptWrapKey(passphrase: Array(passphrase.utf8), salt: salt, workFactor: 2)
    let stanza = AgeStanza(arguments: ["scrypt", String(decoding: AgeBase64.encode(salt), as: UTF8.self), "2"],
                           body: AgePrimitives.sealWithZeroNonce(key: wrapKey, plaintext: fileKey))
    var file = AgeHeader.renderWithoutMAC([stanza])
    file += AgeHeader.renderMACLineTail(AgePrimitives.hmacSHA256(key: AgePayload.headerKey(fileKey: fileKey), file))
    let nonce = AgePrimitives.randomBytes(AgePayload.nonceSize)
    file += nonce
    let payloadKey = AgePayload.payloadKey(fileKey: fileKey, nonce: nonce)
    for (counter, chunk) in chunks.enumerated() {
        var sealed = [UInt8](repeating: 0, count: chunk.plaintext.count + AgePrimitives.tagSize)
        let length = sealed.withUnsafeMutableBytes { out in
            chunk.plaintext.withUnsafeBytes {
                AgePrimitives.seal(key: payloadKey, nonce: AgePayload.chunkNonce(counter: UInt64(counter), isFinal: chunk.isFinal),
                                   plaintext: $0, into: out)
            }
        }
        file += sealed[..<length]
    }
    return file
}

/// Decrypts with a passphrase through our decryptor, like `ageDecrypt`.
func ageDecrypt(_ ciphertext: [UInt8], passphrase: String, pieceSize: Int? = nil) -> (sink: DataSink, error: (any Error)?) {
    let sink = DataSink()
    do {
        let decryptor = try AgeDecryptor(passphrase: passphrase, next: sink)
        try ageWrite(ciphertext, to: decryptor, pieceSize: pieceSize)
        try decryptor.finish()
        return (sink, nil)
    } catch {
        return (sink, error)
    }
}

/// Whether two byte strings are equal, reported as a short description on mismatch (letting
/// swift-testing diff megabyte arrays on failure would take minutes).
func sameBytes<A: Collection<UInt8>, B: Collection<UInt8>>(_ actual: A, _ expected: B) -> Bool {
    actual.count == expected.count && actual.elementsEqual(expected)
}
