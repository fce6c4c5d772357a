import BerthCore
import BerthTOML
import Foundation

/// One endpoint serving a registry namespace, as containerd's `docker.RegistryHost`: a mirror from hosts.toml or the
/// registry itself.
public struct RegistryHost: Sendable, Equatable {
    public struct Capabilities: OptionSet, Sendable, Hashable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        public static let pull = Capabilities(rawValue: 1)
        public static let resolve = Capabilities(rawValue: 2)
        public static let push = Capabilities(rawValue: 4)
        public static let all: Capabilities = [.pull, .resolve, .push]
    }

    /// `http` or `https`.
    public var scheme: String
    /// `host[:port]`.
    public var host: String
    /// The API root, normally `/v2`.
    public var path: String
    public var capabilities: Capabilities
    /// PEM files of CAs trusted in addition to the system's.
    public var caCertificates: [String]
    /// (certificate, key) PEM pairs for client auth; an empty key means the key is in the certificate file.
    public var clientCertificates: [[String]]
    public var skipVerify: Bool
    /// Extra headers sent on every request to this host.
    public var headers: [String: [String]]

    public init(
        scheme: String = "https", host: String, path: String = "/v2", capabilities: Capabilities = .all,
        caCertificates: [String] = [], clientCertificates: [[String]] = [], skipVerify: Bool = false,
        headers: [String: [String]] = [:]
    ) {
        self.scheme = scheme
        self.host = host
        self.path = path
        self.capabilities = capabilities
        self.caCertificates = caCertificates
        self.clientCertificates = clientCertificates
        self.skipVerify = skipVerify
        self.headers = headers
    }

    /// `scheme://host/path`.
    public var baseURL: String { "\(scheme)://\(host)\(path)" }

    /// True for `localhost`, `127.*` and `::1` (with or without a port), where containerd allows plain HTTP.
    public static func isLocalhost(_ host: String) -> Bool {
        var name = host
        if name.hasPrefix("["), let close = name.firstIndex(of: "]") {
            name = String(name[name.index(after: name.startIndex)..<close])
        } else if let colon = name.lastIndex(of: ":"), name.filter({ $0 == ":" }).count == 1 {
            name = String(name[..<colon])
        }
        return name == "localhost" || name == "::1" || name.hasPrefix("127.")
    }
}

/// Finds the hosts for a registry namespace as containerd's `config.ConfigureHosts` with a hosts directory:
/// `<configPath>/<host>/hosts.toml` (or `host_port_`, then `_default`), mirrors in file order, then the server.
public struct HostsResolver: Sendable {
    /// containerd's `config_path` (`/etc/containerd/certs.d` style); nil for none.
    public var configPath: String?
    /// `http` to use plain HTTP (the CLI's `--plain-http`); nil means https except for localhost.
    public var defaultScheme: String?
    /// Headers sent to every host (containerd's `RegistryResolver.headers`); a hosts.toml `header` of the same name
    /// wins.
    public var headers: [String: [String]]

    public init(configPath: String? = nil, defaultScheme: String? = nil, headers: [String: [String]] = [:]) {
        self.configPath = configPath
        self.defaultScheme = defaultScheme
        self.headers = headers
    }

    /// The ordered hosts to try for `namespace` (a reference's domain).
    public func hosts(for namespace: String) throws(BerthError) -> [RegistryHost] {
        var hosts: [RegistryHost] = []
        var serverSet = false
        if let configPath, let dir = Self.hostDirectory(root: configPath, host: namespace) {
            let file = dir + "/hosts.toml"
            if let data = FileManager.default.contents(atPath: file) {
                (hosts, serverSet) = try Self.parseHostsFile(String(decoding: data, as: UTF8.self), baseDir: dir)
            } else {
                hosts = [try Self.certificateFiles(dir)]
            }
        }
        if hosts.isEmpty { hosts = [RegistryHost(host: "")] }
        if !serverSet {
            var last = hosts[hosts.count - 1]
            if namespace == "docker.io" {
                last.scheme = "https"
                last.host = "registry-1.docker.io"
            } else if RegistryHost.isLocalhost(namespace) {
                last.host = namespace
                if defaultScheme == nil || defaultScheme == "http" {
                    last.scheme = "http"
                    last.skipVerify = true
                } else {
                    last.scheme = defaultScheme ?? "https"
                }
            } else {
                last.host = namespace
                last.scheme = defaultScheme ?? "https"
            }
            last.path = "/v2"
            last.capabilities = .all
            hosts[hosts.count - 1] = last
        }
        if !headers.isEmpty {
            for index in hosts.indices { hosts[index].headers.merge(headers) { own, _ in own } }
        }
        return hosts
    }

    /// The first existing of `<root>/<host_port_>`, `<root>/<host>`, `<root>/_default`.
    static func hostDirectory(root: String, host: String) -> String? {
        var candidates: [String] = []
        if let colon = host.lastIndex(of: ":"), colon != host.startIndex {
            candidates.append("\(root)/\(host[..<colon])_\(host[host.index(after: colon)...])_")
        }
        candidates += ["\(root)/\(host)", "\(root)/_default"]
        var isDirectory: ObjCBool = false
        return candidates.first { FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) && isDirectory.boolValue }
    }

    /// A hosts dir without hosts.toml: Docker's `*.crt` CAs and `*.cert`/`*.key` client pairs for the default server.
    static func certificateFiles(_ dir: String) throws(BerthError) -> RegistryHost {
        var host = RegistryHost(host: "")
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        for file in files where file.hasSuffix(".crt") { host.caCertificates.append("\(dir)/\(file)") }
        for file in files where file.hasSuffix(".cert") {
            let key = String(file.dropLast(5)) + ".key"
            guard files.contains(key) else { throw .invalidArgument("missing key \(key) for client certificate \(file)") }
            host.clientCertificates.append(["\(dir)/\(file)", "\(dir)/\(key)"])
        }
        return host
    }

    /// Parses a hosts.toml: `[host."…"]` tables in file order, then the top level (`server`); returns whether the
    /// top level named a server.
    static func parseHostsFile(_ text: String, baseDir: String) throws(BerthError) -> ([RegistryHost], Bool) {
        let table: TOMLTable
        do {
            table = try TOML.parse(text)
        } catch {
            throw .invalidArgument("failed to parse TOML: \(error)")
        }
        var hosts: [RegistryHost] = []
        if let hostTable = table["host"]?.value.tableValue {
            for (name, node) in hostTable.entries {
                guard let config = node.value.tableValue else { throw .invalidArgument("host \(name) is not a table") }
                hosts.append(try parseHost(server: name, config: config, baseDir: baseDir))
            }
        }
        let server = table["server"]?.value.stringValue ?? ""
        var top = try parseHost(server: server, config: table, baseDir: baseDir)
        if server.isEmpty, table["plain-http"]?.value.boolValue == true || table["plain_http"]?.value.boolValue == true {
            top.scheme = "http"
        }
        hosts.append(top)
        return (hosts, !server.isEmpty)
    }

    static func parseHost(server: String, config: TOMLTable, baseDir: String) throws(BerthError) -> RegistryHost {
        var host = RegistryHost(host: "")
        if !server.isEmpty {
            let full = server.hasPrefix("http") ? server : "https://" + server
            guard let url = URLComponents(string: full), let scheme = url.scheme, let name = url.host else {
                throw .invalidArgument("unable to parse server \(server)")
            }
            host.scheme = scheme
            host.host = url.port.map { "\(name):\($0)" } ?? name
            let overridePath = config["override_path"]?.value.boolValue ?? false
            var path = url.path
            while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
            if path.isEmpty || path == "/" {
                path = overridePath ? "" : "/v2"
            } else if !path.hasSuffix("/v2") && !overridePath {
                path += "/v2"
            }
            host.path = path
        }
        if let skip = config["skip_verify"]?.value.boolValue { host.skipVerify = skip }
        if let capabilities = config["capabilities"]?.value.arrayValue {
            host.capabilities = []
            for node in capabilities {
                switch node.value.stringValue?.lowercased() {
                case "pull": host.capabilities.insert(.pull)
                case "resolve": host.capabilities.insert(.resolve)
                case "push": host.capabilities.insert(.push)
                default: throw .invalidArgument("unknown capability \(node.value)")
                }
            }
        }
        func absolute(_ path: String) -> String { path.hasPrefix("/") ? path : baseDir + "/" + path }
        if let ca = config["ca"]?.value {
            if let single = ca.stringValue {
                host.caCertificates = [absolute(single)]
            } else if let list = ca.arrayValue {
                host.caCertificates = list.compactMap { $0.value.stringValue.map(absolute) }
            } else {
                throw .invalidArgument("invalid type for \"ca\"")
            }
        }
        if let client = config["client"]?.value {
            if let single = client.stringValue {
                host.clientCertificates = [[absolute(single), ""]]
            } else if let list = client.arrayValue {
                for entry in list {
                    if let single = entry.value.stringValue {
                        host.clientCertificates.append([absolute(single), ""])
                    } else if let pair = entry.value.arrayValue, pair.count == 2 {
                        host.clientCertificates.append(pair.compactMap { $0.value.stringValue.map(absolute) })
                    } else {
                        throw .invalidArgument("invalid pair for \"client\"")
                    }
                }
            }
        }
        if let headers = config["header"]?.value.tableValue {
            for (name, node) in headers.entries {
                if let value = node.value.stringValue {
                    host.headers[name] = [value]
                } else if let list = node.value.arrayValue {
                    host.headers[name] = list.compactMap { $0.value.stringValue }
                }
            }
        }
        return host
    }
}
