import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import GRPCProtobuf
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "content", requires: [.type(.metadata), .type(.event)],
    summary: "containerd.services.content.v1.Content: blobs by digest, resumable writes, labels."
) { ic in
    SingleService(ContentRPC(service: ContentService(
        store: try ic.single(.metadata, as: (any MetadataProvider).self).content,
        events: EventPublisher(exchange: try ic.single(.event, as: (any EventExchange).self), logger: ic.logger))))
}

/// The Content service as registered: the generated methods, with List replaced by one that streams batches
/// encoded by `ListEncoding` (same bytes on the wire, without a message object per blob).
struct ContentRPC: RegistrableRPCService {
    let service: ContentService

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        service.registerMethods(with: &router)
        let service = self.service
        router.registerHandler(
            forMethod: API.Method.List.descriptor,
            deserializer: ProtobufDeserializer<Containerd_Services_Content_V1_ListContentRequest>(),
            serializer: EncodedListSerializer(),
            handler: { request, context in
                let request = try await ServerRequest(stream: request)
                return StreamingServerResponse { writer in
                    for batch in try await service.encodedList(request.message) { try await writer.write(batch) }
                    return [:]
                }
            })
    }
}

typealias API = Containerd_Services_Content_V1_Content

struct ContentService: API.SimpleServiceProtocol {
    let store: any ContentMetadata
    let events: EventPublisher

    /// Reads stream in 1 MiB chunks. Lists stream in batches of 2,000 infos (about 280 KB, far below gRPC's 4 MiB
    /// message limit): containerd sends 100 per message, but every message costs both ends a round of framing.
    static let readChunk = 1 << 20
    static let listBatch = 2000

    static func message(_ info: ContentInfo) -> Containerd_Services_Content_V1_Info {
        var out = Containerd_Services_Content_V1_Info()
        out.digest = info.digest.description
        out.size = info.size
        out.createdAt = Convert.timestamp(info.createdAt)
        out.updatedAt = Convert.timestamp(info.updatedAt)
        out.labels = info.labels
        return out
    }

    static func message(_ status: IngestStatus) -> Containerd_Services_Content_V1_Status {
        var out = Containerd_Services_Content_V1_Status()
        out.ref = status.ref
        out.offset = status.offset
        out.total = status.total
        out.expected = status.expected?.description ?? ""
        out.startedAt = Convert.timestamp(status.startedAt)
        out.updatedAt = Convert.timestamp(status.updatedAt)
        return out
    }

    func info(request: Containerd_Services_Content_V1_InfoRequest, context: ServerContext) async throws
        -> Containerd_Services_Content_V1_InfoResponse
    {
        var response = Containerd_Services_Content_V1_InfoResponse()
        response.info = Self.message(try await store.info(try Convert.digest(request.digest)))
        return response
    }

    func update(request: Containerd_Services_Content_V1_UpdateRequest, context: ServerContext) async throws
        -> Containerd_Services_Content_V1_UpdateResponse
    {
        let digest = try Convert.digest(request.info.digest)
        let info = ContentInfo(digest: digest, size: 0, createdAt: .now, updatedAt: .now, labels: request.info.labels)
        var response = Containerd_Services_Content_V1_UpdateResponse()
        response.info = Self.message(try await store.update(info, paths: request.updateMask.paths))
        return response
    }

    /// The generated protocol's List. `ContentRPC` registers `encodedList` in its place, so this only serves
    /// callers of the protocol itself; it sends the same batches, decoded.
    func list(
        request: Containerd_Services_Content_V1_ListContentRequest,
        response: RPCWriter<Containerd_Services_Content_V1_ListContentResponse>, context: ServerContext
    ) async throws {
        for batch in try await encodedList(request) {
            try await response.write(try Containerd_Services_Content_V1_ListContentResponse(serializedBytes: batch.bytes))
        }
    }

    /// What `ContentRPC` sends for List: batches of `listBatch` infos, encoded by `ListEncoding`.
    func encodedList(_ request: Containerd_Services_Content_V1_ListContentRequest) async throws
        -> [EncodedListResponse]
    {
        let infos = try await store.list(try Filter.parse(request.filters))
        return stride(from: 0, to: infos.count, by: Self.listBatch).map { start in
            ListEncoding.response(infos[start..<min(start + Self.listBatch, infos.count)])
        }
    }

    func delete(request: Containerd_Services_Content_V1_DeleteContentRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        let digest = try Convert.digest(request.digest)
        try await store.delete(digest)
        var event = Containerd_Events_ContentDelete()
        event.digest = digest.description
        await events.publish("/content/delete", event, fields: ["digest": digest.description])
        return Google_Protobuf_Empty()
    }

    func read(
        request: Containerd_Services_Content_V1_ReadContentRequest,
        response: RPCWriter<Containerd_Services_Content_V1_ReadContentResponse>, context: ServerContext
    ) async throws {
        let reader = try await store.reader(try Convert.digest(request.digest))
        defer { Task { await reader.close() } }
        guard request.offset >= 0, request.offset <= reader.size else {
            throw BerthError.invalidArgument("read past object length \(reader.size) bytes")
        }
        let end = request.size <= 0 || request.offset + request.size > reader.size ? reader.size : request.offset + request.size
        var offset = request.offset
        while offset < end {
            let data = try await reader.read(at: offset, count: Int(min(Int64(Self.readChunk), end - offset)))
            if data.isEmpty { break }
            var chunk = Containerd_Services_Content_V1_ReadContentResponse()
            chunk.offset = offset
            chunk.data = Data(data)
            try await response.write(chunk)
            offset += Int64(data.count)
        }
    }

    func status(request: Containerd_Services_Content_V1_StatusRequest, context: ServerContext) async throws
        -> Containerd_Services_Content_V1_StatusResponse
    {
        var response = Containerd_Services_Content_V1_StatusResponse()
        response.status = Self.message(try await store.status(request.ref))
        return response
    }

    func listStatuses(request: Containerd_Services_Content_V1_ListStatusesRequest, context: ServerContext)
        async throws -> Containerd_Services_Content_V1_ListStatusesResponse
    {
        var response = Containerd_Services_Content_V1_ListStatusesResponse()
        response.statuses = try await store.statuses(try Filter.parse(request.filters)).map(Self.message)
        return response
    }

    func abort(request: Containerd_Services_Content_V1_AbortRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await store.abort(request.ref)
        return Google_Protobuf_Empty()
    }

    func write(
        request: RPCAsyncSequence<Containerd_Services_Content_V1_WriteContentRequest, any Error>,
        response: RPCWriter<Containerd_Services_Content_V1_WriteContentResponse>, context: ServerContext
    ) async throws {
        try await WriteSession(store: store).run(request, response)
    }
}
