/// Options of a diff between two mounts (containerd's `diff.Config`).
public struct DiffOptions: Sendable, Equatable {
    /// Media type of the layer to write; empty means `application/vnd.oci.image.layer.v1.tar+gzip`.
    public var mediaType: String
    /// Content ingest ref; empty means a generated one.
    public var ref: String
    /// Labels of the committed blob (the differ adds `containerd.io/uncompressed`).
    public var labels: [String: String]

    public init(mediaType: String = "", ref: String = "", labels: [String: String] = [:]) {
        self.mediaType = mediaType
        self.ref = ref
        self.labels = labels
    }
}

/// Applies a layer blob from the content store onto mounts (containerd's `diff.Applier`), returning the
/// descriptor of the uncompressed tar it read (its digest is the layer's diff ID). A media type the applier does
/// not handle is NotImplemented, so a chain of appliers can try the next one.
public protocol DiffApplier: Sendable {
    func apply(_ layer: Descriptor, mounts: [Mount], payloads: [String: [UInt8]]) async throws(BerthError)
        -> Descriptor
}

/// Computes the changes from `lower` to `upper` as a layer blob in the content store (containerd's
/// `diff.Comparer`), returning its descriptor. An unsupported media type is NotImplemented.
public protocol DiffComparer: Sendable {
    func compare(lower: [Mount], upper: [Mount], options: DiffOptions) async throws(BerthError) -> Descriptor
}

/// Both halves: what a differ plugin (`io.containerd.differ.v1.*`) and the diff service provide.
public typealias Differ = DiffApplier & DiffComparer
