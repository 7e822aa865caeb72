import Foundation
@testable import OffsiteCore

/// A test failure with a readable reason (a thrown error fails the test; it never skips it).
struct AgeTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

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
    guard sink.isFinished else { throw AgeTestFailure("encryptor did not finish its sink") }
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

/// A fresh temporary directory, removed by `cleanUp()`.
struct AgeTemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("offsite-age-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    func cleanUp() { try? FileManager.default.removeItem(at: url) }
}

/// The absolute path of `name` found on PATH; fails the test when the tool is missing.
func locateTool(_ name: String) throws -> String {
    let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for directory in searchPath.split(separator: ":") where !directory.isEmpty {
        let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw AgeTestFailure("'\(name)' was not found on PATH; the age interop tests need it (apt-get install age python3)")
}

/// What a finished tool run produced.
struct AgeToolResult {
    let status: Int32
    let standardOutputData: Data
    var standardOutput: String { String(decoding: standardOutputData, as: UTF8.self) }
    let standardError: String
}

/// Runs a tool found on PATH to completion, with stdout and stderr captured in files (so large
/// output cannot dead-lock a pipe) and extra environment variables.
func runAgeTool(_ name: String, _ arguments: [String], in directory: AgeTemporaryDirectory,
                environment extra: [String: String] = [:], standardInput: String? = nil) throws -> AgeToolResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try locateTool(name))
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    for (key, value) in extra { environment[key] = value }
    process.environment = environment
    let tag = UUID().uuidString
    let outPath = directory.path("stdout-\(tag)")
    let errPath = directory.path("stderr-\(tag)")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let outHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardOutput = outHandle
    process.standardError = errHandle
    if let standardInput {
        let inPath = directory.path("stdin-\(tag)")
        try Data(standardInput.utf8).write(to: URL(fileURLWithPath: inPath))
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
    } else {
        process.standardInput = FileHandle.nullDevice
    }
    try process.run()
    process.waitUntilExit()
    try outHandle.close()
    try errHandle.close()
    let output = try Data(contentsOf: URL(fileURLWithPath: outPath))
    let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return AgeToolResult(status: process.terminationStatus, standardOutputData: output, standardError: errors)
}

/// Runs `age` under a pseudo-terminal (age reads passphrases only from a terminal), typing the
/// passphrase at every prompt. The passphrase travels in an environment variable, not argv.
func runAgeWithPassphrase(_ arguments: [String], passphrase: String, in directory: AgeTemporaryDirectory) throws -> AgeToolResult {
    let script = directory.path("pty-age.py")
    try Data(ptyDriverScript.utf8).write(to: URL(fileURLWithPath: script))
    return try runAgeTool("python3", [script, try locateTool("age")] + arguments, in: directory,
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
