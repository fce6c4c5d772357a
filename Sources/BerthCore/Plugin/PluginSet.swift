import Logging
import Synchronization

/// An OS/architecture pair a plugin supports (containerd's `types.Platform`).
public struct Platform: Sendable, Hashable, Codable, CustomStringConvertible {
    public var os: String
    public var architecture: String
    public var variant: String

    public init(os: String, architecture: String, variant: String = "") {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    /// The platform this daemon runs on, in OCI spelling.
    public static var host: Platform {
        #if arch(x86_64)
            return Platform(os: "linux", architecture: "amd64")
        #elseif arch(arm64)
            return Platform(os: "linux", architecture: "arm64", variant: "v8")
        #else
            return Platform(os: "linux", architecture: "unknown")
        #endif
    }

    public var description: String { [os, architecture, variant].filter { !$0.isEmpty }.joined(separator: "/") }
}

/// What a plugin publishes about itself during init: exports (e.g. its root), capabilities, platforms.
public struct PluginMeta: Sendable, Equatable {
    public var exports: [String: String] = [:]
    public var capabilities: [String] = []
    public var platforms: [Platform] = []
    public init() {}
}

/// The outcome of a plugin's init. Skipped and failed plugins stay listed, as in containerd's introspection.
public enum PluginStatus: Sendable, Equatable {
    case loaded
    case skipped(String)
    case failed(BerthError)
}

/// One entry of the plugin set: what was registered and how its init went.
public struct PluginRecord: Sendable {
    public let type: PluginType
    public let id: String
    public let requires: [Requirement]
    public let status: PluginStatus
    public let meta: PluginMeta
    public let instance: (any Sendable)?

    public var uri: String { "\(type.rawValue).\(id)" }

    /// The error a dependent gets when it looks this plugin up and it did not load.
    var unavailableError: BerthError {
        switch status {
        case .loaded: return .internalError("plugin \(uri) has no instance")
        case .skipped(let reason): return .failedPrecondition("plugin \(uri) was skipped: \(reason)")
        case .failed(let error): return .failedPrecondition("plugin \(uri) failed to load: \(error)")
        }
    }
}

/// The growing set of initialised plugins, in init order. Introspection reads it at request time, so it sees
/// plugins that loaded after the introspection plugin itself.
public final class PluginSet: Sendable {
    private let records = Mutex<[PluginRecord]>([])

    public init() {}

    public var all: [PluginRecord] { records.withLock { $0 } }

    func append(_ record: PluginRecord) { records.withLock { $0.append(record) } }

    public func record(type: PluginType, id: String) -> PluginRecord? {
        records.withLock { $0.first { $0.type == type && $0.id == id } }
    }

    /// The instance of one plugin, cast to what the caller needs.
    public func instance<T>(_ type: PluginType, id: String, as: T.Type = T.self) throws(BerthError) -> T {
        guard let record = record(type: type, id: id) else {
            throw .notFound("plugin \(type.rawValue).\(id) is not loaded (disabled or not compiled in)")
        }
        guard case .loaded = record.status else { throw record.unavailableError }
        guard let instance = record.instance as? T else {
            throw .internalError("plugin \(record.uri) does not provide \(T.self)")
        }
        return instance
    }

    /// Every loaded plugin of a type that provides `T`, by id, in init order.
    public func all<T>(_ type: PluginType, as: T.Type = T.self) -> [(id: String, instance: T)] {
        records.withLock { records in
            records.compactMap { r in
                guard r.type == type, case .loaded = r.status, let i = r.instance as? T else { return nil }
                return (r.id, i)
            }
        }
    }

    /// The one loaded plugin of a type; an error when there is none (naming why) or several.
    public func single<T>(_ type: PluginType, as: T.Type = T.self) throws(BerthError) -> T {
        let ofType = records.withLock { $0.filter { $0.type == type } }
        let loaded = ofType.filter { if case .loaded = $0.status { true } else { false } }
        if loaded.count > 1 {
            throw .failedPrecondition("more than one plugin of type \(type.rawValue): "
                + loaded.map(\.uri).joined(separator: ", "))
        }
        guard let record = loaded.first else {
            if let failed = ofType.first { throw failed.unavailableError }
            throw .notFound("no plugin of type \(type.rawValue) is loaded")
        }
        guard let instance = record.instance as? T else {
            throw .internalError("plugin \(record.uri) does not provide \(T.self)")
        }
        return instance
    }

    /// Closes loaded instances that are `Closable`, in reverse init order; errors are logged, not thrown.
    public func closeAll(logger: Logger) async {
        for record in all.reversed() {
            guard case .loaded = record.status, let closable = record.instance as? any Closable else { continue }
            logger.debug("closing plugin", metadata: ["id": "\(record.uri)"])
            do {
                try await closable.close()
            } catch {
                logger.warning("failed to close plugin", metadata: ["id": "\(record.uri)", "error": "\(error)"])
            }
        }
    }
}
