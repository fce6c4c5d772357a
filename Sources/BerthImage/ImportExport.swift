import BerthArchive
import BerthCore
import BerthOCI
import Foundation

extension LocalTransferrer {
    var contentAccess: ContentAccess {
        ContentAccess(content: stores.metadata.content, leases: stores.metadata.leases)
    }

    /// Reads an OCI layout or `docker save` tar from `stream` into content and creates its images (optionally
    /// unpacking them as `store.unpacks` says). Returns the images created or updated.
    ///
    /// As containerd 1.6's client import: everything is written under a temporary lease (deleted at the end, so a
    /// failed import leaves nothing the GC keeps); the archive's index is walked for the chosen platforms (the
    /// host's by default, `store.platforms`, or all with `allMetadata`), labelling each parent with GC references
    /// to its children and requiring every referenced blob; then images are named from the index entries'
    /// `io.containerd.image.name` or `org.opencontainers.image.ref.name` annotations (see `ImageReference`).
    public func importArchive(
        _ stream: any TransferByteStream, mediaType: String, into store: ImageStoreSpec,
        progress: @escaping ProgressSink
    ) async throws(BerthError) -> [ImageRecord] {
        let access = contentAccess
        return try await access.withLease { () async throws(BerthError) -> [ImageRecord] in
            let refPrefix = "import-\(RequestContext.lease ?? UUID().uuidString)-"
            let importer = ArchiveImporter(access: access, compress: store.forceCompress, refPrefix: refPrefix)
            let index = try await importer.run(TransferStreamSource(stream))
            let matcher = Self.matcher(store)
            let entries = try await self.walkImported(index, matcher: matcher, access: access)
            let records = try Self.importNames(index: index, entries: entries, store: store)
            var saved: [ImageRecord] = []
            for record in records {
                saved.append(try await self.save(record))
                progress(TransferProgress(event: "saved", name: record.name, descriptor: OCIDescriptor(record.target)))
            }
            try await self.unpackImported(saved, store: store, progress: progress)
            return saved
        }
    }

    /// The platforms a transfer works on: all with `allMetadata`, the listed ones, else the host's.
    static func matcher(_ store: ImageStoreSpec) -> PlatformMatcher {
        if store.allMetadata { return .all }
        if store.platforms.isEmpty { return .default }
        return store.platforms.count == 1 ? .only(store.platforms[0]) : .any(store.platforms)
    }

    /// Walks the imported index (containerd's `WalkNotEmpty` with `FilterPlatforms` and `SetChildrenLabels`):
    /// returns the top index's entries; fails when a referenced blob is missing or nothing matches.
    func walkImported(_ index: OCIDescriptor, matcher: PlatformMatcher, access: ContentAccess)
        async throws(BerthError) -> [OCIDescriptor]
    {
        let top = try Self.decode(Index.self, try await access.read(index.digest), index.digest)
        let children = matcher.select(top.manifests)
        guard !children.isEmpty else {
            throw .notFound("no image in the archive matches the platform (image might be filtered out)")
        }
        try await access.labelChildren(index.digest, children)
        var seen: Set<Digest> = []
        for child in children { try await walk(child, matcher: matcher, access: access, seen: &seen, parent: index) }
        return top.manifests
    }

    /// Checks one descriptor's blob and, for manifests and indexes, labels and walks its children.
    func walk(
        _ descriptor: OCIDescriptor, matcher: PlatformMatcher, access: ContentAccess, seen: inout Set<Digest>,
        parent: OCIDescriptor
    ) async throws(BerthError) {
        guard seen.insert(descriptor.digest).inserted else { return }
        let children: [OCIDescriptor]
        if MediaType.isIndex(descriptor.mediaType) || MediaType.isManifest(descriptor.mediaType) {
            let bytes: [UInt8]
            do {
                bytes = try await access.read(descriptor.digest)
            } catch let error where error.code == .notFound {
                throw .notFound("blob \(descriptor.digest) (\(descriptor.mediaType)) referenced by \(parent.digest) is missing")
            }
            if MediaType.isIndex(descriptor.mediaType) {
                children = matcher.select(try Self.decode(Index.self, bytes, descriptor.digest).manifests)
            } else {
                let manifest = try Self.decode(Manifest.self, bytes, descriptor.digest)
                children = [manifest.config] + manifest.layers
            }
            try await access.labelChildren(descriptor.digest, children)
        } else {
            do throws(BerthError) {
                let info = try await access.content.info(descriptor.digest)
                guard info.size == descriptor.size else {
                    throw BerthError.failedPrecondition(
                        "blob \(descriptor.digest) is \(info.size) bytes, \(parent.digest) says \(descriptor.size)")
                }
                await access.protect(descriptor.digest)
            } catch let error where error.code == .notFound {
                if MediaType.isNonDistributable(descriptor.mediaType) { return }
                throw .notFound("blob \(descriptor.digest) (\(descriptor.mediaType)) referenced by \(parent.digest) is missing")
            }
            return
        }
        for child in children { try await walk(child, matcher: matcher, access: access, seen: &seen, parent: descriptor) }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], _ digest: Digest) throws(BerthError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as BerthError {
            throw BerthError(error.code, "\(digest): \(error.message)")
        } catch {
            throw .invalidArgument("\(digest): invalid JSON: \(error)")
        }
    }

    /// The image records an import creates (containerd 1.6's `client.Import` with ctr's reference translators).
    static func importNames(index: OCIDescriptor, entries: [OCIDescriptor], store: ImageStoreSpec)
        throws(BerthError) -> [ImageRecord]
    {
        var records: [ImageRecord] = []
        var names: Set<String> = []
        func add(_ name: String, _ target: OCIDescriptor) {
            guard !name.isEmpty, names.insert(name).inserted else { return }
            var core = target.core
            core.annotations = [:]
            records.append(ImageRecord(name: name, target: core, labels: store.labels))
        }
        if !store.name.isEmpty { add(store.name, index) }
        for reference in store.extraReferences where !reference.isPrefix { add(reference.name, index) }
        var prefixes = store.extraReferences.filter(\.isPrefix)
        let checkPrefix = !prefixes.isEmpty
        if prefixes.isEmpty {
            prefixes = [ImageReference(name: "import-\(RFC3339.localDay(Date()))", isPrefix: true)]
        }
        for entry in entries {
            var target = entry
            target.annotations = nil
            for prefix in prefixes {
                let name = imageName(entry.annotations ?? [:], prefix: prefix.name, checkPrefix: checkPrefix)
                add(name, target)
                if prefix.addDigest, !(prefix.skipNamedDigest && !name.isEmpty) {
                    add(prefix.name + "@" + entry.digest.description, target)
                }
            }
        }
        return records
    }

    /// `io.containerd.image.name` as is, else the OCI ref name translated: a tag-only name gets `prefix:`, a full
    /// name is kept (only when it starts with `prefix` if `checkPrefix`), as containerd's `refTranslator`.
    static func imageName(_ annotations: [String: String], prefix: String, checkPrefix: Bool) -> String {
        if let name = annotations[Annotation.containerdImageName], !name.isEmpty { return name }
        guard let ref = annotations[Annotation.refName], !ref.isEmpty else { return "" }
        guard ref.contains(where: { $0 == "/" || $0 == ":" || $0 == "@" }) else { return prefix + ":" + ref }
        if checkPrefix {
            guard ref.hasPrefix(prefix) else { return "" }
            if ref.count > prefix.count, let next = ref.dropFirst(prefix.count).first, !"/:@".contains(next) {
                return ""
            }
        }
        return ref
    }

    /// Updates the image's target if it exists, else creates it (containerd's import), and reports the change.
    func save(_ record: ImageRecord) async throws(BerthError) -> ImageRecord {
        try await createOrUpdate(record, updatePaths: record.labels.isEmpty ? ["target"] : ["target", "labels"])
    }
}
