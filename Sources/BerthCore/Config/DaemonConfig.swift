/// The daemon's own configuration: containerd's top-level keys (versions 2 and 3), with Berth's defaults.
/// Plugin sections (`[plugins."<URI>"]`) are decoded separately, each into its registration's config type.
public struct DaemonConfig: Codable, Sendable, Equatable {
    public var version: Int = 3
    public var root: String = "/var/lib/berth"
    public var state: String = "/run/berth"
    public var temp: String = ""
    /// containerd's deprecated external-plugin directory; accepted so 1.6 configs load, unused (plugins are compiled in).
    public var pluginDir: String = ""
    public var disabledPlugins: [String] = []
    public var requiredPlugins: [String] = []
    public var oomScore: Int = 0
    public var imports: [String] = []
    public var grpc = GRPC()
    public var ttrpc = TTRPC()
    public var debug = Debug()
    public var metrics = Metrics()
    public var cgroup = Cgroup()
    public var timeouts: [String: String] = DaemonConfig.defaultTimeouts
    public var proxyPlugins: [String: ProxyPlugin] = [:]
    public var streamProcessors: [String: StreamProcessor] = [:]

    public init() {}

    public static let defaultTimeouts: [String: String] = [
        "io.containerd.timeout.bolt.open": "0s",
        "io.containerd.timeout.shim.cleanup": "5s",
        "io.containerd.timeout.shim.load": "5s",
        "io.containerd.timeout.shim.shutdown": "3s",
        "io.containerd.timeout.task.state": "2s",
    ]

    enum CodingKeys: String, CodingKey {
        case version, root, state, temp
        case pluginDir = "plugin_dir"
        case disabledPlugins = "disabled_plugins"
        case requiredPlugins = "required_plugins"
        case oomScore = "oom_score"
        case imports, grpc, ttrpc, debug, metrics, cgroup, timeouts
        case proxyPlugins = "proxy_plugins"
        case streamProcessors = "stream_processors"
    }

    public struct GRPC: Codable, Sendable, Equatable {
        public var address: String = "/run/berth/berthd.sock"
        public var tcpAddress: String = ""
        public var tcpTLSCA: String = ""
        public var tcpTLSCert: String = ""
        public var tcpTLSKey: String = ""
        public var uid: Int = 0
        public var gid: Int = 0
        public var maxRecvMessageSize: Int = 16 << 20
        public var maxSendMessageSize: Int = 16 << 20
        public init() {}
        enum CodingKeys: String, CodingKey {
            case address
            case tcpAddress = "tcp_address"
            case tcpTLSCA = "tcp_tls_ca"
            case tcpTLSCert = "tcp_tls_cert"
            case tcpTLSKey = "tcp_tls_key"
            case uid, gid
            case maxRecvMessageSize = "max_recv_message_size"
            case maxSendMessageSize = "max_send_message_size"
        }
    }

    public struct TTRPC: Codable, Sendable, Equatable {
        /// Empty: the gRPC address plus ".ttrpc", as containerd.
        public var address: String = ""
        public var uid: Int = 0
        public var gid: Int = 0
        public init() {}
    }

    public struct Debug: Codable, Sendable, Equatable {
        public var address: String = ""
        public var uid: Int = 0
        public var gid: Int = 0
        /// trace, debug, info, warn, error, fatal, panic (containerd's logrus levels); empty = info.
        public var level: String = ""
        /// text or json; empty = text.
        public var format: String = ""
        public init() {}
    }

    public struct Metrics: Codable, Sendable, Equatable {
        public var address: String = ""
        public var grpcHistogram: Bool = false
        public init() {}
        enum CodingKeys: String, CodingKey {
            case address
            case grpcHistogram = "grpc_histogram"
        }
    }

    public struct Cgroup: Codable, Sendable, Equatable {
        public var path: String = ""
        public init() {}
    }

    /// An out-of-process plugin reached over gRPC (parsed now, connected by later work).
    public struct ProxyPlugin: Codable, Sendable, Equatable {
        public var type: String
        public var address: String
        public var platform: String?
        public var exports: [String: String]?
        public var capabilities: [String]?
    }

    public struct StreamProcessor: Codable, Sendable, Equatable {
        public var accepts: [String]
        public var returns: String
        public var path: String
        public var args: [String]?
        public var env: [String]?
    }
}
