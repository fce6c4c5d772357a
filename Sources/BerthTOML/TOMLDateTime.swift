import Foundation

/// A TOML date/time value in any of its four forms, with its components and the original text.
///
/// Equality and hashing use the components (not the text), so `1979-05-27T07:32:00Z` equals
/// `1979-05-27 07:32:00z`. Fractional seconds are kept to nanosecond precision (extra digits are
/// truncated).
public struct TOMLDateTime: Sendable, Hashable, CustomStringConvertible {
    /// Which of TOML's four date/time forms this is.
    public enum Kind: Sendable, Hashable {
        case offsetDateTime, localDateTime, localDate, localTime
    }

    /// A calendar date.
    public struct LocalDate: Sendable, Hashable {
        public var year: Int, month: Int, day: Int
        public init(year: Int, month: Int, day: Int) {
            self.year = year
            self.month = month
            self.day = day
        }
    }

    /// A time of day; `second` may be 60 for a leap second.
    public struct LocalTime: Sendable, Hashable {
        public var hour: Int, minute: Int, second: Int, nanosecond: Int
        public init(hour: Int, minute: Int, second: Int, nanosecond: Int = 0) {
            self.hour = hour
            self.minute = minute
            self.second = second
            self.nanosecond = nanosecond
        }
    }

    public private(set) var date: LocalDate?
    public private(set) var time: LocalTime?
    /// Offset from UTC in minutes (0 for `Z`); only offset date-times have one.
    public private(set) var offsetMinutes: Int?
    /// The text as written in the source, or a canonical RFC 3339 form for values built in code.
    public private(set) var text: String

    public var kind: Kind {
        switch (date != nil, time != nil, offsetMinutes != nil) {
        case (true, true, true): .offsetDateTime
        case (true, true, false): .localDateTime
        case (true, false, _): .localDate
        default: .localTime
        }
    }

    public var description: String { text }

    /// Builds a value from components; nil if a component is out of range, if neither a date nor a
    /// time is given, or if an offset is given without both.
    public init?(date: LocalDate?, time: LocalTime?, offsetMinutes: Int? = nil) {
        if date == nil && time == nil { return nil }
        if offsetMinutes != nil && (date == nil || time == nil) { return nil }
        if let date, !Self.isValid(date) { return nil }
        if let time, !Self.isValid(time) { return nil }
        if let offsetMinutes, abs(offsetMinutes) >= 24 * 60 { return nil }
        self.date = date
        self.time = time
        self.offsetMinutes = offsetMinutes
        self.text = Self.canonicalText(date: date, time: time, offsetMinutes: offsetMinutes)
    }

    /// Parses TOML date/time text (e.g. "1979-05-27T07:32:00-08:00"); nil if it is not one.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard let (value, end) = try? Self.scan(bytes, from: 0), end == bytes.count else { return nil }
        self = value
    }

    /// An offset date-time in UTC for a Foundation date (nanosecond precision, rounded); nil if the
    /// year falls outside 0...9999, which TOML cannot write.
    public init?(_ instant: Date) {
        let total = instant.timeIntervalSince1970
        // -62167219200 is 0000-01-01T00:00:00Z; 253402300800 is 10000-01-01T00:00:00Z.
        guard total.isFinite, total >= -62_167_219_200, total < 253_402_300_800 else { return nil }
        var seconds = Int64(total.rounded(.down))
        var nanos = Int(((total - Double(seconds)) * 1e9).rounded())
        if nanos >= 1_000_000_000 {
            seconds += 1
            nanos -= 1_000_000_000
        }
        let days = Int(seconds.quotientRounded(by: 86_400))
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        let (y, m, d) = civilFromDays(days)
        self.date = LocalDate(year: y, month: m, day: d)
        self.time = LocalTime(hour: secondOfDay / 3600, minute: secondOfDay / 60 % 60, second: secondOfDay % 60, nanosecond: nanos)
        self.offsetMinutes = 0
        self.text = Self.canonicalText(date: date, time: time, offsetMinutes: 0)
    }

    /// The instant of an offset date-time; nil for the local forms, which name no instant.
    public var foundationDate: Date? {
        guard let date, let time, let offsetMinutes else { return nil }
        let days = daysFromCivil(date.year, date.month, date.day)
        let seconds = Int64(days) * 86_400 + Int64(time.hour * 3600 + time.minute * 60 + time.second) - Int64(offsetMinutes * 60)
        return Date(timeIntervalSince1970: Double(seconds) + Double(time.nanosecond) / 1e9)
    }

    public static func == (lhs: TOMLDateTime, rhs: TOMLDateTime) -> Bool {
        lhs.date == rhs.date && lhs.time == rhs.time && lhs.offsetMinutes == rhs.offsetMinutes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(date)
        hasher.combine(time)
        hasher.combine(offsetMinutes)
    }

    // MARK: - Validation and formatting

    static func isValid(_ d: LocalDate) -> Bool {
        (0...9999).contains(d.year) && (1...12).contains(d.month) && d.day >= 1 && d.day <= daysInMonth(d.year, d.month)
    }

    static func isValid(_ t: LocalTime) -> Bool {
        (0...23).contains(t.hour) && (0...59).contains(t.minute) && (0...60).contains(t.second)
            && (0..<1_000_000_000).contains(t.nanosecond)
    }

    static func daysInMonth(_ year: Int, _ month: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    static func canonicalText(date: LocalDate?, time: LocalTime?, offsetMinutes: Int?) -> String {
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        var out = ""
        if let date {
            out += "\(pad(date.year, 4))-\(pad(date.month, 2))-\(pad(date.day, 2))"
        }
        if let time {
            if date != nil { out += "T" }
            out += "\(pad(time.hour, 2)):\(pad(time.minute, 2)):\(pad(time.second, 2))"
            if time.nanosecond > 0 {
                var fraction = pad(time.nanosecond, 9)
                while fraction.hasSuffix("0") { fraction.removeLast() }
                out += "." + fraction
            }
        }
        if let offsetMinutes {
            if offsetMinutes == 0 {
                out += "Z"
            } else {
                let magnitude = abs(offsetMinutes)
                out += (offsetMinutes < 0 ? "-" : "+") + "\(pad(magnitude / 60, 2)):\(pad(magnitude % 60, 2))"
            }
        }
        return out
    }

    // MARK: - Scanning

    /// Why date/time text was rejected, and the byte offset to blame.
    struct ScanError: Error {
        var message: String
        var offset: Int
    }

    /// Scans a date/time starting at `start` in `b`; returns the value and the offset just past it.
    /// The caller decides that a date/time starts here (4 digits and '-', or 2 digits and ':').
    static func scan(_ b: [UInt8], from start: Int) throws(ScanError) -> (TOMLDateTime, Int) {
        var i = start
        let n = b.count
        func isDigit(_ at: Int) -> Bool { at < n && b[at] >= 0x30 && b[at] <= 0x39 }
        func number(_ width: Int) -> Int? {
            var v = 0
            for k in 0..<width {
                guard isDigit(i + k) else { return nil }
                v = v * 10 + Int(b[i + k] - 0x30)
            }
            i += width
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < n, b[i] == c else { return false }
            i += 1
            return true
        }
        func scanTime() throws(ScanError) -> LocalTime {
            let timeStart = i
            guard let hour = number(2), expect(0x3A), let minute = number(2) else {
                throw ScanError(message: "invalid time: expected HH:MM:SS", offset: timeStart)
            }
            guard expect(0x3A), let second = number(2) else {
                throw ScanError(message: "invalid time: seconds are required (HH:MM:SS)", offset: timeStart)
            }
            var nanos = 0
            if i < n, b[i] == 0x2E {
                i += 1
                guard isDigit(i) else { throw ScanError(message: "invalid time: expected digits after '.'", offset: i) }
                var scale = 100_000_000
                while isDigit(i) {
                    nanos += Int(b[i] - 0x30) * scale
                    scale /= 10
                    i += 1
                }
            }
            let time = LocalTime(hour: hour, minute: minute, second: second, nanosecond: nanos)
            guard isValid(time) else { throw ScanError(message: "invalid time: hour, minute or second out of range", offset: timeStart) }
            return time
        }

        var date: LocalDate?
        var time: LocalTime?
        var offset: Int?
        if isDigit(i + 3), i + 4 < n, b[i + 4] == 0x2D {
            guard let year = number(4), expect(0x2D), let month = number(2), expect(0x2D), let day = number(2) else {
                throw ScanError(message: "invalid date: expected YYYY-MM-DD", offset: start)
            }
            let d = LocalDate(year: year, month: month, day: day)
            guard isValid(d) else { throw ScanError(message: "invalid date: month or day out of range", offset: start) }
            date = d
            if i < n, b[i] == 0x54 || b[i] == 0x74 {  // T t
                i += 1
                time = try scanTime()
            } else if i + 3 < n, b[i] == 0x20, isDigit(i + 1), isDigit(i + 2), b[i + 3] == 0x3A {
                i += 1
                time = try scanTime()
            }
            if time != nil, i < n {
                if b[i] == 0x5A || b[i] == 0x7A {  // Z z
                    i += 1
                    offset = 0
                } else if b[i] == 0x2B || b[i] == 0x2D {  // + -
                    let sign = b[i] == 0x2D ? -1 : 1
                    let offsetStart = i
                    i += 1
                    guard let h = number(2), expect(0x3A), let m = number(2), h <= 23, m <= 59 else {
                        throw ScanError(message: "invalid time offset: expected +HH:MM or -HH:MM", offset: offsetStart)
                    }
                    offset = sign * (h * 60 + m)
                }
            }
        } else {
            time = try scanTime()
        }
        if i < n {
            switch b[i] {
            case 0x20, 0x09, 0x0A, 0x0D, 0x23, 0x2C, 0x5D, 0x7D: break  // space tab LF CR # , ] }
            default: throw ScanError(message: "invalid date/time", offset: start)
            }
        }
        var value = TOMLDateTime(uncheckedDate: date, time: time, offsetMinutes: offset)
        value.text = String(decoding: b[start..<i], as: UTF8.self)
        return (value, i)
    }

    private init(uncheckedDate date: LocalDate?, time: LocalTime?, offsetMinutes: Int?) {
        self.date = date
        self.time = time
        self.offsetMinutes = offsetMinutes
        self.text = ""
    }
}

extension Int64 {
    /// Floor division, so negative timestamps map to the previous day.
    fileprivate func quotientRounded(by d: Int64) -> Int64 {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
private func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (month + 9) % 12
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

/// Inverse of `daysFromCivil`.
private func civilFromDays(_ days: Int) -> (Int, Int, Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let day = doy - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
}
