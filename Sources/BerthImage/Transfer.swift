import BerthCore
import BerthOCI
import BerthRegistry

/// One progress report of a transfer (containerd's `types.transfer.Progress`): an event such as `resolving`,
/// `downloading`, `complete`, `extracting`, for a named object (a reference or a descriptor) with byte counts.
public struct TransferProgress: Sendable, Equatable {
    public var event: String
    public var name: String
    public var parents: [String]
    public var progress: Int64
    public var total: Int64
    public var descriptor: OCIDescriptor?

    public init(
        event: String, name: String, parents: [String] = [], progress: Int64 = 0, total: Int64 = 0,
        descriptor: OCIDescriptor? = nil
    ) {
        self.event = event
        self.name = name
        self.parents = parents
        self.progress = progress
        self.total = total
        self.descriptor = descriptor
    }
}

/// Receives progress reports; must not block (the gRPC side queues them onto the client's progress stream).
public typealias ProgressSink = @Sendable (TransferProgress) -> Void

/// A byte stream between the client and the daemon (containerd's streaming service: `Data` chunks with
/// `WindowUpdate` flow control), as a transfer reads (import) or writes (export) it.
public protocol TransferByteStream: Sendable {
    /// The next chunk; empty at the end of the stream.
    func read() async throws(BerthError) -> [UInt8]
    func write(_ bytes: [UInt8]) async throws(BerthError)
    /// Ends the sending side (the reader sees the end of the stream).
    func close() async
}

/// A registry end (containerd's `types.transfer.OCIRegistry` with its `RegistryResolver`).
public struct RegistrySpec: Sendable {
    public var reference: String
    /// `hosts.toml` directory (`--hosts-dir`); nil uses the daemon's default.
    public var hostsDir: String?
    /// `http` for `--plain-http`; nil means https (http for loopback hosts when hosts.toml says so).
    public var defaultScheme: String?
    public var headers: [String: [String]]
    /// Where credentials come from: the client's auth stream, or none.
    public var credentials: CredentialSource

    public init(
        reference: String, hostsDir: String? = nil, defaultScheme: String? = nil, headers: [String: [String]] = [:],
        credentials: CredentialSource = .none
    ) {
        self.reference = reference
        self.hostsDir = hostsDir
        self.defaultScheme = defaultScheme
        self.headers = headers
        self.credentials = credentials
    }
}

/// Unpack an image's platform into a snapshotter (containerd's `types.transfer.UnpackConfiguration`).
public struct UnpackSpec: Sendable, Equatable {
    /// Nil means the host platform.
    public var platform: OCIPlatform?
    /// Empty means the daemon's default snapshotter.
    public var snapshotter: String

    public init(platform: OCIPlatform? = nil, snapshotter: String = "") {
        self.platform = platform
        self.snapshotter = snapshotter
    }
}

/// One more name for an image store end (containerd 2's `types.transfer.ImageReference`). On import, a prefix
/// reference is ctr's `--base-name`: tag-only names in the archive become `name:tag`, full names are kept only when
/// they start with `name`, and `addDigest` also creates `name@<digest>` (ctr's `--digests`; `skipNamedDigest` only
/// for unnamed images). A non-prefix reference names the imported index (like `name`), or, on export, one more
/// image to write.
public struct ImageReference: Sendable, Equatable {
    public var name: String
    public var isPrefix: Bool
    public var allowOverwrite: Bool
    public var addDigest: Bool
    public var skipNamedDigest: Bool

    public init(
        name: String, isPrefix: Bool = false, allowOverwrite: Bool = true, addDigest: Bool = false,
        skipNamedDigest: Bool = false
    ) {
        self.name = name
        self.isPrefix = isPrefix
        self.allowOverwrite = allowOverwrite
        self.addDigest = addDigest
        self.skipNamedDigest = skipNamedDigest
    }
}

/// The image store end (containerd's `types.transfer.ImageStore`).
public struct ImageStoreSpec: Sendable, Equatable {
    /// The image name to create or read; for an import, empty names images from the archive's references, and
    /// a name keeps the archive's whole index under it (ctr's `--index-name`). For an export, empty with no
    /// `extraReferences` exports every image of the namespace.
    public var name: String
    public var labels: [String: String]
    /// Platforms to fetch, push or export; empty means the host's (or every platform with `allMetadata`).
    public var platforms: [OCIPlatform]
    /// Fetch the manifests and configs of every platform, layers only of the chosen ones.
    public var allMetadata: Bool
    public var unpacks: [UnpackSpec]
    /// More names (see `ImageReference`): import prefixes and digest names, more images to export.
    public var extraReferences: [ImageReference]
    /// Import of a Docker archive: gzip its uncompressed layers (ctr's `--compress-blobs`, containerd 2's
    /// `ImageImportStream.force_compress`).
    public var forceCompress: Bool

    public init(
        name: String = "", labels: [String: String] = [:], platforms: [OCIPlatform] = [], allMetadata: Bool = false,
        unpacks: [UnpackSpec] = [], extraReferences: [ImageReference] = [], forceCompress: Bool = false
    ) {
        self.name = name
        self.labels = labels
        self.platforms = platforms
        self.allMetadata = allMetadata
        self.unpacks = unpacks
        self.extraReferences = extraReferences
        self.forceCompress = forceCompress
    }
}

/// Archive formats for import and export.
public enum ArchiveFormat: String, Sendable {
    /// An OCI image layout in a tar (`oci-layout`, `index.json`, `blobs/`), with Docker's `manifest.json` too
    /// unless skipped, as containerd writes it.
    case oci
    /// `docker save`'s layout (`manifest.json`, `repositories`, `<id>/layer.tar`).
    case docker
}

/// Options of an export (containerd's `types.transfer.ImageExportStream`).
public struct ExportSpec: Sendable, Equatable {
    public var format: ArchiveFormat
    public var platforms: [OCIPlatform]
    public var allPlatforms: Bool
    /// Skip Docker's `manifest.json` in an OCI archive.
    public var skipDockerManifest: Bool

    public init(format: ArchiveFormat = .oci, platforms: [OCIPlatform] = [], allPlatforms: Bool = false,
                skipDockerManifest: Bool = false) {
        self.format = format
        self.platforms = platforms
        self.allPlatforms = allPlatforms
        self.skipDockerManifest = skipDockerManifest
    }
}

/// What to transfer from (containerd's transfer source types).
public enum TransferSource: Sendable {
    case registry(RegistrySpec)
    case imageStore(ImageStoreSpec)
    /// An OCI or Docker archive streamed by the client (`types.transfer.ImageImportStream`).
    case importStream(any TransferByteStream, mediaType: String)
}

/// What to transfer to (containerd's transfer destination types).
public enum TransferDestination: Sendable {
    case registry(RegistrySpec)
    case imageStore(ImageStoreSpec)
    /// An archive streamed back to the client (`types.transfer.ImageExportStream`).
    case exportStream(any TransferByteStream, ExportSpec)
}

/// What the transfer plugin (`io.containerd.transfer.v1.local`) provides: moves images between a registry, the
/// image store and archive streams. Unsupported pairs are NotImplemented, as containerd answers.
public protocol Transferrer: Sendable {
    func transfer(_ source: TransferSource, _ destination: TransferDestination, progress: ProgressSink?)
        async throws(BerthError)
}
