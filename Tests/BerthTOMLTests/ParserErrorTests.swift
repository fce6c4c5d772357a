import Testing
@testable import BerthTOML

/// An invalid document, where its error must be reported, and a fragment of the message.
struct InvalidCase: CustomTestStringConvertible, Sendable {
    var text: String
    var line: Int
    var column: Int
    var message: String

    init(_ text: String, _ line: Int, _ column: Int, _ message: String) {
        self.text = text
        self.line = line
        self.column = column
        self.message = message
    }

    var testDescription: String { text.debugDescription }
}

/// Parses `text`, expecting failure; returns the error.
func parseError(_ text: String) -> TOMLParseError? {
    do {
        _ = try TOML.parse(text)
        return nil
    } catch {
        return error
    }
}

@Suite("Parse errors")
struct ParserErrorTests {
    static let keyAndTableErrors: [InvalidCase] = [
        .init("name = \"Tom\"\nname = \"Pradyun\"", 2, 1, "duplicate key \"name\" (first defined at line 1)"),
        .init("spelling = \"favorite\"\n\"spelling\" = \"favourite\"", 2, 1, "duplicate key \"spelling\""),
        .init("a = 1\n[t]\nx.y = 1\nx.y = 2", 4, 3, "duplicate key \"t.x.y\""),
        .init("fruit.apple = 1\nfruit.apple.smooth = true", 2, 7, "key \"fruit.apple\" is an integer, not a table"),
        .init("a.b = 1\na = 2", 2, 1, "duplicate key \"a\": it is already a table"),
        .init("[fruit]\napple = \"red\"\n\n[fruit]\norange = \"orange\"", 4, 2, "table \"fruit\" is defined twice (first defined at line 1)"),
        .init("[a.b]\n[a]\n[a]", 3, 2, "table \"a\" is defined twice"),
        .init("[fruit]\napple.color = \"red\"\n\n[fruit.apple]", 4, 8, "table \"fruit.apple\" was already defined by dotted keys"),
        .init("fruit.apple = 1\n[fruit]", 2, 2, "table \"fruit\" was already defined by dotted keys"),
        .init("[fruit]\napple = \"red\"\n[fruit.apple]", 3, 8, "key \"fruit.apple\" is already defined as a string"),
        .init("[fruit]\napple = \"red\"\n[fruit.apple.x]", 3, 8, "key \"fruit.apple\" is a string, not a table"),
        .init("fruits = []\n[[fruits]]", 2, 3, "cannot append to static array \"fruits\""),
        .init("[[fruits]]\nname = \"apple\"\n[fruits]", 3, 2, "cannot define table \"fruits\": it is already an array of tables"),
        .init("[fruit.physical]\ncolor = \"red\"\n[[fruit.physical]]", 3, 9, "cannot define array of tables \"fruit.physical\": it is already a table"),
        .init("[product]\ntype = { name = \"Nail\" }\ntype.edible = false", 3, 1, "cannot add keys to inline table \"product.type\""),
        .init("[product]\ntype = { name = \"Nail\" }\n[product.type]", 3, 10, "cannot reopen inline table \"product.type\""),
        .init("a = { b = 1 }\n[a.c]", 2, 2, "cannot add keys to inline table \"a\""),
        .init("a = { b = { c = 1 }, b.d = 2 }", 1, 22, "cannot add keys to inline table \"b\""),
        .init("[a.b.c]\nz = 9\n[a]\nb.c.t = 1", 4, 3, "cannot add to table \"a.b.c\" with dotted keys"),
        .init("[a]\nb.c = 1\n[x]\n[a]", 4, 2, "table \"a\" is defined twice"),
        .init("[a]\nb.c = 1\n[a.b]", 3, 4, "table \"a.b\" was already defined by dotted keys"),
        .init("[[a.b]]\n[a]\nb.c = 1", 3, 1, "cannot add to array of tables \"a.b\" with dotted keys"),
        .init("a = 1\n[a.'x.y']", 2, 2, "key \"a\" is an integer, not a table"),
        .init("[a]\nx = 1\n[a.x]", 3, 4, "key \"a.x\" is already defined as an integer"),
    ]

    @Test(arguments: keyAndTableErrors)
    func keyAndTableError(_ c: InvalidCase) {
        let error = parseError(c.text)
        #expect(error?.position == SourcePosition(line: c.line, column: c.column), "\(String(describing: error))")
        #expect(error?.message.contains(c.message) == true, "\(String(describing: error))")
    }

    static let stringErrors: [InvalidCase] = [
        .init("a = \"bad \\x\"", 1, 10, "invalid escape sequence \\x"),
        .init("a = \"bad \\ \"", 1, 10, "invalid escape sequence"),
        .init("a = \"\\e\"", 1, 6, "invalid escape sequence \\e"),
        .init("a = \"\\u12\"", 1, 6, "needs 4 hex digits"),
        .init("a = \"\\UD800\"", 1, 6, "needs 8 hex digits"),
        .init("a = \"\\uD800\"", 1, 6, "not a Unicode scalar value"),
        .init("a = \"\\U00110000\"", 1, 6, "not a Unicode scalar value"),
        .init("a = \"abc\nb = 1", 1, 9, "newline in a single-line string"),
        .init("a = 'abc\nb = 1", 1, 9, "newline in a single-line string"),
        .init("a = \"abc", 1, 5, "unterminated string"),
        .init("a = \"\"\"abc\n", 1, 5, "unterminated multi-line string"),
        .init("a = \"\"\"x\"\"\"\"\"\"", 1, 14, "too many quotes"),
        .init("a = \"x\u{01}\"", 1, 7, "control character U+0001 must be escaped"),
        .init("a = \"\"\"x\n\\q\"\"\"", 2, 1, "invalid escape sequence \\q"),
        .init("a = \"\"\"x\ry\"\"\"", 1, 9, "carriage return"),
        .init("\"\"\"a\"\"\" = 1", 1, 1, "multi-line strings cannot be used as keys"),
    ]

    @Test(arguments: stringErrors)
    func stringError(_ c: InvalidCase) {
        let error = parseError(c.text)
        #expect(error?.position == SourcePosition(line: c.line, column: c.column), "\(String(describing: error))")
        #expect(error?.message.contains(c.message) == true, "\(String(describing: error))")
    }

    static let valueErrors: [InvalidCase] = [
        .init("a = 012", 1, 5, "leading zeros"),
        .init("x = 1\nb = 00.5", 2, 5, "leading zeros"),
        .init("a = -01", 1, 5, "leading zeros"),
        .init("a = 1__0", 1, 5, "invalid number"),
        .init("a = 1_", 1, 5, "invalid number"),
        .init("a = +0x10", 1, 5, "sign is not allowed"),
        .init("a = 0x", 1, 5, "invalid integer"),
        .init("a = 0b102", 1, 5, "invalid integer"),
        .init("a = 1.", 1, 5, "expected digits after '.'"),
        .init("a = 1.e5", 1, 5, "expected digits after '.'"),
        .init("a = .5", 1, 5, "expected a value"),
        .init("a = 1e", 1, 5, "exponent"),
        .init("a = 9223372036854775808", 1, 5, "out of range"),
        .init("a = 0x8000000000000000", 1, 5, "out of range"),
        .init("a = hello", 1, 5, "strings must be quoted"),
        .init("a = trueish", 1, 5, "strings must be quoted"),
        .init("a = nope", 1, 5, "strings must be quoted"),
        .init("a = 1979-13-01", 1, 5, "month or day out of range"),
        .init("a = 1979-02-29", 1, 5, "month or day out of range"),
        .init("a = 1979-05-27T07:32", 1, 16, "seconds are required"),
        .init("a = 1979-05-27T25:00:00", 1, 16, "out of range"),
        .init("a = 1979-05-27T07:32:00+7:00", 1, 24, "invalid time offset"),
        .init("a = 07:32:00Z", 1, 5, "invalid date/time"),
        .init("a = 1979-05-27T07:32:00.", 1, 25, "expected digits after '.'"),
        .init("a = ", 1, 5, "expected a value, found end of file"),
        .init("a = \nb = 1", 1, 5, "expected a value, found end of line"),
        .init("a = [1, 2", 1, 5, "unterminated array"),
        .init("a = [1 2]", 1, 8, "expected ',' or ']' in array"),
        .init("a = [1,,2]", 1, 8, "expected a value"),
        .init("a = { b = 1, }", 1, 12, "trailing comma is not allowed"),
        .init("a = { b = 1,\n c = 2 }", 1, 13, "newlines are not allowed in inline tables"),
        .init("a = { b = 1 c = 2 }", 1, 13, "expected ',' or '}'"),
        .init("a = { b = 1", 1, 5, "unterminated inline table"),
    ]

    @Test(arguments: valueErrors)
    func valueError(_ c: InvalidCase) {
        let error = parseError(c.text)
        #expect(error?.position == SourcePosition(line: c.line, column: c.column), "\(String(describing: error))")
        #expect(error?.message.contains(c.message) == true, "\(String(describing: error))")
    }

    static let syntaxErrors: [InvalidCase] = [
        .init("a", 1, 2, "expected '=' after key \"a\", found end of file"),
        .init("a.b. = 1", 1, 6, "expected a key, found '='"),
        .init("= 1", 1, 1, "expected a key, found '='"),
        .init("a = 1 b = 2", 1, 7, "expected a newline after value, found 'b'"),
        .init("[a] b = 1", 1, 5, "expected a newline after table header"),
        .init("[a", 1, 3, "expected ']' to close the table header"),
        .init("[[a]", 1, 4, "expected ']]' to close the table header"),
        .init("[[a] ]", 1, 4, "expected ']]'"),
        .init("[]", 1, 2, "expected a key"),
        .init("# ok\n# bad \u{01} char", 2, 7, "control character U+0001 is not allowed in a comment"),
        .init("# bad \u{7F}", 1, 7, "control character U+007F"),
        .init("a = 1\rb = 2", 1, 6, "carriage return must be followed by a newline"),
        .init("a = 1 # x\rb = 2", 1, 10, "control character"),
        .init("ключ = 1", 1, 1, "expected a key, found 'к' (U+043A)"),
    ]

    @Test(arguments: syntaxErrors)
    func syntaxError(_ c: InvalidCase) {
        let error = parseError(c.text)
        #expect(error?.position == SourcePosition(line: c.line, column: c.column), "\(String(describing: error))")
        #expect(error?.message.contains(c.message) == true, "\(String(describing: error))")
    }

    @Test func errorDescriptionHasLineAndColumn() {
        let error = parseError("a = 1\n\n  b = 012")
        #expect(error?.description == "line 3, column 7: leading zeros are not allowed in numbers: 012")
    }
}
