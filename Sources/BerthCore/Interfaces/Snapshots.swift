import Foundation

/// A mount a snapshotter returns (containerd's `mount.Mount`): snapshotters describe mounts, callers perform them.
/// `target` is a path inside the mount point for stacked mounts; usually empty.
public struct Mount: Sendable, Equatable, Codable, Hashable {
    public var type: String
    public var source: String
    public var target: String
    public var options: [String]

    public init(type: String, source: String, target: String = "", options: [String] = []) {
        self.type = type
        self.source = source
        self.target = target
        self.options = options
    }
}

/// containerd's snapshot kinds. Raw values are the proto enum's numbers (`containerd.services.snapshots.v1.Kind`).
/// Active snapshots never become committed ones and vice versa: commit creates a new committed snapshot.
public enum SnapshotKind: Int, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case view = 1
    case active = 2
    case committed = 3

    /// The spelling containerd uses in filters and `ctr snapshots ls`: `View`, `Active`, `Committed`.
    public var description: String {
        switch self {
        case .view: "View"
        case .active: "Active"
        case .committed: "Committed"
        }
    }

    public init?(name: String) {
        guard let kind = Self.allCases.first(where: { $0.description.lowercased() == name.lowercased() }) else {
            return nil
        }
        self = kind
    }
}

/// What `Stat` returns (containerd's `snapshots.Info`). `name` is the key of an active or view snapshot or the name
/// of a committed one; `parent` is empty for a snapshot without parent.
public struct SnapshotInfo: Sendable, Equatable {
    public var kind: SnapshotKind
    public var name: String
    public var parent: String
    public var labels: [String: String]
    public var createdAt: Date
    public var updatedAt: Date

    public init(kind: SnapshotKind, name: String, parent: String = "", labels: [String: String] = [:],
                createdAt: Date = .distantPast, updatedAt: Date = .distantPast) {
        self.kind = kind
        self.name = name
        self.parent = parent
        self.labels = labels
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Fields for containerd's snapshot filters: `kind`, `name`, `parent`, `labels.KEY`.
    public var filterAdaptor: FieldMapAdaptor {
        // containerd's adaptor spells kinds in lower case (`kind==active`).
        FieldMapAdaptor(
            fields: ["kind": kind.description.lowercased(), "name": name, "parent": parent], maps: ["labels": labels])
    }
}

/// Disk usage of one snapshot's own layer (not its parents'): bytes and inodes.
public struct SnapshotUsage: Sendable, Equatable {
    public var size: Int64
    public var inodes: Int64

    public init(size: Int64 = 0, inodes: Int64 = 0) {
        self.size = size
        self.inodes = inodes
    }
}

/// Labels with this prefix are "inherited by the snapshotter" (containerd's `containerd.io/snapshot/` convention):
/// the metadata layer passes them down to the backend; other labels stay in the metadata layer.
public enum SnapshotLabels {
    public static let inheritedPrefix = "containerd.io/snapshot/"
    /// Set by the pull path so a snapshotter can recognise an unpacked layer's chain id.
    public static let uncompressed = "containerd.io/uncompressed"
    /// Set by the unpacker on an extraction Prepare to the target chain id; passed down like the prefixed labels.
    public static let snapshotRef = "containerd.io/snapshot.ref"

    /// The labels the metadata layer hands to a backend on Prepare, View and Commit (containerd's
    /// `snapshots.FilterInheritedLabels`): those under `containerd.io/snapshot/` and `containerd.io/snapshot.ref`.
    /// Backends store what they are given; a child never inherits its parent's labels.
    public static func inherited(_ labels: [String: String]) -> [String: String] {
        labels.filter { $0.key == snapshotRef || $0.key.hasPrefix(inheritedPrefix) }
    }
}

/// A snapshotter (`io.containerd.snapshotter.v1.*`), containerd's `snapshots.Snapshotter`. Keys are opaque strings
/// chosen by the caller. Errors: NotFound for an unknown key, AlreadyExists for a taken key, FailedPrecondition for
/// removing a snapshot with children or committing a key that is not active, InvalidArgument for a bad request.
/// Backends are not namespaced; the metadata plugin puts namespaces in front of them.
public protocol Snapshotter: Sendable {
    func stat(_ key: String) async throws(BerthError) -> SnapshotInfo
    /// `paths`: `labels` or `labels.KEY`; empty means all labels. Returns the stored info.
    func update(_ info: SnapshotInfo, paths: [String]) async throws(BerthError) -> SnapshotInfo
    /// The snapshot's own usage; for an active snapshot computed now.
    func usage(_ key: String) async throws(BerthError) -> SnapshotUsage
    /// The mounts of an active or view snapshot (FailedPrecondition for a committed one).
    func mounts(_ key: String) async throws(BerthError) -> [Mount]
    /// A writable snapshot on top of the committed `parent` (empty: none).
    func prepare(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount]
    /// A read-only snapshot of the committed `parent`.
    func view(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount]
    /// Turns active `key` into committed `name`; `key` is gone afterwards.
    func commit(_ name: String, key: String, labels: [String: String]) async throws(BerthError)
    /// Removes a snapshot without children.
    func remove(_ key: String) async throws(BerthError)
    /// Every snapshot matching `filter` (fields as `SnapshotInfo.filterAdaptor`).
    func walk(_ filter: Filter) async throws(BerthError) -> [SnapshotInfo]
    /// Frees space left by removals done lazily (containerd's optional `Cleaner`); a no-op by default.
    func cleanup() async throws(BerthError)
    /// Releases the backend's resources; calling it twice is harmless.
    func close() async
}

extension Snapshotter {
    public func cleanup() async throws(BerthError) {}
}

/// The namespaced snapshotters the metadata plugin provides, by snapshotter name (`overlayfs`, `native`, …).
/// The namespace comes from `RequestContext`; keys of different namespaces never collide.
public protocol SnapshotterProvider: Sendable {
    /// Names of the snapshotters that loaded.
    var snapshotterNames: [String] { get }
    /// InvalidArgument ("snapshotter not loaded: NAME"), as containerd, for an unknown name.
    func snapshotter(_ name: String) throws(BerthError) -> any Snapshotter
}
