import BerthCore
import BerthOCI
import Foundation

extension LocalTransferrer {
    /// Unpacks imported images into the snapshotters `store.unpacks` names (the daemon's default for an empty
    /// name), as containerd's unpacker: per layer, a snapshot named by chain ID is prepared on its parent, the layer
    /// applied through the differ, and committed; layers already unpacked are skipped; the config is labelled
    /// `containerd.io/gc.ref.snapshot.<snapshotter>` with the top chain ID so GC keeps the snapshots.
    func unpackImported(_ images: [ImageRecord], store: ImageStoreSpec, progress: ProgressSink) async throws(BerthError) {
        guard !store.unpacks.isEmpty else { return }
        let access = contentAccess
        var done: Set<String> = []
        for image in images {
            for spec in store.unpacks {
                let snapshotter = spec.snapshotter.isEmpty ? stores.defaultSnapshotter : spec.snapshotter
                guard done.insert("\(image.target.digest) \(snapshotter) \(spec.platform?.description ?? "")").inserted
                else { continue }
                let matcher: PlatformMatcher = spec.platform.map { .only($0) } ?? .default
                guard let manifest = try await Self.manifest(OCIDescriptor(image.target), matcher: matcher, access: access)
                else { continue }
                progress(TransferProgress(event: "unpacking", name: image.name, descriptor: manifest.descriptor))
                try await unpack(manifest.manifest, snapshotter: snapshotter, access: access)
                progress(TransferProgress(event: "unpacked", name: image.name, descriptor: manifest.descriptor))
            }
        }
    }

    /// The manifest an image target resolves to for `matcher` (the best match of an index); nil when none matches.
    static func manifest(_ target: OCIDescriptor, matcher: PlatformMatcher, access: ContentAccess)
        async throws(BerthError) -> (descriptor: OCIDescriptor, manifest: Manifest)?
    {
        var descriptor = target
        for _ in 0..<8 {
            let bytes = try await access.read(descriptor.digest)
            if MediaType.isManifest(descriptor.mediaType) {
                return (descriptor, try decode(Manifest.self, bytes, descriptor.digest))
            }
            guard MediaType.isIndex(descriptor.mediaType) else { return nil }
            guard let best = matcher.select(try decode(Index.self, bytes, descriptor.digest).manifests).first else {
                return nil
            }
            descriptor = best
        }
        throw .invalidArgument("image \(target.digest): indexes nested too deeply")
    }

    /// Unpacks one manifest's layers into `snapshotter`.
    func unpack(_ manifest: Manifest, snapshotter name: String, access: ContentAccess) async throws(BerthError) {
        let snapshotter = try stores.metadata.snapshots.snapshotter(name)
        let config = try Self.decode(ImageConfig.self, try await access.read(manifest.config.digest), manifest.config.digest)
        let diffIDs = config.rootfs.diffIDs
        guard diffIDs.count == manifest.layers.count else {
            throw .invalidArgument("manifest has \(manifest.layers.count) layers but its config \(diffIDs.count) diff IDs")
        }
        let chains = try Identity.chainIDs(diffIDs)
        for (position, layer) in manifest.layers.enumerated() {
            let chain = chains[position].description
            if (try? await snapshotter.stat(chain)) != nil { continue }
            let parent = position == 0 ? "" : chains[position - 1].description
            let key = "extract-\(UInt64.random(in: 0...UInt64.max)) \(chain)"
            let mounts = try await snapshotter.prepare(key, parent: parent, labels: [SnapshotLabels.snapshotRef: chain])
            do throws(BerthError) {
                let applied = try await stores.applier.apply(layer.core, mounts: mounts, payloads: [:])
                guard applied.digest == diffIDs[position] else {
                    throw BerthError.failedPrecondition(
                        "layer \(layer.digest) unpacked to \(applied.digest), its config says \(diffIDs[position])")
                }
                do {
                    try await snapshotter.commit(chain, key: key, labels: [:])
                } catch let error where error.code == .alreadyExists {
                    try? await snapshotter.remove(key)
                }
            } catch {
                try? await snapshotter.remove(key)
                throw error
            }
        }
        guard let top = chains.last else { return }
        var info = try await access.content.info(manifest.config.digest)
        let label = GCLabels.snapshotRefPrefix + name
        info.labels[label] = top.description
        _ = try await access.content.update(info, paths: ["labels.\(label)"])
    }
}
