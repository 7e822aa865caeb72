import Foundation

// The tar format (POSIX ustar) as file set packs use it: regular members only, written here, and
// read back for restore and verify. GNU tar and bsdtar extract what `TarWriter` writes.

/// A tar stream that could not be read.
public struct TarError: UserFacingError, Equatable {
    /// What is wrong, in words.
    public var detail: String

    /// Creates an error.
    public init(_ detail: String) { self.detail = detail }

    public var message: String { "not a readable tar stream: \(detail)" }
}

/// Size of a tar block: headers and data are padded to it.
let tarBlockSize = 512

/// Writes a tar archive of regular members into a sink: a ustar header per member, its bytes,
/// zeros up to the next 512-byte boundary, and two zero blocks at the end.
final class TarWriter {
    private let next: any ByteSink
    /// Bytes written so far (headers, data and padding).
    private(set) var byteCount: Int64 = 0
    private static let zeros = [UInt8](repeating: 0, count: 2 * tarBlockSize)

    /// Creates a writer in front of `next`.
    init(next: any ByteSink) {
        self.next = next
    }

    /// Writes one regular member named `name` (at most 100 bytes) holding `bytes`.
    func writeMember(name: [UInt8], bytes: UnsafeRawBufferPointer, mode: UInt32 = 0o600, modified: Int64 = 0) throws {
        let header = try TarWriter.header(name: name, size: Int64(bytes.count), mode: mode, modified: modified)
        try header.withUnsafeBytes { try next.write($0) }
        if bytes.count > 0 { try next.write(bytes) }
        let padding = (tarBlockSize - bytes.count % tarBlockSize) % tarBlockSize
        if padding > 0 { try Self.zeros.withUnsafeBytes { try next.write(UnsafeRawBufferPointer(rebasing: $0[0..<padding])) } }
        byteCount += Int64(tarBlockSize + bytes.count + padding)
    }

    /// Writes the end-of-archive marker (two zero blocks); does not finish the sink.
    func writeEnd() throws {
        try Self.zeros.withUnsafeBytes { try next.write($0) }
        byteCount += Int64(Self.zeros.count)
    }

    /// The 512-byte ustar header of a regular member.
    static func header(name: [UInt8], size: Int64, mode: UInt32, modified: Int64) throws -> [UInt8] {
        guard !name.isEmpty, name.count <= 100, !name.contains(0) else {
            throw TarError("member name of \(name.count) bytes (1 to 100, no NUL)")
        }
        guard size >= 0, size < 0o77777777777 else { throw TarError("member of \(size) bytes is too large") }
        var header = [UInt8](repeating: 0, count: tarBlockSize)
        header.replaceSubrange(0..<name.count, with: name)
        func octal(_ value: Int64, at offset: Int, width: Int) {
            // width - 1 digits, then NUL.
            var digits = Array(String(value, radix: 8).utf8)
            digits = [UInt8](repeating: UInt8(ascii: "0"), count: max(0, width - 1 - digits.count)) + digits
            header.replaceSubrange(offset..<offset + width - 1, with: digits)
            header[offset + width - 1] = 0
        }
        octal(Int64(mode & 0o7777), at: 100, width: 8)
        octal(0, at: 108, width: 8)  // uid
        octal(0, at: 116, width: 8)  // gid
        octal(size, at: 124, width: 12)
        octal(max(0, min(modified, 0o77777777777)), at: 136, width: 12)
        header[156] = UInt8(ascii: "0")  // regular file
        header.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
        header.replaceSubrange(263..<265, with: Array("00".utf8))
        octal(0, at: 329, width: 8)  // devmajor
        octal(0, at: 337, width: 8)  // devminor
        // The checksum is computed with its own field as spaces: 6 octal digits, NUL, space.
        header.replaceSubrange(148..<156, with: [UInt8](repeating: UInt8(ascii: " "), count: 8))
        let sum = header.reduce(0) { $0 + Int($1) }
        var digits = Array(String(sum, radix: 8).utf8)
        digits = [UInt8](repeating: UInt8(ascii: "0"), count: max(0, 6 - digits.count)) + digits
        header.replaceSubrange(148..<154, with: digits)
        header[154] = 0
        header[155] = UInt8(ascii: " ")
        return header
    }
}

/// What a `TarReader` tells about the members it finds.
protocol TarMemberHandler: AnyObject {
    /// A regular member named `name` of `size` bytes starts; return true to receive its bytes.
    func beginMember(name: [UInt8], size: Int64) throws -> Bool
    /// The next bytes of the current member (only when `beginMember` returned true).
    func memberBytes(_ bytes: UnsafeRawBufferPointer) throws
    /// The current member is complete (only when `beginMember` returned true).
    func endMember() throws
}

/// Reads a tar stream written into it and hands its regular members to a handler. Understands
/// ustar and GNU headers, pax extended headers (`path`, `size`) and GNU long names; other entry
/// types (folders, links) are skipped. `finish()` fails when the stream stops inside a member or
/// before the end-of-archive marker; every header's checksum is checked.
final class TarReader: ByteSink {
    private enum State {
        case header
        case data(remaining: Int64, padding: Int, delivering: Bool)
        case extended(remaining: Int64, padding: Int, kind: UInt8)
        case ended
    }

    private let handler: any TarMemberHandler
    private var state = State.header
    private var headerBuffer = [UInt8]()
    private var extendedBuffer = [UInt8]()
    /// The name and size the next member takes from a pax header or a GNU long name.
    private var pendingName: [UInt8]?
    private var pendingSize: Int64?
    private var zeroBlocks = 0
    /// Regular members seen.
    private(set) var memberCount = 0

    /// Whether archives follow one another (`tar --ignore-zeros`): zero blocks are skipped and
    /// the stream only has to end between members, after at least one zero block.
    private let concatenated: Bool

    /// Creates a reader that reports members to `handler`; with `concatenated`, it reads several
    /// archives written one after another.
    init(handler: any TarMemberHandler, concatenated: Bool = false) {
        self.handler = handler
        self.concatenated = concatenated
        headerBuffer.reserveCapacity(tarBlockSize)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            switch state {
            case .ended:
                return
            case .header:
                let take = min(tarBlockSize - headerBuffer.count, rest.count)
                headerBuffer.append(contentsOf: rest[0..<take])
                offset += take
                if headerBuffer.count == tarBlockSize {
                    try parseHeader()
                    headerBuffer.removeAll(keepingCapacity: true)
                }
            case let .data(remaining, padding, delivering):
                if remaining > 0 {
                    let take = Int(min(Int64(rest.count), remaining))
                    if delivering { try handler.memberBytes(UnsafeRawBufferPointer(rebasing: rest[0..<take])) }
                    offset += take
                    state = .data(remaining: remaining - Int64(take), padding: padding, delivering: delivering)
                    if remaining - Int64(take) == 0 && padding == 0 { try endData(delivering: delivering) }
                } else {
                    let take = min(padding, rest.count)
                    offset += take
                    state = .data(remaining: 0, padding: padding - take, delivering: delivering)
                    if padding - take == 0 { try endData(delivering: delivering) }
                }
            case let .extended(remaining, padding, kind):
                if remaining > 0 {
                    let take = Int(min(Int64(rest.count), remaining))
                    extendedBuffer.append(contentsOf: rest[0..<take])
                    offset += take
                    state = .extended(remaining: remaining - Int64(take), padding: padding, kind: kind)
                } else {
                    let take = min(padding, rest.count)
                    offset += take
                    state = .extended(remaining: 0, padding: padding - take, kind: kind)
                }
                if case let .extended(0, 0, kind) = state {
                    try endExtended(kind: kind)
                    state = .header
                }
            }
        }
    }

    func finish() throws {
        switch state {
        case .ended:
            return
        case .header where headerBuffer.isEmpty && zeroBlocks > 0:
            return
        case .header where headerBuffer.isEmpty:
            throw TarError("the stream ends without the end-of-archive marker")
        default:
            throw TarError("the stream ends inside a member")
        }
    }

    private func endData(delivering: Bool) throws {
        state = .header
        if delivering { try handler.endMember() }
    }

    private func parseHeader() throws {
        if headerBuffer.allSatisfy({ $0 == 0 }) {
            zeroBlocks += 1
            if zeroBlocks == 2 && !concatenated { state = .ended }
            return
        }
        if concatenated {
            zeroBlocks = 0
        } else {
            guard zeroBlocks == 0 else { throw TarError("a member follows a zero block") }
        }
        let stored = try TarReader.number(headerBuffer[148..<156], field: "checksum")
        var sum: Int64 = 0
        for (index, byte) in headerBuffer.enumerated() { sum += (148..<156).contains(index) ? 32 : Int64(byte) }
        guard stored == sum else { throw TarError("header checksum \(stored) is not \(sum)") }
        let type = headerBuffer[156]
        var size = try TarReader.number(headerBuffer[124..<136], field: "size")
        guard size >= 0 else { throw TarError("negative size") }
        let padding = Int((Int64(tarBlockSize) - size % Int64(tarBlockSize)) % Int64(tarBlockSize))
        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "L"):
            guard size <= 1 << 20 else { throw TarError("extended header of \(size) bytes") }
            extendedBuffer.removeAll(keepingCapacity: true)
            state = .extended(remaining: size, padding: padding, kind: type)
            if size == 0 && padding == 0 { try endExtended(kind: type); state = .header }
        case UInt8(ascii: "g"):
            // Global pax header: nothing we use; skip it.
            state = .data(remaining: size, padding: padding, delivering: false)
            if size == 0 { state = .header }
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"):
            var name: [UInt8]
            if let pending = pendingName {
                name = pending
            } else {
                name = TarReader.text(headerBuffer[0..<100])
                let magic = Array(headerBuffer[257..<262])
                let prefix = TarReader.text(headerBuffer[345..<500])
                if magic == Array("ustar".utf8), !prefix.isEmpty { name = prefix + [UInt8(ascii: "/")] + name }
            }
            if let pending = pendingSize { size = pending }
            pendingName = nil
            pendingSize = nil
            let realPadding = Int((Int64(tarBlockSize) - size % Int64(tarBlockSize)) % Int64(tarBlockSize))
            memberCount += 1
            let delivering = try handler.beginMember(name: name, size: size)
            state = .data(remaining: size, padding: realPadding, delivering: delivering)
            if size == 0 { try endData(delivering: delivering) }
        default:
            // Folders, links, devices: only their data (normally none) is skipped.
            pendingName = nil
            pendingSize = nil
            let skipped = (type == UInt8(ascii: "1") || type == UInt8(ascii: "2") || type == UInt8(ascii: "5")) ? 0 : size
            let skippedPadding = Int((Int64(tarBlockSize) - skipped % Int64(tarBlockSize)) % Int64(tarBlockSize))
            state = .data(remaining: skipped, padding: skippedPadding, delivering: false)
            if skipped == 0 { state = .header }
        }
    }

    private func endExtended(kind: UInt8) throws {
        if kind == UInt8(ascii: "L") {
            pendingName = TarReader.text(extendedBuffer[...])
            return
        }
        // pax records: "LENGTH KEY=VALUE\n", LENGTH counting the whole record.
        var index = 0
        let bytes = extendedBuffer
        while index < bytes.count {
            guard let space = bytes[index...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: bytes[index..<space], as: UTF8.self)), length > 0,
                  index + length <= bytes.count, bytes[index + length - 1] == UInt8(ascii: "\n") else {
                throw TarError("malformed pax header")
            }
            let record = bytes[(space + 1)..<(index + length - 1)]
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[record.startIndex..<equals], as: UTF8.self)
                let value = Array(record[(equals + 1)...])
                if key == "path" { pendingName = value }
                if key == "size", let size = Int64(String(decoding: value, as: UTF8.self)) { pendingSize = size }
            }
            index += length
        }
    }

    /// The bytes of a NUL-terminated text field.
    private static func text(_ field: ArraySlice<UInt8>) -> [UInt8] {
        Array(field.prefix { $0 != 0 })
    }

    /// An octal number field (spaces and NULs around it allowed), or GNU's base-256 form.
    static func number(_ field: ArraySlice<UInt8>, field name: String) throws -> Int64 {
        if let first = field.first, first & 0x80 != 0 {
            var value: Int64 = Int64(first & 0x3F)
            for byte in field.dropFirst() {
                guard value < Int64.max >> 8 else { throw TarError("\(name) out of range") }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        var value: Int64 = 0
        var seenDigit = false
        for byte in field {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value < Int64.max >> 3 else { throw TarError("\(name) out of range") }
                value = value * 8 + Int64(byte - UInt8(ascii: "0"))
                seenDigit = true
            case 0, UInt8(ascii: " "):
                if seenDigit { return value }
            default:
                throw TarError("\(name) field is not an octal number")
            }
        }
        return value
    }
}
