import Foundation

/// Bech32 (BIP 173) as age uses it for keys: the original checksum constant, 8-bit data packed
/// into 5-bit groups, and no 90-character limit (only a sanity bound). Strings are all lowercase
/// or all uppercase; the checksum is always computed over the lowercase form.
enum Bech32 {
    /// Why a string is not valid Bech32. Descriptions never echo the input.
    enum DecodingError: Error, Equatable, CustomStringConvertible {
        case mixedCase
        case missingSeparator
        case invalidHumanReadablePart
        case invalidCharacter
        case tooShort
        case tooLong
        case checksumMismatch
        case invalidPadding

        var description: String {
            switch self {
            case .mixedCase: return "mixes upper and lower case"
            case .missingSeparator: return "has no Bech32 separator '1'"
            case .invalidHumanReadablePart: return "has an invalid prefix"
            case .invalidCharacter: return "contains a character outside the Bech32 alphabet"
            case .tooShort: return "is too short to hold a checksum"
            case .tooLong: return "is too long"
            case .checksumMismatch: return "has a wrong checksum (mistyped or truncated?)"
            case .invalidPadding: return "has invalid padding bits"
            }
        }
    }

    /// Longest string accepted; far above any age key, far below anything that could hurt.
    static let maximumLength = 8192

    private static let alphabet = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)
    private static let alphabetIndex: [Int8] = {
        var table = [Int8](repeating: -1, count: 128)
        for (index, character) in alphabet.enumerated() { table[Int(character)] = Int8(index) }
        return table
    }()
    private static let generator: [UInt32] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]

    private static func polymod(_ values: [UInt8]) -> UInt32 {
        var checksum: UInt32 = 1
        for value in values {
            let top = checksum >> 25
            checksum = (checksum & 0x1ffffff) << 5 ^ UInt32(value)
            for bit in 0..<5 where (top >> UInt32(bit)) & 1 == 1 {
                checksum ^= generator[bit]
            }
        }
        return checksum
    }

    private static func expand(_ humanReadablePart: [UInt8]) -> [UInt8] {
        humanReadablePart.map { $0 >> 5 } + [0] + humanReadablePart.map { $0 & 31 }
    }

    /// Regroups bits; with `pad` false, leftover bits must be fewer than `from` and all zero.
    private static func convertBits(_ data: [UInt8], from: Int, to: Int, pad: Bool) -> [UInt8]? {
        var accumulator = 0
        var bits = 0
        let mask = (1 << to) - 1
        var result: [UInt8] = []
        result.reserveCapacity(data.count * from / to + 1)
        for value in data {
            accumulator = ((accumulator << from) | Int(value)) & 0xffff
            bits += from
            while bits >= to {
                bits -= to
                result.append(UInt8((accumulator >> bits) & mask))
            }
        }
        if pad {
            if bits > 0 { result.append(UInt8((accumulator << (to - bits)) & mask)) }
        } else if bits >= from || (accumulator << (to - bits)) & mask != 0 {
            AgePrimitives.wipe(&result)
            return nil
        }
        return result
    }

    /// Encodes `data` under `humanReadablePart` (which must be ASCII 33...126), in lowercase
    /// or, when `uppercase` is true, uppercase.
    static func encode(humanReadablePart: String, data: [UInt8], uppercase: Bool = false) -> String {
        let prefix = Array(humanReadablePart.lowercased().utf8)
        precondition(!prefix.isEmpty && prefix.allSatisfy { $0 >= 33 && $0 <= 126 }, "invalid Bech32 prefix")
        var values = convertBits(data, from: 8, to: 5, pad: true)!
        defer { AgePrimitives.wipe(&values) }
        let checksumValue = polymod(expand(prefix) + values + [0, 0, 0, 0, 0, 0]) ^ 1
        var characters = prefix + [UInt8(ascii: "1")]
        for value in values { characters.append(alphabet[Int(value)]) }
        for index in 0..<6 {
            characters.append(alphabet[Int((checksumValue >> (5 * (5 - UInt32(index)))) & 31)])
        }
        defer { AgePrimitives.wipe(&characters) }
        let string = String(decoding: characters, as: UTF8.self)
        return uppercase ? string.uppercased() : string
    }

    /// Decodes a Bech32 string into its human-readable part (as written, upper- or lowercase)
    /// and its 8-bit data.
    static func decode(_ string: String) throws(DecodingError) -> (humanReadablePart: String, data: [UInt8]) {
        var characters = Array(string.utf8)
        defer { AgePrimitives.wipe(&characters) }
        guard characters.count <= maximumLength else { throw .tooLong }
        guard characters.allSatisfy({ $0 >= 33 && $0 <= 126 }) else { throw .invalidCharacter }
        let hasLower = characters.contains { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }
        let hasUpper = characters.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
        guard !(hasLower && hasUpper) else { throw .mixedCase }
        guard let separator = characters.lastIndex(of: UInt8(ascii: "1")) else { throw .missingSeparator }
        guard separator > 0 else { throw .invalidHumanReadablePart }
        guard characters.count - separator - 1 >= 6 else { throw .tooShort }

        var lowered = characters.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }
        defer { AgePrimitives.wipe(&lowered) }
        let prefix = Array(lowered[..<separator])
        var values: [UInt8] = []
        values.reserveCapacity(lowered.count - separator - 1)
        defer { AgePrimitives.wipe(&values) }
        for character in lowered[(separator + 1)...] {
            let index = character < 128 ? alphabetIndex[Int(character)] : -1
            guard index >= 0 else { throw .invalidCharacter }
            values.append(UInt8(index))
        }
        guard polymod(expand(prefix) + values) == 1 else { throw .checksumMismatch }
        var dataValues = Array(values.dropLast(6))
        defer { AgePrimitives.wipe(&dataValues) }
        guard let data = convertBits(dataValues, from: 5, to: 8, pad: false) else {
            throw .invalidPadding
        }
        let humanReadablePart = String(decoding: characters[..<separator], as: UTF8.self)
        return (humanReadablePart, data)
    }
}
