import BerthCore
import Foundation
import GRDB

/// Mark and sweep over the metadata database, as containerd's `metadata.GarbageCollect`: roots are images'
/// targets (and their `gc.ref.snapshot.*` labels), lease resources, and content or snapshots labelled
/// `containerd.io/gc.root`; references follow `containerd.io/gc.ref.content*` and
/// `containerd.io/gc.ref.snapshot.<snapshotter>` labels of content and snapshots, and each snapshot's parent,
/// within a namespace (`SnapshotGC`). Unmarked records are deleted; then blobs and backend snapshots that no
/// namespace references are removed. Expired leases go first.
public struct GCView: GarbageCollector {
    let store: MetadataStore

    public func onMutation(_ observer: @escaping @Sendable (Bool) -> Void) async {
        store.addMutationObserver(observer)
    }

    public func collect() async throws(BerthError) -> GCStats {
        let start = ContinuousClock.now
        let startedAt = Date()
        var stats = try await store.write { db in
            var stats = GCStats()
            stats.removedLeases = try Self.removeExpiredLeases(db, now: startedAt)
            for namespace in try String.fetchAll(db, cachedSQL: "SELECT name FROM namespaces") {
                let removed = try SnapshotGC.sweepNamespace(db, namespace)
                stats.removedContent += removed.content
                stats.removedSnapshots += removed.snapshots
            }
            return stats
        }
        // A commit between the backend's rename and its database row must not lose its blob: skip the blob sweep
        // while one is pending, and never remove a blob created after this collection started.
        if let backend = store.backend, await store.pendingCommits == 0 {
            let referenced = Set(try await store.read { db in try String.fetchAll(db, cachedSQL: "SELECT DISTINCT digest FROM content") })
            for blob in try await backend.walk()
            where !referenced.contains(blob.digest.description) && blob.createdAt < startedAt {
                do {
                    try await backend.delete(blob.digest)
                    stats.removedBlobs += 1
                } catch where error.code == .notFound {}
            }
        }
        for (name, backend) in store.snapshotters.sorted(by: { $0.key < $1.key }) {
            stats.sweptSnapshots += try await SnapshotGC.sweepBackend(store: store, name: name, backend: backend)
        }
        stats.duration = ContinuousClock.now - start
        return stats
    }

    static func removeExpiredLeases(_ db: Database, now: Date) throws -> Int {
        var removed = 0
        let rows = try Row.fetchAll(db, cachedSQL: "SELECT namespace, id, value FROM lease_labels WHERE key = ?", arguments: [GCLabels.expire])
        for row in rows {
            guard let expiry = RFC3339.parse(row["value"]), expiry < now else { continue }
            try db.run(
                sql: "DELETE FROM leases WHERE namespace = ? AND id = ?", arguments: [row["namespace"] as String, row["id"] as String])
            removed += db.changesCount
        }
        return removed
    }
}

extension MetadataStore {
    nonisolated func addMutationObserver(_ observer: @escaping @Sendable (Bool) -> Void) {
        mutationObservers.withLock { $0.append(observer) }
    }
}

/// The metadata plugin's instance: one database, one view per kind of object.
public struct Metadata: MetadataProvider, Closable {
    public let store: MetadataStore
    public var namespaces: any NamespaceStore { store }
    public var content: any ContentMetadata { ContentView(store: store) }
    public var images: any ImageStore { ImageView(store: store) }
    public var leases: any LeaseManager { LeaseView(store: store) }
    public var gc: any GarbageCollector { GCView(store: store) }
    public var snapshots: any SnapshotterProvider { SnapshotsView(store: store) }

    public func close() async throws { try await store.close() }
}
