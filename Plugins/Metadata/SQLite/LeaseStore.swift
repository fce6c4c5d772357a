import BerthCore
import BerthSnapshotStorage
import Foundation
import GRDB

/// Leases: named sets of resources (content, ingests, snapshots) that GC keeps while the lease lives. A lease
/// labelled `containerd.io/gc.expire` (RFC 3339) is removed by GC once that time has passed.
public struct LeaseView: LeaseManager {
    let store: MetadataStore

    static let resourceTypes = ["content", "ingests"]

    public func create(id: String, labels: [String: String]) async throws(BerthError) -> Lease {
        let namespace = try RequestContext.requireNamespace()
        let id = id.isEmpty ? Self.generatedLeaseID() : id
        // No identifier grammar for lease ids, as containerd: ctr's random ids (`<nanos>-<base64url>`) may end
        // in '-' or hold "--".
        try Labels.validate(labels)
        let lease = try await store.write { db in
            let now = Date().timeIntervalSince1970
            try ensureNamespace(db, namespace, now: now)
            if try Self.leaseExists(db, namespace, id) { throw BerthError.alreadyExists("lease \"\(id)\"") }
            try db.run(
                sql: "INSERT INTO leases (namespace, id, created_at) VALUES (?, ?, ?)", arguments: [namespace, id, now])
            try LabelRows.leases.insert(db, namespace, id, labels)
            return Lease(id: id, labels: labels.filter { !$0.value.isEmpty }, createdAt: Date(timeIntervalSince1970: now))
        }
        store.mutated(deletion: false)
        return lease
    }

    /// Generated lease ids: nanoseconds of the current second and a random suffix, as containerd's.
    static func generatedLeaseID() -> String {
        let nanoseconds = Int((Date().timeIntervalSince1970 * 1e9).truncatingRemainder(dividingBy: 1e9))
        return "\(nanoseconds)-\(String(UInt32.random(in: 0...0xFF_FFFF), radix: 36))"
    }

    public func delete(_ id: String) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        try await store.write { db in
            try db.run(sql: "DELETE FROM leases WHERE namespace = ? AND id = ?", arguments: [namespace, id])
            if db.changesCount == 0 { throw BerthError.notFound("lease \"\(id)\"") }
        }
        store.mutated(deletion: true)
    }

    public func list(_ filter: Filter) async throws(BerthError) -> [Lease] {
        let namespace = try RequestContext.requireNamespace()
        let leases = try await store.read { db in
            try Row.fetchAll(db, cachedSQL: "SELECT id, created_at FROM leases WHERE namespace = ? ORDER BY id", arguments: [namespace])
                .map { row in
                    let id: String = row["id"]
                    return Lease(
                        id: id, labels: try LabelRows.leases.load(db, namespace, id),
                        createdAt: Date(timeIntervalSince1970: row["created_at"]))
                }
        }
        return leases.filter { filter.matches(FieldMapAdaptor(fields: ["id": $0.id], maps: ["labels": $0.labels])) }
    }

    static func validate(_ resource: LeaseResource) throws(BerthError) {
        guard resourceTypes.contains(resource.type) || resource.type.hasPrefix("snapshots/") else {
            throw .invalidArgument("unsupported lease resource type \"\(resource.type)\"")
        }
        if resource.type == "content" { _ = try Digest(parsing: resource.id) }
        if resource.id.isEmpty { throw .invalidArgument("lease resource id must not be empty") }
    }

    static func leaseExists(_ db: Database, _ namespace: String, _ id: String) throws -> Bool {
        try Bool.fetchOne(
            db, cachedSQL: "SELECT EXISTS (SELECT 1 FROM leases WHERE namespace = ? AND id = ?)", arguments: [namespace, id])
            == true
    }

    /// NotFound unless the lease exists in the namespace.
    static func requireLease(_ db: Database, _ namespace: String, _ id: String) throws {
        guard try leaseExists(db, namespace, id) else { throw BerthError.notFound("lease \"\(id)\"") }
    }

    static func addLeaseResource(_ db: Database, _ namespace: String, _ lease: String, _ resource: LeaseResource) throws {
        try requireLease(db, namespace, lease)
        try db.run(
            sql: "INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)",
            arguments: [namespace, lease, resource.type, resource.id])
    }

    public func addResource(_ lease: String, _ resource: LeaseResource) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        try Self.validate(resource)
        try await store.write { db in try Self.addLeaseResource(db, namespace, lease, resource) }
        store.mutated(deletion: false)
    }

    public func deleteResource(_ lease: String, _ resource: LeaseResource) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        try await store.write { db in
            try Self.requireLease(db, namespace, lease)
            try db.run(
                sql: "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
                arguments: [namespace, lease, resource.type, resource.id])
        }
        store.mutated(deletion: true)
    }

    public func listResources(_ lease: String) async throws(BerthError) -> [LeaseResource] {
        let namespace = try RequestContext.requireNamespace()
        return try await store.read { db in
            try Self.requireLease(db, namespace, lease)
            return try Row.fetchAll(
                db, cachedSQL: "SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ? ORDER BY type, id",
                arguments: [namespace, lease]
            ).map { LeaseResource(id: $0["id"], type: $0["type"]) }
        }
    }
}
