#if canImport(Glibc)
    import Glibc
#endif
import Foundation

/// RFC 3339 timestamps (containerd's `containerd.io/gc.expire` labels, log lines) with the C library's calendar
/// functions. Why not Foundation's ISO 8601 formatters: they load ICU's data, which was 6 MB of berthd's resident
/// memory (an eighth of it with 20 containers) for a handful of timestamps.
public enum RFC3339 {
    /// `2006-01-02T15:04:05Z` in UTC, with `fractionDigits` (at most 9) digits of the second after a dot when
    /// nonzero; `zone: false` leaves out the `Z` (the daemon's log lines).
    public static func format(_ date: Date, fractionDigits: Int = 0, zone: Bool = true) -> String {
        let (seconds, nanoseconds) = split(date.timeIntervalSince1970)
        var clock = time_t(seconds)
        var fields = tm()
        gmtime_r(&clock, &fields)
        var text = day(fields) + "T" + pad(fields.tm_hour, 2) + ":" + pad(fields.tm_min, 2) + ":" + pad(fields.tm_sec, 2)
        let digits = min(max(fractionDigits, 0), 9)
        if digits > 0 { text += "." + String(pad(Int32(nanoseconds), 9).prefix(digits)) }
        return zone ? text + "Z" : text
    }

    /// The calendar day of `date` in the local time zone, `2006-01-02` (containerd's `import-<day>` image prefix).
    public static func localDay(_ date: Date) -> String {
        var clock = time_t(split(date.timeIntervalSince1970).seconds)
        var fields = tm()
        localtime_r(&clock, &fields)
        return day(fields)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`T` and `Z` in either case, as RFC 3339 allows); nil
    /// when `text` is anything else or names an impossible date or time.
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        var index = 0
        func number(_ width: Int) -> Int? {
            guard index + width <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[index..<index + width] {
                guard byte >= 0x30, byte <= 0x39 else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            index += width
            return value
        }
        func expect(_ allowed: String) -> Bool {
            guard index < bytes.count, allowed.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let mday = number(2),
            expect("Tt"), let hour = number(2), expect(":"), let minute = number(2), expect(":"),
            let second = number(2)
        else { return nil }
        var fraction = 0.0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                fraction += Double(bytes[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        if !expect("Zz") {
            guard index < bytes.count else { return nil }
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            guard expect("+-"), let hours = number(2), expect(":"), let minutes = number(2), hours < 24, minutes < 60
            else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        }
        guard index == bytes.count, (1...12).contains(month), (1...daysIn(month, year)).contains(mday), hour < 24,
            minute < 60, second <= 60
        else { return nil }
        var fields = tm()
        fields.tm_year = Int32(year - 1900)
        fields.tm_mon = Int32(month - 1)
        fields.tm_mday = Int32(mday)
        fields.tm_hour = Int32(hour)
        fields.tm_min = Int32(minute)
        fields.tm_sec = Int32(second)
        return Date(timeIntervalSince1970: Double(timegm(&fields) - offset) + fraction)
    }

    static func daysIn(_ month: Int, _ year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Whole seconds (rounded down, also before 1970) and the nanoseconds after them.
    static func split(_ interval: TimeInterval) -> (seconds: Int, nanoseconds: Int) {
        let seconds = interval.rounded(.down)
        return (Int(seconds), min(Int(((interval - seconds) * 1e9).rounded(.down)), 999_999_999))
    }

    static func day(_ fields: tm) -> String {
        pad(fields.tm_year + 1900, 4) + "-" + pad(fields.tm_mon + 1, 2) + "-" + pad(fields.tm_mday, 2)
    }

    static func pad(_ value: Int32, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
