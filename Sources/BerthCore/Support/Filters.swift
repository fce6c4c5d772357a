/// containerd's filter syntax (`pkg/filters`), used by List calls and event subscriptions.
///
///     filters   := filter ("," filter)*    (each string given separately is OR'ed)
///     filter    := selector ("," selector)* (AND)
///     selector  := fieldpath [op value]    (no op: the field is present)
///     fieldpath := field ("." field)*, field := [A-Za-z][A-Za-z0-9_]* | quoted
///     op        := "==" | "!=" | "~="      (~= is a regular expression search)
///     value     := quoted | /regex/ | |regex| | [^\s,]+
public struct Filter: Sendable, CustomStringConvertible {
    /// Anything that exposes field values by path (`labels.foo` → ["labels", "foo"]).
    public protocol Adaptor {
        func field(_ path: [String]) -> String?
    }

    enum Operator: String, Sendable { case present = "", equal = "==", notEqual = "!=", matches = "~=" }

    struct Selector: Sendable {
        var path: [String]
        var op: Operator
        var value: String
    }

    /// Outer array: alternatives (OR); inner: selectors that must all match (AND). Empty matches everything.
    let alternatives: [[Selector]]

    public static let all = Filter(alternatives: [])

    /// True when the filter matches everything (no alternatives given).
    public var isEmpty: Bool { alternatives.isEmpty }

    public var description: String {
        alternatives.map { $0.map { "\($0.path.joined(separator: "."))\($0.op.rawValue)\($0.value)" }.joined(separator: ",") }
            .joined(separator: " OR ")
    }

    /// Parses each string as one alternative; empty strings are ignored. Malformed input is InvalidArgument.
    public static func parse(_ filters: [String]) throws(BerthError) -> Filter {
        var alternatives: [[Selector]] = []
        for text in filters where !text.allSatisfy(\.isWhitespace) {
            var parser = Parser(text: Array(text.unicodeScalars))
            alternatives.append(try parser.parseFilter())
        }
        return Filter(alternatives: alternatives)
    }

    public static func parse(_ filter: String) throws(BerthError) -> Filter { try parse([filter]) }

    public func matches(_ adaptor: some Adaptor) -> Bool {
        if alternatives.isEmpty { return true }
        return alternatives.contains { selectors in selectors.allSatisfy { Self.matches($0, adaptor) } }
    }

    private static func matches(_ s: Selector, _ adaptor: some Adaptor) -> Bool {
        let value = adaptor.field(s.path)
        switch s.op {
        case .present: return value != nil
        case .equal: return value == s.value
        case .notEqual: return value != s.value
        case .matches:
            guard let value, let regex = try? Regex(s.value) else { return false }
            return value.contains(regex)
        }
    }

    struct Parser {
        let text: [Unicode.Scalar]
        var i = 0

        init(text: [Unicode.Scalar]) { self.text = text }

        func fail(_ message: String) -> BerthError {
            .invalidArgument("filters: \(message) at position \(i) in \"\(String(String.UnicodeScalarView(text)))\"")
        }

        mutating func skipSpace() { while i < text.count, text[i].properties.isWhitespace { i += 1 } }

        mutating func parseFilter() throws(BerthError) -> [Selector] {
            var selectors: [Selector] = []
            while true {
                skipSpace()
                selectors.append(try parseSelector())
                skipSpace()
                if i == text.count { return selectors }
                guard text[i] == "," else { throw fail("expected \",\" or end of input") }
                i += 1
            }
        }

        mutating func parseSelector() throws(BerthError) -> Selector {
            var path = [try parseField()]
            while i < text.count, text[i] == "." {
                i += 1
                path.append(try parseField())
            }
            skipSpace()
            guard i + 1 < text.count, text[i + 1] == "=" , let op = Operator(rawValue: String(text[i]) + "=") else {
                return Selector(path: path, op: .present, value: "")
            }
            i += 2
            skipSpace()
            let value = try parseValue()
            if op == .matches, (try? Regex(value)) == nil { throw fail("invalid regular expression \(value)") }
            return Selector(path: path, op: op, value: value)
        }

        mutating func parseField() throws(BerthError) -> String {
            guard i < text.count else { throw fail("expected a field name") }
            if text[i] == "\"" { return try parseQuoted(close: "\"", escapes: true) }
            let start = i
            guard text[i].properties.isAlphabetic || text[i] == "_" else { throw fail("expected a field name") }
            while i < text.count, text[i].properties.isAlphabetic || ("0"..."9").contains(text[i]) || text[i] == "_" {
                i += 1
            }
            return String(String.UnicodeScalarView(text[start..<i]))
        }

        mutating func parseValue() throws(BerthError) -> String {
            guard i < text.count else { throw fail("expected a value") }
            switch text[i] {
            case "\"": return try parseQuoted(close: "\"", escapes: true)
            case "/": return try parseQuoted(close: "/", escapes: false)
            case "|": return try parseQuoted(close: "|", escapes: false)
            default:
                let start = i
                while i < text.count, text[i] != ",", !text[i].properties.isWhitespace { i += 1 }
                if start == i { throw fail("expected a value") }
                return String(String.UnicodeScalarView(text[start..<i]))
            }
        }

        mutating func parseQuoted(close: Unicode.Scalar, escapes: Bool) throws(BerthError) -> String {
            i += 1
            var out = String.UnicodeScalarView()
            while i < text.count {
                let c = text[i]
                i += 1
                if c == close { return String(out) }
                if !escapes, c == "\\", i < text.count, text[i] == close {
                    out.append(close)  // \/ inside /regex/, \| inside |regex|
                    i += 1
                } else if escapes, c == "\\" {
                    guard i < text.count else { break }
                    let e = text[i]
                    i += 1
                    switch e {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    default: out.append(e)
                    }
                } else {
                    out.append(c)
                }
            }
            throw fail("unterminated quoted string")
        }
    }
}

/// An adaptor over a flat dictionary of field paths joined by "." (`"labels.foo"`), plus label maps.
public struct FieldMapAdaptor: Filter.Adaptor, Sendable {
    public var fields: [String: String]
    public var maps: [String: [String: String]]

    public init(fields: [String: String], maps: [String: [String: String]] = [:]) {
        self.fields = fields
        self.maps = maps
    }

    public func field(_ path: [String]) -> String? {
        if path.count >= 2, let map = maps[path[0]] {
            return map[path.dropFirst().joined(separator: ".")]
        }
        return fields[path.joined(separator: ".")]
    }
}
