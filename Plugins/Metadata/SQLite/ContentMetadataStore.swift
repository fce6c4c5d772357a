import BerthCore
import Foundation
import GRDB

/// Namespaced content: each namespace holds references (with labels) to blobs of the backend store. Deleting a
/// reference leaves the blob to GC, which removes blobs no namespace references.
public struct ContentView: ContentMetadata {
    let store: MetadataStore

    func requireBackend() throws(BerthError) -> any ContentStore {
        guard let backend = store.backend else { throw .failedPrecondition("metadata store has no content store") }
        return backend
    }

    static func backendRef(_ namespace: String, _ ref: String) -> String { "\(namespace)/\(ref)" }

    static func info(_ db: Database, _ namespace: String, _ digest: Digest) throws -> ContentInfo? {
        guard let row = try Row.fetchOne(
            db, cachedSQL: "SELECT size, created_at, updated_at FROM content WHERE namespace = ? AND digest = ?",
            arguments: [namespace, digest.description])
        else { return nil }
        return ContentInfo(
            digest: digest, size: row["size"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
            updatedAt: Date(timeIntervalSince1970: row["updated_at"]),
            labels: try LabelRows.content.load(db, namespace, digest.description))
    }

    public func info(_ digest: Digest) async throws(BerthError) -> ContentInfo {
        let namespace = try RequestContext.requireNamespace()
        return try store.lookup { db in
            guard let info = try Self.info(db, namespace, digest) else {
                throw BerthError.notFound("content digest \(digest)")
            }
            return info
        }
    }

    public func update(_ info: ContentInfo, paths: [String]) async throws(BerthError) -> ContentInfo {
        let namespace = try RequestContext.requireNamespace()
        try Labels.validate(info.labels)
        let paths = paths.isEmpty ? ["labels"] : paths
        for path in paths where path != "labels" && !path.hasPrefix("labels.") {
            throw .invalidArgument("cannot update \"\(path)\" field on content info \"\(info.digest)\"")
        }
        let updated = try await store.write { db in
            guard try Self.info(db, namespace, info.digest) != nil else {
                throw BerthError.notFound("content digest \(info.digest)")
            }
            try LabelRows.content.apply(db, namespace, info.digest.description, info.labels, paths: paths)
            try db.run(
                sql: "UPDATE content SET updated_at = ? WHERE namespace = ? AND digest = ?",
                arguments: [Date().timeIntervalSince1970, namespace, info.digest.description])
            return try Self.info(db, namespace, info.digest)
        }
        store.mutated(deletion: false)
        guard let updated else { throw .notFound("content digest \(info.digest)") }
        return updated
    }

    /// Two queries for the whole namespace (rows, then every label), joined in memory: listing 10,000 blobs must
    /// not cost 20,000 statements.
    public func list(_ filter: Filter) async throws(BerthError) -> [ContentInfo] {
        let namespace = try RequestContext.requireNamespace()
        let all = try await store.read { db in
            // One ordered pass over content joined with its labels: a blob's label rows arrive together.
            var infos: [ContentInfo] = []
            var currentText = ""
            let rows = try Row.fetchCursor(
                db,
                cachedSQL: """
                    SELECT c.digest, c.size, c.created_at, c.updated_at, l.key, l.value FROM content c
                    LEFT JOIN content_labels l ON l.namespace = c.namespace AND l.digest = c.digest
                    WHERE c.namespace = ? ORDER BY c.digest
                    """,
                arguments: [namespace])
            while let row = try rows.next() {
                let text: String = row[0]
                if text != currentText || infos.isEmpty {
                    guard let digest = try? Digest(parsing: text) else { continue }
                    currentText = text
                    infos.append(ContentInfo(
                        digest: digest, size: row[1], createdAt: Date(timeIntervalSince1970: row[2]),
                        updatedAt: Date(timeIntervalSince1970: row[3])))
                }
                if let key = row[4] as String? {
                    infos[infos.count - 1].labels[key] = row[5] as String
                }
            }
            return infos
        }
        if filter.isEmpty { return all }
        return all.filter { info in
            filter.matches(FieldMapAdaptor(
                fields: ["digest": info.digest.description, "size": String(info.size)], maps: ["labels": info.labels]))
        }
    }

    public func delete(_ digest: Digest) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        try await store.write { db in
            try db.run(
                sql: "DELETE FROM content WHERE namespace = ? AND digest = ?", arguments: [namespace, digest.description])
            if db.changesCount == 0 { throw BerthError.notFound("content digest \(digest)") }
        }
        store.mutated(deletion: true)
    }

    public func reader(_ digest: Digest) async throws(BerthError) -> any ContentReader {
        _ = try await info(digest)
        return try await requireBackend().reader(digest)
    }

    public func status(_ ref: String) async throws(BerthError) -> IngestStatus {
        let namespace = try RequestContext.requireNamespace()
        var status = try await requireBackend().status(Self.backendRef(namespace, ref))
        status.ref = ref
        return status
    }

    public func statuses(_ filter: Filter) async throws(BerthError) -> [IngestStatus] {
        let prefix = try RequestContext.requireNamespace() + "/"
        return try await requireBackend().statuses().compactMap { status in
            guard status.ref.hasPrefix(prefix) else { return nil }
            var status = status
            status.ref = String(status.ref.dropFirst(prefix.count))
            let fields = ["ref": status.ref, "expected": status.expected?.description ?? ""]
            return filter.matches(FieldMapAdaptor(fields: fields)) ? status : nil
        }
    }

    public func abort(_ ref: String) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        try await requireBackend().abort(Self.backendRef(namespace, ref))
        if let lease = RequestContext.lease {
            try? await LeaseView(store: store).deleteResource(lease, LeaseResource(id: ref, type: "ingests"))
        }
    }

    public func writer(ref: String, total: Int64, expected: Digest?) async throws(BerthError)
        -> any MetadataContentWriter
    {
        let namespace = try RequestContext.requireNamespace()
        guard !ref.isEmpty else { throw .invalidArgument("ref must not be empty") }
        let backend = try requireBackend()
        let lease = RequestContext.lease
        if let expected {
            // A blob the namespace has goes into the request's lease all the same (containerd's Writer does):
            // the client counts on the lease to keep what it "wrote" until it references it.
            if (try? await info(expected)) != nil {
                if let lease {
                    try await LeaseView(store: store).addResource(lease, LeaseResource(id: expected.description, type: "content"))
                }
                throw .alreadyExists("content \(expected)")
            }
            // Shared policy: a blob another namespace committed is claimed without rewriting it.
            if store.sharedContent, let existing = try? await backend.info(expected) {
                try await record(namespace: namespace, digest: expected, size: existing.size, labels: [:], lease: lease)
                throw .alreadyExists("content \(expected)")
            }
        }
        if let lease { try await LeaseView(store: store).addResource(lease, LeaseResource(id: ref, type: "ingests")) }
        // The backend refuses a writer for a digest it already has; under the isolated policy the namespace must
        // still write the bytes, so the expected digest is set after opening (containerd clears it the same way).
        let inner = try await backend.writer(ref: Self.backendRef(namespace, ref), total: total, expected: nil)
        if let expected { try await inner.update(total: 0, expected: expected) }
        return NamespacedWriter(view: self, inner: inner, ref: ref, namespace: namespace, lease: lease)
    }

    /// Records a committed blob in a namespace, and in the request's lease even when the namespace already had it
    /// (then AlreadyExists, as containerd's commit: a concurrent writer of the same blob still holds it by its
    /// lease).
    func record(namespace: String, digest: Digest, size: Int64, labels: [String: String], lease: String?)
        async throws(BerthError)
    {
        try Labels.validate(labels)
        let existed = try await store.write { db -> Bool in
            let now = Date().timeIntervalSince1970
            try ensureNamespace(db, namespace, now: now)
            let existed = try Self.info(db, namespace, digest) != nil
            if !existed {
                try db.run(
                    sql: "INSERT INTO content (namespace, digest, size, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [namespace, digest.description, size, now, now])
                try LabelRows.content.insert(db, namespace, digest.description, labels)
            }
            if let lease {
                try LeaseView.addLeaseResource(db, namespace, lease, LeaseResource(id: digest.description, type: "content"))
            }
            return existed
        }
        store.mutated(deletion: false)
        if existed { throw .alreadyExists("content \(digest)") }
    }

}

extension MetadataStore {
    func beginCommit() { pendingCommits += 1 }
    func endCommit() { pendingCommits -= 1 }
}

/// A namespace's view of a backend ingest; commit adds the blob to the namespace.
struct NamespacedWriter: MetadataContentWriter {
    let view: ContentView
    var store: MetadataStore { view.store }
    let inner: any ContentWriter
    let ref: String
    let namespace: String
    let lease: String?

    func write(_ bytes: [UInt8]) async throws(BerthError) { try await inner.write(bytes) }
    func truncate(_ size: Int64) async throws(BerthError) { try await inner.truncate(size) }
    func update(total: Int64, expected: Digest?) async throws(BerthError) {
        try await inner.update(total: total, expected: expected)
    }
    func digest() async -> Digest { await inner.digest() }
    func close() async { await inner.close() }

    func status() async throws(BerthError) -> IngestStatus {
        var status = try await inner.status()
        status.ref = ref
        return status
    }

    func commit(size: Int64, expected: Digest?, labels: [String: String]) async throws(BerthError) -> Digest {
        await store.beginCommit()
        let digest: Digest
        let committedSize: Int64
        do {
            let status = try await inner.status()
            committedSize = status.offset
            do {
                digest = try await inner.commit(size: size, expected: expected)
            } catch let error where error.code == .alreadyExists {
                let written = await inner.digest()
                digest = expected ?? written
            }
            try await view.record(namespace: namespace, digest: digest, size: committedSize, labels: labels, lease: lease)
        } catch {
            await store.endCommit()
            // The ingest is over when the namespace already had the blob, too.
            if error.code == .alreadyExists { await releaseIngest() }
            throw error
        }
        await store.endCommit()
        await releaseIngest()
        return digest
    }

    /// Drops the ingest from the request's lease.
    private func releaseIngest() async {
        if let lease { try? await LeaseView(store: store).deleteResource(lease, LeaseResource(id: ref, type: "ingests")) }
    }
}
