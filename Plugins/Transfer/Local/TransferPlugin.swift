import BerthAPI
import BerthCore
import BerthGRPC
import BerthImage

/// `[plugins."io.containerd.transfer.v1.local"]`, containerd's keys.
public struct TransferConfig: PluginConfig, Equatable {
    public var maxConcurrentDownloads = 3
    public var maxConcurrentUploadedLayers = 3
    /// Snapshotter that pulls unpack into when the client names none.
    public var defaultSnapshotter = "overlayfs"
    /// hosts.toml directory for pulls and pushes whose client gives none (empty: none, the registry's defaults).
    public var configPath = ""
    public init() {}

    enum CodingKeys: String, CodingKey {
        case maxConcurrentDownloads = "max_concurrent_downloads"
        case maxConcurrentUploadedLayers = "max_concurrent_uploaded_layers"
        case defaultSnapshotter = "snapshotter"
        case configPath = "config_path"
    }
}

/// `io.containerd.transfer.v1.local`: containerd's local transferrer (pull, push, import, export) over the
/// metadata store and the diff service.
public let registration = Registration(
    type: .transfer, id: "local", requires: [.type(.metadata), .type(.service), .type(.event)],
    summary: "Transfers images between registries, the image store and archive streams.",
    config: TransferConfig.self
) { ic, config in
    let events = EventPublisher(exchange: try ic.single(.event, as: (any EventExchange).self), logger: ic.logger)
    let stores = ImageStores(
        metadata: try ic.single(.metadata, as: (any MetadataProvider).self),
        applier: try ic.instance(.service, id: "diff-service", as: (any Differ).self),
        defaultSnapshotter: config.defaultSnapshotter,
        imageChanged: { image, created in
            let topic = created ? "/images/create" : "/images/update"
            if created {
                var event = Containerd_Services_Images_V1_ImageCreate()
                event.name = image.name
                event.labels = image.labels
                await events.publish(topic, event, fields: EventPublisher.fields(name: image.name, labels: image.labels))
            } else {
                var event = Containerd_Services_Images_V1_ImageUpdate()
                event.name = image.name
                event.labels = image.labels
                await events.publish(topic, event, fields: EventPublisher.fields(name: image.name, labels: image.labels))
            }
        })
    return LocalTransferrer(
        stores: stores, maxConcurrentDownloads: config.maxConcurrentDownloads,
        maxConcurrentUploads: config.maxConcurrentUploadedLayers,
        configPath: config.configPath.isEmpty ? nil : config.configPath) as any Transferrer
}
