import BerthCore
import Foundation
import GRDB
import Synchronization

/// One SQLite pool per database file, for the stores that keep their tables in the same file: the metadata
/// plugin's `meta.db` and the snapshotters that keep their rows there (`SnapshotDatabase.shared`). Sharing one
/// writer is what lets the metadata layer make a snapshot Prepare or Commit one transaction, so one durable commit
/// (one fdatasync) instead of one per file.
///
/// Reference-counted: `acquire` opens the file or returns the pool already open, `release` closes it with its
/// last user.
public enum SharedDatabase {
    private struct Entry {
        var pool: DatabasePool
        var users: Int
    }

    private static let open = Mutex<[String: Entry]>([:])

    /// The pool for `path`, opened (and the file created) if no store holds it yet.
    public static func acquire(_ path: String) throws -> DatabasePool {
        try open.withLock { open in
            if var entry = open[path] {
                entry.users += 1
                open[path] = entry
                return entry.pool
            }
            let pool = try openPool(path)
            open[path] = Entry(pool: pool, users: 1)
            return pool
        }
    }

    /// Opens `path` as the daemon's SQLite stores are: WAL with a persistent, preallocated log, every commit
    /// durable, readers mapping the file.
    static func openPool(_ path: String) throws -> DatabasePool {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // Listings read every row: map the file instead of a pread and copy per page.
            try db.execute(sql: "PRAGMA mmap_size = 268435456")
            try WriteAheadLog.persist(db)
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        // DatabasePool sets `synchronous = NORMAL` after prepareDatabase when it switches to WAL; NORMAL does not sync
        // the WAL at commit. FULL on the one writer connection makes every committed transaction durable.
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        try WriteAheadLog.preallocate(pool, path: path)
        return pool
    }

    /// Gives back one `acquire`; the last one closes the pool.
    public static func release(_ path: String) {
        let last: DatabasePool? = open.withLock { open in
            guard var entry = open[path] else { return nil }
            entry.users -= 1
            if entry.users > 0 {
                open[path] = entry
                return nil
            }
            open[path] = nil
            return entry.pool
        }
        try? last?.close()
    }
}

/// Where a snapshotter keeps its rows: its own `<root>/metadata.db`, or tables named after it in the shared
/// metadata database (with its old `metadata.db` moved in on first open).
public enum SnapshotDatabase: Sendable, Equatable {
    case own
    case shared(path: String, name: String)
}

/// The two tables of a snapshotter's rows: `snapshots` and `snapshot_labels` in its own file, or
/// `backend_<name>_snapshots` and `backend_<name>_labels` in the shared one.
public struct SnapshotTables: Sendable, Equatable {
    public let snapshots: String
    public let labels: String

    public static let own = SnapshotTables(snapshots: "snapshots", labels: "snapshot_labels")

    init(snapshots: String, labels: String) {
        self.snapshots = snapshots
        self.labels = labels
    }

    /// The tables of the snapshotter `name` in the shared database (characters other than letters, digits and
    /// `_` become `_`, so any plugin id makes a valid identifier).
    public init(sharedBy name: String) {
        let safe = String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
        self.init(snapshots: "backend_\(safe)_snapshots", labels: "backend_\(safe)_labels")
    }

    /// The schema, for `CREATE` in a new file or a shared one (`IF NOT EXISTS`: the shared tables are made by
    /// whichever opening comes first, outside any migrator).
    var schema: String {
        """
        CREATE TABLE IF NOT EXISTS \(snapshots) (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            parent_id INTEGER REFERENCES \(snapshots)(id),
            kind INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            size INTEGER NOT NULL DEFAULT 0,
            inodes INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS \(snapshots)_by_parent ON \(snapshots)(parent_id);
        CREATE TABLE IF NOT EXISTS \(labels) (
            id INTEGER NOT NULL REFERENCES \(snapshots)(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (id, key)
        ) WITHOUT ROWID;
        """
    }
}
