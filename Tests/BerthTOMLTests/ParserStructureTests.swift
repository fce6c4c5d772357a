import Testing
@testable import BerthTOML

@Suite("Parsing keys and tables")
struct ParserStructureTests {
    @Test func commentsAndBlankLines() throws {
        let table = try TOML.parse("# full-line comment\n\n  key = \"value\"  # end-of-line comment\nanother = \"# not a comment\"\n#last")
        #expect(table.keys == ["key", "another"])
        #expect(table["another"]?.value == .string("# not a comment"))
        #expect(try TOML.parse("").isEmpty)
        #expect(try TOML.parse("\u{FEFF}a = 1")["a"]?.value == .integer(1))
    }

    @Test func bareQuotedAndDottedKeys() throws {
        let table = try TOML.parse(#"""
        bare_key = "value"
        bare-key = "value"
        1234 = "value"
        "127.0.0.1" = "value"
        "character encoding" = "value"
        'key2' = "value"
        'quoted "value"' = "value"
        "" = "blank"
        name = "Orange"
        physical.color = "orange"
        physical . shape = "round"
        site."google.com" = true
        3.14159 = "pi"
        """#)
        #expect(table.keys == ["bare_key", "bare-key", "1234", "127.0.0.1", "character encoding", "key2", "quoted \"value\"", "", "name", "physical", "site", "3"])
        #expect(table[path: ["physical", "shape"]]?.value == .string("round"))
        #expect(table[path: ["site", "google.com"]]?.value == .boolean(true))
        #expect(table[path: ["3", "14159"]]?.value == .string("pi"))
        #expect(table[""]?.value == .string("blank"))
    }

    @Test func positionsOfKeysAndTables() throws {
        let table = try TOML.parse("""
        top = 1
        [server]
          address = "x"
          [server.tls]
            cert = "c"
        """)
        #expect(table["top"]?.position == SourcePosition(line: 1, column: 1))
        #expect(table["server"]?.position == SourcePosition(line: 2, column: 2))
        #expect(table["server"]?.value.tableValue?.position == SourcePosition(line: 2, column: 1))
        #expect(table[path: ["server", "address"]]?.position == SourcePosition(line: 3, column: 3))
        #expect(table[path: ["server", "tls"]]?.value.tableValue?.position == SourcePosition(line: 4, column: 3))
        #expect(table[path: ["server", "tls", "cert"]]?.position == SourcePosition(line: 5, column: 5))
        // Columns count characters, not bytes.
        #expect(try TOML.parse("\"ключ\" = 1\n\"ä\".b = 2")[path: ["ä", "b"]]?.position == SourcePosition(line: 2, column: 5))
    }

    @Test func tablesAndImplicitSuperTables() throws {
        let table = try TOML.parse("""
        [x.y.z.w]
        a = 1
        [x]
        b = 2
        [ j . "ʞ" . 'l' ]
        c = 3
        [a.b.c]
        [a.b.d]
        """)
        #expect(table[path: ["x", "y", "z", "w", "a"]]?.value == .integer(1))
        #expect(table[path: ["x", "b"]]?.value == .integer(2))
        #expect(table[path: ["j", "ʞ", "l", "c"]]?.value == .integer(3))
        #expect(table[path: ["a", "b"]]?.value.tableValue?.keys == ["c", "d"])
        #expect(table["x"]?.value.tableValue?.position == SourcePosition(line: 3, column: 1))
    }

    @Test func dottedKeysCreateTablesAndHeadersMaySubTable() throws {
        let table = try TOML.parse("""
        [fruit]
        apple.color = "red"
        apple.taste.sweet = true
        [fruit.apple.texture]
        smooth = true
        """)
        #expect(table[path: ["fruit", "apple", "taste", "sweet"]]?.value == .boolean(true))
        #expect(table[path: ["fruit", "apple", "texture", "smooth"]]?.value == .boolean(true))
        // Dotted keys may add to a table created implicitly by a header.
        let implicit = try TOML.parse("[a.b.c]\nz = 1\n[a]\nb.d = 2")
        #expect(implicit[path: ["a", "b", "d"]]?.value == .integer(2))
    }

    @Test func arraysOfTables() throws {
        let table = try TOML.parse("""
        [[products]]
        name = "Hammer"
        sku = 738594937

        [[products]]  # empty table within the array

        [[products]]
        name = "Nail"
        color = "gray"

        [[fruits]]
        name = "apple"
        [fruits.physical]
        color = "red"
        [[fruits.varieties]]
        name = "red delicious"
        [[fruits.varieties]]
        name = "granny smith"
        [[fruits]]
        name = "banana"
        [[fruits.varieties]]
        name = "plantain"
        """)
        let products = table["products"]?.value.arrayValue ?? []
        #expect(products.count == 3)
        #expect(products[0].value.tableValue?["sku"]?.value == .integer(738_594_937))
        #expect(products[1].value == .table(TOMLTable()))
        #expect(products.map(\.position.line) == [1, 5, 7])
        #expect(table["products"]?.position == SourcePosition(line: 1, column: 3))
        let fruits = table["fruits"]?.value.arrayValue ?? []
        #expect(fruits.count == 2)
        #expect(fruits[0].value.tableValue?[path: ["physical", "color"]]?.value == .string("red"))
        #expect(fruits[0].value.tableValue?["varieties"]?.value.arrayValue?.count == 2)
        #expect(fruits[1].value.tableValue?["varieties"]?.value.arrayValue?.first?.value.tableValue?["name"]?.value == .string("plantain"))
    }

    @Test func keysKeepInsertionOrder() throws {
        let table = try TOML.parse("z = 1\na = 2\n[m]\n[b]\n")
        #expect(table.keys == ["z", "a", "m", "b"])
    }

    @Test func equalityIgnoresOrderAndPositions() throws {
        let a = try TOML.parse("x = 1\ny = [1.5, nan]\n[t]\nk = 'v'")
        let b = try TOML.parse("[t]\n\n  k = \"v\"\n")
            .merging(try TOML.parse("y = [ 1.5, nan ]\nx = 1"))
        #expect(a == b)
        #expect(a != (try TOML.parse("x = 2\ny = [1.5, nan]\n[t]\nk = 'v'")))
    }

    @Test func mergeIsDeep() throws {
        var base = try TOML.parse("""
        root = "/var/lib"
        list = [1, 2]
        [grpc]
        address = "/run/a.sock"
        uid = 0
        [plugins.a]
        x = 1
        """)
        let overlay = try TOML.parse("""
        list = [3]
        [grpc]
        uid = 1000
        [plugins.b]
        y = 2
        [plugins.a]
        z = 3
        """)
        base.merge(overlay)
        #expect(base[path: ["grpc", "address"]]?.value == .string("/run/a.sock"))
        #expect(base[path: ["grpc", "uid"]]?.value == .integer(1000))
        #expect(base[path: ["grpc", "uid"]]?.position.line == 3)
        #expect(base["list"]?.value == .array([TOMLNode(.integer(3))]))
        #expect(base[path: ["plugins", "a"]]?.value.tableValue?.keys == ["x", "z"])
        #expect(base[path: ["plugins", "b", "y"]]?.value == .integer(2))
        #expect(base.keys == ["root", "list", "grpc", "plugins"])

        var scalarOverTable = try TOML.parse("[a]\nb = 1")
        scalarOverTable.merge(try TOML.parse("a = 5"))
        #expect(scalarOverTable["a"]?.value == .integer(5))
    }

    @Test func subscriptSetAndRemove() {
        var table = TOMLTable()
        table["b"] = TOMLNode(.integer(1))
        table["a"] = TOMLNode(.integer(2))
        table["b"] = TOMLNode(.integer(3))
        #expect(table.keys == ["b", "a"])
        table["b"] = nil
        #expect(table.keys == ["a"])
        #expect(table.count == 1)
    }

    @Test func twoHundredLineConfigParsesQuickly() throws {
        var text = ""
        for section in 0..<20 {
            text += "[section_\(section)]\n"
            for key in 0..<9 {
                text += "key_\(key) = \"value \(key) for section \(section)\" # comment\n"
            }
        }
        #expect(text.split(separator: "\n").count == 200)
        let clock = ContinuousClock()
        var table = TOMLTable()
        var fastest = Duration.seconds(1)
        for _ in 0..<10 {
            let elapsed = try clock.measure { table = try TOML.parse(text) }
            fastest = min(fastest, elapsed)
        }
        #expect(table.count == 20)
        // Generous bound so unoptimized builds on a busy machine pass; optimized builds take ~0.3 ms.
        #expect(fastest < .milliseconds(20), "fastest parse took \(fastest)")
    }
}
