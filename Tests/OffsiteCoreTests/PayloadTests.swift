import Foundation
import Testing
@testable import OffsiteCore

/// The whole payload format — gzip, then age — against the real gzip and age tools, both ways,
/// at the sizes where chunking goes wrong if it is going to.
@Suite struct PayloadTests {
    static let sizes = [0, 1, 65535, 65536, 65537, 5 << 20]

    @Test(arguments: sizes)
    func standardToolsReadWhatOffsiteWrites(size: Int) throws {
        let folder = try ScratchFolder("payload")
        let identity = AgeX25519Identity.generate()
        try Data(AgeIdentityFile.render(identity: identity, created: Date()).utf8)
            .write(to: URL(fileURLWithPath: folder.file("identity.txt")))
        let plaintext = payloadBytes(size)
        let object = try FileSink(creating: folder.file("object.age"))
        let encoder = try makeBackupEncoder(level: 6, encryption: .recipients([identity.recipient]), into: object)
        try plaintext.withUnsafeBytes { try encoder.write($0) }
        try encoder.finish()
        let result = try runTool("sh", ["-c", "age -d -i identity.txt object.age | gunzip > plain"], in: folder)
        #expect(result.status == 0, "\(result.standardError)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.file("plain"))) == plaintext)
    }

    @Test(arguments: sizes)
    func offsiteReadsWhatStandardToolsWrite(size: Int) throws {
        let folder = try ScratchFolder("payload")
        let identity = AgeX25519Identity.generate()
        let plaintext = payloadBytes(size)
        try plaintext.write(to: URL(fileURLWithPath: folder.file("plain")))
        let result = try runTool("sh", ["-c", "gzip -c plain | age -r \(identity.recipient.encoded) > object.age"], in: folder)
        #expect(result.status == 0, "\(result.standardError)")
        let sink = DataSink()
        let decoder = try makeRestoreDecoder(format: .encrypted, keys: DecryptionKeys(identities: [identity]), into: sink)
        _ = try readFile(at: folder.file("object.age"), into: decoder)
        try decoder.finish()
        #expect(sink.isFinished)
        #expect(sink.data == plaintext)
    }

    @Test func passphraseObjectsGoBothWays() throws {
        let folder = try ScratchFolder("payload")
        let passphrase = "a passphrase for the drill"
        let plaintext = payloadBytes(200_000)
        let object = try FileSink(creating: folder.file("ours.age"))
        let encoder = try makeBackupEncoder(level: 1, encryption: .passphrase(passphrase, workFactor: 12), into: object)
        try plaintext.withUnsafeBytes { try encoder.write($0) }
        try encoder.finish()
        let decrypted = try runAgeWithPassphrase(["-d", "-o", folder.file("ours.gz"), folder.file("ours.age")],
                                                 passphrase: passphrase, in: folder)
        #expect(decrypted.status == 0, "\(decrypted.standardError)")
        #expect(try runTool("sh", ["-c", "gunzip -c ours.gz > ours.plain"], in: folder).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.file("ours.plain"))) == plaintext)

        try plaintext.write(to: URL(fileURLWithPath: folder.file("theirs.plain")))
        #expect(try runTool("sh", ["-c", "gzip -c theirs.plain > theirs.gz"], in: folder).status == 0)
        let encrypted = try runAgeWithPassphrase(["-p", "-o", folder.file("theirs.age"), folder.file("theirs.gz")],
                                                 passphrase: passphrase, in: folder)
        #expect(encrypted.status == 0, "\(encrypted.standardError)")
        let sink = DataSink()
        let decoder = try makeRestoreDecoder(format: .encrypted, keys: DecryptionKeys(passphrase: passphrase), into: sink)
        _ = try readFile(at: folder.file("theirs.age"), into: decoder)
        try decoder.finish()
        #expect(sink.data == plaintext)
    }

    /// Bytes that compress somewhat, like a database: runs of text mixed with noise.
    func payloadBytes(_ count: Int) -> Data {
        var random = SplitMix64(seed: UInt64(count) + 1)
        var bytes = Data(capacity: count)
        let words = Array("lead client comment notification activity attendance ".utf8)
        while bytes.count < count {
            if random.next() % 3 == 0 {
                bytes.append(UInt8(truncatingIfNeeded: random.next()))
            } else {
                let start = Int(random.next() % UInt64(words.count - 8))
                bytes.append(contentsOf: words[start..<(start + 8)])
            }
        }
        return bytes.prefix(count)
    }
}
