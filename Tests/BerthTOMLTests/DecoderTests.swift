import Foundation
import Testing
@testable import BerthTOML

/// A daemon config shaped like containerd's, with defaults for every field.
struct DaemonConfig: Codable, Equatable, Sendable {
    struct GRPC: Codable, Equatable, Sendable {
        var address = "/run/berth/berth.sock"
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var maxRecvMessageSize = 16 << 20
        var tcpAddress: String?

        enum CodingKeys: String, CodingKey {
            case address, uid, gid
            case maxRecvMessageSize = "max_recv_message_size"
            case tcpAddress = "tcp_address"
        }
    }

    enum Level: String, Codable, CaseIterable, Sendable {
        case trace, debug, info, warn, error
    }

    struct Debug: Codable, Equatable, Sendable {
        var level = Level.info
        var format = "text"
    }

    struct Registry: Codable, Equatable, Sendable {
        var host: String
        var insecure: Bool?
        var mirrors: [String]?
    }

    struct ProxyPlugin: Codable, Equatable, Sendable {
        var type: String
        var address: String
    }

    var version = 2
    var root = "/var/lib/berth"
    var state = "/run/berth"
    var oomScore = 0
    var gcRatio = 0.02
    var disabledPlugins: [String] = []
    var grpc = GRPC()
    var debug = Debug()
    var registries: [Registry] = []
    var proxyPlugins: [String: ProxyPlugin] = [:]
    var timeouts: [String: String] = ["io.containerd.timeout.shim.load": "5s"]
    var plugins: [String: TOMLTable] = [:]

    enum CodingKeys: String, CodingKey {
        case version, root, state
        case oomScore = "oom_score"
        case gcRatio = "gc_ratio"
        case disabledPlugins = "disabled_plugins"
        case grpc, debug, registries
        case proxyPlugins = "proxy_plugins"
        case timeouts, plugins
    }
}

/// Parses `text` and decodes a `DaemonConfig` over the defaults.
func decodeConfig(_ text: String) throws -> TOMLDecoded<DaemonConfig> {
    try TOMLDecoder().decode(DaemonConfig.self, from: TOML.parse(text), defaults: DaemonConfig())
}

/// Runs `body`, expecting a `TOMLDecodingError`.
func decodingError(_ body: () throws -> Void) -> TOMLDecodingError? {
    do {
        try body()
        return nil
    } catch let error as TOMLDecodingError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite("Decoding")
struct DecoderTests {
    @Test func absentKeysKeepDefaults() throws {
        let decoded = try decodeConfig("""
        root = "/data/berth"
        [grpc]
        address = "/tmp/b.sock"
        [debug]
        level = "debug"
        """)
        var expected = DaemonConfig()
        expected.root = "/data/berth"
        expected.grpc.address = "/tmp/b.sock"
        expected.debug.level = .debug
        #expect(decoded.value == expected)
        #expect(decoded.unknownKeys.isEmpty)
        #expect(try decodeConfig("").value == DaemonConfig())
    }

    @Test func fullDocumentWithoutDefaults() throws {
        let table = try TOML.parse("""
        version = 3
        root = "/r"
        state = "/s"
        oom_score = -999
        gc_ratio = 1
        disabled_plugins = ["io.containerd.snapshotter.v1.btrfs"]
        timeouts = {}
        [grpc]
        address = "/a"
        uid = 1
        gid = 2
        max_recv_message_size = 1024
        tcp_address = "127.0.0.1:1"
        [debug]
        level = "trace"
        format = "json"
        [[registries]]
        host = "docker.io"
        mirrors = ["a", "b"]
        [proxy_plugins.stargz]
        type = "snapshot"
        address = "/run/stargz.sock"
        [plugins."io.containerd.gc.v1.scheduler"]
        pause_threshold = 0.02
        """)
        let decoded = try TOMLDecoder().decode(DaemonConfig.self, from: table)
        let config = decoded.value
        #expect(config.oomScore == -999)
        #expect(config.gcRatio == 1.0)
        #expect(config.grpc.tcpAddress == "127.0.0.1:1")
        #expect(config.registries == [.init(host: "docker.io", insecure: nil, mirrors: ["a", "b"])])
        #expect(config.proxyPlugins["stargz"] == .init(type: "snapshot", address: "/run/stargz.sock"))
        let gc = config.plugins["io.containerd.gc.v1.scheduler"]
        #expect(gc?["pause_threshold"]?.value == .float(0.02))
        #expect(gc?["pause_threshold"]?.position == SourcePosition(line: 24, column: 1))
        #expect(decoded.unknownKeys.isEmpty)
    }

    @Test func missingRequiredKeyWithoutDefaults() {
        let error = decodingError {
            _ = try TOMLDecoder().decode(DaemonConfig.self, from: TOML.parse("version = 2\n[grpc]\naddress = \"x\""))
        }
        #expect(error?.path == ["root"])
        #expect(error?.expected == "string")
        #expect(error?.found == "nothing")
        #expect(error?.description == "key \"root\": expected string, found nothing")

        let nested = decodingError {
            _ = try TOMLDecoder().decode(DaemonConfig.Registry.self, from: TOML.parse("insecure = true"), codingPath: ["registries", "0"])
        }
        #expect(nested?.path == ["registries", "0", "host"])
    }

    @Test func unknownKeysWithPositions() throws {
        let decoded = try decodeConfig("""
        version = 2
        rot = "/typo"
        [grpc]
          address = "/run/x.sock"
          adress = "/run/typo.sock"
        [debug]
          levle = "debug"
        [[registries]]
          host = "a"
        [[registries]]
          host = "b"
          insecur = true
        [proxy_plugins.x]
          type = "snapshot"
          address = "/x"
          extra.deep = 1
        [timeouts]
          "io.containerd.timeout.task.state" = "2s"
        [plugins."io.containerd.grpc.v1.cri"]
          anything = "kept raw"
        [unknown_section]
          key = 1
        """)
        #expect(decoded.unknownKeys == [
            UnknownKey(path: ["rot"], position: SourcePosition(line: 2, column: 1)),
            UnknownKey(path: ["grpc", "adress"], position: SourcePosition(line: 5, column: 3)),
            UnknownKey(path: ["debug", "levle"], position: SourcePosition(line: 7, column: 3)),
            UnknownKey(path: ["registries", "1", "insecur"], position: SourcePosition(line: 12, column: 3)),
            UnknownKey(path: ["proxy_plugins", "x", "extra"], position: SourcePosition(line: 16, column: 3)),
            UnknownKey(path: ["unknown_section"], position: SourcePosition(line: 21, column: 2)),
        ])
        // Tables merge with the defaults, so dictionaries keep default entries too.
        #expect(decoded.value.timeouts == ["io.containerd.timeout.task.state": "2s", "io.containerd.timeout.shim.load": "5s"])
        #expect(decoded.unknownKeys[1].description == "unknown key \"grpc.adress\" (line 5)")
    }

    @Test func unknownKeysUnderCodingPath() throws {
        struct Overlay: Codable, Equatable {
            var rootPath = ""
            enum CodingKeys: String, CodingKey { case rootPath = "root_path" }
        }
        let config = try decodeConfig("""
        [plugins."io.containerd.snapshotter.v1.overlayfs"]
          root_path = "/x"
          upperdir_lable = true
        """).value
        let section = try #require(config.plugins["io.containerd.snapshotter.v1.overlayfs"])
        let path = ["plugins", "io.containerd.snapshotter.v1.overlayfs"]
        let decoded = try TOMLDecoder().decode(Overlay.self, from: section, defaults: Overlay(), codingPath: path)
        #expect(decoded.value.rootPath == "/x")
        #expect(decoded.unknownKeys == [UnknownKey(path: path + ["upperdir_lable"], position: SourcePosition(line: 3, column: 3))])
        #expect(decoded.unknownKeys.first?.description == "unknown key \"plugins.'io.containerd.snapshotter.v1.overlayfs'.upperdir_lable\" (line 3)")

        let error = decodingError {
            _ = try TOMLDecoder().decode(Overlay.self, from: TOML.parse("\n\nroot_path = false"), codingPath: path)
        }
        #expect(error?.description == "key \"plugins.'io.containerd.snapshotter.v1.overlayfs'.root_path\" (line 3): expected string, found boolean")
    }

    @Test func defaultOnlyKeysAreNeverUnknown() throws {
        /// Encodes a key its decoder never reads.
        struct Legacy: Codable {
            var a = 1
            init() {}
            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                a = try container.decode(Int.self, forKey: .a)
            }
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(a, forKey: .a)
                try container.encode("old", forKey: .legacy)
            }
            enum CodingKeys: String, CodingKey { case a, legacy }
        }
        let decoded = try TOMLDecoder().decode(Legacy.self, from: TOML.parse("a = 5"), defaults: Legacy())
        #expect(decoded.value.a == 5)
        #expect(decoded.unknownKeys.isEmpty)
        let withLegacy = try TOMLDecoder().decode(Legacy.self, from: TOML.parse("legacy = 'x'"), defaults: Legacy())
        #expect(withLegacy.unknownKeys.map(\.path) == [["legacy"]])
    }

    @Test func typeMismatchNamesKeyTypesAndLine() {
        let error = decodingError {
            _ = try decodeConfig("version = 2\n\n[grpc]\n  address = 1\n")
        }
        #expect(error?.path == ["grpc", "address"])
        #expect(error?.expected == "string")
        #expect(error?.found == "integer")
        #expect(error?.position == SourcePosition(line: 4, column: 3))
        #expect(error?.description == "key \"grpc.address\" (line 4): expected string, found integer")

        let cases: [(String, [String], String, String, Int)] = [
            ("version = \"2\"", ["version"], "integer", "string", 1),
            ("gc_ratio = true", ["gc_ratio"], "float", "boolean", 1),
            ("grpc = 5", ["grpc"], "table", "integer", 1),
            ("disabled_plugins = \"x\"", ["disabled_plugins"], "array", "string", 1),
            ("disabled_plugins = [\n  \"a\",\n  2,\n]", ["disabled_plugins", "1"], "string", "integer", 3),
            ("[[registries]]\nhost = \"a\"\n[[registries]]\nhost = [1]", ["registries", "1", "host"], "string", "array", 4),
            ("registries = [{ host = 1 }]", ["registries", "0", "host"], "string", "integer", 1),
            ("[proxy_plugins]\nx = 1", ["proxy_plugins", "x"], "table", "integer", 2),
            ("[plugins]\nx = 1", ["plugins", "x"], "table", "integer", 2),
            ("[grpc]\nuid = 1.5", ["grpc", "uid"], "integer", "float", 2),
        ]
        for (text, path, expected, found, line) in cases {
            let error = decodingError { _ = try decodeConfig(text) }
            #expect(error?.path == path, "\(text)")
            #expect(error?.expected == expected, "\(text)")
            #expect(error?.found == found, "\(text)")
            #expect(error?.position?.line == line, "\(text)")
        }
    }

    @Test func integerRangeErrors() throws {
        let negative = decodingError { _ = try decodeConfig("[grpc]\nuid = -1") }
        #expect(negative?.path == ["grpc", "uid"])
        #expect(negative?.expected == "integer between 0 and 4294967295")
        #expect(negative?.found == "-1")
        #expect(negative?.description == "key \"grpc.uid\" (line 2): expected integer between 0 and 4294967295, found -1")

        struct Small: Decodable {
            var i8: Int8?
            var u16: UInt16?
            var i32: Int32?
            var u64: UInt64?
            var i: Int?
        }
        let decoder = TOMLDecoder()
        #expect(decodingError { _ = try decoder.decode(Small.self, from: TOML.parse("i8 = 128")) }?.expected == "integer between -128 and 127")
        #expect(decodingError { _ = try decoder.decode(Small.self, from: TOML.parse("u16 = 65536")) }?.expected == "integer between 0 and 65535")
        #expect(decodingError { _ = try decoder.decode(Small.self, from: TOML.parse("i32 = -2147483649")) }?.found == "-2147483649")
        #expect(decodingError { _ = try decoder.decode(Small.self, from: TOML.parse("u64 = -1")) }?.path == ["u64"])
        let ok = try decoder.decode(Small.self, from: TOML.parse("i8 = -128\nu16 = 65535\ni32 = 2147483647\nu64 = 9223372036854775807\ni = -9223372036854775808")).value
        #expect(ok.i8 == -128 && ok.u16 == 65535 && ok.i32 == .max && ok.u64 == UInt64(Int64.max) && ok.i == .min)
        let absent = try decoder.decode(Small.self, from: TOMLTable()).value
        #expect(absent.i8 == nil && absent.u64 == nil)
    }

    @Test func enumValues() throws {
        #expect(try decodeConfig("[debug]\nlevel = \"warn\"").value.debug.level == .warn)
        let error = decodingError { _ = try decodeConfig("[debug]\nlevel = \"loud\"") }
        #expect(error?.path == ["debug", "level"])
        #expect(error?.expected == #"one of "trace", "debug", "info", "warn", "error""#)
        #expect(error?.found == #""loud""#)
        #expect(error?.position?.line == 2)
        let wrongType = decodingError { _ = try decodeConfig("[debug]\nlevel = 3") }
        #expect(wrongType?.expected == "string")
        #expect(wrongType?.found == "integer")
    }

    @Test func scalarsDatesAndRawValues() throws {
        struct Misc: Decodable {
            var ratio: Double
            var small: Float
            var flag: Bool
            var when: Date
            var local: TOMLDateTime
            var url: URL
            var anything: TOMLValue
            var ints: Set<Int>
            var nested: [[String]]
        }
        let table = try TOML.parse("""
        ratio = 3
        small = 0.5
        flag = true
        when = 1970-01-02T00:00:00Z
        local = 07:30:00
        url = "https://example.com/x"
        anything = { a.b = 1 }
        ints = [1, 2, 2]
        nested = [["a"], [], ["b", "c"]]
        """)
        let decoded = try TOMLDecoder().decode(Misc.self, from: table)
        let misc = decoded.value
        #expect(misc.ratio == 3 && misc.small == 0.5 && misc.flag)
        #expect(misc.when == Date(timeIntervalSince1970: 86_400))
        #expect(misc.local.kind == .localTime)
        #expect(misc.url.host == "example.com")
        #expect(misc.anything.tableValue?[path: ["a", "b"]]?.value == .integer(1))
        #expect(misc.ints == [1, 2])
        #expect(misc.nested == [["a"], [], ["b", "c"]])
        #expect(decoded.unknownKeys.isEmpty)

        let localDate = decodingError {
            _ = try TOMLDecoder().decode(Misc.self, from: TOML.parse("ratio = 1\nsmall = 1\nflag = false\nwhen = 1970-01-02"))
        }
        #expect(localDate?.path == ["when"])
        #expect(localDate?.expected == "offset date-time")
    }

    @Test func dictionariesConsumeAllKeys() throws {
        struct Holder: Decodable {
            var labels: [String: String]
            var nested: [String: [String: Int]]
        }
        let decoded = try TOMLDecoder().decode(Holder.self, from: TOML.parse("""
        [labels]
        "a.b" = "1"
        c = "2"
        [nested.x]
        y = 1
        """))
        #expect(decoded.value.labels == ["a.b": "1", "c": "2"])
        #expect(decoded.value.nested == ["x": ["y": 1]])
        #expect(decoded.unknownKeys.isEmpty)
    }

    @Test func decodingErrorDescriptionQuotesDottedParts() {
        let error = TOMLDecodingError(path: ["plugins", "io.containerd.x", "root"], position: SourcePosition(line: 4, column: 1), expected: "integer", found: "string")
        #expect(error.description == "key \"plugins.'io.containerd.x'.root\" (line 4): expected integer, found string")
        let noLine = TOMLDecodingError(path: ["a", "b", "c"], position: nil, expected: "integer", found: "string")
        #expect(noLine.description == "key \"a.b.c\": expected integer, found string")
    }
}
