import Logging
import Synchronization

/// Daemon-wide facts every plugin may read: directories, listener addresses, the effective config, a logger.
public struct DaemonProperties: Sendable {
    public var root: String
    public var state: String
    public var grpcAddress: String
    public var ttrpcAddress: String
    public var config: DaemonConfig
    public var logger: Logger

    public init(config: DaemonConfig, logger: Logger) {
        self.root = config.root
        self.state = config.state
        self.grpcAddress = config.grpc.address
        self.ttrpcAddress = config.ttrpc.address.isEmpty ? config.grpc.address + ".ttrpc" : config.ttrpc.address
        self.config = config
        self.logger = logger
    }

    /// The metadata plugin's database (containerd's `<root>/io.containerd.metadata.v1.bolt/meta.db`). The
    /// snapshotters keep their rows in it too, so the metadata layer commits a snapshot's rows and its own at once.
    public var metadataDatabase: String { root + "/io.containerd.metadata.v1.bolt/meta.db" }
}

/// What a plugin's init receives: its own directories and decoded config, the daemon's properties, typed access
/// to the plugins it requires, and a place to publish exports and capabilities. A plugin never imports another
/// plugin's module; it asks this context for an instance conforming to a protocol declared in BerthCore.
public final class InitContext: Sendable {
    public let type: PluginType
    public let id: String
    /// `<root>/<URI>`: the plugin's persistent directory (created on demand with `makeRoot()`).
    public let root: String
    /// `<state>/<URI>`: the plugin's runtime directory, cleared on reboot.
    public let state: String
    public let config: any PluginConfig
    public let properties: DaemonProperties
    /// The live plugin set (plugins initialised so far, and later ones once they are).
    public let plugins: PluginSet
    public let logger: Logger
    private let metaBox = Mutex(PluginMeta())

    init(registration: Registration, config: any PluginConfig, properties: DaemonProperties, plugins: PluginSet) {
        self.type = registration.type
        self.id = registration.id
        self.root = properties.root + "/" + registration.uri
        self.state = properties.state + "/" + registration.uri
        self.config = config
        self.properties = properties
        self.plugins = plugins
        var logger = properties.logger
        logger[metadataKey: "plugin"] = "\(registration.uri)"
        self.logger = logger
    }

    public var meta: PluginMeta { metaBox.withLock { $0 } }

    public func export(_ key: String, _ value: String) { metaBox.withLock { $0.exports[key] = value } }
    public func addCapability(_ capability: String) { metaBox.withLock { $0.capabilities.append(capability) } }
    public func addPlatform(_ platform: Platform) { metaBox.withLock { $0.platforms.append(platform) } }

    /// The one loaded plugin of `type`, as `T`.
    public func single<T>(_ type: PluginType, as: T.Type = T.self) throws(BerthError) -> T {
        try plugins.single(type, as: T.self)
    }

    /// A specific plugin, as `T`.
    public func instance<T>(_ type: PluginType, id: String, as: T.Type = T.self) throws(BerthError) -> T {
        try plugins.instance(type, id: id, as: T.self)
    }

    /// All loaded plugins of `type` that provide `T`.
    public func all<T>(_ type: PluginType, as: T.Type = T.self) -> [(id: String, instance: T)] {
        plugins.all(type, as: T.self)
    }

    /// Creates the plugin's root directory (mode 0711, like containerd) and returns its path.
    @discardableResult
    public func makeRoot() throws(BerthError) -> String {
        try FileSystem.makeDirectories(root, mode: 0o711)
        return root
    }

    /// Creates the plugin's state directory and returns its path.
    @discardableResult
    public func makeState() throws(BerthError) -> String {
        try FileSystem.makeDirectories(state, mode: 0o711)
        return state
    }
}
