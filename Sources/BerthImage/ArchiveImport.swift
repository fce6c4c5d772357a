import BerthArchive
import BerthCore
import BerthOCI
import Foundation

/// Reads an image archive stream into content, as containerd 1.6's `archive.ImportIndex`: an OCI image layout
/// (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) or a `docker save` archive (`manifest.json`, `<id>.json`
/// configs, layer tars, `repositories`), entries in any order. Every blob streams into a content ingest (never the
/// whole archive in memory); a layout blob must match the digest its name gives. Returns the descriptor of an OCI
/// index in content naming the archive's images (for Docker archives, one built from `manifest.json`).
struct ArchiveImporter {
    let access: ContentAccess
    /// Gzip uncompressed Docker layers (`--compress-blobs`).
    let compress: Bool
    /// Prefix of ingest refs, unique per import so that concurrent imports do not lock each other's ingests.
    let refPrefix: String

    /// One image of `manifest.json` (Docker v1.1/v1.2).
    struct DockerImage: Decodable {
        var Config: String
        var RepoTags: [String]?
        var Layers: [String]
    }

    /// What a pass over the archive found.
    struct Contents {
        var layoutVersion: String?
        var index: [UInt8]?
        var dockerImages: [DockerImage]?
        /// Cleaned entry name → committed blob (digest and size; no media type yet).
        var blobs: [String: OCIDescriptor] = [:]
        /// Cleaned symlink name → cleaned target name.
        var symlinks: [String: String] = [:]
    }

    func run(_ source: any ByteSource) async throws(BerthError) -> OCIDescriptor {
        let contents = try await scan(source)
        if let version = contents.layoutVersion {
            guard version == "1.0.0" else { throw .invalidArgument("unsupported OCI version \(version)") }
            guard let index = contents.index else { throw .invalidArgument("missing index.json in OCI layout 1.0.0") }
            // index.json is not named by digest: store it as a blob so that it can be kept (`--index-name`).
            let digest = try await access.write(index, ref: refPrefix + "index.json")
            return OCIDescriptor(mediaType: MediaType.ociIndex, digest: digest, size: Int64(index.count))
        }
        guard let images = contents.dockerImages else {
            throw .invalidArgument("unrecognized image format: neither an OCI layout (oci-layout) nor a docker archive (manifest.json)")
        }
        return try await dockerIndex(images, contents)
    }

    /// Reads every entry: the small JSON files into memory, everything else into content.
    func scan(_ source: any ByteSource) async throws(BerthError) -> Contents {
        let tar = TarReader(source)
        var contents = Contents()
        while let entry = try await tar.next() {
            let name = try ArchivePath.clean(entry.name)
            switch entry.type {
            case .symlink:
                contents.symlinks[name] = try ArchivePath.resolve(name, link: entry.linkname)
                continue
            case .regular:
                break
            default:
                continue
            }
            switch name {
            case "oci-layout":
                let layout = try Self.json(try await Self.small(tar, entry), as: [String: OCIValue].self, name)
                guard case .string(let version)? = layout["imageLayoutVersion"] else {
                    throw .invalidArgument("untar oci layout \(name.debugDescription): no imageLayoutVersion")
                }
                contents.layoutVersion = version
            case "index.json":
                contents.index = try await Self.small(tar, entry)
                _ = try Self.json(contents.index ?? [], as: Index.self, name)
            case "manifest.json":
                contents.dockerImages = try Self.json(try await Self.small(tar, entry), as: [DockerImage].self, name)
            case "repositories":
                continue
            default:
                let expected = ArchivePath.blobDigest(name)
                let digest = try await ingest(tar, size: entry.size, expected: expected, name: name)
                contents.blobs[name] = OCIDescriptor(mediaType: "", digest: digest, size: entry.size)
            }
        }
        try await tar.drain()
        return contents
    }

    /// Reads a JSON entry whole, within containerd's 20 MiB limit.
    static func small(_ tar: TarReader, _ entry: TarEntry) async throws(BerthError) -> [UInt8] {
        guard entry.size <= ContentAccess.jsonLimit else {
            throw .invalidArgument("archive entry \(entry.name.debugDescription) is too large (\(entry.size) bytes)")
        }
        var bytes: [UInt8] = []
        while true {
            let chunk = try await tar.read()
            if chunk.isEmpty { return bytes }
            bytes += chunk
        }
    }

    static func json<T: Decodable>(_ bytes: [UInt8], as type: T.Type, _ name: String) throws(BerthError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw .invalidArgument("archive entry \(name.debugDescription): invalid JSON: \(error)")
        }
    }

    /// Streams an entry into content. With `expected` (a layout blob) the bytes must hash to it, else nothing is
    /// committed and the import fails; a blob the namespace already has is skipped.
    func ingest(_ tar: TarReader, size: Int64, expected: Digest?, name: String) async throws(BerthError) -> Digest {
        let ref = refPrefix + (expected?.description ?? name)
        let writer: any MetadataContentWriter
        do {
            writer = try await access.content.writer(ref: ref, total: size, expected: expected)
        } catch let error where error.code == .alreadyExists {
            if let expected {
                await access.protect(expected)
                return expected
            }
            throw error
        }
        do throws(BerthError) {
            try await writer.truncate(0)
            while true {
                let chunk = try await tar.read()
                if chunk.isEmpty { break }
                try await writer.write(chunk)
            }
            let digest: Digest
            do {
                digest = try await writer.commit(size: size, expected: expected, labels: [:])
            } catch let error where error.code == .alreadyExists {
                digest = await writer.digest()
                await access.protect(digest)
            }
            await writer.close()
            return digest
        } catch {
            await writer.close()
            try? await access.content.abort(ref)
            if error.code == .failedPrecondition {
                throw .failedPrecondition("archive entry \(name.debugDescription): \(error.message)")
            }
            throw BerthError(error.code, "failed to ingest \(name.debugDescription): \(error.message)")
        }
    }

    // MARK: Docker archives

    /// Builds containerd's index for a Docker archive: one Docker schema 2 manifest per `manifest.json` entry
    /// (config and layers found by name, layer media types from their first bytes), one index entry per RepoTag
    /// (names normalised, `io.containerd.image.name` and `org.opencontainers.image.ref.name` annotations).
    func dockerIndex(_ images: [DockerImage], _ contents: Contents) async throws(BerthError) -> OCIDescriptor {
        var blobs = contents.blobs
        for (name, target) in contents.symlinks {
            guard let descriptor = blobs[target] else {
                throw .invalidArgument("no target for symlink layer from \(name.debugDescription) to \(target.debugDescription)")
            }
            blobs[name] = descriptor
        }
        var entries: [OCIDescriptor] = []
        for image in images {
            guard var config = blobs[try ArchivePath.clean(image.Config)] else {
                throw .notFound("image config \(image.Config.debugDescription) not found in the archive")
            }
            config.mediaType = MediaType.dockerConfig
            let configBytes = try await access.read(config.digest)
            let imageConfig: ImageConfig
            do {
                imageConfig = try JSONDecoder().decode(ImageConfig.self, from: Data(configBytes))
            } catch {
                throw .invalidArgument("image config \(image.Config.debugDescription): \(error)")
            }
            var layers: [OCIDescriptor] = []
            for (position, file) in image.Layers.enumerated() {
                guard let layer = blobs[try ArchivePath.clean(file)] else {
                    throw .notFound("layer \(file.debugDescription) not found in the archive")
                }
                let diffID = imageConfig.rootfs.diffIDs.indices.contains(position) ? imageConfig.rootfs.diffIDs[position] : nil
                layers.append(try await resolveLayer(layer, file: file, diffID: diffID))
            }
            let bytes = GoJSON.dockerManifest(config: config, layers: layers)
            let digest = try await access.write(bytes, ref: refPrefix + "manifest-\(entries.count)")
            var manifest = OCIDescriptor(mediaType: MediaType.dockerManifest, digest: digest, size: Int64(bytes.count))
            if !imageConfig.os.isEmpty || !imageConfig.architecture.isEmpty {
                manifest.platform = Platforms.normalize(imageConfig.platform)
            }
            let tags = image.RepoTags ?? []
            if tags.isEmpty { entries.append(manifest) }
            for tag in tags {
                let normalized = try Reference.parseDocker(tag)
                var named = manifest
                named.annotations = [
                    Annotation.containerdImageName: normalized.description, Annotation.refName: normalized.object,
                ]
                entries.append(named)
            }
        }
        let index = GoJSON.index(entries)
        let digest = try await access.write(index, ref: refPrefix + "index")
        return OCIDescriptor(mediaType: MediaType.ociIndex, digest: digest, size: Int64(index.count))
    }

    /// A Docker archive layer's descriptor: a compressed blob already stored for this uncompressed digest is
    /// reused (containerd's `containerd.io/uncompressed` lookup); else the media type comes from the first bytes,
    /// and an uncompressed layer is gzipped when asked. An uncompressed layer must match its config's diff ID.
    func resolveLayer(_ layer: OCIDescriptor, file: String, diffID: Digest?) async throws(BerthError) -> OCIDescriptor {
        var layer = layer
        let filter = try Filter.parse("labels.\"containerd.io/uncompressed\"==\(layer.digest)")
        if let compressed = try await access.content.list(filter).first {
            await access.protect(compressed.digest)
            layer.digest = compressed.digest
            layer.size = compressed.size
            layer.mediaType = try await detect(compressed.digest)
            return layer
        }
        layer.mediaType = try await detect(layer.digest)
        guard layer.mediaType == MediaType.dockerLayer else { return layer }
        if let diffID, diffID != layer.digest {
            throw .failedPrecondition("layer \(file.debugDescription) is \(layer.digest), its image config says \(diffID)")
        }
        guard compress else { return layer }
        return try await gzip(layer)
    }

    /// Docker's gzip media type for any compressed layer, the tar media type otherwise (and for empty blobs).
    func detect(_ digest: Digest) async throws(BerthError) -> String {
        let reader = try await access.content.reader(digest)
        let head = reader.size == 0 ? [] : try await reader.read(at: 0, count: 10)
        await reader.close()
        if head.isEmpty || Compression.detect(head) == Compression.none { return MediaType.dockerLayer }
        return MediaType.dockerLayerGzip
    }

    /// Gzips an uncompressed layer into content, labelled `containerd.io/uncompressed` as containerd's importer.
    func gzip(_ layer: OCIDescriptor) async throws(BerthError) -> OCIDescriptor {
        let ref = "compress-blob-\(layer.digest.algorithm)-\(layer.digest.encoded)"
        let writer = try await access.content.writer(ref: ref, total: 0, expected: nil)
        do throws(BerthError) {
            try await writer.truncate(0)
            let hashing = DigestingSink(ContentWriterSink(writer))
            let compressor = try Compression.gzip.compressing(BufferingSink(hashing))
            let reader = try await access.content.reader(layer.digest)
            let source = ContentSource(reader)
            do {
                while true {
                    let chunk = try await source.read()
                    if chunk.isEmpty { break }
                    try await compressor.write(chunk)
                }
                try await compressor.finish()
            } catch {
                await reader.close()
                throw error
            }
            await reader.close()
            let digest = try hashing.digest()
            do {
                _ = try await writer.commit(
                    size: hashing.count, expected: digest, labels: ["containerd.io/uncompressed": layer.digest.description])
            } catch let error where error.code == .alreadyExists {
                await access.protect(digest)
            }
            await writer.close()
            return OCIDescriptor(mediaType: MediaType.dockerLayerGzip, digest: digest, size: hashing.count)
        } catch {
            await writer.close()
            try? await access.content.abort(ref)
            throw error
        }
    }
}
