import Foundation
import Testing
@testable import BerthTOML

/// Parses `text` and returns the value of key `key` at the root.
func value(_ key: String, in text: String) throws -> TOMLValue? {
    try TOML.parse(text)[key]?.value
}

/// Parses `a = <literal>` and returns the value.
func parseValue(_ literal: String) throws -> TOMLValue? {
    try value("a", in: "a = \(literal)\n")
}

@Suite("Parsing values")
struct ParserValueTests {
    @Test func basicStrings() throws {
        #expect(try parseValue(#""hello""#) == .string("hello"))
        #expect(try parseValue(#""""#) == .string(""))
        #expect(try parseValue(#""tab\there \"q\" \\ \b\f\n\r""#) == .string("tab\there \"q\" \\ \u{08}\u{0C}\n\r"))
        #expect(try parseValue(#""\u00E9\U0001F600""#) == .string("é😀"))
        #expect(try parseValue(#""ünïcödé ✓""#) == .string("ünïcödé ✓"))
    }

    @Test func literalStrings() throws {
        #expect(try parseValue(#"'C:\Users\nodejs\templates'"#) == .string(#"C:\Users\nodejs\templates"#))
        #expect(try parseValue("''") == .string(""))
        #expect(try parseValue(#"'<\i\c*\s*>'"#) == .string(#"<\i\c*\s*>"#))
    }

    @Test func multilineBasicStrings() throws {
        let text = "a = \"\"\"\nRoses are red\nViolets are blue\"\"\"\n"
        #expect(try value("a", in: text) == .string("Roses are red\nViolets are blue"))

        let folded = "a = \"\"\"\\\n    The quick brown \\\n\n\n    fox jumps over \\\n      the lazy dog.\\\n    \"\"\"\n"
        #expect(try value("a", in: folded) == .string("The quick brown fox jumps over the lazy dog."))

        let trailingSpaceAfterBackslash = "a = \"\"\"one \\   \n   two\"\"\"\n"
        #expect(try value("a", in: trailingSpaceAfterBackslash) == .string("one two"))

        let quotes = "a = \"\"\"Here are two quotation marks: \"\". Simple enough.\"\"\"\n"
        #expect(try value("a", in: quotes) == .string("Here are two quotation marks: \"\". Simple enough."))
        #expect(try value("a", in: "a = \"\"\"\"This,\" she said, \"is just a pointless statement.\"\"\"\"\n")
            == .string("\"This,\" she said, \"is just a pointless statement.\""))
        #expect(try value("a", in: "a = \"\"\"esc \\u0041 \\t\"\"\"\n") == .string("esc A \t"))
        #expect(try value("a", in: "a = \"\"\"\"\"\"\n") == .string(""))
    }

    @Test func multilineLiteralStrings() throws {
        let text = "a = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved. \\n\n'''\n"
        #expect(try value("a", in: text) == .string("The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved. \\n\n"))
        #expect(try value("a", in: "a = '''I [dw]on't need \\d{2} apples'''\n") == .string("I [dw]on't need \\d{2} apples"))
        #expect(try value("a", in: "a = ''''That,' she said, 'is still pointless.''''\n") == .string("'That,' she said, 'is still pointless.'"))
    }

    @Test func crlfLineEndings() throws {
        let table = try TOML.parse("a = 1\r\nb = \"\"\"x\r\ny\"\"\"\r\n# c\r\n[t]\r\nc = 2\r\n")
        #expect(table["a"]?.value == .integer(1))
        #expect(table["b"]?.value == .string("x\r\ny"))
        #expect(table[path: ["t", "c"]]?.position == SourcePosition(line: 6, column: 1))
    }

    @Test func integers() throws {
        #expect(try parseValue("+99") == .integer(99))
        #expect(try parseValue("42") == .integer(42))
        #expect(try parseValue("0") == .integer(0))
        #expect(try parseValue("-17") == .integer(-17))
        #expect(try parseValue("+0") == .integer(0))
        #expect(try parseValue("-0") == .integer(0))
        #expect(try parseValue("1_000") == .integer(1000))
        #expect(try parseValue("5_349_221") == .integer(5_349_221))
        #expect(try parseValue("0xDEADBEEF") == .integer(0xDEADBEEF))
        #expect(try parseValue("0xdead_beef") == .integer(0xDEADBEEF))
        #expect(try parseValue("0o01234567") == .integer(0o01234567))
        #expect(try parseValue("0o755") == .integer(0o755))
        #expect(try parseValue("0b11010110") == .integer(0b11010110))
        #expect(try parseValue("9223372036854775807") == .integer(Int64.max))
        #expect(try parseValue("-9223372036854775808") == .integer(Int64.min))
        #expect(try parseValue("0x7FFFFFFFFFFFFFFF") == .integer(Int64.max))
    }

    @Test func floats() throws {
        #expect(try parseValue("+1.0") == .float(1.0))
        #expect(try parseValue("3.1415") == .float(3.1415))
        #expect(try parseValue("-0.01") == .float(-0.01))
        #expect(try parseValue("5e+22") == .float(5e22))
        #expect(try parseValue("1e06") == .float(1e6))
        #expect(try parseValue("-2E-2") == .float(-2e-2))
        #expect(try parseValue("6.626e-34") == .float(6.626e-34))
        #expect(try parseValue("224_617.445_991_228") == .float(224_617.445_991_228))
        #expect(try parseValue("0.02") == .float(0.02))
        #expect(try parseValue("0e0") == .float(0))
        #expect(try parseValue("inf") == .float(.infinity))
        #expect(try parseValue("+inf") == .float(.infinity))
        #expect(try parseValue("-inf") == .float(-.infinity))
        #expect(try parseValue("nan") == .float(.nan))
        #expect(try parseValue("+nan") == .float(.nan))
        #expect(try parseValue("-nan") == .float(.nan))
        #expect(try parseValue("-0.0")?.doubleValue?.sign == .minus)
    }

    @Test func booleans() throws {
        #expect(try parseValue("true") == .boolean(true))
        #expect(try parseValue("false") == .boolean(false))
    }

    @Test func offsetDateTimes() throws {
        guard case .datetime(let dt)? = try parseValue("1979-05-27T07:32:00Z") else {
            Issue.record("not a datetime")
            return
        }
        #expect(dt.kind == .offsetDateTime)
        #expect(dt.date == .init(year: 1979, month: 5, day: 27))
        #expect(dt.time == .init(hour: 7, minute: 32, second: 0))
        #expect(dt.offsetMinutes == 0)
        #expect(dt.text == "1979-05-27T07:32:00Z")

        guard case .datetime(let withOffset)? = try parseValue("1979-05-27T00:32:00.999999-07:00") else {
            Issue.record("not a datetime")
            return
        }
        #expect(withOffset.offsetMinutes == -420)
        #expect(withOffset.time?.nanosecond == 999_999_000)
        let difference = (withOffset.foundationDate?.timeIntervalSince1970 ?? 0) - (dt.foundationDate?.timeIntervalSince1970 ?? 0)
        #expect(abs(difference - 0.999999) < 1e-5)
        #expect(try parseValue("1979-05-27 07:32:00z") == .datetime(dt))
        #expect(dt.foundationDate?.timeIntervalSince1970 == 296_638_320)
        #expect(dt.foundationDate.flatMap { TOMLDateTime($0) } == dt)
        #expect(TOMLDateTime(Date(timeIntervalSince1970: -1))?.text == "1969-12-31T23:59:59Z")
        #expect(TOMLDateTime(Date(timeIntervalSince1970: -62_135_596_800))?.text == "0001-01-01T00:00:00Z")
        #expect(TOMLDateTime(Date(timeIntervalSince1970: .infinity)) == nil)
    }

    @Test func localDateTimesDatesAndTimes() throws {
        guard case .datetime(let ldt)? = try parseValue("1979-05-27T07:32:00") else {
            Issue.record("not a datetime")
            return
        }
        #expect(ldt.kind == .localDateTime)
        #expect(ldt.offsetMinutes == nil)
        #expect(ldt.foundationDate == nil)

        guard case .datetime(let date)? = try parseValue("1979-05-27") else {
            Issue.record("not a date")
            return
        }
        #expect(date.kind == .localDate)
        #expect(date.time == nil)

        guard case .datetime(let time)? = try parseValue("00:32:00.5") else {
            Issue.record("not a time")
            return
        }
        #expect(time.kind == .localTime)
        #expect(time.time == .init(hour: 0, minute: 32, second: 0, nanosecond: 500_000_000))
        #expect(try parseValue("2024-02-29 # leap day") == .datetime(TOMLDateTime(date: .init(year: 2024, month: 2, day: 29), time: nil) ?? ldt))
        #expect(TOMLDateTime(date: .init(year: 2023, month: 2, day: 29), time: nil) == nil)
        #expect(TOMLDateTime(date: .init(year: 2001, month: 2, day: 3), time: .init(hour: 4, minute: 5, second: 6, nanosecond: 7_000_000), offsetMinutes: 90)?.text
            == "2001-02-03T04:05:06.007+01:30")
    }

    @Test func arrays() throws {
        #expect(try parseValue("[]") == .array([]))
        #expect(try parseValue("[ 1, 2, 3 ]") == .array([TOMLNode(.integer(1)), TOMLNode(.integer(2)), TOMLNode(.integer(3))]))
        let mixed = try parseValue(#"[ 0.1, "x", [1, 2], { a = true }, ]"#)
        var inner = TOMLTable()
        inner["a"] = TOMLNode(.boolean(true))
        #expect(mixed == .array([
            TOMLNode(.float(0.1)), TOMLNode(.string("x")),
            TOMLNode(.array([TOMLNode(.integer(1)), TOMLNode(.integer(2))])), TOMLNode(.table(inner)),
        ]))
        let multiline = "a = [ # start\n  1, # one\n\n  2 # two\n  , # comma\n] # end\n"
        #expect(try value("a", in: multiline)?.arrayValue?.count == 2)
        let items = try value("a", in: "a = [\n  \"x\",\n  \"y\",\n]")?.arrayValue ?? []
        #expect(items.map(\.position) == [SourcePosition(line: 2, column: 3), SourcePosition(line: 3, column: 3)])
    }

    @Test func inlineTables() throws {
        let table = try TOML.parse(#"""
        name = { first = "Tom", last = "Preston-Werner" }
        point = {x=1,y=2}
        animal = { type.name = "pug", "quoted key" = 1 }
        empty = {}
        nested = { a = { b = [ { c = 1 } ] } }
        """#)
        #expect(table[path: ["name", "last"]]?.value == .string("Preston-Werner"))
        #expect(table[path: ["point", "y"]]?.value == .integer(2))
        #expect(table[path: ["animal", "type", "name"]]?.value == .string("pug"))
        #expect(table[path: ["animal", "quoted key"]]?.value == .integer(1))
        #expect(table["empty"]?.value == .table(TOMLTable()))
        #expect(table[path: ["name"]]?.value.tableValue?.keys == ["first", "last"])
        #expect(table[path: ["nested", "a", "b"]]?.value.arrayValue?.first?.value.tableValue?["c"]?.value == .integer(1))
        #expect(table["point"]?.value.tableValue?.position == SourcePosition(line: 2, column: 9))
    }

    @Test func typeNames() {
        #expect(TOMLValue.string("").typeName == "string")
        #expect(TOMLValue.integer(0).typeName == "integer")
        #expect(TOMLValue.float(0).typeName == "float")
        #expect(TOMLValue.boolean(true).typeName == "boolean")
        #expect(TOMLValue.array([]).typeName == "array")
        #expect(TOMLValue.table(TOMLTable()).typeName == "table")
        #expect(TOMLDateTime("12:00:00").map { TOMLValue.datetime($0).typeName } == "datetime")
    }
}
