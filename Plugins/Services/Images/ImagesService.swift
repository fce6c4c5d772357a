import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "images", requires: [.type(.metadata), .type(.event), .type(.gc)],
    summary: "containerd.services.images.v1.Images: image records (name → target descriptor), with labels."
) { ic in
    SingleService(ImagesService(
        store: try ic.single(.metadata, as: (any MetadataProvider).self).images,
        gc: try ic.single(.gc, as: (any GCScheduler).self),
        events: EventPublisher(exchange: try ic.single(.event, as: (any EventExchange).self), logger: ic.logger)))
}

struct ImagesService: Containerd_Services_Images_V1_Images.SimpleServiceProtocol {
    let store: any ImageStore
    let gc: any GCScheduler
    let events: EventPublisher

    static func message(_ image: ImageRecord) -> Containerd_Services_Images_V1_Image {
        var out = Containerd_Services_Images_V1_Image()
        out.name = image.name
        out.labels = image.labels
        out.target = Convert.descriptor(image.target)
        out.createdAt = Convert.timestamp(image.createdAt)
        out.updatedAt = Convert.timestamp(image.updatedAt)
        return out
    }

    static func record(_ image: Containerd_Services_Images_V1_Image) throws(BerthError) -> ImageRecord {
        if image.name.isEmpty { throw .invalidArgument("image name must not be empty") }
        return ImageRecord(name: image.name, target: try Convert.descriptor(image.target), labels: image.labels)
    }

    func get(request: Containerd_Services_Images_V1_GetImageRequest, context: ServerContext) async throws
        -> Containerd_Services_Images_V1_GetImageResponse
    {
        var response = Containerd_Services_Images_V1_GetImageResponse()
        response.image = Self.message(try await store.get(request.name))
        return response
    }

    func list(request: Containerd_Services_Images_V1_ListImagesRequest, context: ServerContext) async throws
        -> Containerd_Services_Images_V1_ListImagesResponse
    {
        var response = Containerd_Services_Images_V1_ListImagesResponse()
        response.images = try await store.list(try Filter.parse(request.filters)).map(Self.message)
        return response
    }

    func create(request: Containerd_Services_Images_V1_CreateImageRequest, context: ServerContext) async throws
        -> Containerd_Services_Images_V1_CreateImageResponse
    {
        let created = try await store.create(try Self.record(request.image))
        var event = Containerd_Services_Images_V1_ImageCreate()
        event.name = created.name
        event.labels = created.labels
        await events.publish("/images/create", event, fields: EventPublisher.fields(name: created.name, labels: created.labels))
        var response = Containerd_Services_Images_V1_CreateImageResponse()
        response.image = Self.message(created)
        return response
    }

    func update(request: Containerd_Services_Images_V1_UpdateImageRequest, context: ServerContext) async throws
        -> Containerd_Services_Images_V1_UpdateImageResponse
    {
        var record: ImageRecord
        if request.image.target.digest.isEmpty {
            // `ctr images label` sends only the name and labels; the target stays as stored.
            record = try await store.get(request.image.name)
            record.labels = request.image.labels
        } else {
            record = try Self.record(request.image)
        }
        let updated = try await store.update(record, paths: request.updateMask.paths)
        var event = Containerd_Services_Images_V1_ImageUpdate()
        event.name = updated.name
        event.labels = updated.labels
        await events.publish("/images/update", event, fields: EventPublisher.fields(name: updated.name, labels: updated.labels))
        var response = Containerd_Services_Images_V1_UpdateImageResponse()
        response.image = Self.message(updated)
        return response
    }

    func delete(request: Containerd_Services_Images_V1_DeleteImageRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await store.delete(request.name)
        var event = Containerd_Services_Images_V1_ImageDelete()
        event.name = request.name
        await events.publish("/images/delete", event, fields: ["name": request.name])
        if request.sync { _ = try await gc.scheduleAndWait() }
        return Google_Protobuf_Empty()
    }
}
