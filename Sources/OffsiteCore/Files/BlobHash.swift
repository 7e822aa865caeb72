import Foundation

/// The content hash that names a blob of a file set: BLAKE2b-256 of its bytes, written as 64
/// lowercase hex digits. Stored as four words so that an index of many costs 32 bytes each.
public struct BlobHash: Hashable, Sendable, Comparable, CustomStringConvertible {
    private var a: UInt64, b: UInt64, c: UInt64, d: UInt64

    /// Takes a 32-byte digest.
    init(digest: [UInt8]) {
        precondition(digest.count == 32, "a blob hash has 32 bytes")
        func word(_ offset: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in offset..<offset + 8 { value = value << 8 | UInt64(digest[index]) }
            return value
        }
        a = word(0)
        b = word(8)
        c = word(16)
        d = word(24)
    }

    /// The hash of `bytes`.
    static func of(_ bytes: UnsafeRawBufferPointer) -> BlobHash {
        BlobHash(digest: ContentHasher.digest(of: bytes))
    }

    /// The hash of `data`.
    static func of(_ data: Data) -> BlobHash {
        data.withUnsafeBytes { of($0) }
    }

    /// Parses 64 hex digits (either case); nil for anything else.
    public init?(hex: some Collection<UInt8>) {
        guard hex.count == 64 else { return nil }
        var words: [UInt64] = [0, 0, 0, 0]
        for (index, character) in hex.enumerated() {
            let nibble: UInt64
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = UInt64(character - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = UInt64(character - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = UInt64(character - UInt8(ascii: "A") + 10)
            default: return nil
            }
            words[index / 16] = words[index / 16] << 4 | nibble
        }
        a = words[0]
        b = words[1]
        c = words[2]
        d = words[3]
    }

    /// Parses 64 hex digits; nil for anything else.
    public init?(_ text: String) {
        self.init(hex: Array(text.utf8))
    }

    /// The 64 lowercase hex digits.
    public var hexBytes: [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for word in [a, b, c, d] {
            for shift in stride(from: 60, through: 0, by: -4) { out.append(digits[Int((word >> UInt64(shift)) & 0xF)]) }
        }
        return out
    }

    /// The 64 lowercase hex digits.
    public var description: String { String(decoding: hexBytes, as: UTF8.self) }

    /// The blob's name inside a pack: `ab/abcdef…` (the first two digits are a folder).
    public var memberName: [UInt8] {
        let hex = hexBytes
        return Array(hex[0..<2]) + [UInt8(ascii: "/")] + hex
    }

    /// Orders as the hex text does.
    public static func < (lhs: BlobHash, rhs: BlobHash) -> Bool {
        (lhs.a, lhs.b, lhs.c, lhs.d) < (rhs.a, rhs.b, rhs.c, rhs.d)
    }
}
