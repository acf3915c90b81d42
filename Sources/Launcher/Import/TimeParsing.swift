/// A point in time: whole seconds since 1970-01-01 00:00:00 UTC plus a
/// fraction of a second in nanoseconds.
struct Timestamp: Comparable {
    var seconds: Int64
    var nanoseconds: Int32 = 0

    static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// How the values of a time column are written.
///
/// `.iso8601` accepts `YYYY-MM-DDTHH:MM[:SS[.fraction]]` (a space instead
/// of the T is accepted too) followed by an optional zone: `Z`, `+HH`,
/// `+HHMM` or `+HH:MM` (or `-`). Without a zone the time is taken as UTC.
///
/// `.pattern` is a strftime-style format; the directives understood are
/// `%Y` (4-digit year), `%y` (2 digits: 69-99 = 19xx, 00-68 = 20xx), `%m`,
/// `%d`, `%H`, `%I` with `%p` (AM/PM), `%M`, `%S` (1 or 2 digits each),
/// `%f` (1 to 9 digits of a fraction of a second), `%b`/`%B` (English
/// month name, abbreviated or full, any case), `%a`/`%A` (English weekday
/// name, read and ignored), `%z` (`Z`, `+HHMM` or `+HH:MM`), `%T` (=
/// `%H:%M:%S`), `%F` (= `%Y-%m-%d`) and `%%`. Any other character must
/// appear as it is. Without `%z` the time is UTC.
enum TimeFormat: Equatable {
    case iso8601
    case pattern(String)

    /// What prepare.json records: `iso8601` or the format itself.
    var recordedName: String {
        switch self {
        case .iso8601: return "iso8601"
        case .pattern(let format): return format
        }
    }

    /// A readable description for error messages.
    var expectation: String {
        switch self {
        case .iso8601:
            return "an ISO 8601 time such as 2017-07-14T14:30:59+0000"
        case .pattern(let format): return "a time in the format '\(format)'"
        }
    }

    /// The format named by `--time-format`, checked; nil means ISO 8601.
    static func from(option text: String?) throws -> TimeFormat {
        guard let text else { return .iso8601 }
        if text == "iso8601" { return .iso8601 }
        let pieces = try TimePattern.compile(text)
        let fields = Set(
            pieces.compactMap { piece -> Character? in
                if case .directive(let d) = piece { return d }
                return nil
            })
        if fields.isDisjoint(with: ["Y", "y"])
            || fields.isDisjoint(with: ["m", "b", "B"])
            || !fields.contains("d")
            || fields.isDisjoint(with: ["H", "I"])
        {
            throw UsageError(
                "option '--time-format' needs a year (%Y or %y), a month "
                    + "(%m, %b or %B), a day (%d) and an hour (%H, or %I "
                    + "with %p), got '\(text)'")
        }
        if fields.contains("I") != fields.contains("p") {
            throw UsageError(
                "option '--time-format': %I and %p go together, "
                    + "got '\(text)'")
        }
        return .pattern(text)
    }

    /// The time written in `text`, or nil when it does not fit the format.
    /// Spaces and tabs around the value are ignored.
    func parse(_ text: String) -> Timestamp? {
        var bytes = Array(text.utf8)
        while let last = bytes.last, last == 0x20 || last == 0x09 {
            bytes.removeLast()
        }
        let start = bytes.firstIndex { $0 != 0x20 && $0 != 0x09 } ?? bytes.count
        var scanner = ByteScanner(bytes: Array(bytes[start...]))
        var fields = TimeFields()
        switch self {
        case .iso8601:
            guard scanner.readISO(into: &fields) else { return nil }
        case .pattern(let format):
            guard let pieces = try? TimePattern.compile(format),
                scanner.read(pieces, into: &fields)
            else { return nil }
        }
        guard scanner.atEnd else { return nil }
        return fields.timestamp()
    }
}

/// The hour of day (0...23) and day of week (0 = Monday ... 6 = Sunday) of
/// `time` shifted by `offsetSeconds`.
func hourAndWeekday(_ time: Timestamp, offsetSeconds: Int64) -> (Int, Int) {
    let local = time.seconds + offsetSeconds
    let day = floorDivide(local, 86_400)
    let secondOfDay = local - day * 86_400
    // 1970-01-01 was a Thursday, weekday 3 when Monday is 0.
    let weekday = (day % 7 + 7 + 3) % 7
    return (Int(secondOfDay / 3600), Int(weekday))
}

private func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian
/// calendar. Counting years from March puts the leap day at the end of
/// the year, and 400 years always hold 146,097 days.
func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int64 {
    let shiftedYear = Int64(month <= 2 ? year - 1 : year)
    let cycle = floorDivide(shiftedYear, 400)
    let yearInCycle = shiftedYear - cycle * 400  // 0...399
    let monthFromMarch = Int64((month + 9) % 12)  // March = 0
    // Days before the month within a March-based year: 31 30 31 30 31 31
    // 30 31 30 31 31 29, which (153 m + 2) / 5 reproduces.
    let dayInYear = (153 * monthFromMarch + 2) / 5 + Int64(day) - 1
    let dayInCycle =
        yearInCycle * 365 + yearInCycle / 4 - yearInCycle / 100
        + dayInYear
    // 719,468 days lie between 0000-03-01 and 1970-01-01.
    return cycle * 146_097 + dayInCycle - 719_468
}

func daysInMonth(year: Int, month: Int) -> Int {
    switch month {
    case 2:
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        return leap ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

private struct TimeFields {
    var year = 1970, month = 1, day = 1
    var hour = 0, minute = 0, second = 0, nanosecond = 0
    var pm: Bool?
    var offsetSeconds = 0

    func timestamp() -> Timestamp? {
        var hour = hour
        if let pm {
            guard (1...12).contains(hour) else { return nil }
            hour = hour % 12 + (pm ? 12 : 0)
        }
        guard (1...12).contains(month),
            (1...daysInMonth(year: year, month: month)).contains(day),
            (0...23).contains(hour), (0...59).contains(minute),
            (0...60).contains(second)
        else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        let seconds =
            days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
            - Int64(offsetSeconds)
        return Timestamp(seconds: seconds, nanoseconds: Int32(nanosecond))
    }
}

private enum TimePattern {
    enum Piece: Equatable {
        case literal(UInt8)
        case directive(Character)
    }

    static let directives: Set<Character> = [
        "Y", "y", "m", "d", "H", "I", "p", "M", "S", "f", "b", "B", "a", "A",
        "z",
    ]

    static func compile(_ format: String) throws -> [Piece] {
        var pieces: [Piece] = []
        var iterator = Array(format).makeIterator()
        while let c = iterator.next() {
            guard c == "%" else {
                pieces.append(contentsOf: String(c).utf8.map(Piece.literal))
                continue
            }
            guard let d = iterator.next() else {
                throw UsageError(
                    "option '--time-format' ends with a lone '%': '\(format)'")
            }
            switch d {
            case "%": pieces.append(.literal(0x25))
            case "T":
                pieces += [
                    .directive("H"), .literal(0x3A), .directive("M"),
                    .literal(0x3A), .directive("S"),
                ]
            case "F":
                pieces += [
                    .directive("Y"), .literal(0x2D), .directive("m"),
                    .literal(0x2D), .directive("d"),
                ]
            case _ where directives.contains(d): pieces.append(.directive(d))
            default:
                throw UsageError(
                    "option '--time-format': unsupported directive '%\(d)' in "
                        + "'\(format)' (supported: %Y %y %m %d %H %I %p %M "
                        + "%S %f %b %B %a %A %z %T %F %%)")
            }
        }
        return pieces
    }
}

private let monthNames = [
    "january", "february", "march", "april", "may", "june", "july",
    "august", "september", "october", "november", "december",
]
private let weekdayNames = [
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    "sunday",
]

private struct ByteScanner {
    let bytes: [UInt8]
    var index = 0

    var atEnd: Bool { index == bytes.count }

    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func accept(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        index += 1
        return true
    }

    /// Between `min` and `max` decimal digits, as a number.
    mutating func number(min: Int, max: Int) -> Int? {
        var value = 0
        var count = 0
        while count < max, let b = peek(), b >= 0x30, b <= 0x39 {
            value = value * 10 + Int(b - 0x30)
            index += 1
            count += 1
        }
        return count >= min ? value : nil
    }

    /// Digits of a fraction of a second, as nanoseconds.
    mutating func fraction() -> Int? {
        let start = index
        guard let value = number(min: 1, max: 9) else { return nil }
        var nanos = value
        for _ in (index - start)..<9 { nanos *= 10 }
        // Digits beyond nanoseconds are read and dropped.
        while let b = peek(), b >= 0x30, b <= 0x39 { index += 1 }
        return nanos
    }

    /// One of `names` (full, or its first three letters), any case;
    /// returns its index.
    mutating func name(_ names: [String]) -> Int? {
        var letters: [UInt8] = []
        while let b = peek(), (b | 0x20) >= 0x61, (b | 0x20) <= 0x7A {
            letters.append(b | 0x20)
            index += 1
        }
        let word = String(decoding: letters, as: UTF8.self)
        return names.firstIndex { $0 == word || $0.prefix(3) == word }
    }

    /// `Z`, or a sign with HH, HHMM or HH:MM; as seconds east of UTC.
    mutating func zone(allowHoursOnly: Bool) -> Int? {
        if accept(0x5A) || accept(0x7A) { return 0 }  // Z z
        let sign: Int
        if accept(0x2B) {
            sign = 1
        } else if accept(0x2D) {
            sign = -1
        } else {
            return nil
        }
        guard let hours = number(min: 2, max: 2) else { return nil }
        var minutes = 0
        if accept(0x3A) {
            guard let m = number(min: 2, max: 2) else { return nil }
            minutes = m
        } else if let m = number(min: 2, max: 2) {
            minutes = m
        } else if !allowHoursOnly {
            return nil
        }
        guard hours <= 23, minutes <= 59 else { return nil }
        return sign * (hours * 3600 + minutes * 60)
    }

    mutating func readISO(into f: inout TimeFields) -> Bool {
        guard let year = number(min: 4, max: 4), accept(0x2D),
            let month = number(min: 2, max: 2), accept(0x2D),
            let day = number(min: 2, max: 2)
        else { return false }
        (f.year, f.month, f.day) = (year, month, day)
        guard accept(0x54) || accept(0x74) || accept(0x20) else { return false }
        guard let hour = number(min: 2, max: 2), accept(0x3A),
            let minute = number(min: 2, max: 2)
        else { return false }
        (f.hour, f.minute) = (hour, minute)
        if accept(0x3A) {
            guard let second = number(min: 2, max: 2) else { return false }
            f.second = second
            if accept(0x2E) || accept(0x2C) {
                guard let nanos = fraction() else { return false }
                f.nanosecond = nanos
            }
        }
        if !atEnd {
            guard let offset = zone(allowHoursOnly: true) else { return false }
            f.offsetSeconds = offset
        }
        return true
    }

    mutating func read(_ pieces: [TimePattern.Piece], into f: inout TimeFields)
        -> Bool
    {
        for piece in pieces {
            switch piece {
            case .literal(let byte):
                guard accept(byte) else { return false }
            case .directive(let d):
                switch d {
                case "Y":
                    guard let v = number(min: 4, max: 4) else { return false }
                    f.year = v
                case "y":
                    guard let v = number(min: 2, max: 2) else { return false }
                    f.year = v < 69 ? 2000 + v : 1900 + v
                case "m":
                    guard let v = number(min: 1, max: 2) else { return false }
                    f.month = v
                case "d":
                    guard let v = number(min: 1, max: 2) else { return false }
                    f.day = v
                case "H", "I":
                    guard let v = number(min: 1, max: 2) else { return false }
                    f.hour = v
                case "M":
                    guard let v = number(min: 1, max: 2) else { return false }
                    f.minute = v
                case "S":
                    guard let v = number(min: 1, max: 2) else { return false }
                    f.second = v
                case "f":
                    guard let v = fraction() else { return false }
                    f.nanosecond = v
                case "b", "B":
                    guard let v = name(monthNames) else { return false }
                    f.month = v + 1
                case "a", "A":
                    guard name(weekdayNames) != nil else { return false }
                case "p":
                    let word = name(["am", "pm"])
                    guard let word else { return false }
                    f.pm = word == 1
                case "z":
                    guard let v = zone(allowHoursOnly: false) else {
                        return false
                    }
                    f.offsetSeconds = v
                default:
                    return false
                }
            }
        }
        return true
    }
}
