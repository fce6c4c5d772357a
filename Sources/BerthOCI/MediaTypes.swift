/// Media types of the OCI image spec and Docker's image manifest v2 schema 2, as containerd's `images` package names them.
public enum MediaType {
    // OCI image spec v1.
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let ociLayer = "application/vnd.oci.image.layer.v1.tar"
    public static let ociLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let ociLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    public static let ociLayerNonDistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    public static let ociLayerNonDistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    public static let ociLayerNonDistributableZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    public static let ociEmpty = "application/vnd.oci.empty.v1+json"
    public static let ociLayout = "application/vnd.oci.layout.header.v1+json"

    // Docker image manifest v2 schema 2.
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    public static let dockerLayer = "application/vnd.docker.image.rootfs.diff.tar"
    public static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    public static let dockerLayerZstd = "application/vnd.docker.image.rootfs.diff.tar.zstd"
    public static let dockerForeignLayerGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    public static let dockerPluginConfig = "application/vnd.docker.plugin.v1+json"
    /// Schema 1 (signed); recognised so that it can be refused by name.
    public static let dockerManifestSchema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"

    /// Layer compression named by a media type.
    public enum Compression: Sendable, Equatable { case uncompressed, gzip, zstd }

    /// True for a single-image manifest (OCI or Docker schema 2).
    public static func isManifest(_ mediaType: String) -> Bool {
        mediaType == ociManifest || mediaType == dockerManifest
    }

    /// True for an index or a Docker manifest list.
    public static func isIndex(_ mediaType: String) -> Bool {
        mediaType == ociIndex || mediaType == dockerManifestList
    }

    /// True for an image config.
    public static func isConfig(_ mediaType: String) -> Bool {
        mediaType == ociConfig || mediaType == dockerConfig
    }

    /// True for a layer media type (containerd's `images.IsLayerType`), including non-distributable/foreign ones.
    public static func isLayer(_ mediaType: String) -> Bool {
        let base = mediaType.split(separator: "+", maxSplits: 1).first.map(String.init) ?? mediaType
        if base.hasPrefix("application/vnd.oci.image.layer.") { return true }
        switch mediaType {
        case dockerLayer, dockerLayerGzip, dockerLayerZstd, dockerForeignLayerGzip,
            "application/vnd.docker.image.rootfs.foreign.diff.tar":
            return true
        default:
            return false
        }
    }

    /// True for layers a registry does not serve (OCI non-distributable, Docker foreign): fetched from `urls` if at all.
    public static func isNonDistributable(_ mediaType: String) -> Bool {
        mediaType.hasPrefix("application/vnd.oci.image.layer.nondistributable.")
            || mediaType.hasPrefix("application/vnd.docker.image.rootfs.foreign.")
    }

    /// The compression of a layer media type, nil when the type is not a layer or names an unknown compression.
    public static func compression(of mediaType: String) -> Compression? {
        guard isLayer(mediaType) else { return nil }
        if mediaType.hasSuffix("+gzip") || mediaType.hasSuffix(".tar.gzip") { return .gzip }
        if mediaType.hasSuffix("+zstd") || mediaType.hasSuffix(".tar.zstd") { return .zstd }
        if mediaType.hasSuffix(".tar") { return .uncompressed }
        return nil
    }

    /// The `Accept` list for resolving a manifest, as containerd's resolver sends it.
    public static let manifestAccept: [String] = [dockerManifest, dockerManifestList, ociManifest, ociIndex, "*/*"]
}
