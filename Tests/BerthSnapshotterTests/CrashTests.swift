#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthNativeSnapshotter
import BerthOverlaySnapshotter
import BerthSnapshotStorage
import BerthTestSupport
import Foundation
import GRDB
import Synchronization
import Testing

/// `kill -9` in the middle of prepares, commits and removals: the test binary re-runs itself with only this test
/// selected and an environment variable that makes it the child, which builds a chain of layers until SIGKILLed at
/// a random moment. The parent then reopens the store: every recorded id has its directory, every committed layer
/// holds the data written before its commit, `cleanup()` leaves exactly the recorded ids, and the store works on.
@Suite("snapshotter crash consistency")
struct SnapshotterCrashTests {
    static let childVariable = "BERTH_SNAPSHOT_CRASH_CHILD"
    static let layerBytes = 64 << 10

    /// `backend` is `overlayfs` or `native`, with `+joined` for rows in a shared database beside `root`, where the
    /// child prepares and commits through the joined calls inside its own transactions (as the metadata layer).
    static func open(_ backend: String, _ root: String, config: OverlayConfig = OverlayConfig()) throws
        -> DirectorySnapshotter
    {
        let database = backend.hasSuffix("+joined") ? SnapshotDatabase.shared(path: sharedPath(root), name: "b") : .own
        return backend.hasPrefix("native")
            ? try NativeSnapshotter.open(root: root, database: database)
            : try OverlaySnapshotter.open(root: root, config: config, database: database)
    }

    static func sharedPath(_ root: String) -> String { (root as NSString).deletingLastPathComponent + "/meta.db" }

    /// Where a process writes into an active snapshot without mounting it (a child killed with a mount would
    /// leak it): overlay's upperdir, else the bind source.
    static func writableDirectory(_ mounts: [Mount]) -> String {
        for option in mounts.first?.options ?? [] where option.hasPrefix("upperdir=") {
            return String(option.dropFirst("upperdir=".count))
        }
        return mounts.first?.source ?? "/nonexistent"
    }

    static func layerData(_ index: Int) -> String { String(repeating: Character(UnicodeScalar(UInt8(65 + index % 26))), count: layerBytes) }

    @Test func killedCommitsLeaveConsistentStore() async throws {
        if let spec = ProcessInfo.processInfo.environment[Self.childVariable] {
            let parts = spec.split(separator: "|").map(String.init)
            guard parts.count == 3 else { return }
            try await Self.child(backend: parts[0], root: parts[1], progress: parts[2])
            return
        }
        for backend in ["overlayfs", "native", "overlayfs+joined", "native+joined"] {
            let scratch = try SnapshotScratch("berth-snap-crash-")
            let root = scratch.path + "/root"
            var commits = 0
            for round in 0..<6 {
                commits += try await killRound(backend: backend, root: root, scratch: scratch.path, round: round)
                try await verify(backend: backend, root: root)
            }
            #expect(commits >= 4, "\(backend): the children committed \(commits) layers in all")
        }
    }

    /// Starts a child, waits for a random number of its commits, sleeps a random few milliseconds and SIGKILLs it.
    func killRound(backend: String, root: String, scratch: String, round: Int) async throws -> Int {
        let progress = scratch + "/progress-\(round)"
        let child = try TestChild.launch(
            test: "killedCommitsLeaveConsistentStore", variable: Self.childVariable,
            value: "\(backend)|\(root)|\(progress)", log: scratch + "/child-\(round).log")
        let (done, wasRunning) = try await child.killAfterProgress(
            progress, target: Int.random(in: 1...12), jitterMicroseconds: 30_000)
        try #require(wasRunning, "\(backend) round \(round): the child ended early: \(child.output)")
        #expect(child.process.terminationReason == .uncaughtSignal)
        return done
    }

    func verify(backend: String, root: String) async throws {
        var config = OverlayConfig()
        config.syncRemove = true  // so the removal below is finished before cleanup looks
        let s = try Self.open(backend, root, config: config)
        let ids = try await s.store.read { tx throws(BerthError) in try tx.idMap() }
        if backend.hasSuffix("+joined") {
            // The caller's rows and the snapshotter's rows were committed together: neither exists alone.
            let pool = try SharedDatabase.acquire(Self.sharedPath(root))
            defer { SharedDatabase.release(Self.sharedPath(root)) }
            let callerKeys = try await pool.read { db in
                try db.tableExists("caller") ? try String.fetchAll(db, sql: "SELECT key FROM caller") : []
            }
            #expect(Set(callerKeys) == Set(ids.values.filter { !$0.contains("-scratch-") }), "\(backend)")
        }
        for (id, key) in ids {
            #expect(FileSystem.exists(root + "/snapshots/\(id)"), "\(backend): \(key) (id \(id)) has no directory")
            guard let index = key.split(separator: "-").last.flatMap({ Int($0) }), key.contains("-layer-") else { continue }
            let own = backend.hasPrefix("native") ? "/snapshots/\(id)" : "/snapshots/\(id)/fs"
            #expect(readFile(root + own + "/data-\(index)") == Self.layerData(index), "\(backend): data of \(key)")
        }
        // The store works on before any cleanup (a rolled-back id is handed out again: its leftover must not
        // get in the way).
        let committed = try await s.walk(try Filter.parse("kind==committed"))
        let top = committed.max { $0.createdAt < $1.createdAt }?.name ?? ""
        _ = try await s.prepare("after-crash", parent: top, labels: [:])
        try await s.remove("after-crash")
        try await s.cleanup()
        let after = try await s.store.read { tx throws(BerthError) in try tx.idMap() }
        #expect(Set(after.keys) == Set(ids.keys))
        #expect(Set(try SnapshotFiles.entries(root + "/snapshots")) == Set(ids.keys), "\(backend): leftovers after cleanup")
        await s.close()
    }

    /// The child: a chain of layers, each written then committed, with a prepare+remove every third layer;
    /// records how many commits are done in `progress`.
    static func child(backend: String, root: String, progress: String) async throws {
        let s = try open(backend, root)
        guard backend.hasSuffix("+joined") else {
            let labels = ["containerd.io/gc.root": "crash"]
            return try await layers(s, progress: progress) { key, parent in
                try await s.prepare(key, parent: parent, labels: labels)
            } commit: { name, key in
                try await s.commit(name, key: key, labels: labels)
            }
        }
        // Joined: each prepare and commit runs inside a transaction of the shared database that also writes a row
        // of the caller's own table, as the metadata layer does.
        let pool = try SharedDatabase.acquire(sharedPath(root))
        try await pool.write { db in try db.execute(sql: "CREATE TABLE IF NOT EXISTS caller (key TEXT PRIMARY KEY)") }
        try await layers(s, progress: progress) { key, parent in
            let change = Mutex<JoinedChange?>(nil)
            let mounts = try await pool.write { db in
                let (mounts, made) = try s.create(in: db, kind: .active, key: key, parent: parent, labels: [:])
                change.withLock { $0 = made }
                try db.execute(sql: "INSERT INTO caller (key) VALUES (?)", arguments: [key])
                return mounts
            }
            change.withLock { $0 }?.settle(committed: true)
            return mounts
        } commit: { name, key in
            try await pool.write { db in
                _ = try s.commit(in: db, name: name, key: key, labels: [:])
                try db.execute(sql: "UPDATE caller SET key = ? WHERE key = ?", arguments: [name, key])
            }
        }
    }

    /// The child's loop: layer after layer through `prepare` and `commit`, plus a scratch snapshot prepared and
    /// removed every third layer (always alone, outside the caller's table).
    static func layers(
        _ s: DirectorySnapshotter, progress: String, prepare: (String, String) async throws -> [Mount],
        commit: (String, String) async throws -> Void
    ) async throws {
        let round = UUID().uuidString.prefix(8)
        var parent = ""
        var index = 0
        while true {
            let key = "\(round)-active-\(index)"
            let mounts = try await prepare(key, parent)
            try writeFile(writableDirectory(mounts) + "/data-\(index)", layerData(index))
            let name = "\(round)-layer-\(index)"
            try await commit(name, key)
            parent = name
            if index % 3 == 0 {
                _ = try await s.prepare("\(round)-scratch-\(index)", parent: parent, labels: [:])
                try await s.remove("\(round)-scratch-\(index)")
            }
            index += 1
            try FileSystem.writeAtomically(progress, "\(index)")
        }
    }
}
