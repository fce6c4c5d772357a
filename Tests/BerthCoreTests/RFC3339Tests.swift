import BerthCore
import Foundation
import Testing

/// The C-library RFC 3339 formatter and parser against fixed values and against Foundation's ISO 8601 formatter.
@Suite struct RFC3339Tests {
    @Test func formatsUTCWithAndWithoutFraction() {
        let date = Date(timeIntervalSince1970: 1_796_060_781.25)
        #expect(RFC3339.format(date) == "2026-11-30T17:46:21Z")
        #expect(RFC3339.format(date, fractionDigits: 3) == "2026-11-30T17:46:21.250Z")
        #expect(RFC3339.format(date, fractionDigits: 3, zone: false) == "2026-11-30T17:46:21.250")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -0.5), fractionDigits: 1) == "1969-12-31T23:59:59.5Z")
    }

    @Test func parsesZonesFractionsAndCases() {
        let base = Date(timeIntervalSince1970: 1_796_060_781)
        #expect(RFC3339.parse("2026-11-30T17:46:21Z") == base)
        #expect(RFC3339.parse("2026-11-30t17:46:21z") == base)
        #expect(RFC3339.parse("2026-11-30T19:46:21+02:00") == base)
        #expect(RFC3339.parse("2026-11-30T12:16:21-05:30") == base)
        let fraction = RFC3339.parse("2026-11-30T17:46:21.123456789Z")
        #expect(fraction.map { abs($0.timeIntervalSince(base) - 0.123456789) < 1e-6 } == true)
        #expect(RFC3339.parse("2024-02-29T00:00:00Z") != nil)
    }

    @Test func rejectsWhatIsNotRFC3339() {
        for text in [
            "", "2026-11-30", "2026-11-30T17:46:21", "2026-11-30 17:46:21Z", "2026-11-30T17:46:21.Z",
            "2026-11-30T17:46:21+0200", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
            "2026-11-30T24:00:00Z", "2026-11-30T17:60:00Z", "2026-11-30T17:46:21Zjunk", "26-11-30T17:46:21Z",
            "2026-11-30T17:46:21+24:00", "２026-11-30T17:46:21Z",
        ] {
            #expect(RFC3339.parse(text) == nil, "\(text)")
        }
    }

    /// Both directions agree with Foundation's formatter over dates spread across four centuries.
    @Test func agreesWithFoundation() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let date = Date(timeIntervalSince1970: Double(Int64.random(in: -2_208_988_800...7_258_118_400, using: &generator)))
            let text = RFC3339.format(date)
            #expect(text == formatter.string(from: date))
            #expect(RFC3339.parse(text) == date)
        }
    }

    @Test func localDayIsTheCalendarDayInTheLocalZone() {
        let date = Date(timeIntervalSince1970: 1_796_060_781)
        let components = Calendar(identifier: .gregorian).dateComponents(in: TimeZone.current, from: date)
        let expected = String(format: "%04d-%02d-%02d", components.year ?? 0, components.month ?? 0, components.day ?? 0)
        #expect(RFC3339.localDay(date) == expected)
    }
}
