import Foundation

/// A protobuf `Any` kept as its type URL and encoded bytes, so BerthCore can carry specs, runtime options and
/// extensions byte-exact without knowing their types.
public struct TypedValue: Sendable, Equatable, Hashable {
    public var typeURL: String
    public var value: [UInt8]

    public init(typeURL: String, value: [UInt8]) {
        self.typeURL = typeURL
        self.value = value
    }
}

/// A container record (containerd's `containers.Container`): metadata only; the running part is a task.
public struct ContainerRecord: Sendable, Equatable {
    public var id: String
    public var labels: [String: String]
    public var image: String
    public var runtimeName: String
    public var runtimeOptions: TypedValue?
    public var spec: TypedValue?
    public var snapshotter: String
    public var snapshotKey: String
    public var extensions: [String: TypedValue]
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, labels: [String: String] = [:], image: String = "", runtimeName: String = "",
        runtimeOptions: TypedValue? = nil, spec: TypedValue? = nil, snapshotter: String = "", snapshotKey: String = "",
        extensions: [String: TypedValue] = [:], createdAt: Date = .distantPast, updatedAt: Date = .distantPast
    ) {
        self.id = id
        self.labels = labels
        self.image = image
        self.runtimeName = runtimeName
        self.runtimeOptions = runtimeOptions
        self.spec = spec
        self.snapshotter = snapshotter
        self.snapshotKey = snapshotKey
        self.extensions = extensions
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// containerd's container filter fields: `id`, `runtime.name`, `image`, `labels.KEY`.
    public var filterAdaptor: FieldMapAdaptor {
        var fields = ["id": id]
        if !runtimeName.isEmpty { fields["runtime.name"] = runtimeName }
        if !image.isEmpty { fields["image"] = image }
        return FieldMapAdaptor(fields: fields, maps: ["labels": labels])
    }
}

/// The namespaced container store (containerd's `containers.Store`); the namespace comes from `RequestContext`.
/// Errors as containerd: NotFound, AlreadyExists, InvalidArgument for a bad id, a missing spec or runtime name.
public protocol ContainerStore: Sendable {
    func get(_ id: String) async throws(BerthError) -> ContainerRecord
    /// Filter fields as `ContainerRecord.filterAdaptor`.
    func list(_ filter: Filter) async throws(BerthError) -> [ContainerRecord]
    func create(_ container: ContainerRecord) async throws(BerthError) -> ContainerRecord
    /// `paths`: `labels`, `labels.KEY`, `spec`, `extensions`, `extensions.KEY`, `image`, `snapshotkey`; empty means
    /// all of those (then snapshotter and runtime name must be unchanged).
    func update(_ container: ContainerRecord, paths: [String]) async throws(BerthError) -> ContainerRecord
    func delete(_ id: String) async throws(BerthError)
}

/// Implemented by the metadata plugin's instance: the services ask `ic.single(.metadata, as: ContainersProvider)`.
public protocol ContainersProvider: Sendable {
    var containers: any ContainerStore { get }
}
