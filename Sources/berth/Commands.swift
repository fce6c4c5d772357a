import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import SwiftProtobuf

struct VersionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Client and server versions.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let (server, uuid) = try await global.connect { c in
            let version = try await Containerd_Services_Version_V1_Version.Client(wrapping: c.client)
                .version(Google_Protobuf_Empty(), metadata: c.metadata)
            let uuid = try await Containerd_Services_Introspection_V1_Introspection.Client(wrapping: c.client)
                .server(Google_Protobuf_Empty(), metadata: c.metadata).uuid
            return (version, uuid)
        }
        switch global.format {
        case .json:
            Output.json([
                "client": ["version": BuildInfo.version, "revision": BuildInfo.revision],
                "server": ["version": server.version, "revision": server.revision, "uuid": uuid],
            ])
        case .table:
            print("Client:\n  Version:  \(BuildInfo.version)\n  Revision: \(BuildInfo.revision)\n")
            print("Server:\n  Version:  \(server.version)\n  Revision: \(server.revision)\n  UUID: \(uuid)")
        }
    }
}

struct Plugins: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins", abstract: "Inspect the daemon's plugins.", subcommands: [List.self],
        aliases: ["plugin"])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List plugins with their status (ok, skip, error).", aliases: ["list"])
        @OptionGroup var global: GlobalOptions
        @Flag(name: .shortAndLong, help: "Show requirements, exports, capabilities and init errors.")
        var detailed = false
        @Argument(help: "Filters, e.g. type==io.containerd.snapshotter.v1.") var filters: [String] = []

        func run() async throws {
            let filters = self.filters
            let plugins = try await global.connect { c in
                var request = Containerd_Services_Introspection_V1_PluginsRequest()
                request.filters = filters
                return try await Containerd_Services_Introspection_V1_Introspection.Client(wrapping: c.client)
                    .plugins(request, metadata: c.metadata).plugins
            }
            func status(_ p: Containerd_Services_Introspection_V1_Plugin) -> String {
                guard p.hasInitErr else { return "ok" }
                return p.initErr.message.contains("skip plugin") ? "skip" : "error"
            }
            func platforms(_ p: Containerd_Services_Introspection_V1_Plugin) -> String {
                p.platforms.isEmpty ? "-" : p.platforms.map { [$0.os, $0.architecture, $0.variant].filter { !$0.isEmpty }.joined(separator: "/") }.joined(separator: ",")
            }
            switch global.format {
            case .json:
                Output.json(plugins.map { p -> [String: Any] in
                    [
                        "type": p.type, "id": p.id, "status": status(p), "requires": p.requires,
                        "platforms": platforms(p), "exports": p.exports, "capabilities": p.capabilities,
                        "error": p.hasInitErr ? p.initErr.message : "",
                    ]
                })
            case .table where detailed:
                for p in plugins {
                    print("Type:          \(p.type)\nID:            \(p.id)\nStatus:        \(status(p))")
                    if !p.requires.isEmpty { print("Requires:      \(p.requires.joined(separator: ", "))") }
                    print("Platforms:     \(platforms(p))")
                    if !p.exports.isEmpty { print("Exports:       \(Output.labelText(p.exports))") }
                    if !p.capabilities.isEmpty { print("Capabilities:  \(p.capabilities.joined(separator: ", "))") }
                    if p.hasInitErr { print("Error:         \(p.initErr.message)") }
                    print("")
                }
            case .table:
                Output.table(["TYPE", "ID", "PLATFORMS", "STATUS"], plugins.map { [$0.type, $0.id, platforms($0), status($0)] })
            }
        }
    }
}
