import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "containers", requires: [.type(.metadata), .type(.event)],
    summary: "containerd.services.containers.v1.Containers: container records (spec, runtime, snapshot, labels)."
) { ic in
    SingleService(ContainersService(
        store: try ic.single(.metadata, as: (any ContainersProvider).self).containers,
        events: EventPublisher(exchange: try ic.single(.event, as: (any EventExchange).self), logger: ic.logger)))
}

typealias ContainerMessage = Containerd_Services_Containers_V1_Container

/// The Containers service over the metadata plugin's container store; create, update and delete publish
/// `/containers/create|update|delete` after they commit, as containerd does.
struct ContainersService: Containerd_Services_Containers_V1_Containers.SimpleServiceProtocol {
    let store: any ContainerStore
    let events: EventPublisher

    static func typed(_ any: Google_Protobuf_Any) -> TypedValue { TypedValue(typeURL: any.typeURL, value: [UInt8](any.value)) }

    static func any(_ typed: TypedValue) -> Google_Protobuf_Any {
        var out = Google_Protobuf_Any()
        out.typeURL = typed.typeURL
        out.value = Data(typed.value)
        return out
    }

    static func record(_ c: ContainerMessage) -> ContainerRecord {
        ContainerRecord(
            id: c.id, labels: c.labels, image: c.image, runtimeName: c.runtime.name,
            runtimeOptions: c.runtime.hasOptions ? typed(c.runtime.options) : nil, spec: c.hasSpec ? typed(c.spec) : nil,
            snapshotter: c.snapshotter, snapshotKey: c.snapshotKey, extensions: c.extensions.mapValues(typed))
    }

    static func message(_ c: ContainerRecord) -> ContainerMessage {
        var out = ContainerMessage()
        out.id = c.id
        out.labels = c.labels
        out.image = c.image
        out.runtime.name = c.runtimeName
        if let options = c.runtimeOptions { out.runtime.options = any(options) }
        if let spec = c.spec { out.spec = any(spec) }
        out.snapshotter = c.snapshotter
        out.snapshotKey = c.snapshotKey
        out.extensions = c.extensions.mapValues(any)
        out.createdAt = Convert.timestamp(c.createdAt)
        out.updatedAt = Convert.timestamp(c.updatedAt)
        return out
    }

    func get(request: Containerd_Services_Containers_V1_GetContainerRequest, context: ServerContext) async throws
        -> Containerd_Services_Containers_V1_GetContainerResponse
    {
        var response = Containerd_Services_Containers_V1_GetContainerResponse()
        response.container = Self.message(try await store.get(request.id))
        return response
    }

    func list(request: Containerd_Services_Containers_V1_ListContainersRequest, context: ServerContext) async throws
        -> Containerd_Services_Containers_V1_ListContainersResponse
    {
        var response = Containerd_Services_Containers_V1_ListContainersResponse()
        response.containers = try await store.list(try Filter.parse(request.filters)).map(Self.message)
        return response
    }

    func listStream(
        request: Containerd_Services_Containers_V1_ListContainersRequest,
        response: RPCWriter<Containerd_Services_Containers_V1_ListContainerMessage>, context: ServerContext
    ) async throws {
        for container in try await store.list(try Filter.parse(request.filters)) {
            var message = Containerd_Services_Containers_V1_ListContainerMessage()
            message.container = Self.message(container)
            try await response.write(message)
        }
    }

    func create(request: Containerd_Services_Containers_V1_CreateContainerRequest, context: ServerContext)
        async throws -> Containerd_Services_Containers_V1_CreateContainerResponse
    {
        let created = try await store.create(Self.record(request.container))
        var event = Containerd_Events_ContainerCreate()
        event.id = created.id
        event.image = created.image
        event.runtime.name = created.runtimeName
        if let options = created.runtimeOptions { event.runtime.options = Self.any(options) }
        await events.publish(
            "/containers/create", event,
            fields: ["id": created.id, "image": created.image, "runtime.name": created.runtimeName])
        var response = Containerd_Services_Containers_V1_CreateContainerResponse()
        response.container = Self.message(created)
        return response
    }

    func update(request: Containerd_Services_Containers_V1_UpdateContainerRequest, context: ServerContext)
        async throws -> Containerd_Services_Containers_V1_UpdateContainerResponse
    {
        if request.container.id.isEmpty { throw BerthError.invalidArgument("Container.ID required") }
        let updated = try await store.update(Self.record(request.container), paths: request.updateMask.paths)
        var event = Containerd_Events_ContainerUpdate()
        event.id = updated.id
        event.image = updated.image
        event.labels = updated.labels
        event.snapshotKey = updated.snapshotKey
        var fields = EventPublisher.fields(name: updated.id, labels: updated.labels)
        fields["id"] = updated.id
        fields.removeValue(forKey: "name")
        await events.publish("/containers/update", event, fields: fields)
        var response = Containerd_Services_Containers_V1_UpdateContainerResponse()
        response.container = Self.message(updated)
        return response
    }

    func delete(request: Containerd_Services_Containers_V1_DeleteContainerRequest, context: ServerContext)
        async throws -> Google_Protobuf_Empty
    {
        try await store.delete(request.id)
        var event = Containerd_Events_ContainerDelete()
        event.id = request.id
        await events.publish("/containers/delete", event, fields: ["id": request.id])
        return Google_Protobuf_Empty()
    }
}
