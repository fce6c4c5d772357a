import BerthCore
import Foundation
import GRDB

/// The operations of containerd's `storage.MetaStore`, valid inside one `SnapshotMetaStore` transaction.
/// Errors use containerd's codes: NotFound, AlreadyExists, FailedPrecondition, InvalidArgument.
public struct SnapshotTransaction {
    let db: Database
    let tables: SnapshotTables

    /// The operations on `tables` in the open transaction of `db`.
    public init(db: Database, tables: SnapshotTables) {
        self.db = db
        self.tables = tables
    }

    private struct Row {
        var id: Int64
        var key: String
        var parentID: Int64?
        var kind: SnapshotKind
        var createdAt: Date
        var updatedAt: Date
        var usage: SnapshotUsage
    }

    private func row(key: String) throws(BerthError) -> Row {
        guard let row = try fetchRows("WHERE key = ?", [key]).first else {
            throw .notFound("snapshot \(key): not found")
        }
        return row
    }

    private func fetchRows(_ clause: String, _ arguments: StatementArguments) throws(BerthError) -> [Row] {
        try run {
            let cursor = try GRDB.Row.fetchCursor(
                db, cachedSQL: "SELECT id, key, parent_id, kind, created_at, updated_at, size, inodes FROM \(tables.snapshots) \(clause)",
                arguments: arguments)
            var rows: [Row] = []
            while let r = try cursor.next() {
                let kind = SnapshotKind(rawValue: r[3] as Int) ?? .active
                rows.append(Row(
                    id: r[0], key: r[1], parentID: r[2], kind: kind,
                    createdAt: Date(timeIntervalSince1970: r[4]), updatedAt: Date(timeIntervalSince1970: r[5]),
                    usage: SnapshotUsage(size: r[6], inodes: r[7])))
            }
            return rows
        }
    }

    private func run<T>(_ body: () throws -> T) throws(BerthError) -> T {
        try BerthError.storing("snapshot metadata", body)
    }

    private func labels(_ id: Int64) throws(BerthError) -> [String: String] {
        try run {
            var labels: [String: String] = [:]
            let cursor = try GRDB.Row.fetchCursor(db, cachedSQL: "SELECT key, value FROM \(tables.labels) WHERE id = ?", arguments: [id])
            while let r = try cursor.next() { labels[r[0]] = r[1] }
            return labels
        }
    }

    private func setLabels(_ id: Int64, _ labels: [String: String]) throws(BerthError) {
        try run {
            try db.run(sql: "DELETE FROM \(tables.labels) WHERE id = ?", arguments: [id])
            for (key, value) in labels where !value.isEmpty {  // containerd drops empty values
                try db.run(sql: "INSERT INTO \(tables.labels) (id, key, value) VALUES (?, ?, ?)", arguments: [id, key, value])
            }
        }
    }

    private func key(of id: Int64?) throws(BerthError) -> String {
        guard let id else { return "" }
        return try run { try String.fetchOne(db, cachedSQL: "SELECT key FROM \(tables.snapshots) WHERE id = ?", arguments: [id]) ?? "" }
    }

    private func info(_ row: Row) throws(BerthError) -> SnapshotInfo {
        SnapshotInfo(
            kind: row.kind, name: row.key, parent: try key(of: row.parentID), labels: try labels(row.id),
            createdAt: row.createdAt, updatedAt: row.updatedAt)
    }

    private func parentIDs(from parentID: Int64?) throws(BerthError) -> [String] {
        var ids: [String] = []
        var next = parentID
        while let id = next {
            ids.append(String(id))
            next = try run { try Int64.fetchOne(db, cachedSQL: "SELECT parent_id FROM \(tables.snapshots) WHERE id = ?", arguments: [id]) }
        }
        return ids
    }

    /// The snapshot's id, info and stored usage (zero for snapshots that are not committed).
    public func getInfo(_ key: String) throws(BerthError) -> (id: String, info: SnapshotInfo, usage: SnapshotUsage) {
        let row = try row(key: key)
        return (String(row.id), try info(row), row.usage)
    }

    /// The snapshot's id, kind and parent chain.
    public func getSnapshot(_ key: String) throws(BerthError) -> StoredSnapshot {
        let row = try row(key: key)
        return StoredSnapshot(id: String(row.id), kind: row.kind, parentIDs: try parentIDs(from: row.parentID))
    }

    /// Records a new active or view snapshot on top of the committed `parent` (empty: none) and returns its id
    /// and parent chain. Labels under `containerd.io/snapshot/` are not inherited here; callers merge them.
    public func createSnapshot(kind: SnapshotKind, key: String, parent: String, labels: [String: String])
        throws(BerthError) -> StoredSnapshot
    {
        guard kind != .committed else { throw .invalidArgument("snapshot kind must be active or view") }
        guard !key.isEmpty else { throw .invalidArgument("snapshot key must not be empty") }
        var parentID: Int64?
        if !parent.isEmpty {
            let parentRow = try row(key: parent)
            guard parentRow.kind == .committed else {
                throw .invalidArgument("parent \(parent) is not a committed snapshot")
            }
            parentID = parentRow.id
        }
        if try !fetchRows("WHERE key = ?", [key]).isEmpty {
            throw .alreadyExists("snapshot \(key): already exists")
        }
        let now = Date().timeIntervalSince1970
        let id: Int64 = try run {
            try db.run(
                sql: "INSERT INTO \(tables.snapshots) (key, parent_id, kind, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [key, parentID, kind.rawValue, now, now])
            return db.lastInsertedRowID
        }
        try setLabels(id, labels)
        return StoredSnapshot(id: String(id), kind: kind, parentIDs: try parentIDs(from: parentID))
    }

    /// Turns the active `key` into the committed `name` with `usage`; the id stays the same (so the backend's
    /// directory is kept), `key` is gone. FailedPrecondition when `key` is not active. `labels` replace the
    /// active snapshot's labels (containerd does not carry them over).
    @discardableResult
    public func commitActive(key: String, name: String, usage: SnapshotUsage, labels: [String: String])
        throws(BerthError) -> String
    {
        guard !name.isEmpty else { throw .invalidArgument("snapshot name must not be empty") }
        let row = try row(key: key)
        guard row.kind == .active else {
            throw .failedPrecondition("snapshot \(key) is not active, it is \(row.kind.description.lowercased())")
        }
        if try !fetchRows("WHERE key = ?", [name]).isEmpty {
            throw .alreadyExists("snapshot \(name): already exists")
        }
        // As containerd: the committed snapshot is created now (created == updated) and its labels are the
        // commit's own, not the active snapshot's.
        let now = Date().timeIntervalSince1970
        try run {
            try db.run(
                sql: "UPDATE \(tables.snapshots) SET key = ?, kind = ?, created_at = ?, updated_at = ?, size = ?, inodes = ? WHERE id = ?",
                arguments: [name, SnapshotKind.committed.rawValue, now, now, usage.size, usage.inodes, row.id])
        }
        try setLabels(row.id, labels)
        return String(row.id)
    }

    /// Forgets `key` and returns its id and kind; FailedPrecondition when other snapshots have it as parent.
    @discardableResult
    public func remove(_ key: String) throws(BerthError) -> (id: String, kind: SnapshotKind) {
        let row = try row(key: key)
        let children = try run {
            try Int.fetchOne(db, cachedSQL: "SELECT count(*) FROM \(tables.snapshots) WHERE parent_id = ?", arguments: [row.id]) ?? 0
        }
        guard children == 0 else {
            throw .failedPrecondition("cannot remove snapshot \(key): it has \(children) child snapshot(s)")
        }
        try run { try db.run(sql: "DELETE FROM \(tables.snapshots) WHERE id = ?", arguments: [row.id]) }
        return (String(row.id), row.kind)
    }

    /// Updates labels (`paths`: `labels`, `labels.KEY`; empty means all labels) and returns the stored info.
    /// Other fields cannot change: InvalidArgument for any other path.
    @discardableResult
    public func updateInfo(_ info: SnapshotInfo, paths: [String]) throws(BerthError) -> SnapshotInfo {
        let row = try row(key: info.name)
        var labels = try labels(row.id)
        if paths.isEmpty {
            labels = info.labels
        } else {
            for path in paths {
                if path == "labels" {
                    labels = info.labels
                } else if path.hasPrefix("labels.") {
                    let key = String(path.dropFirst("labels.".count))
                    labels[key] = info.labels[key]
                } else {
                    throw .invalidArgument("cannot update \(path) field on snapshot \(info.name)")
                }
            }
        }
        try setLabels(row.id, labels)
        try run {
            try db.run(
                sql: "UPDATE \(tables.snapshots) SET updated_at = ? WHERE id = ?", arguments: [Date().timeIntervalSince1970, row.id])
        }
        return try getInfo(info.name).info
    }

    /// Every snapshot matching `filter`, ordered by key.
    public func walk(_ filter: Filter) throws(BerthError) -> [SnapshotInfo] {
        var out: [SnapshotInfo] = []
        for row in try fetchRows("ORDER BY key", []) {
            let info = try info(row)
            if filter.matches(info.filterAdaptor) { out.append(info) }
        }
        return out
    }

    /// Every recorded id with its key: backends compare it with `<root>/snapshots/` to find leftovers.
    public func idMap() throws(BerthError) -> [String: String] {
        try run {
            var map: [String: String] = [:]
            let cursor = try GRDB.Row.fetchCursor(db, cachedSQL: "SELECT id, key FROM \(tables.snapshots)")
            while let r = try cursor.next() { map[String(r[0] as Int64)] = r[1] }
            return map
        }
    }
}
