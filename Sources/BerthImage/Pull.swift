import BerthCore
import BerthOCI
import BerthRegistry
import Foundation

extension LocalTransferrer {
    /// Pulls `registry.reference` into the image store under a lease, labelling content for GC as containerd, and
    /// unpacks each layer into the snapshotter while later layers still download. Returns the image record.
    ///
    /// As containerd 2's local transfer service: resolve; fetch the index and the chosen platforms' manifests
    /// (every platform's manifest and config with `allMetadata`); fetch configs and layers through ingests, at
    /// most `maxConcurrentDownloads` at once; unpack per `store.unpacks`; create or update the image record
    /// (`store.name`, else the normalized reference). The lease (expiring after 24 h should the daemon die) is
    /// deleted at the end whatever happens; the image record then roots what the pull wrote.
    public func pull(_ registry: RegistrySpec, into store: ImageStoreSpec, progress: @escaping ProgressSink)
        async throws(BerthError) -> ImageRecord
    {
        let namespace = try RequestContext.requireNamespace()
        let reference = try Reference.parseDocker(registry.reference)
        let name = store.name.isEmpty ? reference.description : store.name
        let hosts = HostsResolver(
            configPath: registry.hostsDir ?? configPath, defaultScheme: registry.defaultScheme, headers: registry.headers)
        let leases = stores.metadata.leases
        let lease = try await leases.create(
            id: "pull-\(PullSession.uniquePart())",
            labels: [GCLabels.expire: RFC3339.format(Date().addingTimeInterval(24 * 3600))])
        let session = PullSession(
            client: RegistryClient(hosts: hosts, credentials: registry.credentials), reference: reference,
            namespace: namespace, lease: lease.id, content: stores.metadata.content, leases: leases,
            coordinator: pulls, downloads: AsyncSemaphore(maxConcurrentDownloads),
            progress: PullProgress(sink: progress, root: registry.reference), source: DistributionSource(reference))
        do {
            let record = try await RequestContext.$lease.withValue(lease.id) { () async throws(BerthError) -> ImageRecord in
                try await self.run(session, name: name, spec: store, displayName: registry.reference)
            }
            try? await leases.delete(lease.id)
            return record
        } catch {
            try? await leases.delete(lease.id)
            throw BerthError.wrap(error)
        }
    }

    /// A manifest chosen for the pull and whether its layers are wanted (false: metadata only).
    private struct ChosenManifest: Sendable {
        var descriptor: OCIDescriptor
        var manifest: Manifest
        var wanted: Bool
    }

    private func run(_ session: PullSession, name: String, spec: ImageStoreSpec, displayName: String)
        async throws(BerthError) -> ImageRecord
    {
        let progress = session.progress
        progress.status(TransferProgress.Event.resolving, name: displayName)
        let target = try await session.client.resolve(session.reference)
        progress.status(TransferProgress.Event.resolved, name: displayName, descriptor: target)
        let manifests = try await fetchManifests(session, target: target, spec: spec)

        // Configs first (unpacking needs them), then layers in manifest order; each blob once.
        var blobs: [OCIDescriptor] = []
        var skipped: [Digest] = []
        var seen = Set<Digest>()
        for chosen in manifests {
            progress.addParent(chosen.manifest.config, refKey(chosen.descriptor))
            if seen.insert(chosen.manifest.config.digest).inserted { blobs.append(chosen.manifest.config) }
        }
        for chosen in manifests where chosen.wanted {
            for layer in chosen.manifest.layers {
                progress.addParent(layer, refKey(chosen.descriptor))
                guard seen.insert(layer.digest).inserted else { continue }
                if MediaType.isNonDistributable(layer.mediaType) {
                    skipped.append(layer.digest)
                } else {
                    blobs.append(layer)
                }
            }
        }
        let jobs = try unpackJobs(manifests, spec: spec)
        var snapshotters: [String: any Snapshotter] = [:]
        for job in jobs where snapshotters[job.snapshotter] == nil {
            snapshotters[job.snapshotter] = try stores.metadata.snapshots.snapshotter(job.snapshotter)
        }
        for blob in blobs { progress.report(TransferProgress.Event.waiting, blob) }

        let ready = BlobReadiness()
        for digest in skipped { await ready.finish(digest) }
        let applier = stores.applier
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for blob in blobs {
                    group.addTask {
                        do {
                            _ = try await session.blob(blob)
                            await ready.finish(blob.digest)
                        } catch {
                            await ready.fail(BerthError.wrap(error))
                            throw error
                        }
                    }
                }
                for job in jobs {
                    guard let snapshots = snapshotters[job.snapshotter] else { continue }
                    group.addTask {
                        do {
                            _ = try await session.unpacker.unpack(job, snapshots: snapshots, applier: applier, ready: ready)
                        } catch {
                            await ready.fail(BerthError.wrap(error))
                            throw error
                        }
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            throw BerthError.wrap(error)
        }
        return try await save(name: name, target: target, labels: spec.labels, progress: progress)
    }

    /// The index (if any) and the manifests to fetch: the platforms chosen (all that match, best first), plus
    /// every other platform's manifest with `allMetadata` (metadata only). NotFound when no platform matches.
    private func fetchManifests(_ session: PullSession, target: OCIDescriptor, spec: ImageStoreSpec)
        async throws(BerthError) -> [ChosenManifest]
    {
        if target.mediaType == MediaType.dockerManifestSchema1 {
            throw .invalidArgument("schema 1 image manifests are no longer supported")
        }
        if MediaType.isManifest(target.mediaType) {
            let bytes = try await session.document(target) { bytes throws(BerthError) in
                let manifest = try Self.decode(Manifest.self, bytes, target)
                return childGCLabels([manifest.config] + manifest.layers)
            }
            return [ChosenManifest(descriptor: target, manifest: try Self.decode(Manifest.self, bytes, target), wanted: true)]
        }
        guard MediaType.isIndex(target.mediaType) else {
            throw .notImplemented("\(session.reference): media type \(target.mediaType) cannot be pulled")
        }
        let indexBytes = try await session.document(target) { bytes throws(BerthError) in
            childGCLabels(try Self.decode(Index.self, bytes, target).manifests)
        }
        let children = try Self.decode(Index.self, indexBytes, target).manifests.filter { MediaType.isManifest($0.mediaType) }
        let matcher = spec.platforms.isEmpty ? PlatformMatcher.default : PlatformMatcher.ordered(spec.platforms)
        let chosen = matcher.select(children)
        guard !chosen.isEmpty else {
            throw .notFound("\(session.reference): no match for platform in manifest \(target.digest)")
        }
        let wantedDigests = Set(chosen.map(\.digest))
        let fetched = spec.allMetadata ? chosen + children.filter { !wantedDigests.contains($0.digest) } : chosen
        var manifests: [ChosenManifest] = []
        for descriptor in fetched {
            session.progress.addParent(descriptor, refKey(target))
            let bytes = try await session.document(descriptor) { bytes throws(BerthError) in
                let manifest = try Self.decode(Manifest.self, bytes, descriptor)
                return childGCLabels([manifest.config] + manifest.layers)
            }
            manifests.append(ChosenManifest(
                descriptor: descriptor, manifest: try Self.decode(Manifest.self, bytes, descriptor),
                wanted: wantedDigests.contains(descriptor.digest)))
        }
        return manifests
    }

    /// One job per wanted manifest and unpack entry (an empty snapshotter is the default one); the platform
    /// check happens once the config is read.
    private func unpackJobs(_ manifests: [ChosenManifest], spec: ImageStoreSpec) throws(BerthError) -> [UnpackJob] {
        var jobs: [UnpackJob] = []
        for chosen in manifests where chosen.wanted {
            var snapshotters = Set<String>()
            for unpack in spec.unpacks {
                let snapshotter = unpack.snapshotter.isEmpty ? stores.defaultSnapshotter : unpack.snapshotter
                guard snapshotters.insert(snapshotter).inserted else { continue }
                jobs.append(UnpackJob(
                    manifest: chosen.descriptor, config: chosen.manifest.config, layers: chosen.manifest.layers,
                    snapshotter: snapshotter, platform: unpack.platform.map(PlatformMatcher.only) ?? .default))
            }
        }
        return jobs
    }

    /// Creates the image record, or updates it (target and labels) when the name exists, as containerd's image
    /// store end does; then publishes the change and reports `saved`.
    private func save(name: String, target: OCIDescriptor, labels: [String: String], progress: PullProgress)
        async throws(BerthError) -> ImageRecord
    {
        let saved = try await createOrUpdate(ImageRecord(name: name, target: target.core, labels: labels))
        progress.status(TransferProgress.Event.saved, name: name, descriptor: target)
        return saved
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], _ descriptor: OCIDescriptor) throws(BerthError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw .invalidArgument("\(descriptor.digest): invalid \(T.self): \(error)")
        }
    }
}
