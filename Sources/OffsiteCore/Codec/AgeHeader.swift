import Foundation

/// Unpadded standard base64 (RFC 4648 §4) as the age header uses it: encoders produce the
/// canonical form, the decoder rejects padding, stray characters and non-zero leftover bits.
enum AgeBase64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let values: [Int8] = {
        var table = [Int8](repeating: -1, count: 256)
        for (index, character) in alphabet.enumerated() { table[Int(character)] = Int8(index) }
        return table
    }()

    /// Whether `byte` is one of the 64 base64 characters.
    static func isBase64Character(_ byte: UInt8) -> Bool { values[Int(byte)] >= 0 }

    /// The canonical unpadded encoding of `bytes`.
    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index + 3 <= bytes.count {
            let group = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] { output.append(alphabet[Int((group >> UInt32(shift)) & 63)]) }
            index += 3
        }
        switch bytes.count - index {
        case 1:
            let group = UInt32(bytes[index]) << 16
            for shift in [18, 12] { output.append(alphabet[Int((group >> UInt32(shift)) & 63)]) }
        case 2:
            let group = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            for shift in [18, 12, 6] { output.append(alphabet[Int((group >> UInt32(shift)) & 63)]) }
        default:
            break
        }
        return output
    }

    /// Decodes the canonical unpadded encoding; nil for anything else.
    static func decode<Characters: Collection<UInt8>>(_ characters: Characters) -> [UInt8]? {
        guard characters.count % 4 != 1 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(characters.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for character in characters {
            let value = values[Int(character)]
            guard value >= 0 else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8((accumulator >> UInt32(bits)) & 0xff))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // Canonical: the bits left over after the last full byte must be zero.
        guard accumulator == 0 else { return nil }
        return output
    }
}

/// One recipient stanza of an age header: its arguments (the first names its type) and body.
struct AgeStanza: Equatable {
    var arguments: [String]
    var body: [UInt8]
}

/// Renders and recognises the textual age v1 header.
enum AgeHeader {
    /// The first line of every age v1 file, without its line feed.
    static let versionLine = Array("age-encryption.org/v1".utf8)
    /// What every age file of any version starts with.
    static let magic = Array("age-encryption.org/".utf8)
    /// Body lines are wrapped at this many columns.
    static let columns = 64
    /// Largest header the decoder buffers (it must hold the whole header to check its MAC).
    static let maximumSize = 1 << 20

    /// The header up to and including the `---` of the MAC line: what the MAC covers.
    static func renderWithoutMAC(_ stanzas: [AgeStanza]) -> [UInt8] {
        var output = versionLine + [0x0A]
        for stanza in stanzas {
            output += Array("->".utf8)
            for argument in stanza.arguments { output += [0x20] + Array(argument.utf8) }
            output.append(0x0A)
            let encoded = AgeBase64.encode(stanza.body)
            var start = 0
            // Full 64-column lines, then always a final shorter (possibly empty) line.
            while encoded.count - start >= columns {
                output += encoded[start..<(start + columns)] + [0x0A]
                start += columns
            }
            output += encoded[start...] + [0x0A]
        }
        output += Array("---".utf8)
        return output
    }

    /// The MAC line's tail: a space, the base64 MAC and the line feed.
    static func renderMACLineTail(_ mac: [UInt8]) -> [UInt8] {
        [0x20] + AgeBase64.encode(mac) + [0x0A]
    }
}

/// Reads an age v1 header that arrives in pieces of any size, strictly per the spec's grammar.
struct AgeHeaderParser {
    /// A completely read header.
    struct Header {
        var stanzas: [AgeStanza]
        /// The bytes the MAC covers: from the version line through `---`.
        var authenticatedBytes: [UInt8]
        var mac: [UInt8]
    }

    private enum Expecting {
        case versionLine
        case stanzaOrMAC
        case bodyLine
    }

    private var bytes: [UInt8] = []
    private var lineStart = 0
    private var expecting = Expecting.versionLine
    private var stanzas: [AgeStanza] = []
    private var currentArguments: [String] = []
    private var currentBody: [UInt8] = []

    /// Whether nothing at all has been read yet.
    var isEmpty: Bool { bytes.isEmpty }

    /// Consumes bytes from `input`; returns the header and how many bytes of `input` it used
    /// once the MAC line is complete, or nil when all of `input` was consumed and more is needed.
    mutating func consume(_ input: UnsafeRawBufferPointer) throws(AgeError) -> (Header, consumed: Int)? {
        var offset = 0
        while offset < input.count {
            let rest = input[offset...]
            let newline = rest.firstIndex(of: 0x0A)
            let end = newline.map { $0 + 1 } ?? input.count
            guard bytes.count + (end - offset) <= AgeHeader.maximumSize else {
                throw .headerTooLarge(limit: AgeHeader.maximumSize)
            }
            bytes.append(contentsOf: input[offset..<end])
            offset = end
            if newline == nil {
                if expecting == .versionLine { try checkMagicPrefix() }
                return nil
            }
            if let header = try endLine() {
                return (header, offset)
            }
        }
        return nil
    }

    /// Fails early on input that cannot become the age magic, so garbage is not buffered.
    private func checkMagicPrefix() throws(AgeError) {
        let seen = bytes.prefix(AgeHeader.magic.count)
        if !seen.elementsEqual(AgeHeader.magic.prefix(seen.count)) { throw .notAnAgeFile }
    }

    /// Handles the line that just ended (the line feed is the last byte of `bytes`).
    private mutating func endLine() throws(AgeError) -> Header? {
        let line = bytes[lineStart..<(bytes.count - 1)]
        let thisLineStart = lineStart
        lineStart = bytes.count
        switch expecting {
        case .versionLine:
            try checkMagicPrefix()
            guard line.count >= AgeHeader.magic.count else { throw .notAnAgeFile }
            guard line.elementsEqual(AgeHeader.versionLine) else { throw .unsupportedVersion }
            expecting = .stanzaOrMAC
            return nil

        case .stanzaOrMAC:
            if line.starts(with: Array("-> ".utf8)) {
                currentArguments = try Self.arguments(of: line.dropFirst(3))
                currentBody = []
                expecting = .bodyLine
                return nil
            }
            if line.starts(with: Array("---".utf8)) {
                guard !stanzas.isEmpty else { throw .malformedHeader("no recipient stanza before the MAC") }
                let encodedMAC = line.dropFirst(3)
                guard encodedMAC.first == 0x20, encodedMAC.count == 44,
                      let mac = AgeBase64.decode(encodedMAC.dropFirst()), mac.count == 32 else {
                    throw .malformedHeader("the MAC line is not '---' followed by a 32-byte base64 MAC")
                }
                let header = Header(stanzas: stanzas, authenticatedBytes: Array(bytes[..<(thisLineStart + 3)]), mac: mac)
                bytes = []
                stanzas = []
                return header
            }
            throw .malformedHeader("expected a stanza ('-> ') or the MAC line ('---')")

        case .bodyLine:
            guard line.count <= AgeHeader.columns, line.allSatisfy(AgeBase64.isBase64Character) else {
                throw .malformedHeader("a stanza body line is longer than 64 columns or not base64")
            }
            currentBody += line
            if line.count < AgeHeader.columns {
                guard let body = AgeBase64.decode(currentBody) else {
                    throw .malformedHeader("a stanza body is not canonical base64")
                }
                stanzas.append(AgeStanza(arguments: currentArguments, body: body))
                currentBody = []
                expecting = .stanzaOrMAC
            }
            return nil
        }
    }

    /// Splits a stanza's argument text: one or more non-empty runs of VCHAR separated by single spaces.
    private static func arguments(of text: ArraySlice<UInt8>) throws(AgeError) -> [String] {
        var arguments: [String] = []
        for piece in text.split(separator: 0x20, omittingEmptySubsequences: false) {
            guard !piece.isEmpty, piece.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) else {
                throw .malformedHeader("a stanza line has an empty argument or a character that is not printable ASCII")
            }
            arguments.append(String(decoding: piece, as: UTF8.self))
        }
        return arguments
    }
}
