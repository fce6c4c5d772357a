import BerthTOML

/// A problem in a config file that does not stop the daemon: unknown key, unknown plugin section, deprecated key.
public struct ConfigWarning: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var key: String
    public var message: String

    public var description: String {
        "\(file)\(line.map { ":\($0)" } ?? ""): \(message)"
    }
}

/// The effective configuration: daemon settings, each plugin's decoded config, and the warnings met on the way.
public struct LoadedConfig: Sendable {
    public var daemon: DaemonConfig
    /// Decoded config for every registration passed to the loader, keyed by URI (defaults where absent).
    public var plugins: [String: any PluginConfig]
    public var warnings: [ConfigWarning]
    /// The files read, main file first, then imports in merge order.
    public var files: [String]
}

/// Reads containerd-format config files (versions 2, 3 and 4) with imports, and reports errors with file, line
/// and key. Unknown keys and sections for plugins Berth does not have are warnings, not failures.
public enum ConfigLoader {
    public static let defaultPath = "/etc/berth/config.toml"

    /// Loads `path` and its imports. An absent file gives the defaults (as containerd does).
    public static func load(path: String, registrations: [Registration]) throws(BerthError) -> LoadedConfig {
        guard FileSystem.exists(path) else {
            return try build(files: [], registrations: registrations)
        }
        var files: [SourceFile] = []
        var seen = Set<String>()
        try read(path, into: &files, seen: &seen)
        return try build(files: files, registrations: registrations)
    }

    /// Loads one config given as text (tests and `config` subcommands use it); imports are resolved from `file`'s directory.
    public static func load(text: String, file: String, registrations: [Registration]) throws(BerthError)
        -> LoadedConfig
    {
        var files = [try parse(text, file: file)]
        var seen: Set<String> = [file]
        for imported in importPaths(of: files[0]) { try read(imported, into: &files, seen: &seen) }
        return try build(files: files, registrations: registrations)
    }

    struct SourceFile {
        var path: String
        var table: TOMLTable
        var warnings: [ConfigWarning] = []
    }

    // MARK: reading

    static func read(_ path: String, into files: inout [SourceFile], seen: inout Set<String>) throws(BerthError) {
        guard seen.insert(path).inserted else { return }
        let file = try parse(try FileSystem.read(path), file: path)
        files.append(file)
        for imported in importPaths(of: file) { try read(imported, into: &files, seen: &seen) }
    }

    static func parse(_ text: String, file: String) throws(BerthError) -> SourceFile {
        var table: TOMLTable
        do {
            table = try TOML.parse(text)
        } catch let error as TOMLParseError {
            throw .invalidArgument("\(file): line \(error.position.line), column \(error.position.column): \(error.message)")
        } catch {
            throw .invalidArgument("\(file): \(error)")
        }
        var source = SourceFile(path: file, table: table)
        try migrate(&source)
        return source
    }

    /// Checks the version and brings a file to the version-3 layout: version 4 moved `[grpc]`, `[ttrpc]`,
    /// `[debug]` and `[metrics]` into `io.containerd.server.v1.*` plugin sections; they move back here.
    static func migrate(_ file: inout SourceFile) throws(BerthError) {
        guard let node = file.table["version"] else {
            file.warnings.append(ConfigWarning(
                file: file.path, line: nil, key: "version",
                message: "no \"version\" key: reading the file as version 3 (plugin sections keyed by full URI)"))
            return
        }
        guard case .integer(let version) = node.value else {
            throw .invalidArgument("\(file.path): line \(node.position.line): key \"version\": expected integer, found \(node.value.typeName)")
        }
        switch version {
        case 2, 3: return
        case 4:
            guard case .table(var plugins)? = file.table["plugins"]?.value else { return }
            for section in ["grpc", "ttrpc", "debug", "metrics"] {
                let uri = "io.containerd.server.v1.\(section)"
                guard let moved = plugins[uri] else { continue }
                plugins[uri] = nil
                if var existing = file.table[section], case .table(var t) = existing.value, case .table(let m) = moved.value {
                    t.merge(m)
                    existing.value = .table(t)
                    file.table[section] = existing
                } else {
                    file.table[section] = moved
                }
            }
            if var pluginsNode = file.table["plugins"] {
                pluginsNode.value = .table(plugins)
                file.table["plugins"] = pluginsNode
            }
        case 1:
            throw .invalidArgument("\(file.path): line \(node.position.line): key \"version\": config version 1 (short plugin names) is not supported; use version 2 or 3")
        default:
            throw .invalidArgument("\(file.path): line \(node.position.line): key \"version\": unsupported config version \(version); Berth reads versions 2, 3 and 4")
        }
    }

    /// `imports` entries are globs; relative ones are resolved from the importing file's directory.
    static func importPaths(of file: SourceFile) -> [String] {
        guard case .array(let items)? = file.table["imports"]?.value else { return [] }
        let directory = file.path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            .joined(separator: "/")
        return items.flatMap { item -> [String] in
            guard case .string(let pattern) = item.value else { return [] }
            let absolute = pattern.hasPrefix("/") ? pattern : (directory.isEmpty ? "." : directory) + "/" + pattern
            return FileSystem.glob(absolute).sorted()
        }
    }

    // MARK: validation and merge

    static func build(files: [SourceFile], registrations: [Registration]) throws(BerthError) -> LoadedConfig {
        var warnings: [ConfigWarning] = []
        let byURI = Dictionary(registrations.map { ($0.uri, $0) }, uniquingKeysWith: { first, _ in first })
        for file in files {
            warnings += file.warnings
            try validate(file, registrations: byURI, warnings: &warnings)
        }

        var merged = TOMLTable()
        var lists: [String: [TOMLNode]] = [:]
        for file in files {
            for key in ["disabled_plugins", "required_plugins", "imports"] {
                if case .array(let items)? = file.table[key]?.value {
                    for item in items where !(lists[key] ?? []).contains(where: { $0.value == item.value }) {
                        lists[key, default: []].append(item)
                    }
                }
            }
            merged.merge(file.table)
        }
        for (key, items) in lists {
            merged[key] = TOMLNode(.array(items), position: merged[key]?.position ?? .unknown)
        }

        let source = files.first?.path ?? "defaults"
        var daemonTable = merged
        daemonTable["plugins"] = nil
        var daemon = try decode(DaemonConfig.self, from: daemonTable, defaults: DaemonConfig(), path: [], file: source)
            .value
        daemon.version = 3

        var pluginTables = TOMLTable()
        if case .table(let t)? = merged["plugins"]?.value { pluginTables = t }
        var plugins: [String: any PluginConfig] = [:]
        for registration in registrations {
            if case .table(let section)? = pluginTables[registration.uri]?.value {
                plugins[registration.uri] = try decodePlugin(
                    registration.configType, from: section, uri: registration.uri, file: source).value
            } else {
                plugins[registration.uri] = registration.configType.init()
            }
        }
        return LoadedConfig(daemon: daemon, plugins: plugins, warnings: warnings, files: files.map(\.path))
    }

    /// Decodes one file on its own, so that each warning and error names the file and line it comes from.
    static func validate(_ file: SourceFile, registrations: [String: Registration], warnings: inout [ConfigWarning])
        throws(BerthError)
    {
        var daemonTable = file.table
        daemonTable["plugins"] = nil
        let decoded = try decode(DaemonConfig.self, from: daemonTable, defaults: DaemonConfig(), path: [], file: file.path)
        warnings += decoded.unknownKeys.map { unknown($0, file: file.path) }
        for (key, value) in decoded.value.timeouts where GoDuration.seconds(value) == nil {
            let line = timeoutLine(file.table, key)
            throw .invalidArgument("\(file.path)\(line.map { ": line \($0)" } ?? ""): key \"timeouts.\(key)\": \"\(value)\" is not a duration (examples: \"5s\", \"100ms\", \"1h30m\")")
        }
        if !decoded.value.pluginDir.isEmpty {
            warnings.append(ConfigWarning(
                file: file.path, line: file.table["plugin_dir"]?.position.line, key: "plugin_dir",
                message: "key \"plugin_dir\" is ignored: Berth's plugins are compiled in"))
        }
        for key in ["disabled_plugins", "required_plugins"] {
            guard case .array(let items)? = file.table[key]?.value else { continue }
            for item in items {
                guard case .string(let uri) = item.value, registrations[uri] == nil else { continue }
                warnings.append(ConfigWarning(
                    file: file.path, line: item.position.line, key: key,
                    message: "\(key) names \"\(uri)\", which is not a plugin of this build"))
            }
        }

        guard let pluginsNode = file.table["plugins"] else { return }
        guard case .table(let plugins) = pluginsNode.value else {
            throw .invalidArgument("\(file.path): line \(pluginsNode.position.line): key \"plugins\": expected table, found \(pluginsNode.value.typeName)")
        }
        for uri in plugins.keys {
            guard let node = plugins[uri] else { continue }
            guard case .table(let section) = node.value else {
                throw .invalidArgument("\(file.path): line \(node.position.line): key \"plugins.\(quoted(uri))\": expected table, found \(node.value.typeName)")
            }
            guard let registration = registrations[uri] else {
                warnings.append(ConfigWarning(
                    file: file.path, line: node.position.line, key: "plugins.\(quoted(uri))",
                    message: "section [plugins.\(quoted(uri))] is for a plugin Berth does not have; ignored"))
                continue
            }
            let result = try decodePlugin(registration.configType, from: section, uri: uri, file: file.path)
            warnings += result.unknownKeys.map { unknown($0, file: file.path) }
        }
    }

    static func decodePlugin<C: PluginConfig>(_ type: C.Type, from table: TOMLTable, uri: String, file: String)
        throws(BerthError) -> (value: any PluginConfig, unknownKeys: [UnknownKey])
    {
        let decoded = try decode(C.self, from: table, defaults: C(), path: ["plugins", uri], file: file)
        return (decoded.value, decoded.unknownKeys)
    }

    static func decode<T: Codable>(_ type: T.Type, from table: TOMLTable, defaults: T, path: [String], file: String)
        throws(BerthError) -> TOMLDecoded<T>
    {
        do {
            return try TOMLDecoder().decode(T.self, from: table, defaults: defaults, codingPath: path)
        } catch let error as TOMLDecodingError {
            let line = error.position.map { ": line \($0.line)" } ?? ""
            throw .invalidArgument("\(file)\(line): key \"\(dotted(error.path))\": expected \(error.expected), found \(error.found)")
        } catch {
            throw .invalidArgument("\(file): \(error)")
        }
    }

    static func unknown(_ key: UnknownKey, file: String) -> ConfigWarning {
        ConfigWarning(file: file, line: key.position?.line, key: dotted(key.path),
                      message: "unknown key \"\(dotted(key.path))\" (ignored)")
    }

    static func timeoutLine(_ table: TOMLTable, _ key: String) -> Int? {
        guard case .table(let t)? = table["timeouts"]?.value else { return nil }
        return t[key]?.position.line
    }

    static func quoted(_ key: String) -> String {
        key.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" } ? key : "\"\(key)\""
    }

    static func dotted(_ path: [String]) -> String { path.map(quoted).joined(separator: ".") }
}
