import BerthArchive
import BerthCore
import BerthOCI
import Foundation

extension LocalTransferrer {
    /// Writes the image `store.name` (plus `store.extraReferences`; every image of the namespace when both are
    /// empty) as an archive to `stream`, then closes the stream.
    ///
    /// `.oci` writes what containerd 1.6's `archive.Export` writes: an OCI layout whose `index.json` names each
    /// image (`io.containerd.image.name`, `org.opencontainers.image.ref.name`), the blobs of the chosen platforms
    /// (`spec.platforms`, else the host's; every platform with `allPlatforms`), and Docker's `manifest.json` unless
    /// `skipDockerManifest`. `.docker` writes `docker save`'s layout (`manifest.json`, `repositories`,
    /// `<config>.json`, uncompressed `<diff ID>.tar` layers) for the best platform match of each image. Entries
    /// stream from content; every blob is checked against its digest as it is copied.
    public func exportArchive(
        _ store: ImageStoreSpec, to stream: any TransferByteStream, _ spec: ExportSpec, progress: @escaping ProgressSink
    ) async throws(BerthError) {
        do {
            let access = contentAccess
            let images = try await exportedImages(store)
            let matcher: PlatformMatcher = spec.platforms.isEmpty
                ? .onlyStrict(Platforms.host)
                : (spec.platforms.count == 1 ? .only(spec.platforms[0]) : .any(spec.platforms))
            let plan: ExportPlan
            switch spec.format {
            case .oci: plan = try await ExportPlan.oci(images, spec: spec, matcher: matcher, access: access)
            case .docker: plan = try await ExportPlan.docker(images, matcher: matcher, access: access)
            }
            let sink = TransferStreamSink(stream)
            try await plan.write(to: TarWriter(BufferingSink(sink)), access: access)
            for (name, target) in images {
                progress(TransferProgress(event: "exported", name: name, descriptor: target))
            }
        } catch {
            await stream.close()
            throw error
        }
        await stream.close()
    }

    /// The images to export, each target annotated with its name as containerd's `WithImage`.
    func exportedImages(_ store: ImageStoreSpec) async throws(BerthError) -> [(String, OCIDescriptor)] {
        var names = ([store.name] + store.extraReferences.filter { !$0.isPrefix }.map(\.name)).filter { !$0.isEmpty }
        if names.isEmpty { names = try await stores.metadata.images.list(.all).map(\.name).sorted() }
        guard !names.isEmpty else { throw .notFound("no images to export") }
        var result: [(String, OCIDescriptor)] = []
        for name in names {
            var target = OCIDescriptor(try await stores.metadata.images.get(name).target)
            var annotations = target.annotations ?? [:]
            annotations[Annotation.containerdImageName] = name
            annotations[Annotation.refName] = Self.ociReferenceName(name)
            target.annotations = annotations
            result.append((name, target))
        }
        return result
    }

    /// The OCI ref name for a full image name: its tag (or digest), as containerd's `ociReferenceName`.
    static func ociReferenceName(_ name: String) -> String {
        guard let reference = try? Reference.parse(name) else { return name }
        return reference.tag ?? reference.digest?.description ?? name
    }

    /// `docker save`'s RepoTags spelling of a name (`busybox:latest`), as containerd's `familiarizeReference`.
    static func familiar(_ name: String) throws(BerthError) -> String {
        var reference: Reference
        do {
            reference = try Reference.parseNormalized(name)
        } catch {
            throw BerthError(error.code, "failed to parse \(name.debugDescription): \(error.message)")
        }
        if reference.tag == nil && reference.digest == nil { reference.tag = "latest" }
        return reference.familiar
    }
}

/// The entries of an archive to write, sorted by name as containerd writes them.
struct ExportPlan {
    enum Body {
        case bytes([UInt8])
        /// A blob copied as stored, checked against its digest.
        case blob(OCIDescriptor)
        /// A compressed layer written decompressed (`docker save`), `size` uncompressed bytes hashing to `diffID`.
        case uncompressed(OCIDescriptor, diffID: Digest)
        case directory
    }

    struct Record {
        var name: String
        var mode: UInt32
        var size: Int64
        var body: Body
    }

    var records: [String: Record] = [:]

    mutating func add(_ name: String, mode: UInt32, size: Int64, _ body: Body) {
        if records[name] == nil { records[name] = Record(name: name, mode: mode, size: size, body: body) }
    }

    mutating func addBytes(_ name: String, mode: UInt32, _ bytes: [UInt8]) {
        add(name, mode: mode, size: Int64(bytes.count), .bytes(bytes))
    }

    mutating func addBlob(_ descriptor: OCIDescriptor) {
        add("blobs/\(descriptor.digest.algorithm)/\(descriptor.digest.encoded)", mode: 0o444, size: descriptor.size,
            .blob(descriptor))
    }

    /// containerd's `getRecords`: a descriptor and everything below it (every child of an index, not filtered).
    mutating func addTree(_ descriptor: OCIDescriptor, access: ContentAccess) async throws(BerthError) {
        addBlob(descriptor)
        guard MediaType.isManifest(descriptor.mediaType) || MediaType.isIndex(descriptor.mediaType) else { return }
        let bytes = try await access.read(descriptor.digest)
        if MediaType.isIndex(descriptor.mediaType) {
            for child in try LocalTransferrer.decode(Index.self, bytes, descriptor.digest).manifests {
                try await addTree(child, access: access)
            }
        } else {
            let manifest = try LocalTransferrer.decode(Manifest.self, bytes, descriptor.digest)
            for child in [manifest.config] + manifest.layers { addBlob(child) }
        }
    }

    /// containerd 1.6's `archive.Export` layout.
    static func oci(_ images: [(String, OCIDescriptor)], spec: ExportSpec, matcher: PlatformMatcher, access: ContentAccess)
        async throws(BerthError) -> ExportPlan
    {
        var plan = ExportPlan()
        plan.addBytes("oci-layout", mode: 0o444, Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8))
        plan.addBytes("index.json", mode: 0o644, GoJSON.index(images.map(\.1)))
        /// Manifest digest → (descriptor, names) for Docker's manifest.json, in first-seen order.
        var dockerManifests: [(OCIDescriptor, [String])] = []
        func note(_ manifest: OCIDescriptor, _ name: String?) {
            if let i = dockerManifests.firstIndex(where: { $0.0.digest == manifest.digest }) {
                if let name { dockerManifests[i].1.append(name) }
            } else {
                dockerManifests.append((manifest, name.map { [$0] } ?? []))
            }
        }
        var resolved: [Digest: OCIDescriptor?] = [:]
        for (name, target) in images {
            if MediaType.isManifest(target.mediaType) {
                try await plan.addTree(target, access: access)
                note(target, spec.skipDockerManifest ? nil : name)
            } else if MediaType.isIndex(target.mediaType) {
                if resolved[target.digest] == nil {
                    plan.addBlob(target)
                    let index = try LocalTransferrer.decode(Index.self, try await access.read(target.digest), target.digest)
                    var matching: [OCIDescriptor] = []
                    for manifest in index.manifests {
                        if manifest.platform.map(matcher.matches) ?? true {
                            matching.append(manifest)
                        } else if !spec.allPlatforms {
                            continue
                        }
                        try await plan.addTree(manifest, access: access)
                    }
                    var best: OCIDescriptor?
                    if !spec.skipDockerManifest {
                        best = matcher.select(matching).first
                        guard best != nil else {
                            throw .notFound("no manifest found for platform in \(name)")
                        }
                    }
                    resolved[target.digest] = .some(best)
                }
                if case .some(.some(let best)) = resolved[target.digest] { note(best, name) }
            } else {
                throw .invalidArgument("only manifests may be exported (\(name) is \(target.mediaType))")
            }
        }
        if !spec.skipDockerManifest, !dockerManifests.isEmpty {
            var entries: [[String: Any]] = []
            for (manifest, names) in dockerManifests {
                let m = try LocalTransferrer.decode(Manifest.self, try await access.read(manifest.digest), manifest.digest)
                var entry: [String: Any] = [
                    "Config": "blobs/\(m.config.digest.algorithm)/\(m.config.digest.encoded)",
                    "Layers": m.layers.map { "blobs/\($0.digest.algorithm)/\($0.digest.encoded)" },
                ]
                var tags: [String] = []
                for name in names { tags.append(try LocalTransferrer.familiar(name)) }
                entry["RepoTags"] = tags.isEmpty ? NSNull() : tags
                entries.append(entry)
            }
            plan.addBytes("manifest.json", mode: 0o644, try Self.json(entries))
        }
        plan.add("blobs", mode: 0o755, size: 0, .directory)
        for algorithm in Set(plan.records.values.compactMap { r -> String? in
            guard case .blob(let d) = r.body else { return nil }
            return d.digest.algorithm
        }) {
            plan.add("blobs/\(algorithm)", mode: 0o755, size: 0, .directory)
        }
        return plan
    }

    /// `docker save`'s layout, one image per platform-resolved manifest.
    static func docker(_ images: [(String, OCIDescriptor)], matcher: PlatformMatcher, access: ContentAccess)
        async throws(BerthError) -> ExportPlan
    {
        var plan = ExportPlan()
        var entries: [(config: String, tags: [String], layers: [String], manifest: Digest)] = []
        var repositories: [String: [String: String]] = [:]
        for (name, target) in images {
            guard let found = try await LocalTransferrer.manifest(target, matcher: matcher, access: access) else {
                throw .notFound("no manifest found for platform in \(name)")
            }
            let (descriptor, manifest) = found
            let config = try LocalTransferrer.decode(
                ImageConfig.self, try await access.read(manifest.config.digest), manifest.config.digest)
            guard config.rootfs.diffIDs.count == manifest.layers.count else {
                throw .invalidArgument("\(name): \(manifest.layers.count) layers but \(config.rootfs.diffIDs.count) diff IDs")
            }
            let configName = manifest.config.digest.encoded + ".json"
            plan.add(configName, mode: 0o644, size: manifest.config.size, .blob(manifest.config))
            var layerNames: [String] = []
            for (layer, diffID) in zip(manifest.layers, config.rootfs.diffIDs) {
                let layerName = diffID.encoded + ".tar"
                layerNames.append(layerName)
                if plan.records[layerName] != nil { continue }
                if layer.digest == diffID {
                    plan.add(layerName, mode: 0o644, size: layer.size, .blob(layer))
                } else {
                    let size = try await Self.uncompressedSize(layer, access: access)
                    plan.add(layerName, mode: 0o644, size: size, .uncompressed(layer, diffID: diffID))
                }
            }
            let familiar = try LocalTransferrer.familiar(name)
            if let i = entries.firstIndex(where: { $0.manifest == descriptor.digest }) {
                entries[i].tags.append(familiar)
            } else {
                entries.append((configName, [familiar], layerNames, descriptor.digest))
            }
            if let reference = try? Reference.parseNormalized(familiar), let tag = reference.tag,
                let top = config.rootfs.diffIDs.last
            {
                let repository = String(reference.familiar.dropLast(tag.count + 1))
                repositories[repository, default: [:]][tag] = top.encoded
            }
        }
        let manifestJSON: [[String: Any]] = entries.map { ["Config": $0.config, "RepoTags": $0.tags, "Layers": $0.layers] }
        plan.addBytes("manifest.json", mode: 0o644, try json(manifestJSON))
        plan.addBytes("repositories", mode: 0o644, try json(repositories))
        return plan
    }

    /// Bytes of a layer once decompressed (a first pass over it: tar headers need the size before the data).
    static func uncompressedSize(_ layer: OCIDescriptor, access: ContentAccess) async throws(BerthError) -> Int64 {
        let reader = try await access.content.reader(layer.digest)
        do {
            let source = try await Compression.decompressing(ContentSource(reader))
            var size: Int64 = 0
            while true {
                let chunk = try await source.read()
                if chunk.isEmpty { break }
                size += Int64(chunk.count)
            }
            await reader.close()
            return size
        } catch {
            await reader.close()
            throw error
        }
    }

    static func json(_ value: Any) throws(BerthError) -> [UInt8] {
        do {
            return Array(try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]))
        } catch {
            throw .internalError("encoding JSON: \(error)")
        }
    }

    /// Writes the records in name order, then the end of the archive.
    func write(to tar: TarWriter, access: ContentAccess) async throws(BerthError) {
        for name in records.keys.sorted() {
            guard let record = records[name] else { continue }
            var entry = TarEntry(
                name: record.name + (record.body.isDirectory ? "/" : ""),
                type: record.body.isDirectory ? .directory : .regular, mode: record.mode, size: record.size)
            entry.mtime = 0
            try await tar.writeHeader(entry)
            switch record.body {
            case .directory: break
            case .bytes(let bytes): try await tar.write(bytes)
            case .blob(let descriptor): try await Self.copy(descriptor, expected: descriptor.digest, size: record.size,
                                                            decompress: false, to: tar, access: access)
            case .uncompressed(let descriptor, let diffID): try await Self.copy(descriptor, expected: diffID,
                                                                                size: record.size, decompress: true,
                                                                                to: tar, access: access)
            }
        }
        try await tar.finish()
    }

    /// Copies a blob (decompressed if asked) into the current entry, failing if the bytes do not hash to
    /// `expected` or their count differs from `size`.
    static func copy(
        _ descriptor: OCIDescriptor, expected: Digest, size: Int64, decompress: Bool, to tar: TarWriter,
        access: ContentAccess
    ) async throws(BerthError) {
        let reader = try await access.content.reader(descriptor.digest)
        do throws(BerthError) {
            let raw: any ByteSource = ContentSource(reader)
            let upstream: any ByteSource
            if decompress { upstream = try await Compression.decompressing(raw) } else { upstream = raw }
            let hashing = DigestingSource(upstream)
            while true {
                let chunk = try await hashing.read()
                if chunk.isEmpty { break }
                guard hashing.count <= size else { throw BerthError.failedPrecondition("blob \(descriptor.digest) grew") }
                try await tar.write(chunk)
            }
            guard hashing.count == size else {
                throw BerthError.failedPrecondition("blob \(descriptor.digest): copied \(hashing.count) of \(size) bytes")
            }
            let digest = try hashing.digest()
            guard digest == expected else { throw BerthError.failedPrecondition("unexpected digest \(digest) copied") }
        } catch {
            await reader.close()
            throw error
        }
        await reader.close()
    }
}

extension ExportPlan.Body {
    var isDirectory: Bool {
        if case .directory = self { return true }
        return false
    }
}
