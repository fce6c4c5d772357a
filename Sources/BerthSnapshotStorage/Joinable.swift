import BerthCore
import GRDB

/// What a snapshotter did on disk inside a caller's transaction. The caller calls `settle` once the transaction's
/// outcome is known: not committed, the snapshotter undoes it (deletes the directory or subvolume it made); committed,
/// it finishes (deletes what the commit replaced, refills spare directories).
public struct JoinedChange: Sendable {
    let body: @Sendable (_ committed: Bool) -> Void

    public init(_ body: @escaping @Sendable (_ committed: Bool) -> Void) { self.body = body }

    public static let none = JoinedChange { _ in }

    public func settle(committed: Bool) { body(committed) }
}

/// A snapshotter whose rows are in the shared metadata database (`SnapshotDatabase.shared`): the metadata layer
/// runs its Prepare, View and Commit inside its own write transaction, so the snapshot's row and the metadata
/// row commit together, with one durable commit (one fdatasync) instead of two, and neither exists without the
/// other.
public protocol JoinableSnapshotter: Snapshotter {
    /// The shared database holding this snapshotter's rows; nil when it keeps its own file (then only the
    /// `Snapshotter` calls apply).
    var sharedDatabasePath: String? { get }

    /// Prepare (`kind` active) or View inside `db`'s open write transaction: what `prepare`/`view` do, with the
    /// same errors. On a throw nothing is left on disk, and the caller must roll its transaction back (rows this
    /// call wrote may be in it); so for `commit`.
    func create(in db: Database, kind: SnapshotKind, key: String, parent: String, labels: [String: String])
        throws(BerthError) -> (mounts: [Mount], change: JoinedChange)

    /// Commit inside `db`'s open write transaction: what `commit` does, with the same errors. The usage walk of
    /// the snapshot's own files runs inside it too, as containerd's backends commit inside the metadata
    /// transaction ("backend snapshotter should commit fast").
    func commit(in db: Database, name: String, key: String, labels: [String: String]) throws(BerthError)
        -> JoinedChange
}
