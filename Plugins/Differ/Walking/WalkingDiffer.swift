#if canImport(Glibc)
    import Glibc
#endif
import BerthArchive
import BerthCore

/// `[plugins."io.containerd.differ.v1.walking"]`.
public struct WalkingConfig: PluginConfig, Equatable {
    /// Bound on the uncompressed bytes of one layer, against decompression bombs; 0 means no bound.
    public var maxUncompressedBytes: Int64 = 256 << 30

    public init() {}

    enum CodingKeys: String, CodingKey {
        case maxUncompressedBytes = "max_uncompressed_bytes"
    }
}

/// `io.containerd.differ.v1.walking`: applies layers onto mounts and computes layers from two mounts by walking
/// both trees, reading and writing blobs through the namespaced content store.
public let registration = Registration(
    type: .differ, id: "walking", requires: [.type(.metadata)],
    summary: "Walking differ: applies layer tars onto mounts and writes the difference of two mounts as a layer.",
    config: WalkingConfig.self
) { ic, config in
    guard config.maxUncompressedBytes >= 0 else {
        throw BerthError.invalidArgument("max_uncompressed_bytes must not be negative")
    }
    let provider = try ic.single(.metadata, as: (any MetadataProvider).self)
    let mountRoot = try ic.makeState() + "/mounts"
    try FileSystem.makeDirectories(mountRoot, mode: 0o700)
    ic.addPlatform(.host)
    return WalkingDiffer(content: provider.content, mountRoot: mountRoot, limit: config.maxUncompressedBytes)
}

/// Layer media types and the compression each names; nil for any other type.
enum LayerMediaType {
    static let uncompressed = "application/vnd.oci.image.layer.v1.tar"
    static let gzip = "application/vnd.oci.image.layer.v1.tar+gzip"

    static func compression(_ mediaType: String) -> Compression? {
        switch mediaType {
        case "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar", "application/vnd.docker.image.rootfs.foreign.diff.tar":
            return Compression.none
        case "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
            return .gzip
        case "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            "application/vnd.docker.image.rootfs.diff.tar.zstd":
            return .zstd
        default:
            return nil
        }
    }
}

/// The walking differ. Apply writes straight into an overlay mount's upperdir (overlay whiteouts, lowerdirs for
/// the metadata of implied parents) and mounts anything else on a private temporary directory (whiteouts become
/// deletions). Compare mounts both sides read-only and writes the double walk's changes to the content store.
public struct WalkingDiffer: DiffApplier, DiffComparer {
    let content: any ContentMetadata
    let mountRoot: String
    let limit: Int64

    public init(content: any ContentMetadata, mountRoot: String, limit: Int64) {
        self.content = content
        self.mountRoot = mountRoot
        self.limit = limit
    }

    public func apply(_ layer: Descriptor, mounts: [Mount], payloads: [String: [UInt8]]) async throws(BerthError)
        -> Descriptor
    {
        guard LayerMediaType.compression(layer.mediaType) != nil else {
            throw .notImplemented("unsupported diff media type: \(layer.mediaType)")
        }
        let reader = try await content.reader(layer.digest)
        let applied: AppliedLayer
        do {
            applied = try await applyReader(reader, layer: layer, mounts: mounts)
            await reader.close()
        } catch {
            await reader.close()
            throw error
        }
        // The store verified the blob's digest when it was committed; its size must still be the descriptor's.
        guard layer.size <= 0 || applied.compressedSize == layer.size else {
            throw .failedPrecondition(
                "layer \(layer.digest): content does not match its descriptor (read \(applied.compressedSize) bytes; "
                    + "expected \(layer.size) bytes)")
        }
        return Descriptor(mediaType: LayerMediaType.uncompressed, digest: applied.diffID, size: applied.uncompressedSize)
    }

    private func applyReader(_ reader: any ContentReader, layer: Descriptor, mounts: [Mount]) async throws(BerthError)
        -> AppliedLayer
    {
        let label = "apply layer \(layer.digest)"
        if mounts.count == 1, mounts[0].type == "overlay", let upper = Self.option(mounts[0], "upperdir") {
            let lowers = Self.option(mounts[0], "lowerdir").map { $0.split(separator: ":").map(String.init) } ?? []
            let options = ApplyOptions(whiteouts: .overlay, lowerDirectories: lowers, maxUncompressedBytes: limit,
                                       label: label, hashCompressed: false)
            return try await WorkThreads.run { () async throws(BerthError) in
                try await LayerApplier.apply(ContentSource(reader), to: upper, options: options)
            }
        }
        let options = ApplyOptions(
            whiteouts: .delete, maxUncompressedBytes: limit, label: label, hashCompressed: false)
        return try await withTemporaryMount(mounts) { root throws(BerthError) in
            try await WorkThreads.run { () async throws(BerthError) in
                try await LayerApplier.apply(ContentSource(reader), to: root, options: options)
            }
        }
    }

    public func compare(lower: [Mount], upper: [Mount], options: DiffOptions) async throws(BerthError) -> Descriptor {
        let mediaType = options.mediaType.isEmpty ? LayerMediaType.gzip : options.mediaType
        guard let compression = LayerMediaType.compression(mediaType) else {
            throw .notImplemented("unsupported diff media type: \(mediaType)")
        }
        let ref = options.ref.isEmpty ? "diff-\(UInt64.random(in: 0...UInt64.max))" : options.ref
        return try await withTemporaryMount(Self.readOnly(lower)) { lowerRoot throws(BerthError) in
            try await withTemporaryMount(Self.readOnly(upper)) { upperRoot throws(BerthError) in
                try await WorkThreads.run { () async throws(BerthError) in
                    try await write(lower: lowerRoot, upper: upperRoot, compression: compression, mediaType: mediaType,
                                    ref: ref, labels: options.labels)
                }
            }
        }
    }

    private func write(lower: String, upper: String, compression: Compression, mediaType: String, ref: String,
                       labels: [String: String]) async throws(BerthError) -> Descriptor
    {
        let writer = try await content.writer(ref: ref, total: 0, expected: nil)
        do {
            try await writer.truncate(0)
            let compressed = DigestingSink(ContentWriterSink(writer))
            let compressor = try compression.compressing(BufferingSink(compressed))
            let uncompressed = DigestingSink(compressor)
            let tar = TarWriter(BufferingSink(uncompressed))
            try await LayerDiff.write(lower: lower, upper: upper, to: tar, whiteoutTime: Int64(time(nil)))
            let digest = try compressed.digest()
            let diffID = try uncompressed.digest()
            var allLabels = labels
            allLabels[SnapshotLabels.uncompressed] = diffID.description
            do {
                _ = try await writer.commit(size: compressed.count, expected: digest, labels: allLabels)
            } catch where error.code == .alreadyExists {
                var info = try await content.info(digest)
                if info.labels[SnapshotLabels.uncompressed] == nil {
                    info.labels[SnapshotLabels.uncompressed] = diffID.description
                    _ = try await content.update(info, paths: ["labels." + SnapshotLabels.uncompressed])
                }
            }
            await writer.close()
            return Descriptor(mediaType: mediaType, digest: digest, size: compressed.count)
        } catch {
            await writer.close()
            try? await content.abort(ref)
            throw error
        }
    }

    /// The value of `key=` in a mount's options.
    static func option(_ mount: Mount, _ key: String) -> String? {
        mount.options.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    /// The mounts made read-only, as containerd's `WithReadonlyTempMount`: an overlay's upperdir becomes its top
    /// lowerdir (no workdir needed), everything else gains `ro`.
    static func readOnly(_ mounts: [Mount]) -> [Mount] {
        mounts.map { mount in
            var mount = mount
            if mount.type == "overlay", let upper = option(mount, "upperdir") {
                let lowers = option(mount, "lowerdir")
                mount.options = mount.options.filter {
                    !$0.hasPrefix("upperdir=") && !$0.hasPrefix("workdir=") && !$0.hasPrefix("lowerdir=") && $0 != "rw"
                }
                mount.options.append("lowerdir=" + ([upper] + (lowers.map { [$0] } ?? [])).joined(separator: ":"))
                return mount
            }
            mount.options = mount.options.filter { $0 != "rw" } + ["ro"]
            return mount
        }
    }

    /// Mounts `mounts` on a fresh directory under the plugin's state, runs `body` on it, unmounts and removes it.
    /// No mounts means an empty directory (the lower side of a first layer).
    func withTemporaryMount<T>(_ mounts: [Mount], _ body: (String) async throws(BerthError) -> T)
        async throws(BerthError) -> T
    {
        var template = Array((mountRoot + "/m-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, let path = mkdtemp(base) else { return nil }
            return String(cString: path)
        }
        guard let target = made else {
            throw .internalError("create a temporary mount point: \(FileSystem.errnoMessage())")
        }
        defer { rmdir(target) }
        if mounts.isEmpty { return try await body(target) }
        do {
            return try await Mounting.withMounts(mounts, at: target) { try await body(target) }
        } catch {
            throw BerthError.wrap(error)
        }
    }
}
