/// Go's duration syntax ("1h30m", "100ms", "2.5s", "0s"), which containerd configs use for timeouts and delays.
public enum GoDuration {
    /// Parses to seconds; nil when the text is not a Go duration.
    public static func seconds(_ text: String) -> Double? {
        var s = Substring(text)
        var sign = 1.0
        if s.first == "-" || s.first == "+" {
            if s.first == "-" { sign = -1 }
            s = s.dropFirst()
        }
        if s == "0" { return 0 }
        if s.isEmpty { return nil }
        let units: [(String, Double)] = [
            ("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("μs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600),
        ]
        var total = 0.0
        while !s.isEmpty {
            let number = s.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            s = s.dropFirst(number.count)
            guard let unit = units.first(where: { s.hasPrefix($0.0) && !(($0.0 == "m") && s.hasPrefix("ms")) }) else {
                return nil
            }
            s = s.dropFirst(unit.0.count)
            total += value * unit.1
        }
        return sign * total
    }

    public static func duration(_ text: String) -> Duration? {
        seconds(text).map { .nanoseconds(Int64(($0 * 1e9).rounded())) }
    }
}
