/// A TOML value together with where it appeared in the source.
///
/// For table entries the position is that of the key; for array items it is that of the item.
/// Equality compares values only: positions are ignored, so a parsed document equals the same
/// data built in code or re-parsed from serialized text.
public struct TOMLNode: Sendable, Equatable {
    public var value: TOMLValue
    public var position: SourcePosition

    public init(_ value: TOMLValue, position: SourcePosition = .unknown) {
        self.value = value
        self.position = position
    }

    public static func == (lhs: TOMLNode, rhs: TOMLNode) -> Bool {
        lhs.value == rhs.value
    }
}

/// Any TOML value.
///
/// Equality is semantic: floats compare with `==` except that NaN equals NaN, and tables compare
/// without regard to key order or positions.
public indirect enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    /// Offset date-time, local date-time, local date or local time.
    case datetime(TOMLDateTime)
    case array([TOMLNode])
    case table(TOMLTable)

    /// The TOML name of this value's type, for messages: "string", "integer", "float",
    /// "boolean", "datetime", "array" or "table".
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .datetime: "datetime"
        case .array: "array"
        case .table: "table"
        }
    }

    public static func == (lhs: TOMLValue, rhs: TOMLValue) -> Bool {
        switch (lhs, rhs) {
        case let (.string(a), .string(b)): a == b
        case let (.integer(a), .integer(b)): a == b
        case let (.float(a), .float(b)): a == b || (a.isNaN && b.isNaN)
        case let (.boolean(a), .boolean(b)): a == b
        case let (.datetime(a), .datetime(b)): a == b
        case let (.array(a), .array(b)): a == b
        case let (.table(a), .table(b)): a == b
        default: false
        }
    }

    /// The string payload, if this is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer payload, if this is an integer.
    public var integerValue: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }

    /// The float payload, or an integer converted to a double.
    public var doubleValue: Double? {
        switch self {
        case .float(let d): d
        case .integer(let i): Double(i)
        default: nil
        }
    }

    /// The boolean payload, if this is a boolean.
    public var boolValue: Bool? {
        if case .boolean(let b) = self { return b }
        return nil
    }

    /// The table payload, if this is a table.
    public var tableValue: TOMLTable? {
        if case .table(let t) = self { return t }
        return nil
    }

    /// The array items, if this is an array.
    public var arrayValue: [TOMLNode]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// A short rendering of the value for messages, e.g. `"fast"`, `70000`, `table`.
    var summary: String {
        switch self {
        case .string(let s):
            let shown = s.count > 40 ? String(s.prefix(40)) + "…" : s
            return quotedBasicString(shown)
        case .integer(let i): return String(i)
        case .float(let d): return formatFloat(d)
        case .boolean(let b): return b ? "true" : "false"
        case .datetime(let d): return d.text
        case .array: return "array"
        case .table: return "table"
        }
    }
}

/// Formats a double as a TOML float that parses back to the same value.
func formatFloat(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    let text = d.description  // shortest round-trip form, always has "." or "e"
    if text.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) {
        return text
    }
    return text + ".0"
}
