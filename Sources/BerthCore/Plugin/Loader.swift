import Logging

/// Initialises plugins in graph order and keeps every outcome. containerd's semantics: an init error marks the
/// plugin failed (or skipped, for `PluginSkip`) and loading continues; only `required_plugins` that did not load
/// stop the daemon.
public enum PluginLoader {
    /// Loads `registrations` (already filtered for disabled plugins and ordered by `PluginGraph`).
    /// `configs` maps a URI to its decoded config; absent ones get the config type's defaults.
    public static func load(
        _ ordered: [Registration], configs: [String: any PluginConfig], properties: DaemonProperties,
        into set: PluginSet = PluginSet()
    ) async -> PluginSet {
        let logger = properties.logger
        for registration in ordered {
            let config = configs[registration.uri] ?? registration.configType.init()
            let ic = InitContext(registration: registration, config: config, properties: properties, plugins: set)
            let status: PluginStatus
            var instance: (any Sendable)?
            do {
                instance = try await registration.initialize(ic)
                status = .loaded
                logger.debug("loaded plugin", metadata: ["id": "\(registration.uri)"])
            } catch let skip as PluginSkip {
                status = .skipped(skip.reason)
                logger.info("skip loading plugin", metadata: ["id": "\(registration.uri)", "reason": "\(skip.reason)"])
            } catch {
                let berth = BerthError.wrap(error)
                status = .failed(berth)
                logger.warning("failed to load plugin", metadata: ["id": "\(registration.uri)", "error": "\(berth)"])
            }
            set.append(PluginRecord(
                type: registration.type, id: registration.id, requires: registration.requires, status: status,
                meta: ic.meta, instance: instance))
        }
        return set
    }

    /// Checks `required_plugins`: each must be loaded. The error names every one that is not, and why.
    public static func checkRequired(_ required: [String], in set: PluginSet) throws(BerthError) {
        var problems: [String] = []
        for uri in required {
            guard let record = set.all.first(where: { $0.uri == uri }) else {
                problems.append("\(uri): not loaded (disabled or not compiled in)")
                continue
            }
            switch record.status {
            case .loaded: break
            case .skipped(let reason): problems.append("\(uri): skipped: \(reason)")
            case .failed(let error): problems.append("\(uri): failed: \(error)")
            }
        }
        if !problems.isEmpty {
            throw .failedPrecondition("required plugins did not load: " + problems.joined(separator: "; "))
        }
    }
}
