import BerthCore
import BerthSnapshotStorage
import GRDB

/// The `<object>_labels` tables share one shape: (namespace, <id column>, key, value). These helpers read and
/// write them with containerd's field-path rules.
struct LabelRows {
    let table: String
    let idColumn: String

    func load(_ db: Database, _ namespace: String, _ id: String) throws -> [String: String] {
        var labels: [String: String] = [:]
        for row in try Row.fetchAll(
            db, cachedSQL: "SELECT key, value FROM \(table) WHERE namespace = ? AND \(idColumn) = ?",
            arguments: [namespace, id])
        {
            labels[row["key"]] = row["value"]
        }
        return labels
    }

    func insert(_ db: Database, _ namespace: String, _ id: String, _ labels: [String: String]) throws {
        for (key, value) in labels where !value.isEmpty {
            try db.run(
                sql: "INSERT OR REPLACE INTO \(table) (namespace, \(idColumn), key, value) VALUES (?, ?, ?, ?)",
                arguments: [namespace, id, key, value])
        }
    }

    /// Applies `labels` under field paths: `labels` replaces the set, `labels.KEY` sets or (empty/absent) removes KEY.
    /// Other paths are ignored here: callers validate them before opening the transaction.
    func apply(_ db: Database, _ namespace: String, _ id: String, _ labels: [String: String], paths: [String]) throws {
        for path in paths {
            if path == "labels" {
                try db.run(
                    sql: "DELETE FROM \(table) WHERE namespace = ? AND \(idColumn) = ?", arguments: [namespace, id])
                try insert(db, namespace, id, labels)
            } else if path.hasPrefix("labels.") {
                let key = String(path.dropFirst("labels.".count))
                if let value = labels[key], !value.isEmpty {
                    try db.run(
                        sql: "INSERT OR REPLACE INTO \(table) (namespace, \(idColumn), key, value) VALUES (?, ?, ?, ?)",
                        arguments: [namespace, id, key, value])
                } else {
                    try db.run(
                        sql: "DELETE FROM \(table) WHERE namespace = ? AND \(idColumn) = ? AND key = ?",
                        arguments: [namespace, id, key])
                }
            }
        }
    }

    static let content = LabelRows(table: "content_labels", idColumn: "digest")
    static let images = LabelRows(table: "image_labels", idColumn: "name")
    static let leases = LabelRows(table: "lease_labels", idColumn: "id")
}

/// Creates the namespace row on first use, as containerd creates a namespace's bucket with its first object.
func ensureNamespace(_ db: Database, _ namespace: String, now: Double) throws {
    try db.run(
        sql: "INSERT OR IGNORE INTO namespaces (name, created_at, updated_at) VALUES (?, ?, ?)",
        arguments: [namespace, now, now])
}
