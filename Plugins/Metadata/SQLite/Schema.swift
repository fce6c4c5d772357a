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
        return migrator
    }

    /// Tables holding per-namespace objects, with the word used in "namespace must be empty, but it still has …".
    /// A namespace can be deleted only when none of them has a row for it.
    static let namespacedTables: [(table: String, what: String)] = []
}
