import BerthCore
import BerthOCI
import BerthRegistry

/// What image transfers work on: the namespaced metadata (content, images, leases, snapshotters), the differ that
/// applies layers, the default snapshotter, and an optional hook to publish `/images/*` events.
public struct ImageStores: Sendable {
    public var metadata: any MetadataProvider
    public var applier: any DiffApplier
    public var defaultSnapshotter: String
    /// Called after an image record is created or updated (the transfer plugin publishes `/images/create|update`).
    public var imageChanged: (@Sendable (_ image: ImageRecord, _ created: Bool) async -> Void)?

    public init(
        metadata: any MetadataProvider, applier: any DiffApplier, defaultSnapshotter: String = "overlayfs",
        imageChanged: (@Sendable (ImageRecord, Bool) async -> Void)? = nil
    ) {
        self.metadata = metadata
        self.applier = applier
        self.defaultSnapshotter = defaultSnapshotter
        self.imageChanged = imageChanged
    }
}

/// containerd's local transferrer: pull (registry → image store), push (image store → registry), import (archive
/// stream → image store), export (image store → archive stream). The namespace is the request's
/// (`RequestContext.namespace`).
public final class LocalTransferrer: Transferrer {
    public let stores: ImageStores
    /// Shared across transfers so two pulls of the same image download each blob once.
    let pulls: PullCoordinator
    public let maxConcurrentDownloads: Int
    public let maxConcurrentUploads: Int
    /// The hosts.toml directory (containerd's `config_path` layout) for pulls and pushes whose client names none.
    public let configPath: String?

    public init(
        stores: ImageStores, maxConcurrentDownloads: Int = 3, maxConcurrentUploads: Int = 3, configPath: String? = nil
    ) {
        self.stores = stores
        self.configPath = configPath
        self.pulls = PullCoordinator()
        self.maxConcurrentDownloads = maxConcurrentDownloads
        self.maxConcurrentUploads = maxConcurrentUploads
    }

    public func transfer(_ source: TransferSource, _ destination: TransferDestination, progress: ProgressSink?)
        async throws(BerthError)
    {
        let sink: ProgressSink = progress ?? { _ in }
        switch (source, destination) {
        case (.registry(let registry), .imageStore(let store)):
            _ = try await pull(registry, into: store, progress: sink)
        case (.imageStore(let store), .registry(let registry)):
            try await push(store, to: registry, progress: sink)
        case (.importStream(let stream, let mediaType), .imageStore(let store)):
            _ = try await importArchive(stream, mediaType: mediaType, into: store, progress: sink)
        case (.imageStore(let store), .exportStream(let stream, let spec)):
            try await exportArchive(store, to: stream, spec, progress: sink)
        default:
            throw .notImplemented("transfer between these source and destination types is not supported")
        }
    }
}

extension LocalTransferrer {
    /// Creates the image record, or updates `updatePaths` of an existing one (empty: target and labels), and
    /// reports the change. Races with another transfer of the same name end in an update, never AlreadyExists.
    func createOrUpdate(_ record: ImageRecord, updatePaths: [String] = []) async throws(BerthError) -> ImageRecord {
        let images = stores.metadata.images
        var attempts = 0
        while true {
            attempts += 1
            do {
                let created = try await images.create(record)
                await stores.imageChanged?(created, true)
                return created
            } catch where error.code == .alreadyExists {
                do {
                    let updated = try await images.update(record, paths: updatePaths)
                    await stores.imageChanged?(updated, false)
                    return updated
                } catch where error.code == .notFound && attempts < 3 {
                    continue  // deleted meanwhile: create again
                }
            }
        }
    }
}
