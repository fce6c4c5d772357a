import GRDB

/// The metadata schema as ordered, named migrations. Each later feature (content, images, leases, snapshots,
/// containers) appends a migration; applied ones are recorded in `grdb_migrations` and never re-run.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: namespaces") { db in
            try db.execute(
                sql: """
                    CREATE TABLE namespaces (
                        name TEXT PRIMARY KEY NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE namespace_labels (
                        namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
                        key TEXT NOT NULL,
                        value TEXT NOT NULL,
                        PRIMARY KEY (namespace, key)
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v2: content, images, leases") { db in
            try db.execute(
                sql: """
                    CREATE TABLE content (
                        namespace TEXT NOT NULL REFERENCES namespaces(name),
                        digest TEXT NOT NULL,
                        size INTEGER NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        PRIMARY KEY (namespace, digest)
                    ) WITHOUT ROWID;
                    CREATE INDEX content_by_digest ON content(digest);
                    CREATE TABLE content_labels (
                        namespace TEXT NOT NULL,
                        digest TEXT NOT NULL,
                        key TEXT NOT NULL,
                        value TEXT NOT NULL,
                        PRIMARY KEY (namespace, digest, key),
                        FOREIGN KEY (namespace, digest) REFERENCES content(namespace, digest) ON DELETE CASCADE
                    ) WITHOUT ROWID;
                    CREATE TABLE images (
                        namespace TEXT NOT NULL REFERENCES namespaces(name),
                        name TEXT NOT NULL,
                        media_type TEXT NOT NULL,
                        digest TEXT NOT NULL,
                        size INTEGER NOT NULL,
                        annotations TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        PRIMARY KEY (namespace, name)
                    ) WITHOUT ROWID;
                    CREATE TABLE image_labels (
                        namespace TEXT NOT NULL,
                        name TEXT NOT NULL,
                        key TEXT NOT NULL,
                        value TEXT NOT NULL,
                        PRIMARY KEY (namespace, name, key),
                        FOREIGN KEY (namespace, name) REFERENCES images(namespace, name) ON DELETE CASCADE
                    ) WITHOUT ROWID;
                    CREATE TABLE leases (
                        namespace TEXT NOT NULL REFERENCES namespaces(name),
                        id TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        PRIMARY KEY (namespace, id)
                    ) WITHOUT ROWID;
                    CREATE TABLE lease_labels (
                        namespace TEXT NOT NULL,
                        id TEXT NOT NULL,
                        key TEXT NOT NULL,
                        value TEXT NOT NULL,
                        PRIMARY KEY (namespace, id, key),
                        FOREIGN KEY (namespace, id) REFERENCES leases(namespace, id) ON DELETE CASCADE
                    ) WITHOUT ROWID;
                    CREATE TABLE lease_resources (
                        namespace TEXT NOT NULL,
                        lease TEXT NOT NULL,
                        type TEXT NOT NULL,
                        id TEXT NOT NULL,
                        PRIMARY KEY (namespace, lease, type, id),
                        FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v3: snapshots") { db in
            // One row per namespaced snapshot key of one snapshotter. `id` names the backend snapshot
            // (`<namespace>/<id>/<key>`) and is never reused while the backend may still hold that key.
            try db.execute(
                sql: """
                    CREATE TABLE snapshots (
                        id INTEGER PRIMARY KEY,
                        namespace TEXT NOT NULL REFERENCES namespaces(name),
                        snapshotter TEXT NOT NULL,
                        key TEXT NOT NULL,
                        backend_key TEXT NOT NULL,
                        parent TEXT NOT NULL,
                        kind INTEGER NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        UNIQUE (namespace, snapshotter, key)
                    );
                    CREATE INDEX snapshots_by_parent ON snapshots(namespace, snapshotter, parent);
                    CREATE INDEX snapshots_by_backend ON snapshots(snapshotter, backend_key);
                    CREATE TABLE snapshot_labels (
                        snapshot INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
                        key TEXT NOT NULL,
                        value TEXT NOT NULL,
                        PRIMARY KEY (snapshot, key)
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v4: containers") { db in try ContainerView.migrate(db) }
        return migrator
    }

    /// Tables holding per-namespace objects, with the word used in "namespace must be empty, but it still has …".
    /// A namespace can be deleted only when none of them has a row for it.
    static let namespacedTables: [(table: String, what: String)] = [
        ("images", "images"), ("content", "blobs"), ("leases", "leases"), ("snapshots", "snapshots"),
        ("containers", "containers"),
    ]
}
