import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "leases", requires: [.type(.metadata), .type(.gc)],
    summary: "containerd.services.leases.v1.Leases: leases that protect content from garbage collection."
) { ic in
    SingleService(LeasesService(
        store: try ic.single(.metadata, as: (any MetadataProvider).self).leases,
        gc: try ic.single(.gc, as: (any GCScheduler).self)))
}

struct LeasesService: Containerd_Services_Leases_V1_Leases.SimpleServiceProtocol {
    let store: any LeaseManager
    let gc: any GCScheduler

    static func message(_ lease: Lease) -> Containerd_Services_Leases_V1_Lease {
        var out = Containerd_Services_Leases_V1_Lease()
        out.id = lease.id
        out.labels = lease.labels
        out.createdAt = Convert.timestamp(lease.createdAt)
        return out
    }

    static func resource(_ r: Containerd_Services_Leases_V1_Resource) -> LeaseResource {
        LeaseResource(id: r.id, type: r.type)
    }

    func create(request: Containerd_Services_Leases_V1_CreateRequest, context: ServerContext) async throws
        -> Containerd_Services_Leases_V1_CreateResponse
    {
        var response = Containerd_Services_Leases_V1_CreateResponse()
        response.lease = Self.message(try await store.create(id: request.id, labels: request.labels))
        return response
    }

    func delete(request: Containerd_Services_Leases_V1_DeleteRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await store.delete(request.id)
        if request.sync { _ = try await gc.scheduleAndWait() }
        return Google_Protobuf_Empty()
    }

    func list(request: Containerd_Services_Leases_V1_ListRequest, context: ServerContext) async throws
        -> Containerd_Services_Leases_V1_ListResponse
    {
        var response = Containerd_Services_Leases_V1_ListResponse()
        response.leases = try await store.list(try Filter.parse(request.filters)).map(Self.message)
        return response
    }

    func addResource(request: Containerd_Services_Leases_V1_AddResourceRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await store.addResource(request.id, Self.resource(request.resource))
        return Google_Protobuf_Empty()
    }

    func deleteResource(request: Containerd_Services_Leases_V1_DeleteResourceRequest, context: ServerContext)
        async throws -> Google_Protobuf_Empty
    {
        try await store.deleteResource(request.id, Self.resource(request.resource))
        return Google_Protobuf_Empty()
    }

    func listResources(request: Containerd_Services_Leases_V1_ListResourcesRequest, context: ServerContext)
        async throws -> Containerd_Services_Leases_V1_ListResourcesResponse
    {
        var response = Containerd_Services_Leases_V1_ListResourcesResponse()
        response.resources = try await store.listResources(request.id).map { r in
            var out = Containerd_Services_Leases_V1_Resource()
            out.id = r.id
            out.type = r.type
            return out
        }
        return response
    }
}
