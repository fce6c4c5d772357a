import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import Logging
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "namespaces", requires: [.type(.metadata), .type(.event)],
    summary: "containerd.services.namespaces.v1.Namespaces: create, get, list, label and delete namespaces."
) { ic in
    SingleService(NamespacesService(
        store: try ic.single(.metadata, as: (any NamespaceStore).self),
        events: try ic.single(.event, as: (any EventExchange).self),
        logger: ic.logger))
}

typealias API = Containerd_Services_Namespaces_V1_Namespaces

struct NamespacesService: API.SimpleServiceProtocol {
    let store: any NamespaceStore
    let events: any EventExchange
    let logger: Logger

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
        await publish("/namespaces/create", about: ns.name, event, labels: ns.labels)
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
        await publish("/namespaces/update", about: ns.name, event, labels: labels)
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
        await publish("/namespaces/delete", about: request.name, event, labels: [:])
        return Google_Protobuf_Empty()
    }

    static func namespace(_ name: String, _ labels: [String: String]) -> Containerd_Services_Namespaces_V1_Namespace {
        var namespace = Containerd_Services_Namespaces_V1_Namespace()
        namespace.name = name
        namespace.labels = labels
        return namespace
    }

    /// Publishes in the request's namespace (the namespace acted on when the request names none). The change is
    /// already committed, so a publish failure is logged rather than failing the request.
    func publish<M: SwiftProtobuf.Message>(_ topic: String, about name: String, _ message: M, labels: [String: String])
        async
    {
        var fields = ["name": name]
        for (key, value) in labels { fields["labels.\(key)"] = value }
        do {
            let event = try EventCoding.event(
                topic: topic, namespace: RequestContext.namespace ?? name, message, fields: fields)
            try await events.publish(event)
        } catch {
            logger.warning("publishing event failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }
}
