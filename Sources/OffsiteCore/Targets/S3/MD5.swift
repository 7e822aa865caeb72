import Foundation

/// MD5 (RFC 1321), only for S3's `Content-MD5` integrity header; libsodium has no MD5, and MD5 is
/// never used here for anything that needs a secure hash.
struct MD5 {
    private var state: (UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476)
    private var pending = [UInt8](repeating: 0, count: 64)
    private var pendingCount = 0
    private var totalLength: UInt64 = 0

    /// The per-round left rotations.
    private static let shifts: [UInt32] = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                           5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
                                           4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                           6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21]
    /// floor(abs(sin(i + 1)) · 2^32), the RFC's table T.
    private static let constants: [UInt32] = (0..<64).map { UInt32(truncatingIfNeeded: Int64(abs(sin(Double($0 + 1))) * 4_294_967_296)) }

    /// A fresh digest.
    init() {}

    /// The digest of `data`.
    static func digest(_ data: Data) -> [UInt8] {
        var md5 = MD5()
        data.withUnsafeBytes { md5.update($0) }
        return md5.finalize()
    }

    /// Adds `bytes` to the message.
    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var base = bytes.baseAddress else { return }
        var remaining = bytes.count
        totalLength &+= UInt64(remaining)
        if pendingCount > 0 {
            let take = min(64 - pendingCount, remaining)
            pending.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: pendingCount).copyMemory(from: base, byteCount: take) }
            pendingCount += take
            base += take
            remaining -= take
            if pendingCount == 64 {
                pending.withUnsafeBytes { compress($0.baseAddress!) }
                pendingCount = 0
            }
        }
        while remaining >= 64 {
            compress(base)
            base += 64
            remaining -= 64
        }
        if remaining > 0 {
            pending.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: base, byteCount: remaining) }
            pendingCount = remaining
        }
    }

    /// Pads the message and returns the 16-byte digest.
    mutating func finalize() -> [UInt8] {
        let bitLength = totalLength &* 8
        var padding: [UInt8] = [0x80]
        let afterMarker = (pendingCount + 1) % 64
        padding += [UInt8](repeating: 0, count: afterMarker <= 56 ? 56 - afterMarker : 120 - afterMarker)
        for index in 0..<8 { padding.append(UInt8(truncatingIfNeeded: bitLength >> (8 * UInt64(index)))) }
        let savedLength = totalLength
        padding.withUnsafeBytes { update($0) }
        totalLength = savedLength
        var digest: [UInt8] = []
        for word in [state.0, state.1, state.2, state.3] {
            for index in 0..<4 { digest.append(UInt8(truncatingIfNeeded: word >> (8 * UInt32(index)))) }
        }
        return digest
    }

    /// Runs the 64 steps over one 64-byte block.
    private mutating func compress(_ block: UnsafeRawPointer) {
        var (a, b, c, d) = state
        Self.shifts.withUnsafeBufferPointer { shifts in
            Self.constants.withUnsafeBufferPointer { constants in
                for step in 0..<64 {
                    var mixed: UInt32
                    var wordIndex: Int
                    switch step {
                    case 0..<16:
                        mixed = (b & c) | (~b & d)
                        wordIndex = step
                    case 16..<32:
                        mixed = (d & b) | (~d & c)
                        wordIndex = (5 &* step &+ 1) & 15
                    case 32..<48:
                        mixed = b ^ c ^ d
                        wordIndex = (3 &* step &+ 5) & 15
                    default:
                        mixed = c ^ (b | ~d)
                        wordIndex = (7 &* step) & 15
                    }
                    let word = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: wordIndex &* 4, as: UInt32.self))
                    mixed = mixed &+ a &+ constants[step] &+ word
                    a = d
                    d = c
                    c = b
                    let shift = shifts[step]
                    b = b &+ ((mixed << shift) | (mixed >> (32 - shift)))
                }
            }
        }
        state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d)
    }
}
