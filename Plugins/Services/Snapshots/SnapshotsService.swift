import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import SwiftProtobuf

/// `[plugins."io.containerd.grpc.v1.snapshots"]`. `default` names the snapshotter the daemon's own clients
/// (`berth snapshots` without `--snapshotter`) use; the API itself always names one per request, as containerd's.
/// It is exported as `default` (`ctr plugins ls -d`, introspection).
public struct SnapshotsConfig: PluginConfig, Equatable {
    public var `default`: String = "overlayfs"

    public init() {}
}

public let registration = Registration(
    type: .grpc, id: "snapshots", requires: [.type(.metadata), .type(.event)],
    summary: "containerd.services.snapshots.v1.Snapshots: the namespaced snapshotters, named per request.",
    config: SnapshotsConfig.self
) { ic, config in
    guard !config.default.isEmpty else { throw BerthError.invalidArgument("default snapshotter must not be empty") }
    ic.export("default", config.default)
    return SingleService(SnapshotsService(
        provider: try ic.single(.metadata, as: (any MetadataProvider).self).snapshots,
        events: EventPublisher(exchange: try ic.single(.event, as: (any EventExchange).self), logger: ic.logger)))
}

typealias API = Containerd_Services_Snapshots_V1_Snapshots

/// The Snapshots service over the metadata plugin's namespaced snapshotters. Prepare, commit and remove publish
/// `/snapshot/prepare`, `/snapshot/commit` and `/snapshot/remove` after they succeed, as containerd does.
struct SnapshotsService: API.SimpleServiceProtocol {
    let provider: any SnapshotterProvider
    let events: EventPublisher

    /// containerd streams List in messages of 100 infos.
    static let listBatch = 100

    func snapshotter(_ name: String) throws(BerthError) -> any Snapshotter {
        guard !name.isEmpty else { throw .invalidArgument("snapshotter argument missing") }
        return try provider.snapshotter(name)
    }

    static func mounts(_ mounts: [Mount]) -> [Containerd_Types_Mount] {
        mounts.map { m in
            var out = Containerd_Types_Mount()
            out.type = m.type
            out.source = m.source
            out.target = m.target
            out.options = m.options
            return out
        }
    }

    static func kind(_ kind: SnapshotKind) -> Containerd_Services_Snapshots_V1_Kind {
        switch kind {
        case .view: .view
        case .active: .active
        case .committed: .committed
        }
    }

    static func message(_ info: SnapshotInfo) -> Containerd_Services_Snapshots_V1_Info {
        var out = Containerd_Services_Snapshots_V1_Info()
        out.name = info.name
        out.parent = info.parent
        out.kind = kind(info.kind)
        out.createdAt = Convert.timestamp(info.createdAt)
        out.updatedAt = Convert.timestamp(info.updatedAt)
        out.labels = info.labels
        return out
    }

    func prepare(request: Containerd_Services_Snapshots_V1_PrepareSnapshotRequest, context: ServerContext)
        async throws -> Containerd_Services_Snapshots_V1_PrepareSnapshotResponse
    {
        let mounts = try await snapshotter(request.snapshotter).prepare(
            request.key, parent: request.parent, labels: request.labels)
        var event = Containerd_Events_SnapshotPrepare()
        event.key = request.key
        event.parent = request.parent
        await events.publish("/snapshot/prepare", event, fields: ["key": request.key, "parent": request.parent])
        var response = Containerd_Services_Snapshots_V1_PrepareSnapshotResponse()
        response.mounts = Self.mounts(mounts)
        return response
    }

    func view(request: Containerd_Services_Snapshots_V1_ViewSnapshotRequest, context: ServerContext) async throws
        -> Containerd_Services_Snapshots_V1_ViewSnapshotResponse
    {
        let mounts = try await snapshotter(request.snapshotter).view(
            request.key, parent: request.parent, labels: request.labels)
        var response = Containerd_Services_Snapshots_V1_ViewSnapshotResponse()
        response.mounts = Self.mounts(mounts)
        return response
    }

    func mounts(request: Containerd_Services_Snapshots_V1_MountsRequest, context: ServerContext) async throws
        -> Containerd_Services_Snapshots_V1_MountsResponse
    {
        var response = Containerd_Services_Snapshots_V1_MountsResponse()
        response.mounts = Self.mounts(try await snapshotter(request.snapshotter).mounts(request.key))
        return response
    }

    func commit(request: Containerd_Services_Snapshots_V1_CommitSnapshotRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await snapshotter(request.snapshotter).commit(request.name, key: request.key, labels: request.labels)
        var event = Containerd_Events_SnapshotCommit()
        event.key = request.key
        event.name = request.name
        await events.publish("/snapshot/commit", event, fields: ["key": request.key, "name": request.name])
        return Google_Protobuf_Empty()
    }

    func remove(request: Containerd_Services_Snapshots_V1_RemoveSnapshotRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await snapshotter(request.snapshotter).remove(request.key)
        var event = Containerd_Events_SnapshotRemove()
        event.key = request.key
        await events.publish("/snapshot/remove", event, fields: ["key": request.key])
        return Google_Protobuf_Empty()
    }

    func stat(request: Containerd_Services_Snapshots_V1_StatSnapshotRequest, context: ServerContext) async throws
        -> Containerd_Services_Snapshots_V1_StatSnapshotResponse
    {
        var response = Containerd_Services_Snapshots_V1_StatSnapshotResponse()
        response.info = Self.message(try await snapshotter(request.snapshotter).stat(request.key))
        return response
    }

    func update(request: Containerd_Services_Snapshots_V1_UpdateSnapshotRequest, context: ServerContext) async throws
        -> Containerd_Services_Snapshots_V1_UpdateSnapshotResponse
    {
        let sn = try snapshotter(request.snapshotter)
        let info = SnapshotInfo(kind: .active, name: request.info.name, parent: request.info.parent, labels: request.info.labels)
        var response = Containerd_Services_Snapshots_V1_UpdateSnapshotResponse()
        response.info = Self.message(try await sn.update(info, paths: request.updateMask.paths))
        return response
    }

    func list(
        request: Containerd_Services_Snapshots_V1_ListSnapshotsRequest,
        response: RPCWriter<Containerd_Services_Snapshots_V1_ListSnapshotsResponse>, context: ServerContext
    ) async throws {
        let infos = try await snapshotter(request.snapshotter).walk(try Filter.parse(request.filters))
        for start in stride(from: 0, to: infos.count, by: Self.listBatch) {
            var batch = Containerd_Services_Snapshots_V1_ListSnapshotsResponse()
            batch.info = infos[start..<min(start + Self.listBatch, infos.count)].map(Self.message)
            try await response.write(batch)
        }
    }

    func usage(request: Containerd_Services_Snapshots_V1_UsageRequest, context: ServerContext) async throws
        -> Containerd_Services_Snapshots_V1_UsageResponse
    {
        let usage = try await snapshotter(request.snapshotter).usage(request.key)
        var response = Containerd_Services_Snapshots_V1_UsageResponse()
        response.size = usage.size
        response.inodes = usage.inodes
        return response
    }

    func cleanup(request: Containerd_Services_Snapshots_V1_CleanupRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await snapshotter(request.snapshotter).cleanup()
        return Google_Protobuf_Empty()
    }
}
