import BerthCore
import BerthOCI
import Foundation

/// One image manifest to unpack into one snapshotter.
struct UnpackJob: Sendable {
    let manifest: OCIDescriptor
    let config: OCIDescriptor
    let layers: [OCIDescriptor]
    let snapshotter: String
    /// The unpack entry's platform (the config's must match).
    let platform: PlatformMatcher
}

/// containerd's unpacker for one transfer: what it writes is held by `lease`, chain IDs are locked per namespace
/// and snapshotter through `coordinator` (shared by all transfers of a transferrer), progress goes to `progress`.
/// Pull runs it while layers download; import runs it with every blob present (`BlobReadiness(allReady: true)`).
struct Unpacker: Sendable {
    let namespace: String
    let lease: String
    let content: any ContentMetadata
    let leases: any LeaseManager
    let coordinator: PullCoordinator
    let progress: PullProgress

    /// Unpacks a manifest's layers as containerd's unpacker does, each as soon as it is downloaded and the layers
    /// below it are committed: prepare `extract-<nanos>-<rand> <chainID>` on the parent chain ID (labelled
    /// `containerd.io/snapshot.ref`), apply, check the diff ID, commit as the chain ID, label the blob
    /// `containerd.io/uncompressed`; an existing chain ID is skipped. Finally the config gets
    /// `containerd.io/gc.ref.snapshot.<snapshotter>` = the top chain ID. Returns that chain ID, or nil when the
    /// config's platform is not the unpack entry's.
    func unpack(_ job: UnpackJob, snapshots: any Snapshotter, applier: any DiffApplier, ready: BlobReadiness)
        async throws(BerthError) -> Digest?
    {
        try await ready.wait(job.config.digest)
        let configBytes = try await ContentAccess(content: content, leases: leases).read(job.config.digest)
        let config: ImageConfig
        do {
            config = try JSONDecoder().decode(ImageConfig.self, from: Data(configBytes))
        } catch {
            throw .invalidArgument("unmarshal image config \(job.config.digest): \(error)")
        }
        let platform = config.os.isEmpty ? Platforms.host : config.platform
        guard job.platform.matches(platform) else { return nil }
        let diffIDs = config.rootfs.diffIDs
        guard job.layers.count == diffIDs.count else {
            throw .invalidArgument("number of layers and diffIDs don't match: \(job.layers.count) != \(diffIDs.count)")
        }
        let chainIDs = try Identity.chainIDs(diffIDs)
        for (index, layer) in job.layers.enumerated() {
            try await unpackLayer(
                layer, diffID: diffIDs[index], chainID: chainIDs[index], parent: index > 0 ? chainIDs[index - 1] : nil,
                job: job, snapshots: snapshots, applier: applier, ready: ready)
        }
        guard let top = chainIDs.last else { return nil }
        let label = GCLabels.snapshotRefPrefix + job.snapshotter
        var info = ContentInfo(digest: job.config.digest, size: job.config.size, createdAt: .distantPast,
                               updatedAt: .distantPast)
        info.labels = [label: top.description]
        _ = try await content.update(info, paths: ["labels." + label])
        return top
    }

    private func unpackLayer(
        _ layer: OCIDescriptor, diffID: Digest, chainID: Digest, parent: Digest?, job: UnpackJob,
        snapshots: any Snapshotter, applier: any DiffApplier, ready: BlobReadiness
    ) async throws(BerthError) {
        let lockKey = "snapshot/\(namespace)/\(job.snapshotter)/\(chainID)"
        try await coordinator.withLock(lockKey) { () throws(BerthError) in
            if try await committed(chainID, snapshots, job.snapshotter) { return }
            var labels = SnapshotLabels.inherited(layer.annotations ?? [:])
            labels[SnapshotLabels.snapshotRef] = chainID.description
            var prepared: (key: String, mounts: [Mount])?
            for _ in 1...3 {
                let key = "extract-\(PullSession.uniquePart()) \(chainID)"
                do throws(BerthError) {
                    prepared = (key, try await snapshots.prepare(key, parent: parent?.description ?? "", labels: labels))
                    break
                } catch where error.code == .alreadyExists {
                    if try await committed(chainID, snapshots, job.snapshotter) { return }
                }
            }
            guard let prepared else {
                throw .alreadyExists("unable to prepare extraction snapshot for \(chainID)")
            }
            let (key, mounts) = prepared
            do throws(BerthError) {
                try await ready.wait(layer.digest)
                progress.report(TransferProgress.Event.extracting, layer)
                let applied = try await applier.apply(layer.core, mounts: mounts, payloads: [:])
                guard applied.digest == diffID else {
                    throw BerthError.failedPrecondition(
                        "wrong diff id \(applied.digest) calculated on extraction of \(layer.digest), expected \(diffID)")
                }
                do throws(BerthError) {
                    try await snapshots.commit(chainID.description, key: key, labels: labels)
                } catch where error.code == .alreadyExists {
                    try? await snapshots.remove(key)
                }
            } catch {
                try? await snapshots.remove(key)
                if error.code == .canceled || Task.isCancelled { throw error }
                throw BerthError(error.code, "failed to extract layer \(layer.digest) to \(job.snapshotter): \(error.message)")
            }
            // Set after the apply verified the uncompressed digest, as containerd does.
            var info = ContentInfo(digest: layer.digest, size: layer.size, createdAt: .distantPast, updatedAt: .distantPast)
            info.labels = [SnapshotLabels.uncompressed: diffID.description]
            _ = try await content.update(info, paths: ["labels." + SnapshotLabels.uncompressed])
            progress.report(TransferProgress.Event.extracted, layer, progress: layer.size)
        }
    }

    /// Whether the chain ID is committed already; if so it joins this transfer's lease (nothing may roots it yet).
    private func committed(_ chainID: Digest, _ snapshots: any Snapshotter, _ snapshotter: String)
        async throws(BerthError) -> Bool
    {
        do {
            _ = try await snapshots.stat(chainID.description)
        } catch where error.code == .notFound {
            return false
        }
        try await leases.addResource(lease, LeaseResource(id: chainID.description, type: "snapshots/\(snapshotter)"))
        return true
    }

}

extension PullSession {
    /// The unpacker of this pull (its lease, coordinator and progress).
    var unpacker: Unpacker {
        Unpacker(
            namespace: namespace, lease: lease, content: content, leases: leases, coordinator: coordinator,
            progress: progress)
    }

    /// containerd's `uniquePart`: the clock's nanoseconds and three random bytes, base64url.
    static func uniquePart() -> String {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        let random = (0..<3).map { _ in UInt8.random(in: 0...255) }
        let encoded = Data(random).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
        return "\(time.tv_nsec)-\(encoded)"
    }
}

extension LocalTransferrer {
    /// Unpacks imported images with the pull's unpacker (every blob is already in the store) into the snapshotters
    /// `store.unpacks` names (the default one for an empty name): the manifest matching each entry's platform (the
    /// host's by default), once per manifest and snapshotter, reporting `extracting`/`extracted` per layer.
    /// Runs under the import's lease (`RequestContext.lease`).
    func unpackImported(_ images: [ImageRecord], store: ImageStoreSpec, progress sink: @escaping ProgressSink)
        async throws(BerthError)
    {
        guard !store.unpacks.isEmpty else { return }
        guard let lease = RequestContext.lease else { throw .internalError("import unpack runs without a lease") }
        let access = contentAccess
        let ready = BlobReadiness(allReady: true)
        var done: Set<String> = []
        for image in images {
            let progress = PullProgress(sink: sink, root: image.name)
            let unpacker = Unpacker(
                namespace: try RequestContext.requireNamespace(), lease: lease, content: access.content,
                leases: access.leases, coordinator: pulls, progress: progress)
            for spec in store.unpacks {
                let snapshotter = spec.snapshotter.isEmpty ? stores.defaultSnapshotter : spec.snapshotter
                let matcher: PlatformMatcher = spec.platform.map { .only($0) } ?? .default
                guard let found = try await Self.manifest(OCIDescriptor(image.target), matcher: matcher, access: access),
                    done.insert("\(found.descriptor.digest) \(snapshotter)").inserted
                else { continue }
                for layer in found.manifest.layers { progress.addParent(layer, refKey(found.descriptor)) }
                let job = UnpackJob(
                    manifest: found.descriptor, config: found.manifest.config, layers: found.manifest.layers,
                    snapshotter: snapshotter, platform: matcher)
                let snapshots = try stores.metadata.snapshots.snapshotter(snapshotter)
                _ = try await unpacker.unpack(job, snapshots: snapshots, applier: stores.applier, ready: ready)
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
}
