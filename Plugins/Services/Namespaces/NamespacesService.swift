import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "namespaces", requires: [.type(.metadata), .type(.event)],
    summary: "containerd.services.namespaces.v1.Namespaces: create, get, list, label and delete namespaces."
) { ic in
    SingleService(NamespacesService(
        store: try ic.single(.metadata, as: (any MetadataProvider).self).namespaces,
        events: EventPublisher(exchange: try ic.single(.event, as: (any EventExchange).self), logger: ic.logger)))
}

typealias API = Containerd_Services_Namespaces_V1_Namespaces

struct NamespacesService: API.SimpleServiceProtocol {
    let store: any NamespaceStore
    let events: EventPublisher

    func get(request: Containerd_Services_Namespaces_V1_GetNamespaceRequest, context: ServerContext) async throws
        -> Containerd_Services_Namespaces_V1_GetNamespaceResponse
    {
        var response = Containerd_Services_Namespaces_V1_GetNamespaceResponse()
        response.namespace = Self.namespace(request.name, try await store.labels(request.name))
        return response
    }

    func list(request: Containerd_Services_Namespaces_V1_ListNamespacesRequest, context: ServerContext) async throws
        -> Containerd_Services_Namespaces_V1_ListNamespacesResponse
    {
        let filter = try Filter.parse(request.filter)
        var response = Containerd_Services_Namespaces_V1_ListNamespacesResponse()
        for name in try await store.list() {
            let labels = try await store.labels(name)
            if filter.matches(FieldMapAdaptor(fields: ["name": name], maps: ["labels": labels])) {
                response.namespaces.append(Self.namespace(name, labels))
            }
        }
        return response
    }

    func create(request: Containerd_Services_Namespaces_V1_CreateNamespaceRequest, context: ServerContext)
        async throws -> Containerd_Services_Namespaces_V1_CreateNamespaceResponse
    {
        let ns = request.namespace
        try await store.create(ns.name, labels: ns.labels)
        var event = Containerd_Events_NamespaceCreate()
        event.name = ns.name
        event.labels = ns.labels
        await events.publish("/namespaces/create", event, fields: EventPublisher.fields(name: ns.name, labels: ns.labels), namespace: ns.name)
        var response = Containerd_Services_Namespaces_V1_CreateNamespaceResponse()
        response.namespace = Self.namespace(ns.name, ns.labels)
        return response
    }

    func update(request: Containerd_Services_Namespaces_V1_UpdateNamespaceRequest, context: ServerContext)
        async throws -> Containerd_Services_Namespaces_V1_UpdateNamespaceResponse
    {
        let ns = request.namespace
        let labels = try await store.update(ns.name, labels: ns.labels, paths: request.updateMask.paths)
        var event = Containerd_Events_NamespaceUpdate()
        event.name = ns.name
        event.labels = labels
        await events.publish("/namespaces/update", event, fields: EventPublisher.fields(name: ns.name, labels: labels), namespace: ns.name)
        var response = Containerd_Services_Namespaces_V1_UpdateNamespaceResponse()
        response.namespace = Self.namespace(ns.name, labels)
        return response
    }

    func delete(request: Containerd_Services_Namespaces_V1_DeleteNamespaceRequest, context: ServerContext)
        async throws -> Google_Protobuf_Empty
    {
        try await store.delete(request.name)
        var event = Containerd_Events_NamespaceDelete()
        event.name = request.name
        await events.publish("/namespaces/delete", event, fields: ["name": request.name], namespace: request.name)
        return Google_Protobuf_Empty()
    }

    static func namespace(_ name: String, _ labels: [String: String]) -> Containerd_Services_Namespaces_V1_Namespace {
        var namespace = Containerd_Services_Namespaces_V1_Namespace()
        namespace.name = name
        namespace.labels = labels
        return namespace
    }
}
