import Foundation
import Testing
@testable import BerthTOML

@Suite("Encoding and serializing")
struct EncoderSerializerTests {
    struct Sample: Codable, Equatable {
        struct Inner: Codable, Equatable {
            var name: String
            var weight: Double
        }

        var zeta = "first"
        var alpha: Int?
        var labels: [String: String] = ["b": "2", "a": "1", "c.d": "3"]
        var inner = Inner(name: "x", weight: 1.5)
        var items = [Inner(name: "i1", weight: 1), Inner(name: "i2", weight: 2)]
        var flags = [true, false]
        var count: UInt16 = 7
    }

    @Test func encodeKeepsDeclarationOrderOmitsNilAndSortsDictionaries() throws {
        let table = try TOMLEncoder().encode(Sample())
        #expect(table.keys == ["zeta", "labels", "inner", "items", "flags", "count"])
        #expect(table["labels"]?.value.tableValue?.keys == ["a", "b", "c.d"])
        #expect(table[path: ["inner", "weight"]]?.value == .float(1.5))
        #expect(table["items"]?.value.arrayValue?.count == 2)
        #expect(table["items"]?.value.arrayValue?.last?.value.tableValue?["name"]?.value == .string("i2"))
        #expect(table["count"]?.value == .integer(7))
        #expect(table["zeta"]?.position == .unknown)

        var withAlpha = Sample()
        withAlpha.alpha = 3
        #expect(try TOMLEncoder().encode(withAlpha).keys == ["zeta", "alpha", "labels", "inner", "items", "flags", "count"])
    }

    @Test func encodeErrors() {
        struct Far: Encodable { var when = Date(timeIntervalSince1970: 1e12) }
        #expect(throws: EncodingError.self) { try TOMLEncoder().encode(Far()) }
        struct Big: Encodable { var v = UInt64.max }
        #expect(throws: EncodingError.self) { try TOMLEncoder().encode(Big()) }
        #expect(throws: EncodingError.self) { try TOMLEncoder().encode([1, 2]) }
        struct Holes: Encodable { var list: [Int?] = [1, nil] }
        #expect(throws: EncodingError.self) { try TOMLEncoder().encode(Holes()) }
    }

    @Test func serializesScalarsFirstThenSections() throws {
        let table = try TOMLEncoder().encode(Sample())
        let text = table.serialized()
        #expect(text == """
        zeta = "first"
        flags = [true, false]
        count = 7

        [labels]
          a = "1"
          b = "2"
          "c.d" = "3"

        [inner]
          name = "x"
          weight = 1.5

        [[items]]
          name = "i1"
          weight = 1.0

        [[items]]
          name = "i2"
          weight = 2.0

        """)
        #expect(try TOML.parse(text) == table)
    }

    @Test func quotedKeysEmptyTablesAndComments() throws {
        var overlay = TOMLTable()
        overlay["root_path"] = TOMLNode(.string(""))
        var plugins = TOMLTable()
        plugins["io.containerd.snapshotter.v1.overlayfs"] = TOMLNode(.table(overlay))
        plugins["empty"] = TOMLNode(.table(TOMLTable()))
        var root = TOMLTable()
        root["version"] = TOMLNode(.integer(2))
        root["plugins"] = TOMLNode(.table(plugins))
        let text = root.serialized(comments: [
            []: "Berth configuration.\n\nGenerated.",
            ["plugins", "io.containerd.snapshotter.v1.overlayfs"]: "Overlay snapshotter.",
            ["plugins", "empty"]: "Nothing here",
        ])
        #expect(text == """
        # Berth configuration.
        #
        # Generated.

        version = 2

        [plugins]

          # Overlay snapshotter.
          [plugins."io.containerd.snapshotter.v1.overlayfs"]
            root_path = ""

          # Nothing here
          [plugins.empty]

        """)
        let reparsed = try TOML.parse(text)
        #expect(reparsed == root)
        #expect(reparsed[path: ["plugins", "empty"]]?.value == .table(TOMLTable()))
    }

    @Test func valuesRoundTripThroughText() throws {
        let strings = ["", "plain", "quote \" and \\ backslash", "tab\tnewline\ncr\r", "\u{01}\u{7F}\u{1F}", "ünï 😀", "'''\"\"\""]
        let floats: [Double] = [0, -0.0, 0.1, 1.5, -2.25e-300, 1e300, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 123456789.125, 1e16, .infinity, -.infinity, .nan]
        let ints: [Int64] = [0, -1, .max, .min, 42]
        var table = TOMLTable()
        for (i, s) in strings.enumerated() { table["s\(i)"] = TOMLNode(.string(s)) }
        for (i, f) in floats.enumerated() { table["f\(i)"] = TOMLNode(.float(f)) }
        for (i, n) in ints.enumerated() { table["i\(i)"] = TOMLNode(.integer(n)) }
        for (i, text) in ["1979-05-27T07:32:00.999-07:00", "1979-05-27 07:32:00", "1979-05-27", "07:32:00"].enumerated() {
            table["d\(i)"] = TOMLDateTime(text).map { TOMLNode(.datetime($0)) }
        }
        var point = TOMLTable()
        point["x"] = TOMLNode(.integer(1))
        point["key with space"] = TOMLNode(.array([]))
        table["mixed"] = TOMLNode(.array([TOMLNode(.integer(1)), TOMLNode(.table(point)), TOMLNode(.array([TOMLNode(.string("n"))]))]))
        table["matrix"] = TOMLNode(.array([TOMLNode(.array([TOMLNode(.table(point))]))]))
        table["empty_array"] = TOMLNode(.array([]))
        table["bool"] = TOMLNode(.boolean(false))
        let text = table.serialized()
        let reparsed = try TOML.parse(text)
        #expect(reparsed == table)
        for (i, f) in floats.enumerated() where !f.isNaN {
            #expect(reparsed["f\(i)"]?.value.doubleValue?.bitPattern == f.bitPattern, "\(f)")
        }
        #expect(text.contains("mixed = [1, { x = 1, \"key with space\" = [] }, [\"n\"]]"))
    }

    @Test func configRoundTripsThroughEncodeSerializeParseDecode() throws {
        var config = DaemonConfig()
        config.root = "/var/lib/berth \"quoted\""
        config.oomScore = -500
        config.gcRatio = 0.1
        config.disabledPlugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs"]
        config.grpc.tcpAddress = "0.0.0.0:1234"
        config.grpc.uid = 4_000_000_000
        config.debug.level = .trace
        config.registries = [.init(host: "docker.io", insecure: true, mirrors: ["m1"]), .init(host: "quay.io", insecure: nil, mirrors: nil)]
        config.proxyPlugins = ["stargz": .init(type: "snapshot", address: "/run/stargz.sock")]
        var overlay = TOMLTable()
        overlay["root_path"] = TOMLNode(.string("/x"))
        overlay["upperdir_label"] = TOMLNode(.boolean(false))
        config.plugins = ["io.containerd.snapshotter.v1.overlayfs": overlay, "io.containerd.gc.v1.scheduler": TOMLTable()]

        let encoded = try TOMLEncoder().encode(config)
        let text = encoded.serialized()
        #expect(text.contains("[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]"))
        #expect(text.contains("[[registries]]"))
        let parsed = try TOML.parse(text)
        #expect(parsed == encoded)
        let decoded = try TOMLDecoder().decode(DaemonConfig.self, from: parsed)
        #expect(decoded.value == config)
        #expect(decoded.unknownKeys.isEmpty)
        let withDefaults = try TOMLDecoder().decode(DaemonConfig.self, from: parsed, defaults: DaemonConfig())
        #expect(withDefaults.value == config)
    }

    @Test func encodesSpecialTypes() throws {
        struct Special: Encodable {
            var when = Date(timeIntervalSince1970: 86_400.5)
            var url = URL(string: "unix:///run/x.sock")
            var raw = TOMLValue.array([TOMLNode(.integer(1))])
        }
        let table = try TOMLEncoder().encode(Special())
        #expect(table["when"]?.value.summary == "1970-01-02T00:00:00.5Z")
        #expect(table["when"]?.value == TOMLDateTime("1970-01-02T00:00:00.5Z").map { .datetime($0) })
        #expect(table["url"]?.value == .string("unix:///run/x.sock"))
        #expect(table["raw"]?.value == .array([TOMLNode(.integer(1))]))
        #expect(table.serialized().hasPrefix("when = 1970-01-02T00:00:00.5Z\n"))
    }

    @Test func valueTypesWorkWithOtherCoders() throws {
        let table = try TOML.parse("a = 1\nb = [true, 'x', 2.5]\n[c]\nd = 1979-05-27")
        let json = try JSONEncoder().encode(table)
        let back = try JSONDecoder().decode(TOMLTable.self, from: json)
        #expect(back["a"]?.value == .integer(1))
        #expect(back["b"]?.value == table["b"]?.value)
        #expect(back[path: ["c", "d"]]?.value == .string("1979-05-27"))
    }
}
