import BerthCore
import Foundation
import GRDB

/// The mark phase over one namespace's content and snapshots, and the sweep of snapshot backends
/// (containerd's metadata/gc.go `scanRoots`/`references` and metadata/snapshot.go `garbageCollect`).
enum SnapshotGC {
    /// A GC node: a blob reference by digest, or a snapshot by snapshotter and key.
    enum Node: Hashable {
        case content(String)
        case snapshot(String, String)
    }

    /// Containers' roots: their snapshot key and what their `gc.ref.*` labels name (`ContainerView.gcRoots`).
    static func containerRoots(_ db: Database, _ namespace: String) throws -> [Node] {
        try ContainerView.gcRoots(db, namespace)
    }

    /// The nodes a `gc.ref.*` label names: `containerd.io/gc.ref.content[.name|/name]` → content,
    /// `containerd.io/gc.ref.snapshot.<snapshotter>[/name]` → snapshot.
    static func reference(_ key: String, _ value: String) -> Node? {
        if key.hasPrefix(GCLabels.snapshotRefPrefix) {
            let rest = key.dropFirst(GCLabels.snapshotRefPrefix.count)
            let snapshotter = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            return snapshotter.isEmpty ? nil : .snapshot(String(snapshotter), value)
        }
        if key.hasPrefix(GCLabels.contentRefPrefix) {
            let rest = key.dropFirst(GCLabels.contentRefPrefix.count)
            guard rest.isEmpty || rest.hasPrefix(".") || rest.hasPrefix("/") else { return nil }
            return .content(value)
        }
        return nil
    }

    /// Marks from the namespace's roots and deletes unmarked content references and snapshot records.
    static func sweepNamespace(_ db: Database, _ namespace: String) throws -> (content: Int, snapshots: Int) {
        let refPattern = "containerd.io/gc.ref.%"
        var roots: [Node] = try String.fetchAll(
            db, cachedSQL: "SELECT digest FROM images WHERE namespace = ?", arguments: [namespace]
        ).map { .content($0) }
        for row in try Row.fetchAll(
            db, cachedSQL: "SELECT key, value FROM image_labels WHERE namespace = ? AND key LIKE ?",
            arguments: [namespace, GCLabels.snapshotRefPrefix + "%"])
        {
            if case .snapshot(let ss, let key)? = reference(row[0], row[1]) { roots.append(.snapshot(ss, key)) }
        }
        for row in try Row.fetchAll(
            db, cachedSQL: "SELECT type, id FROM lease_resources WHERE namespace = ?", arguments: [namespace])
        {
            let (type, id): (String, String) = (row[0], row[1])
            if type == "content" {
                roots.append(.content(id))
            } else if type.hasPrefix("snapshots/") {
                roots.append(.snapshot(String(type.dropFirst("snapshots/".count)), id))
            }
        }
        roots += try String.fetchAll(
            db, cachedSQL: "SELECT digest FROM content_labels WHERE namespace = ? AND key = ?",
            arguments: [namespace, GCLabels.root]
        ).map { .content($0) }
        roots += try containerRoots(db, namespace)

        // Edges: content labels; snapshot parents and labels. Loaded once per namespace.
        var edges: [Node: [Node]] = [:]
        for row in try Row.fetchAll(
            db, cachedSQL: "SELECT digest, key, value FROM content_labels WHERE namespace = ? AND key LIKE ?",
            arguments: [namespace, refPattern])
        {
            if let target = reference(row[1], row[2]) { edges[.content(row[0]), default: []].append(target) }
        }
        var snapshotIDs: [Node: Int64] = [:]
        var nodeByID: [Int64: Node] = [:]
        for row in try Row.fetchAll(
            db, cachedSQL: "SELECT id, snapshotter, key, parent FROM snapshots WHERE namespace = ?", arguments: [namespace])
        {
            let (id, snapshotter, key, parent): (Int64, String, String, String) = (row[0], row[1], row[2], row[3])
            let node = Node.snapshot(snapshotter, key)
            snapshotIDs[node] = id
            nodeByID[id] = node
            if !parent.isEmpty { edges[node, default: []].append(.snapshot(snapshotter, parent)) }
        }
        for row in try Row.fetchAll(
            db,
            cachedSQL: """
                SELECT l.snapshot, l.key, l.value FROM snapshot_labels l JOIN snapshots s ON s.id = l.snapshot
                WHERE s.namespace = ? AND (l.key = ? OR l.key LIKE ?)
                """, arguments: [namespace, GCLabels.root, refPattern])
        {
            let (id, key, value): (Int64, String, String) = (row[0], row[1], row[2])
            guard let node = nodeByID[id] else { continue }
            if key == GCLabels.root {
                roots.append(node)
            } else if let target = reference(key, value) {
                edges[node, default: []].append(target)
            }
        }

        var marked = Set<Node>()
        var queue = roots
        while let node = queue.popLast() {
            guard marked.insert(node).inserted else { continue }
            for next in edges[node] ?? [] where !marked.contains(next) { queue.append(next) }
        }

        var removedContent = 0
        for digest in try String.fetchAll(db, cachedSQL: "SELECT digest FROM content WHERE namespace = ?", arguments: [namespace])
        where !marked.contains(.content(digest)) {
            try db.run(sql: "DELETE FROM content WHERE namespace = ? AND digest = ?", arguments: [namespace, digest])
            removedContent += 1
        }
        var removedSnapshots = 0
        for (node, id) in snapshotIDs where !marked.contains(node) {
            try db.run(sql: "DELETE FROM snapshots WHERE id = ?", arguments: [id])
            removedSnapshots += 1
        }
        return (removedContent, removedSnapshots)
    }

    /// Removes from one backend every snapshot that no metadata row (of any namespace) references, leaves first,
    /// repeating until no unreferenced leaf is left. The backend is walked before the rows and in-flight keys are
    /// read, so a snapshot being created concurrently is always seen as referenced.
    static func sweepBackend(store: MetadataStore, name: String, backend: any Snapshotter) async throws(BerthError)
        -> Int
    {
        let infos = try await backend.walk(.all)
        let inflight = store.inflightSnapshots
        let rows = try await store.read { db in
            Set(try String.fetchAll(db, cachedSQL: "SELECT backend_key FROM snapshots WHERE snapshotter = ?", arguments: [name]))
        }
        var children: [String: Int] = [:]
        var parentOf: [String: String] = [:]
        for info in infos where !info.parent.isEmpty {
            children[info.parent, default: 0] += 1
            parentOf[info.name] = info.parent
        }
        var candidates = Set(infos.map(\.name).filter { !rows.contains($0) && inflight[$0] == nil })
        var removed = 0
        while true {
            let leaves = candidates.filter { (children[$0] ?? 0) == 0 }.sorted()
            if leaves.isEmpty { break }
            for key in leaves {
                candidates.remove(key)
                do {
                    try await backend.remove(key)
                    removed += 1
                } catch where error.code == .notFound {
                } catch {
                    // Keep going with other branches; its parent stays (it still has a child).
                    continue
                }
                if let parent = parentOf[key] { children[parent, default: 1] -= 1 }
            }
        }
        // As containerd after a snapshotter's collection: let it free what removals left (async removal).
        if removed > 0 { try? await backend.cleanup() }
        return removed
    }
}
