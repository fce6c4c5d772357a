import BerthCore
import Foundation
import GRDB

/// Containers per namespace (containerd's metadata/containers.go): the spec, runtime options and extensions are
/// kept as the `Any` bytes they arrived as. A container is a GC root for its snapshot and its `gc.ref.*` labels.
public struct ContainerView: ContainerStore {
    let store: MetadataStore

    /// Migration "v4: containers".
    static func migrate(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE containers (
                    namespace TEXT NOT NULL REFERENCES namespaces(name),
                    id TEXT NOT NULL,
                    image TEXT NOT NULL,
                    runtime_name TEXT NOT NULL,
                    runtime_options_type TEXT,
                    runtime_options BLOB,
                    spec_type TEXT,
                    spec BLOB,
                    snapshotter TEXT NOT NULL,
                    snapshot_key TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL,
                    PRIMARY KEY (namespace, id)
                ) WITHOUT ROWID;
                CREATE TABLE container_labels (
                    namespace TEXT NOT NULL,
                    id TEXT NOT NULL,
                    key TEXT NOT NULL,
                    value TEXT NOT NULL,
                    PRIMARY KEY (namespace, id, key),
                    FOREIGN KEY (namespace, id) REFERENCES containers(namespace, id) ON DELETE CASCADE
                ) WITHOUT ROWID;
                CREATE TABLE container_extensions (
                    namespace TEXT NOT NULL,
                    id TEXT NOT NULL,
                    name TEXT NOT NULL,
                    type_url TEXT NOT NULL,
                    value BLOB NOT NULL,
                    PRIMARY KEY (namespace, id, name),
                    FOREIGN KEY (namespace, id) REFERENCES containers(namespace, id) ON DELETE CASCADE
                ) WITHOUT ROWID;
                """)
    }

    static let labelRows = LabelRows(table: "container_labels", idColumn: "id")

    static func typed(_ type: String?, _ value: Data?) -> TypedValue? {
        guard let type else { return nil }
        return TypedValue(typeURL: type, value: [UInt8](value ?? Data()))
    }

    static func load(_ db: Database, _ namespace: String, _ id: String) throws -> ContainerRecord? {
        guard let row = try Row.fetchOne(
            db, cachedSQL: "SELECT * FROM containers WHERE namespace = ? AND id = ?", arguments: [namespace, id])
        else { return nil }
        var extensions: [String: TypedValue] = [:]
        for ext in try Row.fetchAll(
            db, cachedSQL: "SELECT name, type_url, value FROM container_extensions WHERE namespace = ? AND id = ?",
            arguments: [namespace, id])
        {
            extensions[ext["name"]] = TypedValue(typeURL: ext["type_url"], value: [UInt8](ext["value"] as Data? ?? Data()))
        }
        return ContainerRecord(
            id: id, labels: try labelRows.load(db, namespace, id), image: row["image"], runtimeName: row["runtime_name"],
            runtimeOptions: typed(row["runtime_options_type"], row["runtime_options"]),
            spec: typed(row["spec_type"], row["spec"]), snapshotter: row["snapshotter"], snapshotKey: row["snapshot_key"],
            extensions: extensions, createdAt: Date(timeIntervalSince1970: row["created_at"]),
            updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }

    /// containerd's `validateContainer`.
    static func validate(_ c: ContainerRecord) throws(BerthError) {
        do { try Identifiers.validate(c.id) } catch { throw .invalidArgument("container.ID: \(error.message)") }
        if c.extensions.keys.contains("") {
            throw .invalidArgument("container.Extension keys must not be zero-length")
        }
        do { try Labels.validate(c.labels) } catch { throw .invalidArgument("containers.Labels: \(error.message)") }
        if c.runtimeName.isEmpty { throw .invalidArgument("container.Runtime.Name must be set") }
        if c.spec == nil { throw .invalidArgument("container.Spec must be set") }
        if !c.snapshotKey.isEmpty && c.snapshotter.isEmpty {
            throw .invalidArgument("container.Snapshotter must be set if container.SnapshotKey is set")
        }
    }

    /// Writes every column and child row of `c` (replacing what was there).
    static func write(_ db: Database, _ namespace: String, _ c: ContainerRecord) throws {
        try db.run(
            sql: """
                INSERT OR REPLACE INTO containers (namespace, id, image, runtime_name, runtime_options_type,
                    runtime_options, spec_type, spec, snapshotter, snapshot_key, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                namespace, c.id, c.image, c.runtimeName, c.runtimeOptions?.typeURL,
                c.runtimeOptions.map { Data($0.value) }, c.spec?.typeURL, c.spec.map { Data($0.value) }, c.snapshotter,
                c.snapshotKey, c.createdAt.timeIntervalSince1970, c.updatedAt.timeIntervalSince1970,
            ])
        try db.run(sql: "DELETE FROM container_labels WHERE namespace = ? AND id = ?", arguments: [namespace, c.id])
        try labelRows.insert(db, namespace, c.id, c.labels)
        try db.run(
            sql: "DELETE FROM container_extensions WHERE namespace = ? AND id = ?", arguments: [namespace, c.id])
        for (name, value) in c.extensions {
            try db.run(
                sql: "INSERT INTO container_extensions (namespace, id, name, type_url, value) VALUES (?, ?, ?, ?, ?)",
                arguments: [namespace, c.id, name, value.typeURL, Data(value.value)])
        }
    }

    public func get(_ id: String) async throws(BerthError) -> ContainerRecord {
        let namespace = try RequestContext.requireNamespace()
        return try store.lookup { db in
            guard let c = try Self.load(db, namespace, id) else { throw BerthError.notFound("container \"\(id)\" in namespace \"\(namespace)\"") }
            return c
        }
    }

    public func list(_ filter: Filter) async throws(BerthError) -> [ContainerRecord] {
        let namespace = try RequestContext.requireNamespace()
        let all = try await store.read { db in
            try String.fetchAll(db, cachedSQL: "SELECT id FROM containers WHERE namespace = ? ORDER BY id", arguments: [namespace])
                .compactMap { try Self.load(db, namespace, $0) }
        }
        return all.filter { filter.matches($0.filterAdaptor) }
    }

    public func create(_ container: ContainerRecord) async throws(BerthError) -> ContainerRecord {
        let namespace = try RequestContext.requireNamespace()
        do { try Self.validate(container) } catch {
            throw BerthError(error.code, "create container failed validation: \(error.message)")
        }
        var record = container
        let now = Date()
        record.createdAt = now
        record.updatedAt = now
        let created = record
        try await store.write { db in
            try ensureNamespace(db, namespace, now: now.timeIntervalSince1970)
            if try Self.load(db, namespace, created.id) != nil {
                throw BerthError.alreadyExists("container \"\(created.id)\"")
            }
            try Self.write(db, namespace, created)
        }
        store.mutated(deletion: false)
        return created
    }

    public func update(_ container: ContainerRecord, paths: [String]) async throws(BerthError) -> ContainerRecord {
        let namespace = try RequestContext.requireNamespace()
        if container.id.isEmpty { throw .invalidArgument("must specify a container id") }
        let updated = try await store.write { db in
            guard var updated = try Self.load(db, namespace, container.id) else {
                throw BerthError.notFound("container \"\(container.id)\"")
            }
            var fieldPaths = paths
            if fieldPaths.isEmpty {
                fieldPaths = ["labels", "spec", "extensions", "image", "snapshotkey"]
                if updated.snapshotter != container.snapshotter {
                    throw BerthError.invalidArgument("container.Snapshotter field is immutable")
                }
                if updated.runtimeName != container.runtimeName {
                    throw BerthError.invalidArgument("container.Runtime.Name field is immutable")
                }
            }
            for path in fieldPaths {
                if path.hasPrefix("labels.") {
                    let key = String(path.dropFirst("labels.".count))
                    updated.labels[key] = container.labels[key]
                    continue
                }
                if path.hasPrefix("extensions.") {
                    let key = String(path.dropFirst("extensions.".count))
                    updated.extensions[key] = container.extensions[key]
                    continue
                }
                switch path {
                case "labels": updated.labels = container.labels
                case "spec": updated.spec = container.spec
                case "extensions": updated.extensions = container.extensions
                case "image": updated.image = container.image
                case "snapshotkey": updated.snapshotKey = container.snapshotKey
                default:
                    throw BerthError.invalidArgument("cannot update \"\(path)\" field on \"\(container.id)\"")
                }
            }
            updated.labels = updated.labels.filter { !$0.value.isEmpty }
            do { try Self.validate(updated) } catch let error as BerthError {
                throw BerthError(error.code, "update failed validation: \(error.message)")
            }
            updated.updatedAt = Date()
            try Self.write(db, namespace, updated)
            return updated
        }
        store.mutated(deletion: false)
        return updated
    }

    public func delete(_ id: String) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        try await store.write { db in
            try db.run(sql: "DELETE FROM containers WHERE namespace = ? AND id = ?", arguments: [namespace, id])
            if db.changesCount == 0 { throw BerthError.notFound("container \(id)") }
        }
        store.mutated(deletion: true)
    }

    /// GC roots of one namespace's containers: each container's snapshot, and what its `gc.ref.*` labels name.
    static func gcRoots(_ db: Database, _ namespace: String) throws -> [SnapshotGC.Node] {
        var roots: [SnapshotGC.Node] = []
        for row in try Row.fetchAll(
            db, cachedSQL: "SELECT snapshotter, snapshot_key FROM containers WHERE namespace = ? AND snapshot_key != ''",
            arguments: [namespace])
        {
            roots.append(.snapshot(row[0], row[1]))
        }
        for row in try Row.fetchAll(
            db, cachedSQL: "SELECT key, value FROM container_labels WHERE namespace = ? AND key LIKE ?",
            arguments: [namespace, "containerd.io/gc.ref.%"])
        {
            if let node = SnapshotGC.reference(row[0], row[1]) { roots.append(node) }
        }
        return roots
    }
}

extension Metadata: ContainersProvider {
    public var containers: any ContainerStore { ContainerView(store: store) }
}
