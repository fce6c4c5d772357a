import BerthCore
import Foundation
import GRDB

/// Mark and sweep over the metadata database, as containerd's `metadata.GarbageCollect`:
/// roots are images' targets, lease resources, and content labelled `containerd.io/gc.root`; references follow
/// `containerd.io/gc.ref.content*` labels within a namespace. Unmarked content references are deleted; then blobs
/// no namespace references are removed from the backend. Expired leases go first.
public struct GCView: GarbageCollector {
    let store: MetadataStore

    public func onMutation(_ observer: @escaping @Sendable (Bool) -> Void) async {
        await store.addMutationObserver(observer)
    }

    public func collect() async throws(BerthError) -> GCStats {
        let start = ContinuousClock.now
        let startedAt = Date()
        var stats = try await store.write { db in
            var stats = GCStats()
            stats.removedLeases = try Self.removeExpiredLeases(db, now: startedAt)
            for namespace in try String.fetchAll(db, sql: "SELECT DISTINCT namespace FROM content") {
                stats.removedContent += try Self.sweepContent(db, namespace)
            }
            return stats
        }
        // A commit between the backend's rename and its database row must not lose its blob: skip the blob sweep
        // while one is pending, and never remove a blob created after this collection started.
        if let backend = store.backend, await store.pendingCommits == 0 {
            let referenced = Set(try await store.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT digest FROM content") })
            for blob in try await backend.walk()
            where !referenced.contains(blob.digest.description) && blob.createdAt < startedAt {
                do {
                    try await backend.delete(blob.digest)
                    stats.removedBlobs += 1
                } catch where error.code == .notFound {}
            }
        }
        stats.duration = ContinuousClock.now - start
        return stats
    }

    static func removeExpiredLeases(_ db: Database, now: Date) throws -> Int {
        var removed = 0
        let rows = try Row.fetchAll(db, sql: "SELECT namespace, id, value FROM lease_labels WHERE key = ?", arguments: [GCLabels.expire])
        for row in rows {
            guard let expiry = parseRFC3339(row["value"]), expiry < now else { continue }
            try db.execute(
                sql: "DELETE FROM leases WHERE namespace = ? AND id = ?", arguments: [row["namespace"] as String, row["id"] as String])
            removed += db.changesCount
        }
        return removed
    }

    static func parseRFC3339(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    /// Marks one namespace's content from its roots and deletes what is unmarked; returns how many were deleted.
    static func sweepContent(_ db: Database, _ namespace: String) throws -> Int {
        var roots = Set(try String.fetchAll(db, sql: "SELECT digest FROM images WHERE namespace = ?", arguments: [namespace]))
        roots.formUnion(try String.fetchAll(
            db, sql: "SELECT id FROM lease_resources WHERE namespace = ? AND type = 'content'", arguments: [namespace]))
        roots.formUnion(try String.fetchAll(
            db, sql: "SELECT digest FROM content_labels WHERE namespace = ? AND key = ?", arguments: [namespace, GCLabels.root]))
        var marked = Set<String>()
        var queue = Array(roots)
        while let digest = queue.popLast() {
            guard marked.insert(digest).inserted else { continue }
            let references = try String.fetchAll(
                db,
                sql: "SELECT value FROM content_labels WHERE namespace = ? AND digest = ? AND (key = ? OR key LIKE ?)",
                arguments: [namespace, digest, GCLabels.contentRefPrefix, GCLabels.contentRefPrefix + ".%"])
            queue += references.filter { !marked.contains($0) }
        }
        var removed = 0
        for digest in try String.fetchAll(db, sql: "SELECT digest FROM content WHERE namespace = ?", arguments: [namespace])
        where !marked.contains(digest) {
            try db.execute(sql: "DELETE FROM content WHERE namespace = ? AND digest = ?", arguments: [namespace, digest])
            removed += 1
        }
        return removed
    }
}

extension MetadataStore {
    func addMutationObserver(_ observer: @escaping @Sendable (Bool) -> Void) {
        mutationObservers.append(observer)
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

    public func close() async throws { try await store.close() }
}
