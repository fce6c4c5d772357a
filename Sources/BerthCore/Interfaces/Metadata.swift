import Foundation

/// An OCI descriptor: what an image's target points at.
public struct Descriptor: Sendable, Equatable, Codable {
    public var mediaType: String
    public var digest: Digest
    public var size: Int64
    public var annotations: [String: String]

    public init(mediaType: String, digest: Digest, size: Int64, annotations: [String: String] = [:]) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
    }
}

/// An image record (containerd's `images.Image`): a name pointing at a target descriptor.
public struct ImageRecord: Sendable, Equatable {
    public var name: String
    public var target: Descriptor
    public var labels: [String: String]
    public var createdAt: Date
    public var updatedAt: Date

    public init(name: String, target: Descriptor, labels: [String: String] = [:], createdAt: Date = .distantPast,
                updatedAt: Date = .distantPast) {
        self.name = name
        self.target = target
        self.labels = labels
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

public struct Lease: Sendable, Equatable {
    public var id: String
    public var labels: [String: String]
    public var createdAt: Date

    public init(id: String, labels: [String: String], createdAt: Date) {
        self.id = id
        self.labels = labels
        self.createdAt = createdAt
    }
}

/// A resource a lease protects: `content` (a digest), `ingests` (a ref), `snapshots/<snapshotter>` (a key).
public struct LeaseResource: Sendable, Hashable {
    public var id: String
    public var type: String

    public init(id: String, type: String) {
        self.id = id
        self.type = type
    }
}

/// Well-known labels, as containerd spells them.
public enum GCLabels {
    public static let root = "containerd.io/gc.root"
    public static let expire = "containerd.io/gc.expire"
    public static let contentRefPrefix = "containerd.io/gc.ref.content"
    public static let snapshotRefPrefix = "containerd.io/gc.ref.snapshot."
    public static let flat = "containerd.io/gc.flat"
}

/// The namespaced content store the metadata plugin provides: the backend store plus per-namespace references,
/// labels, leases and GC. The namespace comes from `RequestContext`.
public protocol ContentMetadata: Sendable {
    func info(_ digest: Digest) async throws(BerthError) -> ContentInfo
    /// `paths`: `labels` or `labels.KEY`; empty means all labels.
    func update(_ info: ContentInfo, paths: [String]) async throws(BerthError) -> ContentInfo
    /// Filter fields: `digest`, `size`, `labels.KEY`.
    func list(_ filter: Filter) async throws(BerthError) -> [ContentInfo]
    func delete(_ digest: Digest) async throws(BerthError)
    func reader(_ digest: Digest) async throws(BerthError) -> any ContentReader
    func status(_ ref: String) async throws(BerthError) -> IngestStatus
    /// Filter fields: `ref`.
    func statuses(_ filter: Filter) async throws(BerthError) -> [IngestStatus]
    func abort(_ ref: String) async throws(BerthError)
    func writer(ref: String, total: Int64, expected: Digest?) async throws(BerthError) -> any MetadataContentWriter
}

/// A namespaced ingest; commit records the blob in the namespace with its labels.
public protocol MetadataContentWriter: ContentWriter {
    func commit(size: Int64, expected: Digest?, labels: [String: String]) async throws(BerthError) -> Digest
}

extension MetadataContentWriter {
    public func commit(size: Int64, expected: Digest?) async throws(BerthError) -> Digest {
        try await commit(size: size, expected: expected, labels: [:])
    }
}

public protocol ImageStore: Sendable {
    func get(_ name: String) async throws(BerthError) -> ImageRecord
    /// Filter fields: `name`, `target.digest`, `target.mediatype`, `labels.KEY`.
    func list(_ filter: Filter) async throws(BerthError) -> [ImageRecord]
    func create(_ image: ImageRecord) async throws(BerthError) -> ImageRecord
    /// `paths`: `labels`, `labels.KEY`, `target`, `annotations`-free as containerd; empty means labels and target.
    func update(_ image: ImageRecord, paths: [String]) async throws(BerthError) -> ImageRecord
    func delete(_ name: String) async throws(BerthError)
}

public protocol LeaseManager: Sendable {
    /// An empty id gets a generated one; AlreadyExists for a taken id.
    func create(id: String, labels: [String: String]) async throws(BerthError) -> Lease
    func delete(_ id: String) async throws(BerthError)
    /// Filter fields: `id`, `labels.KEY`.
    func list(_ filter: Filter) async throws(BerthError) -> [Lease]
    func addResource(_ lease: String, _ resource: LeaseResource) async throws(BerthError)
    func deleteResource(_ lease: String, _ resource: LeaseResource) async throws(BerthError)
    func listResources(_ lease: String) async throws(BerthError) -> [LeaseResource]
}

/// What a collection removed.
public struct GCStats: Sendable, Equatable {
    public var removedContent: Int = 0
    public var removedBlobs: Int = 0
    public var removedLeases: Int = 0
    public var removedIngests: Int = 0
    /// Snapshot records removed from namespaces (unreferenced keys).
    public var removedSnapshots: Int = 0
    /// Snapshots removed from backends because no namespace referenced them any more.
    public var sweptSnapshots: Int = 0
    public var duration: Duration = .zero
    public init() {}
}

/// The metadata store's collector: mark from roots (images, leases, gc.root labels) through gc.ref labels and
/// snapshot parents, sweep records, then sweep blobs and backend snapshots no namespace references.
public protocol GarbageCollector: Sendable {
    func collect() async throws(BerthError) -> GCStats
    /// Called after each committed change: `deletion` true for removals (containerd's dirty counters).
    func onMutation(_ observer: @escaping @Sendable (_ deletion: Bool) -> Void) async
}

/// The GC scheduler plugin (`io.containerd.gc.v1.scheduler`): `sync` deletes wait for a collection.
public protocol GCScheduler: Sendable {
    func scheduleAndWait() async throws(BerthError) -> GCStats
}

/// What the metadata plugin (`io.containerd.metadata.v1`) provides: one database, seen through one protocol per
/// kind of object, so services ask for exactly what they use.
public protocol MetadataProvider: Sendable {
    var namespaces: any NamespaceStore { get }
    var content: any ContentMetadata { get }
    var images: any ImageStore { get }
    var leases: any LeaseManager { get }
    var gc: any GarbageCollector { get }
    /// Every loaded snapshotter, namespaced: keys, parents, kinds and labels live in the metadata database.
    var snapshots: any SnapshotterProvider { get }
}
