import BerthCore
import BerthNativeSnapshotter
import BerthOverlaySnapshotter
import BerthSnapshotStorage
import Foundation
import GRDB
import Synchronization
import Testing

/// Snapshotters with their rows in the shared metadata database: the move of an own `metadata.db` into it, and
/// the joined calls' undo when the caller's transaction does not commit.
@Suite("shared snapshot database")
struct SharedDatabaseTests {
    static func open(_ backend: String, _ root: String, _ database: SnapshotDatabase) throws -> DirectorySnapshotter {
        backend == "native"
            ? try NativeSnapshotter.open(root: root, database: database)
            : try OverlaySnapshotter.open(root: root, database: database)
    }

    struct Listing: Equatable {
        var name: String
        var kind: SnapshotKind
        var parent: String
        var labels: [String: String]
    }

    static func listing(_ s: any Snapshotter) async throws -> [Listing] {
        try await s.walk(.all).map { Listing(name: $0.name, kind: $0.kind, parent: $0.parent, labels: $0.labels) }
    }

    /// Own rows (a chain, a view, labels, and a removed snapshot holding the highest id) are moved into the shared
    /// tables with their ids, so every directory and mount stays valid, and new ids stay above every id handed out.
    @Test(arguments: ["overlayfs", "native"]) func ownRowsMoveIntoTheSharedTables(backend: String) async throws {
        let scratch = try SnapshotScratch()
        let root = scratch.path + "/root"
        let shared = SnapshotDatabase.shared(path: scratch.path + "/meta.db", name: backend)
        let own = try Self.open(backend, root, .own)
        _ = try await own.prepare("a", parent: "", labels: ["l": "1"])
        try FileSystem.write(root + "/snapshots/1/" + (backend == "native" ? "" : "fs/") + "file", Array("x".utf8))
        try await own.commit("A", key: "a", labels: ["c": "2"])
        let mounts = try await own.prepare("b", parent: "A", labels: [:])
        _ = try await own.view("v", parent: "A", labels: [:])
        _ = try await own.prepare("gone", parent: "", labels: [:])
        try await own.remove("gone")
        let before = try await Self.listing(own)
        await own.close()

        let moved = try Self.open(backend, root, shared)
        #expect(moved.sharedDatabasePath == scratch.path + "/meta.db")
        #expect(try await Self.listing(moved) == before)
        #expect(try await moved.mounts("b") == mounts)
        #expect(!FileSystem.exists(root + "/metadata.db"))
        #expect(FileSystem.exists(root + "/metadata.db.moved"))
        _ = try await moved.prepare("new", parent: "", labels: [:])
        #expect(FileSystem.exists(root + "/snapshots/5"), "ids 1–4 were handed out before the move")
        await moved.close()

        // A move interrupted after its commit (the old file still there): the rows are not copied twice.
        try FileManager.default.copyItem(atPath: root + "/metadata.db.moved", toPath: root + "/metadata.db")
        try FileManager.default.removeItem(atPath: root + "/metadata.db.moved")
        let again = try Self.open(backend, root, shared)
        #expect(try await again.walk(.all).count == before.count + 1)
        #expect(!FileSystem.exists(root + "/metadata.db"))
        await again.close()
    }

    struct Rollback: Error {}

    /// A joined create whose transaction rolls back leaves no row and no directory; one that commits is a normal
    /// snapshot. A joined commit that rolls back leaves the snapshot active.
    @Test(arguments: ["overlayfs", "native"]) func joinedCallsFollowTheCallersTransaction(backend: String) async throws {
        let scratch = try SnapshotScratch()
        let path = scratch.path + "/meta.db"
        let s = try Self.open(backend, scratch.path + "/root", .shared(path: path, name: backend))
        try await Self.checkJoinedCalls(s, path: path) {
            try FileManager.default.contentsOfDirectory(atPath: scratch.path + "/root/snapshots")
        }
        await s.close()
    }

    /// The joined calls of `s` (rows in the shared database at `path`) against transactions that roll back or
    /// commit; `leftovers` lists what the snapshotter holds on disk.
    static func checkJoinedCalls(
        _ s: any JoinableSnapshotter, path: String, leftovers: () throws -> [String]
    ) async throws {
        let pool = try SharedDatabase.acquire(path)
        defer { SharedDatabase.release(path) }

        let change = Mutex<JoinedChange?>(nil)
        await #expect(throws: Rollback.self) {
            try await pool.write { db in
                let (_, made) = try s.create(in: db, kind: .active, key: "undone", parent: "", labels: [:])
                change.withLock { $0 = made }
                throw Rollback()
            }
        }
        change.withLock { $0 }?.settle(committed: false)
        #expect(try await s.walk(.all).isEmpty)
        #expect(try leftovers().isEmpty)

        let mounts = try await pool.write { db in
            let (mounts, made) = try s.create(in: db, kind: .active, key: "kept", parent: "", labels: [:])
            change.withLock { $0 = made }
            return mounts
        }
        change.withLock { $0 }?.settle(committed: true)
        #expect(try await s.mounts("kept") == mounts)

        await #expect(throws: Rollback.self) {
            try await pool.write { db in
                let made = try s.commit(in: db, name: "K", key: "kept", labels: [:])
                change.withLock { $0 = made }
                throw Rollback()
            }
        }
        change.withLock { $0 }?.settle(committed: false)
        #expect(try await s.stat("kept").kind == .active)
        #expect(try leftovers().count == 1)
        try await pool.write { db in
            let made = try s.commit(in: db, name: "K", key: "kept", labels: [:])
            change.withLock { $0 = made }
        }
        change.withLock { $0 }?.settle(committed: true)
        #expect(try await s.stat("K").kind == .committed)
        await #expect { try await s.stat("kept") } throws: { ($0 as? BerthError)?.code == .notFound }
        #expect(try leftovers().count == 1)
    }
}
