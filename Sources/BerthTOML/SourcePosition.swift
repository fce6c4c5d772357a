/// A 1-based line and column in a TOML document, so errors and warnings can point at the text.
///
/// Columns count Unicode scalars (a tab counts as one column). Values that did not come from
/// source text (built in code or by `TOMLEncoder`) carry `SourcePosition.unknown` (line 0).
public struct SourcePosition: Sendable, Hashable, CustomStringConvertible {
    /// 1-based line number; 0 for `unknown`.
    public var line: Int
    /// 1-based column number; 0 for `unknown`.
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// The position of a value that was not parsed from text.
    public static let unknown = SourcePosition(line: 0, column: 0)

    /// Whether this position refers to real source text.
    public var isKnown: Bool { line > 0 }

    public var description: String {
        isKnown ? "line \(line), column \(column)" : "unknown position"
    }
}

/// A syntax or semantic error in a TOML document, with the position of the offending token.
public struct TOMLParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var position: SourcePosition
    public var message: String

    public init(position: SourcePosition, message: String) {
        self.position = position
        self.message = message
    }

    /// "line L, column C: message".
    public var description: String { "\(position): \(message)" }
}

/// Entry point for parsing TOML text.
public enum TOML {
    /// Parses a complete TOML 1.0 document into its root table, keeping source positions.
    public static func parse(_ text: String) throws(TOMLParseError) -> TOMLTable {
        var parser = Parser(text)
        return try parser.parseDocument()
    }
}

/// Renders a key path for messages: parts joined by dots; parts that are not bare keys are
/// single-quoted (or basic-quoted if they contain a quote), so the result is valid TOML key syntax.
func displayPath(_ parts: [String]) -> String {
    parts.map { part in
        if isBareKey(part) { return part }
        if part.utf8.contains(where: { $0 == UInt8(ascii: "'") || $0 < 0x20 || $0 == 0x7F }) {
            return quotedBasicString(part)
        }
        return "'\(part)'"
    }.joined(separator: ".")
}

/// True if `key` can be written unquoted (A-Z a-z 0-9 _ -, non-empty).
func isBareKey(_ key: String) -> Bool {
    !key.isEmpty && key.utf8.allSatisfy(isBareKeyByte)
}

@inline(__always)
func isBareKeyByte(_ b: UInt8) -> Bool {
    (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D
}

/// Encodes `s` as a TOML basic string, escaping quotes, backslashes and control characters.
func quotedBasicString(_ s: String) -> String {
    var out = "\""
    out.reserveCapacity(s.utf8.count + 2)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\u{08}": out += "\\b"
        case "\t": out += "\\t"
        case "\n": out += "\\n"
        case "\u{0C}": out += "\\f"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    out += "\""
    return out
}
