import Foundation
import Testing
@testable import OffsiteCore

/// Interoperability with the reference `age` and `age-keygen` command-line tools, found on
/// PATH (the tests fail, not skip, when they are missing).
@Suite(.serialized) struct AgeInteropTests {
    @Test func ourIdentityFileWorksWithAgeKeygenAndAgeKeygensWithUs() throws {
        let directory = try ScratchFolder("age")

        // age-keygen writes a file; we parse it and derive the public key it prints.
        let generated = try runTool("age-keygen", ["-o", directory.file("theirs.txt")], in: directory)
        #expect(generated.status == 0, "age-keygen failed: \(generated.standardError)")
        let theirText = try String(contentsOfFile: directory.file("theirs.txt"), encoding: .utf8)
        let theirs = try AgeIdentityFile.parse(theirText)
        #expect(theirs.count == 1)
        let theirPublic = try runTool("age-keygen", ["-y", directory.file("theirs.txt")], in: directory)
        #expect(theirPublic.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == theirs.first?.recipient.encoded)
        #expect(theirText.contains("# public key: \(theirs[0].recipient.encoded)"))

        // We render a file; age-keygen reads it and prints the same public key.
        let ours = AgeX25519Identity.generate()
        try Data(AgeIdentityFile.render(identity: ours, created: Date()).utf8).write(to: URL(fileURLWithPath: directory.file("ours.txt")))
        let ourPublic = try runTool("age-keygen", ["-y", directory.file("ours.txt")], in: directory)
        #expect(ourPublic.status == 0, "age-keygen -y rejected our identity file: \(ourPublic.standardError)")
        #expect(ourPublic.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == ours.recipient.encoded)
    }

    @Test(arguments: agePlaintextSizes)
    func ageDecryptsWhatWeEncrypt(size: Int) throws {
        let directory = try ScratchFolder("age")
        let identity = AgeX25519Identity.generate()
        let bystander = AgeX25519Identity.generate()
        try Data(AgeIdentityFile.render(identity: identity, created: Date()).utf8).write(to: URL(fileURLWithPath: directory.file("identity.txt")))
        let plaintext = ageTestBytes(count: size, seed: UInt64(size) &* 31 &+ 1)
        let ciphertext = try ageEncrypt(plaintext, to: [bystander.recipient, identity.recipient], pieceSize: 7_777)
        try Data(ciphertext).write(to: URL(fileURLWithPath: directory.file("file.age")))

        // To standard output: age creates an -o file only once it has something to write.
        let result = try runTool("age", ["-d", "-i", directory.file("identity.txt"), directory.file("file.age")], in: directory)
        #expect(result.status == 0, "age -d failed: \(result.standardError)")
        let decrypted = result.standardOutputData
        #expect(decrypted.count == size)
        let same = sameBytes(decrypted, plaintext)
        #expect(same, "age -d output differs from the plaintext")
    }

    @Test(arguments: agePlaintextSizes)
    func weDecryptWhatAgeEncrypts(size: Int) throws {
        let directory = try ScratchFolder("age")
        let generated = try runTool("age-keygen", ["-o", directory.file("identity.txt")], in: directory)
        #expect(generated.status == 0, "age-keygen failed: \(generated.standardError)")
        let identities = try AgeIdentityFile.parse(String(contentsOfFile: directory.file("identity.txt"), encoding: .utf8))
        let other = AgeX25519Identity.generate()
        let plaintext = ageTestBytes(count: size, seed: UInt64(size) &* 17 &+ 3)
        try Data(plaintext).write(to: URL(fileURLWithPath: directory.file("plain.bin")))
        try Data("# recipients\n\(other.recipient.encoded)\n\(identities[0].recipient.encoded)\n".utf8)
            .write(to: URL(fileURLWithPath: directory.file("recipients.txt")))

        let encryptions: [(String, [String])] = [
            ("-r", ["-r", identities[0].recipient.encoded]),
            ("-R", ["-R", directory.file("recipients.txt")]),
        ]
        for (name, recipientArguments) in encryptions {
            let output = directory.file("file\(name).age")
            let result = try runTool("age", recipientArguments + ["-o", output, directory.file("plain.bin")], in: directory)
            #expect(result.status == 0, "age \(name) failed: \(result.standardError)")
            let ciphertext = try [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))
            for pieceSize in [nil, 65_537] as [Int?] {
                let (sink, error) = ageDecrypt(ciphertext, with: [other, identities[0]], pieceSize: pieceSize)
                #expect(error == nil, "age \(name), size \(size): \(String(describing: error))")
                #expect(sink.isFinished)
                #expect(sink.data.count == size)
                let same = sameBytes(sink.data, plaintext)
                #expect(same, "our decryption of age \(name) output differs")
            }
            // And with a wrong identity, the file is refused.
            let (wrongSink, wrongError) = ageDecrypt(ciphertext, with: [AgeX25519Identity.generate()])
            #expect(wrongError as? AgeError == .noIdentityMatched(tried: 1))
            #expect(!wrongSink.isFinished)
        }
    }

    @Test func ageDecryptsOurPassphraseFile() throws {
        let directory = try ScratchFolder("age")
        let passphrase = "offsite interop passphrase"
        for size in [0, 65_537] {
            let plaintext = ageTestBytes(count: size, seed: 99)
            let sink = DataSink()
            let encryptor = try AgeEncryptor(passphrase: passphrase, workFactor: 10, next: sink)
            try ageWrite(plaintext, to: encryptor, pieceSize: 1_000)
            try encryptor.finish()
            try sink.data.write(to: URL(fileURLWithPath: directory.file("file.age")))

            let result = try runAgeWithPassphrase(["-d", "-o", directory.file("out.bin"), directory.file("file.age")],
                                                  passphrase: passphrase, in: directory)
            #expect(result.status == 0, "age -d with passphrase failed: \(result.standardError)")
            // Under the terminal, output goes to -o, which age creates only once it has bytes to write.
            let written = (try? Data(contentsOf: URL(fileURLWithPath: directory.file("out.bin")))) ?? Data()
            let same = sameBytes(written, plaintext)
            #expect(same, "age -d output differs from the plaintext")
            try? FileManager.default.removeItem(atPath: directory.file("out.bin"))
        }
        // age rejects a wrong passphrase for our file too.
        let wrong = try runAgeWithPassphrase(["-d", "-o", directory.file("wrong.bin"), directory.file("file.age")],
                                             passphrase: "not it", in: directory)
        #expect(wrong.status != 0)
    }

    @Test func weDecryptAgePassphraseFile() throws {
        let directory = try ScratchFolder("age")
        let passphrase = "offsite interop passphrase"
        let plaintext = ageTestBytes(count: 65_536 + 3, seed: 7)
        try Data(plaintext).write(to: URL(fileURLWithPath: directory.file("plain.bin")))
        // age -p uses work factor 18 (about a second and 256 MiB of scrypt memory per side).
        let result = try runAgeWithPassphrase(["-p", "-o", directory.file("file.age"), directory.file("plain.bin")],
                                              passphrase: passphrase, in: directory)
        #expect(result.status == 0, "age -p failed: \(result.standardError)")
        let ciphertext = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory.file("file.age"))))
        #expect(String(decoding: ciphertext.prefix(40), as: UTF8.self).hasPrefix("age-encryption.org/v1\n-> scrypt "))

        let sink = DataSink()
        let decryptor = try AgeDecryptor(passphrase: passphrase, next: sink)
        try ageWrite(ciphertext, to: decryptor, pieceSize: 5_000)
        try decryptor.finish()
        let same = sameBytes(sink.data, plaintext)
        #expect(sink.isFinished && same)

        let capped = DataSink()
        let strict = try AgeDecryptor(passphrase: passphrase, maxWorkFactor: 17, next: capped)
        #expect(throws: AgeError.workFactorTooLarge(found: 18, maximum: 17)) { try strict.write(ciphertext) }
        #expect(!capped.isFinished)
    }
}
