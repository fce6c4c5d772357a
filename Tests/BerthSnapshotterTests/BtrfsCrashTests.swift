#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthTestSupport
import Foundation
import Testing

@testable import BerthBtrfsSnapshotter

/// `kill -9` of a process in the middle of btrfs prepares, commits and removals. The test binary re-runs itself
/// with only this test selected and an environment variable that makes it the child: it builds a chain of layers
/// on a loop btrfs until SIGKILLed at a random moment. The parent then reopens the store: every recorded snapshot
/// has its subvolume (committed ones read-only, holding the data written before their commit), the store works
/// on, and `cleanup()` leaves exactly the recorded subvolumes.
@Suite struct BtrfsCrashTests {
    static let childVariable = "BERTH_BTRFS_CRASH_CHILD"

    static func layerData(_ index: Int) -> String {
        String(repeating: Character(UnicodeScalar(UInt8(97 + index % 26))), count: 32 << 10)
    }

    @Test func btrfsCrashMidCommitKeepsStoreConsistent() async throws {
        if let spec = ProcessInfo.processInfo.environment[Self.childVariable] {
            let parts = spec.split(separator: "|").map(String.init)
            guard parts.count == 2 else { return }
            try await Self.child(root: parts[0], progress: parts[1])
            return
        }
        let fs = try LoopBtrfs()
        defer { fs.tearDown() }
        let root = fs.mountPoint + "/root"
        var commits = 0
        for round in 0..<5 {
            commits += try await killRound(root: root, scratch: fs.directory, round: round)
            try await verify(root: root)
        }
        #expect(commits >= 4, "the children committed \(commits) layers in all")
    }

    /// Starts a child, waits for a random number of its commits, sleeps a random few milliseconds, SIGKILLs it.
    func killRound(root: String, scratch: String, round: Int) async throws -> Int {
        let progress = scratch + "/progress-\(round)"
        let child = try TestChild.launch(
            test: "btrfsCrashMidCommitKeepsStoreConsistent", variable: Self.childVariable,
            value: "\(root)|\(progress)", log: scratch + "/child-\(round).log")
        let (done, wasRunning) = try await child.killAfterProgress(
            progress, target: Int.random(in: 1...8), jitterMicroseconds: 20_000)
        try #require(wasRunning, "round \(round): the child ended early: \(child.output)")
        #expect(child.process.terminationReason == .uncaughtSignal)
        return done
    }

    func verify(root: String) async throws {
        let s = try BtrfsSnapshotter(root: root)
        let recorded = try await s.store.read { tx throws(BerthError) in
            var recorded: [(String, String, SnapshotKind)] = []
            for (id, key) in try tx.idMap() { recorded.append((id, key, try tx.getSnapshot(key).kind)) }
            return recorded
        }
        for (id, key, kind) in recorded {
            let path = s.path(kind, id)
            #expect(Subvolume.isSubvolume(path), "\(key) (id \(id), \(kind)) has no subvolume")
            guard kind == .committed, let index = key.split(separator: "-").last.flatMap({ Int($0) }),
                key.contains("-layer-")
            else { continue }
            #expect(try Subvolume.isReadOnly(path), "\(key) is writable")
            #expect(readFile(path + "/data-\(index)") == Self.layerData(index), "data of \(key)")
        }
        // The store works on before any cleanup (a rolled-back id is handed out again).
        let committed = try await s.walk(try Filter.parse("kind==committed"))
        let top = committed.max { $0.createdAt < $1.createdAt }?.name ?? ""
        _ = try await s.prepare("after-crash", parent: top, labels: [:])
        try await s.remove("after-crash")
        try await s.cleanup()
        for kind in SnapshotKind.allCases {
            let expected = Set(recorded.filter { $0.2 == kind }.map(\.0))
            let present = Set(BtrfsSnapshotter.list(root + "/" + BtrfsSnapshotter.directory(kind)))
            #expect(present == expected, "\(kind) subvolumes after cleanup")
        }
        await s.close()
    }

    /// The child: a chain of layers, each written straight into its subvolume then committed, with a
    /// prepare+remove every other layer; records how many commits are done in `progress`.
    static func child(root: String, progress: String) async throws {
        let s = try BtrfsSnapshotter(root: root)
        let round = UUID().uuidString.prefix(8)
        let committed = try await s.walk(try Filter.parse("kind==committed"))
        var parent = committed.max { $0.createdAt < $1.createdAt }?.name ?? ""
        var index = 0
        while true {
            let key = "\(round)-active-\(index)"
            _ = try await s.prepare(key, parent: parent, labels: [:])
            let id = try await s.store.read { tx throws(BerthError) in try tx.getSnapshot(key).id }
            try layerData(index).write(toFile: s.path(.active, id) + "/data-\(index)", atomically: false, encoding: .utf8)
            let name = "\(round)-layer-\(index)"
            try await s.commit(name, key: key, labels: [:])
            parent = name
            if index % 2 == 0 {
                _ = try await s.view("\(round)-view-\(index)", parent: parent, labels: [:])
                try await s.remove("\(round)-view-\(index)")
            }
            index += 1
            try FileSystem.writeAtomically(progress, "\(index)")
        }
    }
}
