import BerthCore
import Foundation
import GRDB

/// Images per namespace: a name pointing at a target descriptor, with labels. The target is a GC root.
public struct ImageView: ImageStore {
    let store: MetadataStore

    static func load(_ db: Database, _ namespace: String, _ name: String) throws -> ImageRecord? {
        guard let row = try Row.fetchOne(
            db,
            cachedSQL: "SELECT media_type, digest, size, annotations, created_at, updated_at FROM images WHERE namespace = ? AND name = ?",
            arguments: [namespace, name])
        else { return nil }
        let annotations = (try? JSONDecoder().decode([String: String].self, from: Data((row["annotations"] as String).utf8))) ?? [:]
        let target = Descriptor(
            mediaType: row["media_type"], digest: try Digest(parsing: row["digest"]), size: row["size"],
            annotations: annotations)
        return ImageRecord(
            name: name, target: target, labels: try LabelRows.images.load(db, namespace, name),
            createdAt: Date(timeIntervalSince1970: row["created_at"]), updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }

    static func validate(_ image: ImageRecord) throws(BerthError) {
        if image.name.isEmpty { throw .invalidArgument("image name must not be empty") }
        try Labels.validate(image.labels)
        if image.target.mediaType.isEmpty { throw .invalidArgument("Target.MediaType must be set") }
    }

    static func annotationsJSON(_ annotations: [String: String]) -> String {
        let data = (try? JSONEncoder().encode(annotations)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    public func get(_ name: String) async throws(BerthError) -> ImageRecord {
        let namespace = try RequestContext.requireNamespace()
        return try store.lookup { db in
            guard let image = try Self.load(db, namespace, name) else { throw BerthError.notFound("image \"\(name)\"") }
            return image
        }
    }

    public func list(_ filter: Filter) async throws(BerthError) -> [ImageRecord] {
        let namespace = try RequestContext.requireNamespace()
        let images = try await store.read { db in
            try String.fetchAll(db, cachedSQL: "SELECT name FROM images WHERE namespace = ? ORDER BY name", arguments: [namespace])
                .compactMap { try Self.load(db, namespace, $0) }
        }
        return images.filter { image in
            filter.matches(FieldMapAdaptor(
                fields: [
                    "name": image.name, "target.digest": image.target.digest.description,
                    "target.mediatype": image.target.mediaType,
                ], maps: ["labels": image.labels, "annotations": image.target.annotations]))
        }
    }

    public func create(_ image: ImageRecord) async throws(BerthError) -> ImageRecord {
        let namespace = try RequestContext.requireNamespace()
        try Self.validate(image)
        let created = try await store.write { db in
            let now = Date().timeIntervalSince1970
            try ensureNamespace(db, namespace, now: now)
            if try Self.load(db, namespace, image.name) != nil {
                throw BerthError.alreadyExists("image \"\(image.name)\"")
            }
            try db.run(
                sql: """
                    INSERT INTO images (namespace, name, media_type, digest, size, annotations, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    namespace, image.name, image.target.mediaType, image.target.digest.description, image.target.size,
                    Self.annotationsJSON(image.target.annotations), now, now,
                ])
            try LabelRows.images.insert(db, namespace, image.name, image.labels)
            return try Self.load(db, namespace, image.name)
        }
        store.mutated(deletion: false)
        guard let created else { throw .internalError("image \"\(image.name)\" vanished after create") }
        return created
    }

    public func update(_ image: ImageRecord, paths: [String]) async throws(BerthError) -> ImageRecord {
        let namespace = try RequestContext.requireNamespace()
        try Self.validate(image)
        let paths = paths.isEmpty ? ["labels", "target"] : paths
        for path in paths where !["labels", "target", "annotations"].contains(path) && !path.hasPrefix("labels.") {
            throw .invalidArgument("cannot update \"\(path)\" field on image \"\(image.name)\"")
        }
        let updated = try await store.write { db in
            guard try Self.load(db, namespace, image.name) != nil else {
                throw BerthError.notFound("image \"\(image.name)\"")
            }
            let now = Date().timeIntervalSince1970
            try LabelRows.images.apply(db, namespace, image.name, image.labels, paths: paths)
            if paths.contains("target") {
                try db.run(
                    sql: "UPDATE images SET media_type = ?, digest = ?, size = ?, annotations = ? WHERE namespace = ? AND name = ?",
                    arguments: [
                        image.target.mediaType, image.target.digest.description, image.target.size,
                        Self.annotationsJSON(image.target.annotations), namespace, image.name,
                    ])
            } else if paths.contains("annotations") {
                try db.run(
                    sql: "UPDATE images SET annotations = ? WHERE namespace = ? AND name = ?",
                    arguments: [Self.annotationsJSON(image.target.annotations), namespace, image.name])
            }
            try db.run(
                sql: "UPDATE images SET updated_at = ? WHERE namespace = ? AND name = ?",
                arguments: [now, namespace, image.name])
            return try Self.load(db, namespace, image.name)
        }
        store.mutated(deletion: false)
        guard let updated else { throw .notFound("image \"\(image.name)\"") }
        return updated
    }

    public func delete(_ name: String) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        try await store.write { db in
            try db.run(sql: "DELETE FROM images WHERE namespace = ? AND name = ?", arguments: [namespace, name])
            if db.changesCount == 0 { throw BerthError.notFound("image \"\(name)\"") }
        }
        store.mutated(deletion: true)
    }
}
