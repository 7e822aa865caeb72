import Foundation
import Testing
@testable import OffsiteCore

private func hex(_ string: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = string.startIndex
    while index < string.endIndex {
        let next = string.index(index, offsetBy: 2)
        bytes.append(UInt8(string[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

@Suite struct AgePrimitivesTests {
    // RFC 5869 appendix A, test cases 1-3 (case 2 has an 80-byte salt, longer than an HMAC
    // block, like the X25519 salt is longer than the one-shot HMAC key).
    @Test func hkdfMatchesRFC5869TestVectors() {
        #expect(AgePrimitives.hkdfSHA256(inputKey: [UInt8](repeating: 0x0b, count: 22), salt: Array(0x00...0x0c),
                                         info: Array(0xf0...0xf9), length: 42)
                == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"))
        #expect(AgePrimitives.hkdfSHA256(inputKey: Array(0x00...0x4f), salt: Array(0x60...0xaf),
                                         info: Array(0xb0...0xff), length: 82)
                == hex("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"))
        #expect(AgePrimitives.hkdfSHA256(inputKey: [UInt8](repeating: 0x0b, count: 22), salt: [], info: [], length: 42)
                == hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"))
    }

    // RFC 7914 section 12, the r = 8, p = 1 vector (N = 2^14, 16 MiB).
    @Test func scryptMatchesRFC7914TestVector() throws {
        let key = try AgePrimitives.scrypt(passphrase: Array("pleaseletmein".utf8), salt: Array("SodiumChloride".utf8),
                                           logN: 14, length: 64)
        #expect(key == hex("7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"))
    }

    // BIP 173 valid and invalid test vectors.
    @Test func bech32MatchesBIP173Vectors() throws {
        let all = try Bech32.decode("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")
        #expect(all.humanReadablePart == "abcdef")
        #expect(all.data == hex("00443214c74254b635cf84653a56d7c675be77df"))
        #expect(Bech32.encode(humanReadablePart: "abcdef", data: all.data) == "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")
        let empty = try Bech32.decode("A12UEL5L")
        #expect(empty.humanReadablePart == "A" && empty.data.isEmpty)
        #expect(Bech32.encode(humanReadablePart: "a", data: [], uppercase: true) == "A12UEL5L")

        #expect(throws: Bech32.DecodingError.checksumMismatch) { try Bech32.decode("A1G7SGD8") } // checksum over uppercase HRP
        #expect(throws: Bech32.DecodingError.missingSeparator) { try Bech32.decode("pzry9x0s0muk") }
        #expect(throws: Bech32.DecodingError.invalidHumanReadablePart) { try Bech32.decode("1pzry9x0s0muk") }
        #expect(throws: Bech32.DecodingError.invalidCharacter) { try Bech32.decode("x1b4n0q5v") }
        #expect(throws: Bech32.DecodingError.tooShort) { try Bech32.decode("li1dgmt3") }
        #expect(throws: Bech32.DecodingError.mixedCase) { try Bech32.decode("abcdef1Qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw") }
        #expect(throws: Bech32.DecodingError.checksumMismatch) { try Bech32.decode("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxx") }
    }

    @Test func base64IsStrictAndCanonical() {
        for count in 0..<10 {
            let bytes = ageTestBytes(count: count, seed: UInt64(count + 1))
            #expect(AgeBase64.decode(AgeBase64.encode(bytes)) == bytes)
        }
        #expect(AgeBase64.encode(Array("any carnal pleas".utf8)) == Array("YW55IGNhcm5hbCBwbGVhcw".utf8))
        #expect(AgeBase64.decode(Array("YW55IGNhcm5hbCBwbGVhcw".utf8)) == Array("any carnal pleas".utf8))
        #expect(AgeBase64.decode(Array("YW55IGNhcm5hbCBwbGVhcx".utf8)) == nil)  // non-zero leftover bits
        #expect(AgeBase64.decode(Array("YW55IGNhcm5hbCBwbGVhcw==".utf8)) == nil) // padding
        #expect(AgeBase64.decode(Array("YW55I".utf8)) == nil)                    // impossible length
        #expect(AgeBase64.decode(Array("YW5-".utf8)) == nil)                     // URL alphabet
    }
}

@Suite struct AgeKeysTests {
    // The example key pair of the age specification (c2sp.org/age).
    static let specIdentity = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
    static let specRecipient = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"

    @Test func specExampleIdentityDerivesSpecRecipient() throws {
        let identity = try AgeX25519Identity(parsing: Self.specIdentity)
        #expect(identity.recipient.encoded == Self.specRecipient)
        #expect(identity.encoded == Self.specIdentity)
        #expect(identity.secret.copiedBytes == [UInt8](repeating: 0x42, count: 32))
        #expect(try AgeX25519Recipient(parsing: Self.specRecipient).encoded == Self.specRecipient)
    }

    @Test func generatedIdentitiesRoundTripAndDiffer() throws {
        let first = AgeX25519Identity.generate()
        let second = AgeX25519Identity.generate()
        #expect(first.encoded != second.encoded)
        #expect(first.encoded.hasPrefix("AGE-SECRET-KEY-1") && first.encoded == first.encoded.uppercased())
        #expect(first.encoded.count == 74)
        #expect(first.recipient.encoded.hasPrefix("age1") && first.recipient.encoded.count == 62)
        let reparsed = try AgeX25519Identity(parsing: first.encoded)
        #expect(reparsed.recipient == first.recipient)
        #expect(try AgeX25519Recipient(parsing: first.recipient.encoded) == first.recipient)
        #expect(!String(describing: first).contains(first.encoded))
    }

    @Test func invalidKeyStringsAreRejectedWithoutEchoingThem() {
        var mistyped = Array(Self.specIdentity)
        mistyped[30] = mistyped[30] == "Q" ? "P" : "Q"
        let inputs: [String] = [
            String(mistyped),                                  // checksum
            Self.specIdentity.lowercased().replacingOccurrences(of: "age-secret-key-1g", with: "age-secret-key-1G"), // mixed case
            Self.specRecipient,                                // a recipient is not an identity
            Bech32.encode(humanReadablePart: "AGE-SECRET-KEY-", data: [1, 2, 3], uppercase: true), // wrong length
            "",
        ]
        for input in inputs {
            do {
                _ = try AgeX25519Identity(parsing: input)
                Issue.record("accepted an invalid identity")
            } catch {
                guard case .invalidIdentity = error else { Issue.record("unexpected \(error)"); continue }
                #expect(input.isEmpty || !error.message.contains(input))
                #expect(!error.message.contains("GFPYYSJZ"))
            }
        }
        #expect(throws: AgeError.self) { try AgeX25519Recipient(parsing: Self.specIdentity) }
        #expect(throws: AgeError.self) { try AgeX25519Recipient(parsing: "age1qqqqqqqqqqqq") }
        #expect(throws: AgeError.self) { try AgeX25519Recipient(parsing: String(Self.specRecipient.dropLast()) + "q") }
    }

    @Test func identityFileParsesCommentsBlankLinesAndSeveralKeys() throws {
        let second = AgeX25519Identity.generate()
        let contents = "# created: 2024-01-01T00:00:00Z\r\n# public key: \(Self.specRecipient)\r\n\(Self.specIdentity)\r\n\n\n  # another\n\(second.encoded)\n"
        let identities = try AgeIdentityFile.parse(contents)
        #expect(identities.map(\.recipient) == [try AgeX25519Recipient(parsing: Self.specRecipient), second.recipient])
    }

    @Test func identityFileErrorsNameTheLineButNotTheKey() throws {
        let broken = String(Self.specIdentity.dropLast()) + "Q"
        let contents = "# comment\n\n\(Self.specIdentity)\n\(broken)\n"
        do {
            _ = try AgeIdentityFile.parse(contents)
            Issue.record("accepted a corrupt identity file")
        } catch {
            #expect(error == .invalidIdentityFileLine(line: 4, reason: "not a valid age identity: the key has a wrong checksum (mistyped or truncated?)"))
            #expect(error.message.hasPrefix("identity file line 4:"))
            #expect(!error.message.contains("GFPYYSJZ"))
        }
        #expect(throws: AgeError.emptyIdentityFile) { try AgeIdentityFile.parse("# only comments\n\n") }
    }

    @Test func renderedIdentityFileHasAgeKeygenShape() throws {
        let identity = AgeX25519Identity.generate()
        let text = AgeIdentityFile.render(identity: identity, created: Date(timeIntervalSince1970: 1_700_000_000))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines == ["# created: 2023-11-14T22:13:20Z", "# public key: \(identity.recipient.encoded)", identity.encoded, ""])
        #expect(try AgeIdentityFile.parse(text).map(\.recipient) == [identity.recipient])
    }
}
