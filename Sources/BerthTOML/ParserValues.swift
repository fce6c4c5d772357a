/// Value parsing: strings, numbers, booleans, date/times, arrays and inline tables.
extension Parser {
    /// Parses one value starting at `index`.
    mutating func parseValue() throws(TOMLParseError) -> TOMLValue {
        guard let b = peek() else { throw error("expected a value, found end of file", at: index) }
        switch b {
        case ASCII.quote:
            if peek(1) == ASCII.quote, peek(2) == ASCII.quote { return .string(try parseMultilineString(literal: false)) }
            return .string(try parseBasicString())
        case ASCII.apostrophe:
            if peek(1) == ASCII.apostrophe, peek(2) == ASCII.apostrophe { return .string(try parseMultilineString(literal: true)) }
            return .string(try parseLiteralString())
        case ASCII.leftBracket:
            return try parseArray()
        case ASCII.leftBrace:
            return try parseInlineTable()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            let start = index
            let word = scanWord()
            if word == "true" { return .boolean(true) }
            if word == "false" { return .boolean(false) }
            throw error("invalid value \(quotedBasicString(word)) (strings must be quoted)", at: start)
        case 0x30...0x39:
            if isDateTimeStart() {
                let start = index
                do throws(TOMLDateTime.ScanError) {
                    let (value, end) = try TOMLDateTime.scan(bytes, from: start)
                    index = end
                    return .datetime(value)
                } catch {
                    throw self.error(error.message, at: error.offset)
                }
            }
            return try parseNumber(from: index)
        case ASCII.plus, ASCII.minus, UInt8(ascii: "i"), UInt8(ascii: "n"):
            return try parseNumber(from: index)
        default:
            if isBareKeyByte(b) {
                let start = index
                let word = scanWord()
                throw error("invalid value \(quotedBasicString(word)) (strings must be quoted)", at: start)
            }
            throw error("expected a value, found \(describe(at: index))", at: index)
        }
    }

    /// Scans letters, digits, `_`, `-`, `+`, `.` (a number or bare word) and returns them.
    private mutating func scanWord() -> String {
        let start = index
        while index < bytes.count, isBareKeyByte(bytes[index]) || bytes[index] == ASCII.plus || bytes[index] == ASCII.dot {
            index += 1
        }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// True for `DDDD-` (a date) or `DD:` (a local time) at `index`.
    private func isDateTimeStart() -> Bool {
        func digit(_ k: Int) -> Bool { peek(k).map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
        if digit(0), digit(1), peek(2) == ASCII.colon { return true }
        return digit(0) && digit(1) && digit(2) && digit(3) && peek(4) == ASCII.minus
    }

    // MARK: Strings

    /// Parses a single-line basic string at the opening `"`.
    mutating func parseBasicString() throws(TOMLParseError) -> String {
        let open = index
        index += 1
        let contentStart = index
        var buffer: [UInt8]?
        while true {
            guard index < bytes.count else { throw error("unterminated string", at: open) }
            let b = bytes[index]
            if b == ASCII.quote {
                let result = buffer.map { String(decoding: $0, as: UTF8.self) } ?? String(decoding: bytes[contentStart..<index], as: UTF8.self)
                index += 1
                return result
            }
            if b == ASCII.backslash {
                var out = buffer ?? Array(bytes[contentStart..<index])
                try parseEscape(into: &out)
                buffer = out
                continue
            }
            if b == ASCII.lf || b == ASCII.cr {
                throw error("newline in a single-line string (missing closing quote?)", at: index)
            }
            try checkStringByte(b)
            buffer?.append(b)
            index += 1
        }
    }

    /// Parses a single-line literal string at the opening `'`.
    mutating func parseLiteralString() throws(TOMLParseError) -> String {
        let open = index
        index += 1
        let contentStart = index
        while true {
            guard index < bytes.count else { throw error("unterminated string", at: open) }
            let b = bytes[index]
            if b == ASCII.apostrophe {
                let result = String(decoding: bytes[contentStart..<index], as: UTF8.self)
                index += 1
                return result
            }
            if b == ASCII.lf || b == ASCII.cr {
                throw error("newline in a single-line string (missing closing quote?)", at: index)
            }
            try checkStringByte(b)
            index += 1
        }
    }

    /// Parses `"""…"""` or `'''…'''` at the first delimiter.
    mutating func parseMultilineString(literal: Bool) throws(TOMLParseError) -> String {
        let open = index
        let delimiter = literal ? ASCII.apostrophe : ASCII.quote
        index += 3
        _ = try consumeNewline()  // a newline right after the opening delimiter is trimmed
        var out: [UInt8] = []
        while true {
            guard index < bytes.count else { throw error("unterminated multi-line string", at: open) }
            let b = bytes[index]
            if b == delimiter {
                var run = 0
                while index + run < bytes.count, bytes[index + run] == delimiter { run += 1 }
                if run < 3 {
                    out.append(contentsOf: repeatElement(delimiter, count: run))
                    index += run
                    continue
                }
                if run > 5 { throw error("too many quotes at the end of a multi-line string", at: index + 5) }
                out.append(contentsOf: repeatElement(delimiter, count: run - 3))
                index += run
                return String(decoding: out, as: UTF8.self)
            }
            if b == ASCII.backslash && !literal {
                if try skipLineEndingBackslash() { continue }
                try parseEscape(into: &out)
                continue
            }
            if b == ASCII.lf {
                out.append(b)
                index += 1
                continue
            }
            if b == ASCII.cr {
                guard peek(1) == ASCII.lf else { throw error("carriage return must be followed by a newline", at: index) }
                out.append(ASCII.cr)
                out.append(ASCII.lf)
                index += 2
                continue
            }
            try checkStringByte(b)
            out.append(b)
            index += 1
        }
    }

    /// At a `\` in a multi-line basic string: if only whitespace follows up to the line end, skips
    /// the backslash and all whitespace and newlines after it, returning true.
    private mutating func skipLineEndingBackslash() throws(TOMLParseError) -> Bool {
        var i = index + 1
        while i < bytes.count, bytes[i] == ASCII.space || bytes[i] == ASCII.tab { i += 1 }
        guard i < bytes.count, bytes[i] == ASCII.lf || (bytes[i] == ASCII.cr && i + 1 < bytes.count && bytes[i + 1] == ASCII.lf) else {
            return false
        }
        index = i
        while index < bytes.count {
            let b = bytes[index]
            if b == ASCII.space || b == ASCII.tab {
                index += 1
            } else if !(try consumeNewline()) {
                break
            }
        }
        return true
    }

    /// Rejects control characters other than tab inside strings.
    private mutating func checkStringByte(_ b: UInt8) throws(TOMLParseError) {
        if (b < 0x20 && b != ASCII.tab) || b == ASCII.delete {
            throw error("control character \(describe(at: index)) must be escaped in a string", at: index)
        }
    }

    /// Parses an escape sequence at `\` and appends its UTF-8 bytes.
    private mutating func parseEscape(into out: inout [UInt8]) throws(TOMLParseError) {
        let start = index
        guard let c = peek(1) else { throw error("unterminated string", at: start) }
        index += 2
        switch c {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(0x0D)
        case ASCII.quote: out.append(ASCII.quote)
        case ASCII.backslash: out.append(ASCII.backslash)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let width = c == UInt8(ascii: "u") ? 4 : 8
            var value: UInt32 = 0
            for _ in 0..<width {
                guard let h = peek(), let digit = hexValue(h) else {
                    throw error("invalid unicode escape: \\\(Character(Unicode.Scalar(c))) needs \(width) hex digits", at: start)
                }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            guard let scalar = Unicode.Scalar(value) else {
                throw error("invalid unicode escape: U+\(String(value, radix: 16, uppercase: true)) is not a Unicode scalar value", at: start)
            }
            out.append(contentsOf: String(scalar).utf8)
        default:
            index = start
            let shown = c >= 0x21 && c <= 0x7E ? "\\\(Character(Unicode.Scalar(c)))" : "\\ followed by \(describe(at: start + 1))"
            throw error("invalid escape sequence \(shown)", at: start)
        }
    }

    private func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }

    // MARK: Numbers

    /// Parses an integer or float token starting at `start`; errors point at the token start.
    mutating func parseNumber(from start: Int) throws(TOMLParseError) -> TOMLValue {
        index = start
        _ = scanWord()
        let token = bytes[start..<index]
        let text = String(decoding: token, as: UTF8.self)
        var i = token.startIndex
        var negative = false
        var signed = false
        if token[i] == ASCII.plus || token[i] == ASCII.minus {
            negative = token[i] == ASCII.minus
            signed = true
            i += 1
        }
        let rest = String(decoding: token[i...], as: UTF8.self)
        if rest == "inf" { return .float(negative ? -.infinity : .infinity) }
        if rest == "nan" { return .float(.nan) }
        if i < token.endIndex, token[i] == 0x30, i + 1 < token.endIndex,
           let radix = [UInt8(ascii: "x"): 16, UInt8(ascii: "o"): 8, UInt8(ascii: "b"): 2][token[i + 1]] {
            if signed { throw error("a sign is not allowed on hexadecimal, octal or binary integers: \(text)", at: start) }
            guard let digits = digitRun(token, from: i + 2, radix: radix), digits.end == token.endIndex else {
                throw error("invalid integer \(text)", at: start)
            }
            guard let value = Int64(digits.text, radix: radix) else { throw error("integer \(text) is out of range", at: start) }
            return .integer(value)
        }
        guard let whole = digitRun(token, from: i, radix: 10) else {
            if i < token.endIndex, hexValue(token[i]) == nil, token[i] != 0x5F {
                throw error("invalid value \(quotedBasicString(text)) (strings must be quoted)", at: start)
            }
            throw error("invalid number \(text)", at: start)
        }
        if whole.text.count > 1 && whole.text.hasPrefix("0") {
            throw error("leading zeros are not allowed in numbers: \(text)", at: start)
        }
        var j = whole.end
        var isFloat = false
        var normalized = (negative ? "-" : "") + whole.text
        if j < token.endIndex, token[j] == ASCII.dot {
            guard let fraction = digitRun(token, from: j + 1, radix: 10) else {
                throw error("invalid float \(text): expected digits after '.'", at: start)
            }
            isFloat = true
            normalized += "." + fraction.text
            j = fraction.end
        }
        if j < token.endIndex, token[j] == UInt8(ascii: "e") || token[j] == UInt8(ascii: "E") {
            var k = j + 1
            var exponentSign = ""
            if k < token.endIndex, token[k] == ASCII.plus || token[k] == ASCII.minus {
                exponentSign = token[k] == ASCII.minus ? "-" : "+"
                k += 1
            }
            guard let exponent = digitRun(token, from: k, radix: 10) else {
                throw error("invalid float \(text): expected digits in the exponent", at: start)
            }
            isFloat = true
            normalized += "e" + exponentSign + exponent.text
            j = exponent.end
        }
        guard j == token.endIndex else { throw error("invalid number \(text)", at: start) }
        if isFloat {
            guard let value = Double(normalized) else { throw error("invalid float \(text)", at: start) }
            return .float(value)
        }
        guard let value = Int64(normalized) else { throw error("integer \(text) is out of range for a 64-bit integer", at: start) }
        return .integer(value)
    }

    /// Digits of `radix` from `from`, with single underscores allowed only between digits.
    /// Returns the digits without underscores and the end offset, or nil if malformed or empty.
    private func digitRun(_ token: ArraySlice<UInt8>, from: Int, radix: Int) -> (text: String, end: Int)? {
        var i = from
        var digits: [UInt8] = []
        var lastWasDigit = false
        while i < token.endIndex {
            let b = token[i]
            if b == 0x5F {  // _
                guard lastWasDigit else { return nil }
                lastWasDigit = false
            } else if let v = hexValue(b), Int(v) < radix {
                digits.append(b)
                lastWasDigit = true
            } else {
                break
            }
            i += 1
        }
        guard lastWasDigit else { return nil }
        return (String(decoding: digits, as: UTF8.self), i)
    }

    // MARK: Arrays and inline tables

    /// Parses `[ … ]`: values of any type, newlines and comments allowed, trailing comma allowed.
    mutating func parseArray() throws(TOMLParseError) -> TOMLValue {
        let open = index
        index += 1
        var items: [TOMLNode] = []
        while true {
            try skipWhitespaceCommentsAndNewlines()
            if atEnd { throw error("unterminated array", at: open) }
            if peek() == ASCII.rightBracket {
                index += 1
                return .array(items)
            }
            let itemStart = index
            let value = try parseValue()
            items.append(TOMLNode(value, position: position(at: itemStart)))
            try skipWhitespaceCommentsAndNewlines()
            if peek() == ASCII.comma {
                index += 1
            } else if peek() == ASCII.rightBracket {
                index += 1
                return .array(items)
            } else if atEnd {
                throw error("unterminated array", at: open)
            } else {
                throw error("expected ',' or ']' in array, found \(describe(at: index))", at: index)
            }
        }
    }

    /// Parses `{ k = v, … }` on one line; no trailing comma; the result cannot be extended later.
    mutating func parseInlineTable() throws(TOMLParseError) -> TOMLValue {
        let open = index
        index += 1
        sectionCounter += 1
        let section = sectionCounter
        let table = TableBuilder(origin: .header, position: position(at: open))
        skipWhitespace()
        if peek() == ASCII.rightBrace {
            index += 1
            return .table(table.build())
        }
        while true {
            skipWhitespace()
            if peek() == ASCII.lf || peek() == ASCII.cr {
                throw error("newlines are not allowed in inline tables", at: index)
            }
            try parseKeyValue(into: table, path: [], section: section)
            skipWhitespace()
            guard let b = peek() else { throw error("unterminated inline table", at: open) }
            if b == ASCII.rightBrace {
                index += 1
                return .table(table.build())
            }
            if b == ASCII.comma {
                let comma = index
                index += 1
                skipWhitespace()
                if peek() == ASCII.rightBrace {
                    throw error("trailing comma is not allowed in an inline table", at: comma)
                }
                continue
            }
            if b == ASCII.lf || b == ASCII.cr {
                throw error("newlines are not allowed in inline tables", at: index)
            }
            throw error("expected ',' or '}' in inline table, found \(describe(at: index))", at: index)
        }
    }
}
