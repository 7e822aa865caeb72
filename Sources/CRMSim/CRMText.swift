/// Plausible CRM values (names, companies, contacts, sentences, JSON, timestamps) drawn from
/// `CRMVocabulary` by a seeded generator, so the same seed always yields the same text.
struct CRMText {
    /// The random source; every value below consumes from it.
    var random: SeededRandom

    private enum Part {
        case literal([UInt8])
        case slot(UInt8)
    }

    private let templates: [[Part]]
    private let wordBytes: [[UInt8]]
    private let firstNameBytes: [[UInt8]]
    private let lastNameBytes: [[UInt8]]
    private let productBytes: [[UInt8]]
    private let weekdayBytes: [[UInt8]]
    private let monthBytes: [[UInt8]]
    private let competitorBytes: [[UInt8]]
    private let userAgentParts: [[Part]]

    /// Scratch bytes of the value being built by the `put…` methods; `take()` turns it into a String.
    /// Building text as bytes avoids the many small String allocations of interpolation, which
    /// otherwise dominate generation time.
    private(set) var out: [UInt8] = []

    init(seed: UInt64) {
        random = SeededRandom(seed: seed)
        templates = CRMVocabulary.templates.map { CRMText.parse($0) }
        func bytes(_ list: [String]) -> [[UInt8]] { list.map { Array($0.utf8) } }
        wordBytes = bytes(CRMVocabulary.words)
        firstNameBytes = bytes(CRMVocabulary.firstNames)
        lastNameBytes = bytes(CRMVocabulary.lastNames)
        productBytes = bytes(CRMVocabulary.products)
        weekdayBytes = bytes(CRMVocabulary.weekdays)
        monthBytes = bytes(CRMVocabulary.months)
        competitorBytes = bytes(CRMVocabulary.competitors)
        userAgentParts = CRMVocabulary.userAgents.map { CRMText.parse($0, slots: [UInt8(ascii: "@"), UInt8(ascii: "#")]) }
        out.reserveCapacity(4096)
    }

    /// Splits a template into literal bytes and slots: `{X}` by default, or the single bytes in `slots`.
    private static func parse(_ template: String, slots: Set<UInt8> = []) -> [Part] {
        var parts: [Part] = []
        var literal: [UInt8] = []
        let bytes = Array(template.utf8)
        var index = 0
        while index < bytes.count {
            if slots.contains(bytes[index]) {
                if !literal.isEmpty { parts.append(.literal(literal)); literal = [] }
                parts.append(.slot(bytes[index]))
                index += 1
            } else if slots.isEmpty, bytes[index] == UInt8(ascii: "{"), index + 2 < bytes.count,
                      bytes[index + 2] == UInt8(ascii: "}") {
                if !literal.isEmpty { parts.append(.literal(literal)); literal = [] }
                parts.append(.slot(bytes[index + 1]))
                index += 3
            } else {
                literal.append(bytes[index])
                index += 1
            }
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        return parts
    }

    // MARK: Building values as bytes

    /// The value built so far, as a String; clears the scratch bytes.
    mutating func take() -> String {
        let value = String(decoding: out, as: UTF8.self)
        out.removeAll(keepingCapacity: true)
        return value
    }

    /// Appends a literal.
    mutating func put(_ literal: StaticString) {
        out.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Appends bytes.
    mutating func put(_ bytes: [UInt8]) {
        out.append(contentsOf: bytes)
    }

    /// Appends a String's UTF-8.
    mutating func put(_ string: String) {
        out.append(contentsOf: string.utf8)
    }

    /// Appends a non-negative integer in decimal.
    mutating func put(_ number: Int) {
        putDecimal(number, width: 1)
    }

    /// Appends `true` or `false`.
    mutating func put(_ flag: Bool) {
        flag ? put("true") : put("false")
    }

    /// Appends a non-negative integer in decimal, zero-padded to at least `width` digits.
    mutating func putDecimal(_ number: Int, width: Int) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var value = number
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[19 - count] = UInt8(48 + value % 10)
                value /= 10
                count += 1
            } while value > 0 || count < width
            out.append(contentsOf: buffer[(20 - count)...])
        }
    }

    /// Appends `count` random lowercase hexadecimal digits.
    mutating func putHex(_ count: Int) {
        var bits: UInt64 = 0
        for index in 0..<count {
            if index % 16 == 0 { bits = random.next() }
            let nibble = UInt8(bits & 15)
            out.append(nibble < 10 ? 48 + nibble : 87 + nibble)
            bits >>= 4
        }
    }

    /// Appends Unix seconds as the SQLite-style UTC timestamp "YYYY-MM-DD HH:MM:SS".
    mutating func putTimestamp(_ seconds: Int64) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - days * 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        putDecimal(Int(year), width: 4); out.append(45)
        putDecimal(month, width: 2); out.append(45)
        putDecimal(day, width: 2); out.append(32)
        putDecimal(secondOfDay / 3600, width: 2); out.append(58)
        putDecimal(secondOfDay / 60 % 60, width: 2); out.append(58)
        putDecimal(secondOfDay % 60, width: 2)
    }

    /// A timestamp value (see `putTimestamp`).
    mutating func timestamp(_ seconds: Int64) -> String {
        putTimestamp(seconds)
        return take()
    }

    /// Appends one sentence: a filled-in template, or sometimes a looser string of words.
    mutating func putSentence() {
        if random.chance(0.45) {
            let start = out.count
            putWords(random.within(6...14))
            if out[start] >= 97 && out[start] <= 122 { out[start] -= 32 }
            out.append(46)
            return
        }
        for part in templates[random.below(templates.count)] {
            switch part {
            case let .literal(bytes): out.append(contentsOf: bytes)
            case let .slot(kind): putSlot(kind)
            }
        }
    }

    private mutating func putSlot(_ slot: UInt8) {
        switch slot {
        case UInt8(ascii: "P"):
            put(random.pickSkewed(firstNameBytes))
            if random.chance(0.5) { out.append(32); put(random.pickSkewed(lastNameBytes)) }
        case UInt8(ascii: "D"): put(random.pick(weekdayBytes))
        case UInt8(ascii: "X"): put(random.pick(productBytes))
        case UInt8(ascii: "N"): put(random.within(2...45))
        case UInt8(ascii: "A"): out.append(36); put(random.within(1...240) * 500)
        case UInt8(ascii: "M"): put(random.pick(monthBytes))
        case UInt8(ascii: "C"): put(random.pick(competitorBytes))
        case UInt8(ascii: "I"): put("INV-"); putDecimal(random.below(100_000), width: 5)
        case UInt8(ascii: "E"):
            out.append(36); put(random.within(50...99_999)); out.append(46); putDecimal(random.below(100), width: 2)
        case UInt8(ascii: "T"): putTimestamp(1_600_000_000 + Int64(random.below(150_000_000))); out.removeLast(9)
        case UInt8(ascii: "H"): put(phone())
        default: putWords(random.within(3...7))
        }
    }

    /// Appends a user agent from a template of `CRMVocabulary.userAgents`, with its versions filled in.
    mutating func putUserAgent(_ index: Int) {
        for part in userAgentParts[index] {
            switch part {
            case let .literal(bytes): out.append(contentsOf: bytes)
            case .slot(UInt8(ascii: "@")): out.append(48 + UInt8(random.below(10)))
            case .slot: put(random.within(1...6999))
            }
        }
    }

    /// Appends `count` vocabulary words separated by spaces.
    mutating func putWords(_ count: Int) {
        for index in 0..<count {
            if index > 0 { out.append(32) }
            put(random.pick(wordBytes))
        }
    }

    /// Appends a few sentences separated by spaces.
    mutating func putParagraph(sentences range: ClosedRange<Int>) {
        let count = random.within(range)
        for index in 0..<count {
            if index > 0 { out.append(32) }
            putSentence()
        }
    }

    // MARK: People and companies

    mutating func firstName() -> String { random.pickSkewed(CRMVocabulary.firstNames) }
    mutating func lastName() -> String { random.pickSkewed(CRMVocabulary.lastNames) }

    mutating func company() -> String {
        let stem = random.pick(CRMVocabulary.companyStems)
        let kind = random.pick(CRMVocabulary.companyKinds)
        let suffix = random.pick(CRMVocabulary.companySuffixes)
        return suffix.isEmpty ? "\(stem) \(kind)" : "\(stem) \(kind) \(suffix)"
    }

    /// A domain derived from a company name: "Northwind Logistics LLC" → "northwindlogistics.com".
    func domain(of company: String) -> String {
        var result = ""
        result.reserveCapacity(company.utf8.count + 4)
        var words = 0
        for word in company.split(separator: " ") {
            guard words < 2 else { break }
            result += word.lowercased()
            words += 1
        }
        return result + ".com"
    }

    mutating func email(first: String, last: String, company: String?) -> String {
        let local: String
        switch random.below(4) {
        case 0: local = "\(first.lowercased()).\(last.lowercased())"
        case 1: local = "\(first.lowercased().prefix(1))\(last.lowercased())"
        case 2: local = "\(first.lowercased())"
        default: local = "\(first.lowercased())\(random.below(100))"
        }
        if let company, random.chance(0.75) { return "\(local)@\(domain(of: company))" }
        return "\(local)@\(random.pick(CRMVocabulary.mailDomains))"
    }

    mutating func phone() -> String {
        var digits = "+1 "
        digits.reserveCapacity(16)
        digits += String(random.within(201...989))
        digits += " 555 "
        let line = random.below(10_000)
        if line < 1000 { digits += "0" }
        if line < 100 { digits += "0" }
        if line < 10 { digits += "0" }
        digits += String(line)
        return digits
    }

    mutating func address() -> String {
        "\(random.within(1...2400)) \(random.pick(CRMVocabulary.streetNames)) \(random.pick(CRMVocabulary.streetKinds))"
    }

    mutating func ipAddress() -> String {
        if random.chance(0.7) { return "10.0.\(random.below(8)).\(random.within(2...254))" }
        return "\(random.within(23...223)).\(random.below(256)).\(random.below(256)).\(random.within(1...254))"
    }

    // MARK: Text

    mutating func sentence() -> String {
        putSentence()
        return take()
    }

    mutating func paragraph(sentences range: ClosedRange<Int>) -> String {
        putParagraph(sentences: range)
        return take()
    }

    mutating func tagList() -> String {
        let count = random.below(4)
        var result = "["
        for index in 0..<count {
            if index > 0 { result += "," }
            result += "\"\(random.pick(CRMVocabulary.tags))\""
        }
        return result + "]"
    }

    /// A random lowercase hexadecimal string of `length` characters.
    mutating func hex(_ length: Int) -> String {
        putHex(length)
        return take()
    }
}

extension CRMText {
    /// The UTC date "YYYY-MM-DD" of Unix seconds.
    mutating func date(_ seconds: Int64) -> String {
        putTimestamp(seconds)
        out.removeLast(9)
        return take()
    }
}

/// Day of the week for Unix seconds: 0 = Monday … 6 = Sunday.
func crmWeekday(_ seconds: Int64) -> Int {
    let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
    return Int(((days + 3) % 7 + 7) % 7)
}

/// Proleptic Gregorian date for a count of days since 1970-01-01 (Howard Hinnant's civil_from_days).
private func civilDate(daysSinceEpoch: Int64) -> (Int64, Int, Int) {
    let z = daysSinceEpoch + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let monthIndex = (5 * dayOfYear + 2) / 153
    let day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
    let month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
    let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    return (year, month, day)
}
