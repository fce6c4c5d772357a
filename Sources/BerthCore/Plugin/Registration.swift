/// A plugin type such as `io.containerd.snapshotter.v1`. Types are containerd's so that configs and `ctr plugins ls`
/// read the same.
public struct PluginType: RawRepresentable, Hashable, Sendable, Comparable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
    public static func < (a: PluginType, b: PluginType) -> Bool { a.rawValue < b.rawValue }

    public static let content: PluginType = "io.containerd.content.v1"
    public static let metadata: PluginType = "io.containerd.metadata.v1"
    public static let snapshotter: PluginType = "io.containerd.snapshotter.v1"
    public static let event: PluginType = "io.containerd.event.v1"
    public static let gc: PluginType = "io.containerd.gc.v1"
    public static let differ: PluginType = "io.containerd.differ.v1"
    public static let runtime: PluginType = "io.containerd.runtime.v2"
    public static let service: PluginType = "io.containerd.service.v1"
    public static let grpc: PluginType = "io.containerd.grpc.v1"
    public static let ttrpc: PluginType = "io.containerd.ttrpc.v1"
    public static let `internal`: PluginType = "io.containerd.internal.v1"
    public static let transfer: PluginType = "io.containerd.transfer.v1"
    /// Listeners (containerd's v4 config shape): they start last and stop first.
    public static let server: PluginType = "io.containerd.server.v1"
}

/// What a plugin needs initialised before it: every plugin of a type, one named plugin, or all other plugins.
public enum Requirement: Hashable, Sendable, CustomStringConvertible {
    case type(PluginType)
    case plugin(PluginType, String)
    case all

    /// The text introspection reports in `requires` (containerd lists types; `*` for all).
    public var description: String {
        switch self {
        case .type(let t): return t.rawValue
        case .plugin(let t, let id): return "\(t.rawValue).\(id)"
        case .all: return "*"
        }
    }
}

/// A plugin's TOML section, decoded with defaults for absent keys. `init()` gives the defaults.
public protocol PluginConfig: Codable, Sendable {
    init()
}

/// For plugins without configuration.
public struct NoConfig: PluginConfig {
    public init() {}
}

/// A compiled-in plugin: type, id, requirements, config type with defaults, and the function that builds it.
/// Each plugin target exports one or more as `public let registration`; berthd's builtins list names them.
public struct Registration: Sendable {
    public let type: PluginType
    public let id: String
    public let requires: [Requirement]
    /// One line on what the plugin does; printed above its section by `berthd config default`.
    public let summary: String
    public let configType: any PluginConfig.Type
    let initialize: @Sendable (InitContext) async throws -> any Sendable

    public init<Config: PluginConfig>(
        type: PluginType, id: String, requires: [Requirement] = [], summary: String = "", config: Config.Type,
        initialize: @escaping @Sendable (InitContext, Config) async throws -> any Sendable
    ) {
        self.type = type
        self.id = id
        self.requires = requires
        self.summary = summary
        self.configType = config
        self.initialize = { ic in try await initialize(ic, (ic.config as? Config) ?? Config()) }
    }

    public init(
        type: PluginType, id: String, requires: [Requirement] = [], summary: String = "",
        initialize: @escaping @Sendable (InitContext) async throws -> any Sendable
    ) {
        self.init(type: type, id: id, requires: requires, summary: summary, config: NoConfig.self) { ic, _ in try await initialize(ic) }
    }

    /// `type.id`: the config section name, the per-plugin directory name, and what disabled/required lists name.
    public var uri: String { "\(type.rawValue).\(id)" }
}

/// Optional capability of a plugin instance: release resources at shutdown (called in reverse init order).
public protocol Closable: Sendable {
    func close() async throws
}
