import Foundation
import Testing
@testable import OffsiteCore

/// An instant from RFC 3339 text with an explicit offset (`2026-03-29T02:30:00+02:00`).
func agentTime(_ text: String) -> Date {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    guard let date = formatter.date(from: text) else { fatalError("bad test timestamp \(text)") }
    return date
}

private let utc = TimeZone(identifier: "UTC")!
private let berlin = TimeZone(identifier: "Europe/Berlin")!
private let newYork = TimeZone(identifier: "America/New_York")!
private let kolkata = TimeZone(identifier: "Asia/Kolkata")!

@Suite struct CronTests {
    // MARK: next(after:in:)

    struct Case: CustomTestStringConvertible, Sendable {
        let expression: String
        let zone: TimeZone
        let after: String
        let expected: String
        var testDescription: String { "\(expression) after \(after) in \(zone.identifier)" }
    }

    static let cases: [Case] = [
        // Plain UTC.
        Case(expression: "0 2 * * *", zone: utc, after: "2026-11-22T01:59:00Z", expected: "2026-11-22T02:00:00Z"),
        Case(expression: "0 2 * * *", zone: utc, after: "2026-11-22T02:00:00Z", expected: "2026-11-23T02:00:00Z"),
        Case(expression: "0 2 * * *", zone: utc, after: "2026-11-22T02:00:30Z", expected: "2026-11-23T02:00:00Z"),
        Case(expression: "0 2 * * *", zone: utc, after: "2026-12-31T23:00:00Z", expected: "2027-01-01T02:00:00Z"),
        Case(expression: "* * * * *", zone: utc, after: "2026-11-22T12:00:30Z", expected: "2026-11-22T12:01:00Z"),
        Case(expression: "* * * * *", zone: utc, after: "2026-11-22T12:00:00Z", expected: "2026-11-22T12:01:00Z"),
        Case(expression: "@hourly", zone: utc, after: "2026-11-22T23:10:00Z", expected: "2026-11-23T00:00:00Z"),
        Case(expression: "@yearly", zone: utc, after: "2026-12-31T23:59:59Z", expected: "2027-01-01T00:00:00Z"),
        Case(expression: "@monthly", zone: utc, after: "2026-02-01T00:00:00Z", expected: "2026-03-01T00:00:00Z"),
        Case(expression: "@weekly", zone: utc, after: "2026-11-19T10:00:00Z", expected: "2026-11-22T00:00:00Z"),
        // Business hours: Friday's last slot, then Monday morning.
        Case(expression: "*/15 9-17 * * mon-fri", zone: utc, after: "2026-11-20T17:30:00Z", expected: "2026-11-20T17:45:00Z"),
        Case(expression: "*/15 9-17 * * mon-fri", zone: utc, after: "2026-11-20T17:45:00Z", expected: "2026-11-23T09:00:00Z"),
        Case(expression: "*/15 9-17 * * mon-fri", zone: utc, after: "2026-11-23T09:07:00Z", expected: "2026-11-23T09:15:00Z"),
        // Day-of-month OR day-of-week: the 1st, the 15th and every Friday.
        Case(expression: "0 0 1,15 * 5", zone: utc, after: "2026-11-01T00:00:00Z", expected: "2026-11-06T00:00:00Z"),
        Case(expression: "0 0 1,15 * 5", zone: utc, after: "2026-11-13T00:00:00Z", expected: "2026-11-15T00:00:00Z"),
        Case(expression: "0 0 1,15 * 5", zone: utc, after: "2026-11-27T00:00:00Z", expected: "2026-12-01T00:00:00Z"),
        // A `*`-based day-of-week means AND: the 1st only when it is a Sunday… of any weekday.
        Case(expression: "0 0 1 * *", zone: utc, after: "2026-11-02T00:00:00Z", expected: "2026-12-01T00:00:00Z"),
        // Leap day, the 31st, ranges and steps.
        Case(expression: "0 12 29 2 *", zone: utc, after: "2026-01-01T00:00:00Z", expected: "2028-02-29T12:00:00Z"),
        Case(expression: "0 12 29 feb *", zone: utc, after: "2028-02-29T12:00:00Z", expected: "2032-02-29T12:00:00Z"),
        Case(expression: "0 0 31 * *", zone: utc, after: "2026-04-01T00:00:00Z", expected: "2026-05-31T00:00:00Z"),
        Case(expression: "10-50/20 * * * *", zone: utc, after: "2026-11-22T05:30:00Z", expected: "2026-11-22T05:50:00Z"),
        Case(expression: "10-50/20 * * * *", zone: utc, after: "2026-11-22T05:50:00Z", expected: "2026-11-22T06:10:00Z"),
        Case(expression: "0 0 * * 7", zone: utc, after: "2026-11-20T00:00:00Z", expected: "2026-11-22T00:00:00Z"),
        Case(expression: "0 0 * * fri-sun", zone: utc, after: "2026-11-21T00:00:00Z", expected: "2026-11-22T00:00:00Z"),
        Case(expression: "0 0 * * fri-sun", zone: utc, after: "2026-11-22T00:00:00Z", expected: "2026-11-27T00:00:00Z"),
        Case(expression: "30 4 1 jan,jul *", zone: utc, after: "2026-01-01T04:30:00Z", expected: "2026-07-01T04:30:00Z"),
        // A zone with a half-hour offset.
        Case(expression: "0 0 * * *", zone: kolkata, after: "2026-01-01T00:00:00Z", expected: "2026-01-01T18:30:00Z"),
        // Berlin, spring forward (2026-03-29 02:00 CET → 03:00 CEST): 02:30 does not exist that day.
        Case(expression: "30 2 * * *", zone: berlin, after: "2026-03-28T02:30:00+01:00", expected: "2026-03-30T02:30:00+02:00"),
        Case(expression: "0 3 * * *", zone: berlin, after: "2026-03-29T00:00:00+01:00", expected: "2026-03-29T03:00:00+02:00"),
        Case(expression: "0 2 * * *", zone: berlin, after: "2026-03-28T12:00:00+01:00", expected: "2026-03-30T02:00:00+02:00"),
        Case(expression: "@hourly", zone: berlin, after: "2026-03-29T01:30:00+01:00", expected: "2026-03-29T03:00:00+02:00"),
        Case(expression: "*/15 * * * *", zone: berlin, after: "2026-03-29T01:50:00+01:00", expected: "2026-03-29T03:00:00+02:00"),
        // Berlin, fall back (2026-10-25 03:00 CEST → 02:00 CET): 02:00 happens twice, fires once.
        Case(expression: "0 2 * * *", zone: berlin, after: "2026-10-25T00:00:00+02:00", expected: "2026-10-25T02:00:00+02:00"),
        Case(expression: "0 2 * * *", zone: berlin, after: "2026-10-25T02:00:00+02:00", expected: "2026-10-26T02:00:00+01:00"),
        Case(expression: "30 2 * * *", zone: berlin, after: "2026-10-25T02:10:00+01:00", expected: "2026-10-26T02:30:00+01:00"),
        // …while a wildcard-hour schedule keeps its rhythm on the wall clock through both passes.
        Case(expression: "*/30 * * * *", zone: berlin, after: "2026-10-25T02:30:00+02:00", expected: "2026-10-25T02:00:00+01:00"),
        Case(expression: "*/30 * * * *", zone: berlin, after: "2026-10-25T02:30:00+01:00", expected: "2026-10-25T03:00:00+01:00"),
        Case(expression: "@hourly", zone: berlin, after: "2026-10-25T02:00:00+02:00", expected: "2026-10-25T02:00:00+01:00"),
        // New York switches at 02:00 too (2026-03-08, 2026-11-01).
        Case(expression: "30 2 * * *", zone: newYork, after: "2026-03-07T03:00:00-05:00", expected: "2026-03-09T02:30:00-04:00"),
        Case(expression: "30 1 * * *", zone: newYork, after: "2026-11-01T01:30:00-04:00", expected: "2026-11-02T01:30:00-05:00"),
        // Local midnight in Berlin is 23:00 UTC the day before.
        Case(expression: "0 0 1 1 *", zone: berlin, after: "2026-06-01T00:00:00Z", expected: "2026-12-31T23:00:00Z"),
    ]

    @Test(arguments: cases) func nextRun(_ testCase: Case) throws {
        let expression = try CronExpression(parsing: testCase.expression)
        let next = expression.next(after: agentTime(testCase.after), in: testCase.zone)
        #expect(next == agentTime(testCase.expected))
    }

    /// Compares `next(after:)` from many starting points with a brute-force minute-by-minute scan
    /// that decides matches through Foundation's Calendar, over two days around each DST switch.
    @Test func agreesWithAMinuteByMinuteScanAroundDaylightSavingSwitches() throws {
        let expressions = ["*/7 * * * *", "0,30 1-3 * * *", "*/20 2 * * *", "59 1 * * *", "0 * * * *",
                           "15 */2 * * *", "0 0-4 * * sun"]
        let windows: [(TimeZone, String)] = [
            (berlin, "2026-03-28T12:00:00Z"), (berlin, "2026-10-24T12:00:00Z"),
            (newYork, "2026-03-07T18:00:00Z"), (newYork, "2026-10-31T18:00:00Z"),
        ]
        for (zone, startText) in windows {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = zone
            let start = agentTime(startText)
            let minutes = 36 * 60
            let parts = (0...minutes).map { minute -> (Date, DateComponents) in
                let date = start.addingTimeInterval(TimeInterval(minute * 60))
                return (date, calendar.dateComponents([.year, .month, .day, .hour, .minute, .weekday], from: date))
            }
            for text in expressions {
                let expression = try CronExpression(parsing: text)
                let fields = text.split(separator: " ").map(String.init)
                let minuteSet = expand(fields[0], 0...59)
                let hourSet = expand(fields[1], 0...23)
                let wildcardHour = fields[1].hasPrefix("*")
                var seenLocalTimes = Set<String>()
                var matches: [Date] = []
                for (date, components) in parts {
                    guard minuteSet.contains(components.minute!), hourSet.contains(components.hour!) else { continue }
                    if fields[4] == "sun" && components.weekday != 1 { continue }
                    let local = "\(components.year!)-\(components.month!)-\(components.day!) \(components.hour!):\(components.minute!)"
                    // A repeated local time counts once unless the hour field is a wildcard.
                    if !seenLocalTimes.insert(local).inserted && !wildcardHour { continue }
                    matches.append(date)
                }
                // Every 13 minutes, stopping where the scan could no longer see the answer.
                for offset in stride(from: 0, to: 30 * 60, by: 13) {
                    let after = start.addingTimeInterval(TimeInterval(offset * 60 + 17))
                    guard let expected = matches.first(where: { $0 > after }) else { continue }
                    let next = expression.next(after: after, in: zone)
                    #expect(next == expected, "\(text) after \(after) in \(zone.identifier)")
                }
            }
        }
    }

    /// The values of a simple cron field (`*`, `*/n`, `a,b`, `a-b`) for the reference scan.
    private func expand(_ field: String, _ range: ClosedRange<Int>) -> Set<Int> {
        var values = Set<Int>()
        for item in field.split(separator: ",") {
            let parts = item.split(separator: "/")
            let step = parts.count == 2 ? Int(parts[1])! : 1
            let bounds: ClosedRange<Int>
            if parts[0] == "*" {
                bounds = range
            } else if let dash = parts[0].firstIndex(of: "-") {
                bounds = Int(parts[0][..<dash])!...Int(parts[0][parts[0].index(after: dash)...])!
            } else {
                bounds = Int(parts[0])!...Int(parts[0])!
            }
            values.formUnion(stride(from: bounds.lowerBound, through: bounds.upperBound, by: step))
        }
        return values
    }

    @Test func isFastForSparseSchedules() throws {
        let expressions = try ["0 12 29 2 *", "*/15 9-17 * * mon-fri", "0 0 1,15 * 5", "59 23 31 12 *", "* * * * *"]
            .map { try CronExpression(parsing: $0) }
        let clock = ContinuousClock()
        var date = agentTime("2026-01-01T00:00:00Z")
        let elapsed = clock.measure {
            for round in 0..<400 {
                for expression in expressions {
                    let next = expression.next(after: date, in: berlin)
                    #expect(next != nil && next! > date)
                }
                date = date.addingTimeInterval(TimeInterval(86_400 + round * 7))
            }
        }
        // 2,000 look-ups, most of them crossing months or years; stepping by minutes would take minutes.
        #expect(elapsed < .seconds(2), "took \(elapsed)")
    }

    // MARK: Parsing

    @Test func macrosEqualTheirFiveFieldForms() throws {
        let pairs = [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
                     ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
                     ("@annually", "0 0 1 1 *"), ("@DAILY", "0 0 * * *")]
        let start = agentTime("2026-05-17T10:11:00Z")
        for (macro, fields) in pairs {
            let a = try CronExpression(parsing: macro)
            let b = try CronExpression(parsing: fields)
            var date = start
            for _ in 0..<5 {
                let next = a.next(after: date, in: utc)
                #expect(next == b.next(after: date, in: utc), "\(macro)")
                date = try #require(next)
            }
        }
    }

    @Test func namesAndNumbersAreTheSameSchedule() throws {
        let pairs = [("0 0 * jan-mar mon-fri", "0 0 * 1-3 1-5"), ("0 0 * * SUN", "0 0 * * 0"),
                     ("0 0 * * 7", "0 0 * * 0"), ("0 0 * * 5-7", "0 0 * * 0,5,6"), ("0 0 * Dec *", "0 0 * 12 *"),
                     ("0-59/1 * * * *", "* * * * *"), ("  0   2 * * *  ", "0 2 * * *")]
        for (left, right) in pairs {
            let a = try CronExpression(parsing: left)
            let b = try CronExpression(parsing: right)
            #expect(a.minutes == b.minutes && a.hours == b.hours && a.daysOfMonth == b.daysOfMonth
                        && a.months == b.months && a.daysOfWeek == b.daysOfWeek, "\(left) vs \(right)")
        }
        #expect(try CronExpression(parsing: "  0   2 * * *  ").description == "0   2 * * *")
    }

    @Test(arguments: [
        ("0 2 * *", nil, "expected 5 fields"),
        ("0 2 * * * *", nil, "found 6"),
        ("", nil, "found 0"),
        ("@reboot", nil, "unknown macro @reboot"),
        ("60 * * * *", "minute \"60\"", "60 is out of range 0-59"),
        ("* 24 * * *", "hour \"24\"", "out of range 0-23"),
        ("* * 0 * *", "day-of-month \"0\"", "out of range 1-31"),
        ("* * * 13 *", "month \"13\"", "out of range 1-12"),
        ("* * * * 8", "day-of-week \"8\"", "out of range 0-7"),
        ("* * * * mon-fry", "day-of-week \"mon-fry\"", "unknown name \"fry\""),
        ("* * * foo *", "month \"foo\"", "unknown name \"foo\""),
        ("x * * * *", "minute \"x\"", "\"x\" is not a number"),
        ("*/0 * * * *", "minute \"*/0\"", "at least 1"),
        ("*/61 * * * *", "minute \"*/61\"", "larger than the field's range"),
        ("5/15 * * * *", "minute \"5/15\"", "a step needs a range or *"),
        ("50-10 * * * *", "minute \"50-10\"", "runs backwards"),
        ("1,,2 * * * *", "minute \"1,,2\"", "empty item"),
        ("1-2-3 * * * *", "minute \"1-2-3\"", "a range has one -"),
        ("-5 * * * *", "minute \"-5\"", "a number is missing"),
        ("+5 * * * *", "minute \"+5\"", "not a number"),
        ("0 0 30 2 *", "day-of-month \"30\"", "never run"),
        ("0 0 31 4,6 *", "day-of-month \"31\"", "never run"),
    ] as [(String, String?, String)])
    func rejectsMalformedExpressions(text: String, place: String?, problem: String) {
        do {
            _ = try CronExpression(parsing: text)
            Issue.record("\"\(text)\" parsed")
        } catch let error as CronError {
            if let place { #expect(error.message.hasPrefix(place + ": "), "\(error.message)") }
            else { #expect(error.field == nil && error.message.hasPrefix("cron expression"), "\(error.message)") }
            #expect(error.message.contains(problem), "\(error.message)")
            #expect(error.hint != nil)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func februaryTwentyNinthAloneIsAccepted() throws {
        // Possible only in leap years, but possible: not an error.
        let expression = try CronExpression(parsing: "0 0 29 2 *")
        #expect(expression.next(after: agentTime("2097-01-01T00:00:00Z"), in: utc) == agentTime("2104-02-29T00:00:00Z"))
    }

    @Test func calendarArithmeticMatchesFoundation() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = utc
        for day in stride(from: Int64(-130_000), through: 800_000, by: 997) {
            let components = calendar.dateComponents([.year, .month, .day],
                                                     from: Date(timeIntervalSince1970: TimeInterval(day * 86_400)))
            let civil = CronExpression.civilDate(fromDayNumber: day)
            #expect(civil.year == components.year && civil.month == components.month && civil.day == components.day,
                    "day \(day)")
        }
    }

    // MARK: The configuration checks target schedules

    /// Parses a configuration whose targets carry `schedules` (nil: no schedule key).
    private func parseConfig(schedules: [String?]) throws -> OffsiteConfig {
        let targets = schedules.enumerated().map { index, schedule in
            let key = schedule.map { #", "schedule": "\#($0)""# } ?? ""
            return #"{"name": "t\#(index)", "url": "file:///mnt/t\#(index)"\#(key)}"#
        }
        let json = #"{"databases": [{"path": "/data/crm.db"}], "encryption": "none", "targets": ["#
            + targets.joined(separator: ", ") + "]}"
        return try OffsiteConfig.parse(data: Data(json.utf8), environment: [:], baseDirectory: "/etc/offsite")
    }

    @Test func configurationAcceptsValidTargetSchedules() throws {
        let config = try parseConfig(schedules: ["0 2 * * *", nil, "@daily"])
        #expect(config.targets.map(\.schedule) == ["0 2 * * *", nil, "@daily"])
    }

    @Test func configurationRejectsABadTargetScheduleNamingItsKeyPath() throws {
        do {
            _ = try parseConfig(schedules: ["0 2 * * *", "*/15 9-17 * * mon-fry"])
            Issue.record("a bad schedule was accepted")
        } catch let error as ConfigError {
            #expect(error.keyPath == "targets[1].schedule")
            #expect(error.message == #"targets[1].schedule: day-of-week "mon-fry": unknown name "fry" (expected sun…sat or a number)"#)
            #expect(error.hint?.contains("five fields") == true)
        }
        #expect(throws: ConfigError.self) { try parseConfig(schedules: ["0 2 * *"]) }
    }
}
