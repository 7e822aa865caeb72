import Foundation
import Testing
@testable import OffsiteCore

/// Piece sizes for writes: byte by byte, awkward, just over a chunk, all at once.
private let pieceSizes: [Int?] = [1, 7, 65_537, nil]

/// The length of the header plus payload nonce of an age file (everything before the chunks).
private func payloadStart(_ file: [UInt8]) throws -> Int {
    let macLine = Array("\n--- ".utf8)
    guard let start = (0...(file.count - macLine.count)).first(where: { file[$0..<($0 + macLine.count)].elementsEqual(macLine) }) else {
        throw TestFailure("no MAC line")
    }
    return start + macLine.count + 43 + 1 + 16
}

private func expectFailure(_ ciphertext: [UInt8], identities: [AgeX25519Identity], pieceSize: Int? = nil,
                           _ check: (AgeError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
    let (sink, error) = ageDecrypt(ciphertext, with: identities, pieceSize: pieceSize)
    #expect(!sink.isFinished, "the downstream sink was finished despite a failure", sourceLocation: sourceLocation)
    guard let ageError = error as? AgeError else {
        Issue.record("expected an AgeError, got \(String(describing: error))", sourceLocation: sourceLocation)
        return
    }
    #expect(check(ageError), "unexpected error: \(ageError)", sourceLocation: sourceLocation)
}

@Suite struct AgeRoundTripTests {
    @Test(arguments: agePlaintextSizes, pieceSizes)
    func roundTripsThroughOurEncryptorAndDecryptor(size: Int, pieceSize: Int?) throws {
        // Byte-by-byte writes of megabytes only measure call overhead; 3 chunks are enough for them.
        if pieceSize == 1 && size > 3 * 65_536 { return }
        let identity = AgeX25519Identity.generate()
        let plaintext = ageTestBytes(count: size, seed: UInt64(size) + 7)
        let ciphertext = try ageEncrypt(plaintext, to: [identity.recipient], pieceSize: pieceSize)
        let chunks = max(1, (size + 65_535) / 65_536)
        #expect(ciphertext.count == (try payloadStart(ciphertext)) + size + 16 * chunks)
        let (sink, error) = ageDecrypt(ciphertext, with: [AgeX25519Identity.generate(), identity], pieceSize: pieceSize)
        #expect(error == nil, "\(String(describing: error))")
        #expect(sink.isFinished)
        #expect(sink.data.count == size)
        let same = sameBytes(sink.data, plaintext)
        #expect(same, "decrypted bytes differ")
    }

    @Test func passphraseRoundTripsAndWrongPassphraseFails() throws {
        let plaintext = ageTestBytes(count: 70_000)
        let sink = DataSink()
        let encryptor = try AgeEncryptor(passphrase: "correct horse battery staple", workFactor: 10, next: sink)
        try ageWrite(plaintext, to: encryptor, pieceSize: 1000)
        try encryptor.finish()
        let ciphertext = Array(sink.data)
        let header = String(decoding: ciphertext.prefix(200), as: UTF8.self)
        #expect(header.hasPrefix("age-encryption.org/v1\n-> scrypt "))
        #expect(header.split(separator: "\n")[1].hasSuffix(" 10"))

        let good = DataSink()
        let decryptor = try AgeDecryptor(passphrase: "correct horse battery staple", next: good)
        try ageWrite(ciphertext, to: decryptor, pieceSize: 4096)
        try decryptor.finish()
        let same = sameBytes(good.data, plaintext)
        #expect(good.isFinished && same)

        let bad = DataSink()
        let wrong = try AgeDecryptor(passphrase: "incorrect horse", next: bad)
        #expect(throws: AgeError.wrongPassphrase) { try wrong.write(ciphertext) }
        #expect(throws: AgeError.wrongPassphrase) { try wrong.finish() }
        #expect(!bad.isFinished && bad.data.isEmpty)

        let capped = DataSink()
        let strict = try AgeDecryptor(passphrase: "correct horse battery staple", maxWorkFactor: 9, next: capped)
        #expect(throws: AgeError.workFactorTooLarge(found: 10, maximum: 9)) { try strict.write(ciphertext) }
        #expect(!capped.isFinished)

        expectFailure(ciphertext, identities: [AgeX25519Identity.generate()]) { $0 == .fileIsPassphraseEncrypted }
    }

    @Test func passphraseDecryptorRejectsRecipientFiles() throws {
        let ciphertext = try ageEncrypt([1, 2, 3], to: [AgeX25519Identity.generate().recipient])
        let sink = DataSink()
        let decryptor = try AgeDecryptor(passphrase: "secret", next: sink)
        #expect(throws: AgeError.fileIsNotPassphraseEncrypted) { try decryptor.write(ciphertext) }
        #expect(!sink.isFinished)
    }

    @Test func encryptsToSeveralRecipientsAnyOfWhichDecrypts() throws {
        let identities = (0..<3).map { _ in AgeX25519Identity.generate() }
        let plaintext = ageTestBytes(count: 100_000)
        let ciphertext = try ageEncrypt(plaintext, to: identities.map(\.recipient))
        #expect(String(decoding: ciphertext.prefix(1000), as: UTF8.self).components(separatedBy: "-> X25519 ").count == 4)
        for identity in identities {
            let (sink, error) = ageDecrypt(ciphertext, with: [identity], pieceSize: 10_000)
            let same = sameBytes(sink.data, plaintext)
            #expect(error == nil && sink.isFinished && same)
        }
    }

    @Test func encryptorRefusesBadArguments() {
        let sink = DataSink()
        #expect(throws: AgeError.noRecipients) { try AgeEncryptor(recipients: [], next: sink) }
        #expect(throws: AgeError.emptyPassphrase) { try AgeEncryptor(passphrase: "", workFactor: 10, next: sink) }
        #expect(throws: AgeError.invalidWorkFactor(23)) { try AgeEncryptor(passphrase: "x", workFactor: 23, next: sink) }
        #expect(throws: AgeError.invalidWorkFactor(0)) { try AgeEncryptor(passphrase: "x", workFactor: 0, next: sink) }
        // The all-zero point is low-order: the shared secret would be zero.
        let lowOrder = AgeX25519Recipient(publicKey: [UInt8](repeating: 0, count: 32))
        #expect(throws: AgeError.allZeroSharedSecret) { try AgeEncryptor(recipients: [lowOrder], next: sink) }
        #expect(sink.data.isEmpty && !sink.isFinished)
    }

    @Test func decryptorReleasesEachChunkAsSoonAsItAuthenticates() throws {
        let identity = AgeX25519Identity.generate()
        let plaintext = ageTestBytes(count: 3 * 65_536 + 10)
        let ciphertext = try ageEncrypt(plaintext, to: [identity.recipient])
        let start = try payloadStart(ciphertext)
        let sink = DataSink()
        let decryptor = try AgeDecryptor(identities: [identity], next: sink)
        try decryptor.write(Array(ciphertext[..<(start + 65_552)]))
        #expect(sink.data.count == 65_536)
        try decryptor.write(Array(ciphertext[(start + 65_552)..<(start + 2 * 65_552 + 5)]))
        #expect(sink.data.count == 2 * 65_536)
        #expect(!sink.isFinished)
        try decryptor.write(Array(ciphertext[(start + 2 * 65_552 + 5)...]))
        try decryptor.finish()
        let same = sameBytes(sink.data, plaintext)
        #expect(sink.isFinished && same)
        #expect(throws: AgeError.streamClosed) { try decryptor.write([0]) }
    }
}

@Suite struct AgeTamperingTests {
    let identity = AgeX25519Identity.generate()

    @Test func wrongIdentityMatchesNothing() throws {
        let ciphertext = try ageEncrypt([1, 2, 3], to: [identity.recipient])
        let others = [AgeX25519Identity.generate(), AgeX25519Identity.generate()]
        expectFailure(ciphertext, identities: others) { $0 == .noIdentityMatched(tried: 2) }
        let (_, error) = ageDecrypt(ciphertext, with: others)
        let message = (error as? AgeError)?.message ?? ""
        #expect(message == "no identity matches this age file (tried 2 identities)")
        #expect(!message.contains(others[0].encoded) && !message.contains(others[0].recipient.encoded))
    }

    @Test func flippedHeaderBytesAreDetected() throws {
        let ciphertext = try ageEncrypt(ageTestBytes(count: 1000), to: [identity.recipient])
        let headerEnd = try payloadStart(ciphertext) - 16
        // Every byte of the header, flipped one at a time, must make decryption fail.
        for position in 0..<headerEnd {
            var tampered = ciphertext
            tampered[position] ^= 0x01
            expectFailure(tampered, identities: [identity]) { _ in true }
        }
        // A flipped MAC character still decodes (canonically) but does not verify.
        var tampered = ciphertext
        let macCharacter = headerEnd - 1 - 10
        tampered[macCharacter] = tampered[macCharacter] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        expectFailure(tampered, identities: [identity]) { $0 == .headerMACMismatch }
        // An extra (unknown) stanza is well-formed but not covered by the MAC.
        let versionLine = Array("age-encryption.org/v1\n".utf8)
        let injected = versionLine + Array("-> grease x\nAAAA\n".utf8) + ciphertext[versionLine.count...]
        expectFailure(Array(injected), identities: [identity]) { $0 == .headerMACMismatch }
    }

    @Test func flippedPayloadByteFailsThatChunk() throws {
        let plaintext = ageTestBytes(count: 3 * 65_536 + 100)
        let ciphertext = try ageEncrypt(plaintext, to: [identity.recipient])
        let start = try payloadStart(ciphertext)
        for (chunk, offset) in [(0, 5), (1, 65_552 + 65_540), (3, 3 * 65_552 + 3)] {
            var tampered = ciphertext
            tampered[start + offset] ^= 0x80
            let (sink, error) = ageDecrypt(tampered, with: [identity], pieceSize: 4096)
            #expect(error as? AgeError == .chunkAuthenticationFailed(index: UInt64(chunk)))
            #expect(!sink.isFinished)
            // Chunks before the damaged one were released, nothing after it.
            let released = sameBytes(sink.data, plaintext.prefix(chunk * 65_536))
            #expect(released, "chunk \(chunk): released bytes differ")
        }
        var nonceFlipped = ciphertext
        nonceFlipped[start - 3] ^= 0x01
        expectFailure(nonceFlipped, identities: [identity]) { $0 == .chunkAuthenticationFailed(index: 0) }
        #expect(AgeError.chunkAuthenticationFailed(index: 2).message == "age payload chunk 2 failed authentication: the file is tampered or corrupt")
    }

    @Test func truncationIsDetectedEverywhere() throws {
        let plaintext = ageTestBytes(count: 2 * 65_536 + 500)
        let ciphertext = try ageEncrypt(plaintext, to: [identity.recipient])
        let start = try payloadStart(ciphertext)
        let cases: [(String, Int, (AgeError) -> Bool)] = [
            ("mid version line", 10, { $0 == .truncated }),
            ("mid header", start - 40, { $0 == .truncated }),
            ("end of header, no nonce", start - 16, { $0 == .truncated }),
            ("mid nonce", start - 5, { $0 == .truncated }),
            ("after nonce, no chunk", start, { $0 == .truncated }),
            ("mid first chunk", start + 1000, { $0 == .chunkAuthenticationFailed(index: 0) }),
            ("first chunk boundary", start + 65_552, { $0 == .truncated }),
            ("second chunk boundary", start + 2 * 65_552, { $0 == .truncated }),
            ("inside the final chunk", ciphertext.count - 1, { $0 == .chunkAuthenticationFailed(index: 2) }),
            ("final tag cut short", start + 2 * 65_552 + 10, { $0 == .chunkAuthenticationFailed(index: 2) }),
        ]
        for (name, length, check) in cases {
            for pieceSize in [nil, 7] as [Int?] {
                let (sink, error) = ageDecrypt(Array(ciphertext.prefix(length)), with: [identity], pieceSize: pieceSize)
                #expect(!sink.isFinished, "\(name): downstream finished")
                let ageError = error as? AgeError
                #expect(ageError.map(check) == true, "\(name): \(String(describing: error))")
            }
        }
        // A file whose plaintext is an exact number of chunks ends with a full final chunk;
        // cutting that whole chunk off leaves a valid-looking but unfinished stream.
        let exact = try ageEncrypt(ageTestBytes(count: 2 * 65_536), to: [identity.recipient])
        expectFailure(Array(exact.dropLast(65_552)), identities: [identity]) { $0 == .truncated }
        #expect(AgeError.truncated.message == "age file is truncated: it ended before the final payload chunk")
    }

    @Test func trailingDataIsRejected() throws {
        // A full final chunk is recognised as final at once, so any further byte is trailing data.
        let full = try ageEncrypt(ageTestBytes(count: 65_536), to: [identity.recipient])
        for pieceSize in [nil, 1, 7] as [Int?] {
            expectFailure(full + [0], identities: [identity], pieceSize: pieceSize) { $0 == .trailingData }
        }
        // After a short final chunk, extra bytes make that chunk fail to authenticate.
        let short = try ageEncrypt(ageTestBytes(count: 1000), to: [identity.recipient])
        expectFailure(short + Array("garbage".utf8), identities: [identity]) { $0 == .chunkAuthenticationFailed(index: 0) }
        let empty = try ageEncrypt([], to: [identity.recipient])
        expectFailure(empty + Array(repeating: 0, count: 65_552), identities: [identity]) { $0 == .chunkAuthenticationFailed(index: 0) }
    }

    @Test func streamRulesOnChunkFlagsAreEnforced() throws {
        let full = ageTestBytes(count: 65_536, seed: 5)
        let tail = ageTestBytes(count: 10, seed: 6)
        let cases: [(String, [(plaintext: [UInt8], isFinal: Bool)], AgeError?)] = [
            ("well-formed", [(full, false), (tail, true)], nil),
            ("empty final after a full chunk", [(full, false), ([], true)], .emptyFinalChunk),
            ("final flag on a middle chunk", [(full, true), (tail, true)], .trailingData),
            ("short last chunk not flagged final", [(full, false), (tail, false)], .chunkAuthenticationFailed(index: 1)),
            ("only non-final full chunks", [(full, false), (full, false)], .truncated),
            ("no chunk at all", [], .truncated),
        ]
        for (name, chunks, expected) in cases {
            let file = try forgeAgeFile(passphrase: "p", chunks: chunks)
            for pieceSize in [nil, 3] as [Int?] {
                let (sink, error) = ageDecrypt(file, passphrase: "p", pieceSize: pieceSize)
                #expect(error as? AgeError == expected, "\(name): \(String(describing: error))")
                #expect(sink.isFinished == (expected == nil), "\(name)")
                if expected == nil {
                    let same = sameBytes(sink.data, full + tail)
                    #expect(same, "\(name): decrypted bytes differ")
                }
            }
        }
    }

    @Test func garbageIsNotAnAgeFile() throws {
        expectFailure([], identities: [identity]) { $0 == .notAnAgeFile }
        expectFailure([0x1f, 0x8b, 0x08, 0x00], identities: [identity]) { $0 == .notAnAgeFile }
        expectFailure(Array("SQLite format 3\u{0}".utf8), identities: [identity]) { $0 == .notAnAgeFile }
        expectFailure(ageTestBytes(count: 100_000), identities: [identity], pieceSize: 1) { $0 == .notAnAgeFile }
        expectFailure(Array("age-encryption.org/v2\n-> X25519 a\n\n--- x\n".utf8), identities: [identity]) { $0 == .unsupportedVersion }
        // An armored file is not decoded by this codec.
        expectFailure(Array("-----BEGIN AGE ENCRYPTED FILE-----\n".utf8), identities: [identity]) { $0 == .notAnAgeFile }
    }

    @Test func malformedHeadersAreRejected() throws {
        let mac = String(repeating: "A", count: 43)
        let share = AgeBase64.encode(AgePrimitives.randomBytes(32))
        let body = AgeBase64.encode(AgePrimitives.randomBytes(32))
        let x25519 = "-> X25519 \(String(decoding: share, as: UTF8.self))\n\(String(decoding: body, as: UTF8.self))\n"
        let headers: [String] = [
            "age-encryption.org/v1\n--- \(mac)\n",                                      // no stanza
            "age-encryption.org/v1\n->  X25519 a\n\n--- \(mac)\n",                       // empty argument
            "age-encryption.org/v1\n-> X25519 a \n\n--- \(mac)\n",                       // trailing space
            "age-encryption.org/v1\n\(x25519.replacingOccurrences(of: "\n", with: "\r\n"))--- \(mac)\n", // CRLF
            "age-encryption.org/v1\n-> x\n\(String(repeating: "A", count: 65))\nAAA\n--- \(mac)\n", // 65 columns
            "age-encryption.org/v1\n-> x\n\(String(repeating: "A", count: 64))\n--- \(mac)\n", // no short final line
            "age-encryption.org/v1\n-> x\nAAB\n--- \(mac)\n",                            // non-canonical body
            "age-encryption.org/v1\n-> x\nAA==\n--- \(mac)\n",                           // padded body
            "age-encryption.org/v1\n\(x25519)--- \(mac.dropLast())B\n",                  // non-canonical MAC
            "age-encryption.org/v1\n\(x25519)---\(mac)\n",                               // no space after ---
            "age-encryption.org/v1\n\(x25519)--- \(mac)A\n",                             // long MAC
            "age-encryption.org/v1\n\(x25519)x\n",                                       // junk line
            "age-encryption.org/v1\n-> X25519\n\(String(decoding: body, as: UTF8.self))\n--- \(mac)\n", // no share
            "age-encryption.org/v1\n-> X25519 \(String(decoding: share, as: UTF8.self)) extra\n\(String(decoding: body, as: UTF8.self))\n--- \(mac)\n",
            "age-encryption.org/v1\n-> X25519 AAAA\n\(String(decoding: body, as: UTF8.self))\n--- \(mac)\n", // short share
            "age-encryption.org/v1\n-> X25519 \(String(decoding: share, as: UTF8.self))\nAAAA\n--- \(mac)\n", // short body
            "age-encryption.org/v1\n-> scrypt c2FsdHNhbHRzYWx0c2FsdA 10\nAAAA\n\(x25519)--- \(mac)\n", // scrypt not alone
        ]
        for header in headers {
            expectFailure(Array(header.utf8) + AgePrimitives.randomBytes(48), identities: [identity]) {
                if case .malformedHeader = $0 { return true } else { return false }
            }
        }
    }

    @Test func allZeroSharedSecretAborts() throws {
        let zeroShare = String(repeating: "A", count: 43)
        let body = String(decoding: AgeBase64.encode(AgePrimitives.randomBytes(32)), as: UTF8.self)
        let header = "age-encryption.org/v1\n-> X25519 \(zeroShare)\n\(body)\n--- \(String(repeating: "A", count: 43))\n"
        expectFailure(Array(header.utf8) + AgePrimitives.randomBytes(48), identities: [identity]) { $0 == .allZeroSharedSecret }
    }

    @Test func headerLargerThanTheLimitIsRefused() throws {
        var header = Array("age-encryption.org/v1\n".utf8)
        let stanza = Array("-> grease \(String(repeating: "x", count: 100))\n\n".utf8)
        while header.count <= AgeHeader.maximumSize { header += stanza }
        expectFailure(header, identities: [identity], pieceSize: 65_536) { $0 == .headerTooLarge(limit: AgeHeader.maximumSize) }
    }
}
