import Foundation

/// A malformed cron expression: the field (`minute`, `day-of-week`, …) and the text that is wrong.
public struct CronError: UserFacingError, Equatable {
    /// The field the problem is in, or nil when it concerns the whole expression.
    public var field: String?
    /// The offending text (a field, or one item of a list).
    public var text: String
    /// What is wrong with it.
    public var problem: String

    /// Creates an error.
    public init(field: String?, text: String, problem: String) {
        self.field = field
        self.text = text
        self.problem = problem
    }

    /// `day-of-week "mon-fry": unknown name "fry"`, or `cron expression "…": …` without a field.
    public var message: String {
        if let field { return "\(field) \"\(text)\": \(problem)" }
        return "cron expression \"\(text)\": \(problem)"
    }

    /// The expected shape.
    public var hint: String? {
        "five fields: minute hour day-of-month month day-of-week, such as \"0 2 * * *\" or \"*/15 9-17 * * mon-fri\""
    }
}

/// A classic five-field cron expression (`minute hour day-of-month month day-of-week`) with
/// lists (`1,5`), ranges (`1-5`), steps (`*/15`, `10-50/5`), month and weekday names (`jan`,
/// `mon-fri`; 0 and 7 are both Sunday) and the macros `@hourly`, `@daily`, `@midnight`,
/// `@weekly`, `@monthly`, `@yearly` and `@annually`.
///
/// Day matching follows Vixie cron: when both day-of-month and day-of-week are restricted, a day
/// matches if *either* matches (`0 0 1,15 * 5` is the 1st, the 15th and every Friday). A field
/// counts as unrestricted when it starts with `*` (so `*/2` in day-of-month is still "every day"
/// for this rule), exactly as in Vixie cron and cronie.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The expression as written (trimmed).
    public let text: String
    let minutes: [Int]
    let hours: [Int]
    let daysOfMonth: UInt32  // bit d for day d (1…31)
    let months: UInt16  // bit m for month m (1…12)
    let daysOfWeek: UInt8  // bit w for weekday w (0 = Sunday … 6)
    let isDayOfMonthRestricted: Bool
    let isDayOfWeekRestricted: Bool
    /// Whether the hour field is `*`-based: such an expression keeps its rhythm on the wall
    /// clock through a repeated (fall-back) hour instead of firing only on the first pass.
    let isHourWildcard: Bool

    /// The expression as written.
    public var description: String { text }

    /// Parses `text`; throws `CronError` naming the field and the text that is wrong.
    public init(parsing text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var fields = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if fields.count == 1, fields[0].hasPrefix("@") {
            switch fields[0].lowercased() {
            case "@hourly": fields = ["0", "*", "*", "*", "*"]
            case "@daily", "@midnight": fields = ["0", "0", "*", "*", "*"]
            case "@weekly": fields = ["0", "0", "*", "*", "0"]
            case "@monthly": fields = ["0", "0", "1", "*", "*"]
            case "@yearly", "@annually": fields = ["0", "0", "1", "1", "*"]
            default:
                throw CronError(field: nil, text: trimmed, problem: "unknown macro \(fields[0]) "
                                + "(known: @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually)")
            }
        }
        guard fields.count == 5 else {
            throw CronError(field: nil, text: trimmed,
                            problem: "expected 5 fields (minute hour day-of-month month day-of-week), found \(fields.count)")
        }
        let minuteSet = try CronField.minute.parse(fields[0])
        let hourSet = try CronField.hour.parse(fields[1])
        let daySet = try CronField.dayOfMonth.parse(fields[2])
        let monthSet = try CronField.month.parse(fields[3])
        var weekdaySet = try CronField.dayOfWeek.parse(fields[4])
        if weekdaySet & (1 << 7) != 0 { weekdaySet = (weekdaySet | 1) & ~(1 << 7) }  // 7 is Sunday too

        self.text = trimmed
        minutes = (0...59).filter { minuteSet & (1 << UInt64($0)) != 0 }
        hours = (0...23).filter { hourSet & (1 << UInt64($0)) != 0 }
        daysOfMonth = UInt32(truncatingIfNeeded: daySet)
        months = UInt16(truncatingIfNeeded: monthSet)
        daysOfWeek = UInt8(truncatingIfNeeded: weekdaySet)
        isDayOfMonthRestricted = !fields[2].hasPrefix("*")
        isDayOfWeekRestricted = !fields[4].hasPrefix("*")
        isHourWildcard = fields[1].hasPrefix("*")

        // A day-of-month that no chosen month has (`0 0 30 2 *`) would never fire: say so now
        // rather than silently never backing up.
        if !isDayOfWeekRestricted || !isDayOfMonthRestricted {
            let possible = (1...12).contains { month in
                months & (1 << UInt16(month)) != 0
                    && (1...CronExpression.maximumDays(inMonth: month)).contains { daysOfMonth & (1 << UInt32($0)) != 0 }
            }
            if !possible {
                throw CronError(field: "day-of-month", text: fields[2],
                                problem: "no chosen month (\(fields[3])) has such a day, so it would never run")
            }
        }
    }

    /// The first minute strictly after `date` that matches, in `timeZone`'s local time; nil when
    /// none within the next 28 years (only possible for Feb 29 on a weekday-restricted schedule).
    ///
    /// Daylight saving: a local time that does not exist (clocks jump forward over it) is
    /// skipped. A local time that happens twice (clocks go back) fires once, on its first
    /// occurrence — except that an expression whose hour field is `*`-based (`*/15 * * * *`,
    /// `@hourly`) follows the wall clock through both passes, so its rhythm does not stall for an
    /// hour (the Vixie cron rule for wildcard jobs).
    public func next(after date: Date, in timeZone: TimeZone) -> Date? {
        let after = date.timeIntervalSince1970
        // Local wall time of `date` as seconds since 1970 "in local time"; start one day
        // earlier so that a repeated hour crossing midnight is not missed.
        let localNow = Int64(after.rounded(.down)) + Int64(timeZone.secondsFromGMT(for: date))
        var day = CronExpression.floorDivide(localNow, 86_400) - 1
        let lastDay = day + 28 * 366
        while day <= lastDay {
            let (year, month, dayOfMonth) = CronExpression.civilDate(fromDayNumber: day)
            if months & (1 << UInt16(month)) == 0 {
                // Jump to the first day of the next month.
                day += Int64(CronExpression.daysIn(month: month, year: year) - dayOfMonth + 1)
                continue
            }
            if matchesDay(dayNumber: day, dayOfMonth: dayOfMonth),
               let found = firstRun(onLocalDay: day, after: after, in: timeZone) {
                return found
            }
            day += 1
        }
        return nil
    }

    /// Whether the day passes the day-of-month and day-of-week fields (OR when both are restricted).
    private func matchesDay(dayNumber: Int64, dayOfMonth: Int) -> Bool {
        let weekday = Int(CronExpression.floorModulo(dayNumber + 4, 7))  // 1970-01-01 was a Thursday
        let dayMatches = daysOfMonth & (1 << UInt32(dayOfMonth)) != 0
        let weekdayMatches = daysOfWeek & (1 << UInt8(weekday)) != 0
        if isDayOfMonthRestricted && isDayOfWeekRestricted { return dayMatches || weekdayMatches }
        return dayMatches && weekdayMatches
    }

    /// The earliest matching instant after `after` whose local date is `day`, or nil.
    private func firstRun(onLocalDay day: Int64, after: TimeInterval, in timeZone: TimeZone) -> Date? {
        let midnight = day * 86_400
        // The offsets in force around this local day. A zone changes its offset at most once in
        // a three-day window, so these two cover every local time of the day.
        let offsetBefore = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(midnight - 86_400))))
        let offsetAfter = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(midnight + 2 * 86_400))))
        let lowestOffset = min(offsetBefore, offsetAfter)
        let highestOffset = max(offsetBefore, offsetAfter)
        var best: Int64?
        for hour in hours {
            let hourStart = midnight + Int64(hour) * 3600
            // Nothing in this hour can be later than `after`: skip it without any look-up.
            if TimeInterval(hourStart + 3599 - lowestOffset) <= after { continue }
            for minute in minutes {
                let local = hourStart + Int64(minute) * 60
                // Every later local time maps to a later instant than `best`: done.
                if let best, local - highestOffset > best { return Date(timeIntervalSince1970: TimeInterval(best)) }
                if TimeInterval(local - lowestOffset) <= after { continue }
                for instant in instants(ofLocal: local, offsets: (offsetBefore, offsetAfter), in: timeZone)
                where TimeInterval(instant) > after {
                    if best == nil || instant < best! { best = instant }
                }
            }
        }
        return best.map { Date(timeIntervalSince1970: TimeInterval($0)) }
    }

    /// The instants at which the local wall time `local` occurs: none when skipped by a jump
    /// forward, one normally, and for a repeated time the first occurrence (both when the hour
    /// field is a wildcard).
    private func instants(ofLocal local: Int64, offsets: (Int64, Int64), in timeZone: TimeZone) -> [Int64] {
        if offsets.0 == offsets.1 { return [local - offsets.0] }
        var found: [Int64] = []
        for offset in [offsets.0, offsets.1] {
            let instant = local - offset
            let actual = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant))))
            if actual == offset && !found.contains(instant) { found.append(instant) }
        }
        found.sort()
        if found.count > 1 && !isHourWildcard { return [found[0]] }
        return found
    }

    // MARK: - Calendar arithmetic (proleptic Gregorian, on day numbers since 1970-01-01)

    static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : -((-a + b - 1) / b)
    }

    static func floorModulo(_ a: Int64, _ b: Int64) -> Int64 {
        a - floorDivide(a, b) * b
    }

    /// Year, month (1…12) and day of the month of a day number (days since 1970-01-01).
    static func civilDate(fromDayNumber dayNumber: Int64) -> (year: Int, month: Int, day: Int) {
        // Howard Hinnant's days-to-civil algorithm.
        let z = dayNumber + 719_468
        let era = floorDivide(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    static func isLeapYear(_ year: Int) -> Bool {
        (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func maximumDays(inMonth month: Int) -> Int {
        month == 2 ? 29 : daysIn(month: month, year: 2001)
    }
}

/// One of the five fields: its name, range and value names.
private struct CronField {
    let name: String
    let range: ClosedRange<Int>
    let names: [String]  // names[i] stands for range.lowerBound + i

    static let minute = CronField(name: "minute", range: 0...59, names: [])
    static let hour = CronField(name: "hour", range: 0...23, names: [])
    static let dayOfMonth = CronField(name: "day-of-month", range: 1...31, names: [])
    static let month = CronField(name: "month", range: 1...12,
                                 names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
    // 0…7 where 7 is Sunday again; the caller folds 7 onto 0.
    static let dayOfWeek = CronField(name: "day-of-week", range: 0...7,
                                     names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])

    /// The set of values as bits (bit n for value n).
    func parse(_ text: String) throws -> UInt64 {
        var set: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            guard !item.isEmpty else { throw error(text, "empty item in the list") }
            set |= try parseItem(item)
        }
        return set
    }

    private func parseItem(_ item: String) throws -> UInt64 {
        let stepParts = item.split(separator: "/", omittingEmptySubsequences: false)
        guard stepParts.count <= 2 else { throw error(item, "more than one /") }
        let base = String(stepParts[0])
        var step = 1
        if stepParts.count == 2 {
            guard let value = Int(stepParts[1]), value >= 1 else {
                throw error(item, "the step \"\(stepParts[1])\" must be a whole number of at least 1")
            }
            guard value <= range.upperBound - range.lowerBound + 1 else {
                throw error(item, "the step \(value) is larger than the field's range \(range.lowerBound)-\(range.upperBound)")
            }
            step = value
        }
        var low: Int
        var high: Int
        if base == "*" {
            low = range.lowerBound
            high = name == "day-of-week" ? 6 : range.upperBound
        } else {
            let bounds = base.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count <= 2 else { throw error(item, "a range has one -, such as 1-5") }
            low = try value(String(bounds[0]), in: item)
            if bounds.count == 2 {
                high = try value(String(bounds[1]), in: item)
                // `fri-sun`: Sunday at the end of a range is day 7.
                if name == "day-of-week" && high == 0 && low > 0 { high = 7 }
                guard low <= high else { throw error(item, "the range runs backwards") }
            } else {
                guard stepParts.count == 1 else {
                    throw error(item, "a step needs a range or *, such as \(low)-\(range.upperBound)/\(step)")
                }
                high = low
            }
        }
        var set: UInt64 = 0
        var value = low
        while value <= high {
            set |= 1 << UInt64(value)
            value += step
        }
        return set
    }

    private func value(_ text: String, in item: String) throws -> Int {
        if !text.isEmpty, text.allSatisfy({ ("0"..."9").contains($0) }), let number = Int(text) {
            guard range.contains(number) else {
                throw error(item, "\(number) is out of range \(range.lowerBound)-\(range.upperBound)")
            }
            return number
        }
        if let index = names.firstIndex(of: text.lowercased()) { return range.lowerBound + index }
        if text.isEmpty { throw error(item, "a number is missing") }
        if names.isEmpty { throw error(item, "\"\(text)\" is not a number") }
        throw error(item, "unknown name \"\(text)\" (expected \(names.first!)…\(names.last!) or a number)")
    }

    private func error(_ text: String, _ problem: String) -> CronError {
        CronError(field: name, text: text, problem: problem)
    }
}
