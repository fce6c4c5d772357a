#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation
import GRDB
import Synchronization

/// A snapshot as a backend needs it: its numeric id (the directory name under `<root>/snapshots/`), kind, and the
/// ids of its parent chain, nearest parent first.
public struct StoredSnapshot: Sendable, Equatable {
    public var id: String
    public var kind: SnapshotKind
    public var parentIDs: [String]

    public init(id: String, kind: SnapshotKind, parentIDs: [String]) {
        self.id = id
        self.kind = kind
        self.parentIDs = parentIDs
    }
}

/// Each snapshotter's own metadata (containerd's `snapshots/storage`): key → numeric id, kind, parent, labels,
/// times and committed usage, in SQLite (WAL): the snapshotter's own `<root>/metadata.db`, or its tables in the
/// shared metadata database (`SnapshotDatabase.shared`), where the metadata layer can join a snapshot's rows to
/// its own in one transaction. Backends keep their data in `<root>/snapshots/<id>`; short numeric ids keep overlay
/// mount options small for deep chains.
///
/// Work happens in transactions (`write`/`read`): a backend creates or removes its directories inside the
/// transaction closure, so a thrown error (or `kill -9`) rolls the rows back and the store never names a
/// directory that was not finished. Writers are serialised by SQLite.
public final class SnapshotMetaStore: Sendable {
    let pool: DatabasePool
    /// The database file holding the rows.
    public let path: String
    public let tables: SnapshotTables
    /// True when `path` is the shared database (closed by its last user, not by this store).
    public let isShared: Bool

    /// Opens the rows of the snapshotter rooted at `root` where `database` says. A shared opening first moves
    /// the rows of an existing `<root>/metadata.db` into the shared tables (see `moveIn`).
    public convenience init(root: String, database: SnapshotDatabase) throws(BerthError) {
        switch database {
        case .own: try self.init(path: root + "/metadata.db")
        case .shared(let path, let name): try self.init(sharedPath: path, name: name, previous: root + "/metadata.db")
        }
    }

    /// Opens (creating if needed) the snapshotter's own database file at `path`.
    public init(path: String) throws(BerthError) {
        self.path = path
        tables = .own
        isShared = false
        do {
            pool = try SharedDatabase.openPool(path)
            try Self.migrator.migrate(pool)
        } catch {
            throw .internalError("opening snapshot metadata \(path): \(error)")
        }
    }

    /// Opens the tables of snapshotter `name` in the shared database at `sharedPath`, moving in the rows of the
    /// file `previous` (the snapshotter's own database of earlier versions) when it exists.
    init(sharedPath: String, name: String, previous: String) throws(BerthError) {
        path = sharedPath
        tables = SnapshotTables(sharedBy: name)
        isShared = true
        do {
            try FileSystem.makeDirectories((sharedPath as NSString).deletingLastPathComponent, mode: 0o711)
            pool = try SharedDatabase.acquire(sharedPath)
        } catch {
            throw .internalError("opening snapshot metadata \(sharedPath): \(error)")
        }
        do {
            try pool.write { [tables] db in try db.execute(sql: tables.schema) }
            if FileSystem.exists(previous) { try moveIn(previous) }
        } catch {
            SharedDatabase.release(sharedPath)
            throw .internalError("opening snapshot metadata \(sharedPath) (\(tables.snapshots)): \(error)")
        }
    }

    /// Copies every row of the own database `previous` into the shared tables (ids, and the id sequence, kept:
    /// they name the snapshot directories), unless the tables already hold rows (a move interrupted after its
    /// commit), then renames `previous` to `previous.moved`. A crash at any point leaves the rows in one of the
    /// two files and the next opening finishes the move.
    func moveIn(_ previous: String) throws {
        let empty = try pool.read { [tables] db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM \(tables.snapshots)") == 0
        }
        if empty {
            let old = try DatabaseQueue(path: previous)
            let (rows, labels, sequence) = try old.read { db in
                (
                    try Row.fetchAll(
                        db,
                        sql: "SELECT id, key, parent_id, kind, created_at, updated_at, size, inodes FROM snapshots ORDER BY id"),
                    try Row.fetchAll(db, sql: "SELECT id, key, value FROM snapshot_labels"),
                    try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'snapshots'") ?? 0
                )
            }
            try old.close()
            try pool.write { [tables] db in
                // Parents have lower ids than their children, so id order satisfies the parent reference.
                for row in rows {
                    try db.execute(
                        sql: """
                            INSERT INTO \(tables.snapshots) (id, key, parent_id, kind, created_at, updated_at, size, inodes)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                            """,
                        arguments: StatementArguments(row.databaseValues))
                }
                for row in labels {
                    try db.execute(
                        sql: "INSERT INTO \(tables.labels) (id, key, value) VALUES (?, ?, ?)",
                        arguments: StatementArguments(row.databaseValues))
                }
                try db.execute(
                    sql: "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                    arguments: [sequence, tables.snapshots])
            }
        }
        guard rename(previous, previous + ".moved") == 0 else {
            throw BerthError.internalError("rename \(previous): \(FileSystem.errnoMessage())")
        }
        unlink(previous + "-wal")
        unlink(previous + "-shm")
    }

    private let closed = Mutex(false)

    /// Closes the database (or gives the shared one back); later calls fail, a second close does nothing.
    public func close() {
        let first = closed.withLock { wasClosed in
            defer { wasClosed = true }
            return !wasClosed
        }
        guard first else { return }
        if isShared { SharedDatabase.release(path) } else { try? pool.close() }
    }

    /// The store's operations inside `db`'s open write transaction, for a caller that joins the snapshotter's
    /// rows to its own (`db` must belong to the shared database this store uses).
    public func transaction(_ db: Database) -> SnapshotTransaction { SnapshotTransaction(db: db, tables: tables) }

    /// Runs `body` in a write transaction: a thrown error rolls back every change it made.
    public func write<T: Sendable>(_ body: @escaping @Sendable (SnapshotTransaction) throws(BerthError) -> T)
        async throws(BerthError) -> T
    {
        try await BerthError.storing("snapshot metadata") {
            try await pool.write { [tables] db in try body(SnapshotTransaction(db: db, tables: tables)) }
        }
    }

    /// `read` on the calling thread (`readHere`): for start-up recovery, and for one-row lookups.
    public func readNow<T>(_ body: (SnapshotTransaction) throws(BerthError) -> T) throws(BerthError) -> T {
        try BerthError.storing("snapshot metadata") {
            try pool.readHere { db in try body(SnapshotTransaction(db: db, tables: tables)) }
        }
    }

    /// Runs `body` on a read-only snapshot of the database (see `readReleasingReader` for why not GRDB's `read`).
    public func read<T: Sendable>(_ body: @escaping @Sendable (SnapshotTransaction) throws(BerthError) -> T)
        async throws(BerthError) -> T
    {
        try await BerthError.storing("snapshot metadata") {
            try await pool.readReleasingReader { [tables] database in
                try body(SnapshotTransaction(db: database, tables: tables))
            }
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: snapshots") { db in
            try db.execute(
                sql: """
                    CREATE TABLE snapshots (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        key TEXT NOT NULL UNIQUE,
                        parent_id INTEGER REFERENCES snapshots(id),
                        kind INTEGER NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        size INTEGER NOT NULL DEFAULT 0,
                        inodes INTEGER NOT NULL DEFAULT 0
                    );
                    CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
                    CREATE TABLE snapshot_labels (
                        id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
                        key TEXT NOT NULL,
                        value TEXT NOT NULL,
                        PRIMARY KEY (id, key)
                    ) WITHOUT ROWID;
                    """)
        }
        return migrator
    }
}
