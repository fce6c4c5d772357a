import BerthTOML

/// Renders configs as commented TOML (version 3): `berthd config default` and `berthd config dump`.
public enum ConfigRender {
    static let sectionComments: [[String]: String] = [
        []: """
            Berth daemon configuration (containerd's format, version 3; versions 2 and 4 also load).
            root: persistent data, one directory per plugin (<root>/<plugin URI>).
            state: runtime data, cleared on reboot (<state>/<plugin URI>).
            disabled_plugins: plugin URIs not to initialise. required_plugins: URIs that must load, or berthd exits.
            imports: more config files (globs, relative to this file); their scalars override, their tables merge.
            """,
        ["grpc"]: "The gRPC API (containerd.services.*) on a unix socket, mode 0660, owned by uid:gid.",
        ["ttrpc"]: "The ttrpc socket shims publish events to; empty address: the gRPC address + \".ttrpc\".",
        ["debug"]: "Log level (trace, debug, info, warn, error) and format (text, json).",
        ["metrics"]: "Prometheus metrics listener (empty: off).",
        ["cgroup"]: "The cgroup berthd moves itself into (empty: stay).",
        ["timeouts"]: "Timeouts in Go duration syntax.",
        ["proxy_plugins"]: "Out-of-process plugins: [proxy_plugins.NAME] type = \"snapshot\", address = \"/path.sock\".",
        ["stream_processors"]: "Stream processors for layer media types.",
        ["plugins"]: "Per-plugin settings, one section per plugin URI.",
    ]

    /// The complete default config of this build: every compiled-in plugin's section with its defaults.
    public static func defaults(registrations: [Registration]) throws(BerthError) -> String {
        var configs: [String: any PluginConfig] = [:]
        for r in registrations { configs[r.uri] = r.configType.init() }
        return try render(daemon: DaemonConfig(), plugins: configs, registrations: registrations)
    }

    /// The effective config after imports and defaults.
    public static func dump(_ loaded: LoadedConfig, registrations: [Registration]) throws(BerthError) -> String {
        try render(daemon: loaded.daemon, plugins: loaded.plugins, registrations: registrations)
    }

    static func render(daemon: DaemonConfig, plugins: [String: any PluginConfig], registrations: [Registration])
        throws(BerthError) -> String
    {
        do {
            var table = try TOMLEncoder().encode(daemon)
            var pluginTable = TOMLTable()
            var comments = sectionComments
            for r in registrations.sorted(by: { $0.uri < $1.uri }) {
                let config = plugins[r.uri] ?? r.configType.init()
                pluginTable[r.uri] = TOMLNode(.table(try encode(config)))
                comments[["plugins", r.uri]] = r.summary.isEmpty ? r.uri : r.summary
            }
            table["plugins"] = TOMLNode(.table(pluginTable))
            return table.serialized(comments: comments)
        } catch {
            throw .internalError("rendering config: \(error)")
        }
    }

    static func encode<C: PluginConfig>(_ config: C) throws -> TOMLTable { try TOMLEncoder().encode(config) }
}
