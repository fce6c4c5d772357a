import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "introspection",
    summary: "containerd.services.introspection.v1.Introspection: plugins with their status, and the server UUID."
) { ic in
    let uuid = try serverUUID(directory: try ic.makeRoot())
    return SingleService(IntrospectionService(plugins: ic.plugins, uuid: uuid))
}

/// The server's UUID, created once and kept under the plugin's root (containerd keeps it in the same place).
func serverUUID(directory: String) throws(BerthError) -> String {
    let path = directory + "/uuid"
    if let existing = try? FileSystem.read(path).trimmingCharacters(in: .whitespacesAndNewlines),
        UUID(uuidString: existing) != nil
    {
        return existing
    }
    let uuid = UUID().uuidString.lowercased()
    try FileSystem.writeAtomically(path, uuid)
    return uuid
}

struct IntrospectionService: Containerd_Services_Introspection_V1_Introspection.SimpleServiceProtocol {
    let plugins: PluginSet
    let uuid: String

    func plugins(request: Containerd_Services_Introspection_V1_PluginsRequest, context: ServerContext) async throws
        -> Containerd_Services_Introspection_V1_PluginsResponse
    {
        let filter = try Filter.parse(request.filters)
        var response = Containerd_Services_Introspection_V1_PluginsResponse()
        response.plugins = plugins.all.map(Self.message).filter { filter.matches(PluginAdaptor(plugin: $0)) }
        return response
    }

    func server(request: Google_Protobuf_Empty, context: ServerContext) async throws
        -> Containerd_Services_Introspection_V1_ServerResponse
    {
        var response = Containerd_Services_Introspection_V1_ServerResponse()
        response.uuid = uuid
        return response
    }

    /// A plugin record as containerd reports it; a skip's message ends in ": skip plugin", which is how `ctr
    /// plugins ls` tells skip from error.
    static func message(_ record: PluginRecord) -> Containerd_Services_Introspection_V1_Plugin {
        var plugin = Containerd_Services_Introspection_V1_Plugin()
        plugin.type = record.type.rawValue
        plugin.id = record.id
        plugin.requires = record.requires.map(\.description)
        plugin.exports = record.meta.exports
        plugin.capabilities = record.meta.capabilities
        plugin.platforms = record.meta.platforms.map { p in
            var platform = Containerd_Types_Platform()
            platform.os = p.os
            platform.architecture = p.architecture
            platform.variant = p.variant
            return platform
        }
        switch record.status {
        case .loaded: break
        case .skipped(let reason):
            plugin.initErr.code = Int32(RPCError.Code.unknown.rawValue)
            plugin.initErr.message = "\(reason): skip plugin"
        case .failed(let error):
            plugin.initErr.code = Int32(RPCError(error).code.rawValue)
            plugin.initErr.message = error.description
        }
        return plugin
    }
}

/// containerd's plugin filter fields: `type`, `id`, `capabilities`, `requires`, `exports.KEY`.
struct PluginAdaptor: Filter.Adaptor {
    let plugin: Containerd_Services_Introspection_V1_Plugin

    func field(_ path: [String]) -> String? {
        switch path.first {
        case "type": return plugin.type.isEmpty ? nil : plugin.type
        case "id": return plugin.id.isEmpty ? nil : plugin.id
        case "capabilities": return plugin.capabilities.isEmpty ? nil : plugin.capabilities.joined(separator: ",")
        case "requires": return plugin.requires.isEmpty ? nil : plugin.requires.joined(separator: ",")
        case "exports": return path.count > 1 ? plugin.exports[path.dropFirst().joined(separator: ".")] : nil
        default: return nil
        }
    }
}
