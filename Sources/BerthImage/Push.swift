import BerthArchive
import BerthCore
import BerthOCI
import BerthRegistry
import Foundation

extension LocalTransferrer {
    /// Pushes the image `store.name` (its chosen platforms, or all) to `registry.reference`.
    ///
    /// As containerd's pusher: blobs first (configs and layers, at most `maxConcurrentUploads` at once; a blob the
    /// repository has is skipped after a `HEAD`, and one whose `containerd.io/distribution.source.<host>` label
    /// names another repository of the same registry is mounted from there), then the manifests by digest, then
    /// the image's own manifest or index under the reference's tag (or digest). Progress: `pushing` (bytes sent of
    /// total) while uploading, `exists`, `mounted`, and `complete` per blob.
    public func push(_ store: ImageStoreSpec, to registry: RegistrySpec, progress: @escaping ProgressSink)
        async throws(BerthError)
    {
        let access = contentAccess
        let image = try await stores.metadata.images.get(store.name)
        let reference = try Reference.parseNormalized(registry.reference)
        let client = RegistryClient(
            hosts: HostsResolver(
                configPath: registry.hostsDir ?? configPath, defaultScheme: registry.defaultScheme,
                headers: registry.headers),
            credentials: registry.credentials)
        let matcher: PlatformMatcher? = store.platforms.isEmpty
            ? nil : (store.platforms.count == 1 ? .only(store.platforms[0]) : .any(store.platforms))

        // Children before parents: blobs (deduplicated), then manifests and indexes bottom-up.
        var blobs: [OCIDescriptor] = []
        var documents: [(OCIDescriptor, [UInt8])] = []
        var seen: Set<Digest> = []
        try await Self.collect(
            OCIDescriptor(image.target), matcher: matcher, access: access, seen: &seen, blobs: &blobs,
            documents: &documents)
        let repository = Reference(domain: reference.domain, path: reference.path)
        try await uploadBlobs(blobs, to: repository, client: client, access: access, progress: progress)
        for (descriptor, bytes) in documents.dropLast() {
            try await client.pushManifest(repository, descriptor, bytes: bytes, tag: descriptor.digest.description)
            progress(TransferProgress(event: "complete", name: descriptor.digest.description, descriptor: descriptor))
        }
        if let (root, bytes) = documents.last {
            try await client.pushManifest(reference, root, bytes: bytes, tag: reference.digest == nil ? reference.object : nil)
            progress(TransferProgress(event: "complete", name: reference.description, descriptor: root))
        }
    }

    /// Walks an image for push: manifests and indexes (read from content) into `documents` after their children,
    /// configs and layers into `blobs`. An index keeps all its manifests unless `matcher` narrows them.
    static func collect(
        _ descriptor: OCIDescriptor, matcher: PlatformMatcher?, access: ContentAccess, seen: inout Set<Digest>,
        blobs: inout [OCIDescriptor], documents: inout [(OCIDescriptor, [UInt8])]
    ) async throws(BerthError) {
        guard seen.insert(descriptor.digest).inserted else { return }
        if MediaType.isIndex(descriptor.mediaType) {
            let bytes = try await access.read(descriptor.digest)
            var children = try decode(Index.self, bytes, descriptor.digest).manifests
            if let matcher { children = children.filter { $0.platform.map(matcher.matches) ?? true } }
            for child in children {
                try await collect(child, matcher: matcher, access: access, seen: &seen, blobs: &blobs, documents: &documents)
            }
            documents.append((descriptor, bytes))
        } else if MediaType.isManifest(descriptor.mediaType) {
            let bytes = try await access.read(descriptor.digest)
            let manifest = try decode(Manifest.self, bytes, descriptor.digest)
            for child in [manifest.config] + manifest.layers where seen.insert(child.digest).inserted {
                // Non-distributable layers stay out of registries, as containerd's default push.
                if MediaType.isNonDistributable(child.mediaType) { continue }
                blobs.append(child)
            }
            documents.append((descriptor, bytes))
        } else {
            blobs.append(descriptor)
        }
    }

    /// Uploads `blobs`, at most `maxConcurrentUploads` at a time.
    func uploadBlobs(
        _ blobs: [OCIDescriptor], to repository: Reference, client: RegistryClient, access: ContentAccess,
        progress: @escaping ProgressSink
    ) async throws(BerthError) {
        let limit = max(1, maxConcurrentUploads)
        let work: @Sendable (OCIDescriptor) async throws -> Void = { blob in
            try await Self.upload(blob, to: repository, client: client, access: access, progress: progress)
        }
        do {
            // Child tasks inherit the request's namespace (task-locals).
            try await withThrowingTaskGroup(of: Void.self) { group in
                var pending = blobs[...]
                while pending.count > blobs.count - limit, let blob = pending.popFirst() {
                    group.addTask { try await work(blob) }
                }
                while try await group.next() != nil {
                    if let blob = pending.popFirst() { group.addTask { try await work(blob) } }
                }
            }
        } catch let error as BerthError {
            throw error
        } catch {
            throw .wrap(error)
        }
    }

    /// Uploads one blob unless the repository has it, mounting it from a repository of the same registry that
    /// content labels name as its source.
    static func upload(
        _ blob: OCIDescriptor, to repository: Reference, client: RegistryClient, access: ContentAccess,
        progress: @escaping ProgressSink
    ) async throws(BerthError) {
        let name = blob.digest.description
        if try await client.blobSize(repository, blob.digest) != nil {
            progress(TransferProgress(event: "exists", name: name, progress: blob.size, total: blob.size, descriptor: blob))
            return
        }
        let info = try await access.content.info(blob.digest)
        let sourceLabel = "containerd.io/distribution.source." + repository.domain
        let mountFrom = info.labels[sourceLabel]?.split(separator: ",").map(String.init)
            .first { $0 != repository.path && !$0.isEmpty }
        let reader = try await access.content.reader(blob.digest)
        let chunks = PushChunks(reader: reader, total: blob.size, name: name, descriptor: blob, progress: progress)
        do {
            try await client.pushBlob(repository, blob, chunks: chunks, mountFrom: mountFrom)
        } catch {
            await reader.close()
            throw error
        }
        await reader.close()
        // pushBlob reads no byte when the registry mounted the blob (or found it in the meantime).
        let event = chunks.state.started ? "complete" : (mountFrom != nil ? "mounted" : "exists")
        progress(TransferProgress(event: event, name: name, progress: blob.size, total: blob.size, descriptor: blob))
    }
}

/// A blob read from content in chunks for an upload, reporting `pushing` progress as it goes.
struct PushChunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]

    /// Whether any chunk was requested (false after a mount).
    final class State: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var started: Bool { lock.withLock { value } }
        func start() { lock.withLock { value = true } }
    }

    let reader: any ContentReader
    let total: Int64
    let name: String
    let descriptor: OCIDescriptor
    let progress: ProgressSink
    let state = State()

    static let chunkSize = 4 << 20

    func makeAsyncIterator() -> Iterator { Iterator(chunks: self) }

    struct Iterator: AsyncIteratorProtocol {
        let chunks: PushChunks
        var offset: Int64 = 0

        mutating func next() async throws -> [UInt8]? {
            chunks.state.start()
            guard offset < chunks.total else { return nil }
            let count = Int(Swift.min(Int64(PushChunks.chunkSize), chunks.total - offset))
            let bytes = try await chunks.reader.read(at: offset, count: count)
            guard !bytes.isEmpty else { throw BerthError.internalError("\(chunks.name): content ended at \(offset)") }
            offset += Int64(bytes.count)
            chunks.progress(TransferProgress(
                event: "pushing", name: chunks.name, progress: offset, total: chunks.total, descriptor: chunks.descriptor))
            return bytes
        }
    }
}
