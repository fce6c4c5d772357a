import BerthCore
import BerthSnapshotStorage
import Foundation
import Logging
import Testing
#if canImport(Glibc)
    import Glibc
#endif

@testable import BerthBtrfsSnapshotter

/// The btrfs snapshotter against a real loop-mounted btrfs: subvolume layout, containerd's mounts, data through
/// real mounts, usage, removal rules, orphan cleanup, reopen, and the plugin's skip on other file systems.
@Suite(.serialized) struct BtrfsSnapshotterTests {
    /// A snapshotter on a fresh loop btrfs; both are torn down when `body` returns or throws.
    func withSnapshotter(_ body: (BtrfsSnapshotter, LoopBtrfs) async throws -> Void) async throws {
        let fs = try LoopBtrfs()
        defer { fs.tearDown() }
        let snapshotter = try BtrfsSnapshotter(root: fs.mountPoint + "/root")
        do {
            try await body(snapshotter, fs)
        } catch {
            await snapshotter.close()
            throw error
        }
        await snapshotter.close()
    }

    func id(_ s: BtrfsSnapshotter, _ key: String) async throws -> String {
        try await s.store.read { tx throws(BerthError) in try tx.getSnapshot(key).id }
    }

    @Test func mountsAreContainerdsAndDataFlowsThroughTheChain() async throws {
        try await withSnapshotter { s, fs in
            let mounts = try await s.prepare("a", parent: "", labels: ["x": "1"])
            let idA = try await id(s, "a")
            let subvolA = try Subvolume.id(s.path(.active, idA))
            #expect(mounts == [Mount(type: "btrfs", source: fs.device, options: ["subvolid=\(subvolA)"])])
            #expect(fs.device.hasPrefix("/dev/loop"))
            #expect(try await s.mounts("a") == mounts)
            try withBtrfsMounted(mounts) { (dir: String) throws in
                try "hello".write(toFile: dir + "/greeting", atomically: false, encoding: .utf8)
                try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: false)
                try "conf".write(toFile: dir + "/etc/app.conf", atomically: false, encoding: .utf8)
            }
            try await s.commit("base", key: "a", labels: ["x": "2"])
            // Commit keeps the id: a read-only snapshot under snapshots/, the active subvolume gone.
            #expect(Subvolume.isSubvolume(s.path(.committed, idA)))
            #expect(try Subvolume.isReadOnly(s.path(.committed, idA)))
            #expect(!FileManager.default.fileExists(atPath: s.path(.active, idA)))
            let base = try await s.stat("base")
            #expect(base.kind == .committed && base.labels == ["x": "2"] && base.parent == "")
            await #expect(throws: BerthError.self) { try await s.stat("a") }

            let child = try await s.prepare("b", parent: "base", labels: [:])
            #expect(try await s.stat("b").parent == "base")
            try withBtrfsMounted(child) { (dir: String) throws in
                #expect(try String(contentsOfFile: dir + "/greeting", encoding: .utf8) == "hello")
                #expect(try String(contentsOfFile: dir + "/etc/app.conf", encoding: .utf8) == "conf")
                try "more".write(toFile: dir + "/second", atomically: false, encoding: .utf8)
                try FileManager.default.removeItem(atPath: dir + "/greeting")
            }
            try await s.commit("top", key: "b", labels: [:])

            // A view of the top layer sees both layers' changes and is read-only.
            let view = try await s.view("v", parent: "top", labels: [:])
            let idV = try await id(s, "v")
            #expect(view == [Mount(type: "btrfs", source: fs.device, options: ["subvolid=\(try Subvolume.id(s.path(.view, idV)))", "ro"])])
            try withBtrfsMounted(view) { (dir: String) throws in
                #expect(try String(contentsOfFile: dir + "/second", encoding: .utf8) == "more")
                #expect(!FileManager.default.fileExists(atPath: dir + "/greeting"))
                #expect(open(dir + "/new", O_CREAT | O_WRONLY, 0o644) == -1 && errno == EROFS)
            }
            // The base layer still has what it had.
            let check = try await s.view("check-base", parent: "base", labels: [:])
            try withBtrfsMounted(check) { (dir: String) throws in
                #expect(try String(contentsOfFile: dir + "/greeting", encoding: .utf8) == "hello")
                #expect(!FileManager.default.fileExists(atPath: dir + "/second"))
            }
            let names = try await s.walk(Filter.all).map(\.name)
            #expect(names == ["base", "check-base", "top", "v"])
        }
    }

    @Test func viewWithoutParentIsAnEmptyReadOnlySubvolume() async throws {
        try await withSnapshotter { s, _ in
            let mounts = try await s.view("empty", parent: "", labels: [:])
            #expect(mounts.first?.options.last == "ro")
            #expect(try Subvolume.isReadOnly(s.path(.view, try await id(s, "empty"))))
            try withBtrfsMounted(mounts) { (dir: String) throws in
                #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
            }
        }
    }

    @Test func usageCountsOnlyTheLayersOwnChanges() async throws {
        try await withSnapshotter { s, _ in
            let mounts = try await s.prepare("a", parent: "", labels: [:])
            try withBtrfsMounted(mounts) { (dir: String) throws in
                try Data(repeating: 7, count: 1 << 20).write(to: URL(fileURLWithPath: dir + "/big"))
                try Data(repeating: 1, count: 8192).write(to: URL(fileURLWithPath: dir + "/small"))
                sync()
            }
            let active = try await s.usage("a")
            #expect(active.size >= 1 << 20)
            #expect(active.inodes == 3)  // the root directory and two files
            try await s.commit("base", key: "a", labels: [:])
            #expect(try await s.usage("base") == active)

            let child = try await s.prepare("b", parent: "base", labels: [:])
            #expect(try await s.usage("b").inodes == 1)  // its own root directory
            try withBtrfsMounted(child) { (dir: String) throws in
                try Data(repeating: 2, count: 65536).write(to: URL(fileURLWithPath: dir + "/added"))
                sync()
            }
            let changed = try await s.usage("b")
            #expect(changed.inodes == 2)
            #expect(changed.size >= 65536 && changed.size < 1 << 20)
            // A view has no layer of its own.
            _ = try await s.view("v", parent: "base", labels: [:])
            #expect(try await s.usage("v") == SnapshotUsage())
        }
    }

    @Test func removalRulesAndErrors() async throws {
        try await withSnapshotter { s, _ in
            _ = try await s.prepare("a", parent: "", labels: [:])
            await btrfsExpectCode(.alreadyExists) { try await s.prepare("a", parent: "", labels: [:]) }
            await btrfsExpectCode(.notFound) { try await s.prepare("b", parent: "nothing", labels: [:]) }
            await btrfsExpectCode(.invalidArgument) { try await s.prepare("b", parent: "a", labels: [:]) }
            await btrfsExpectCode(.notFound) { try await s.mounts("nothing") }
            try await s.commit("base", key: "a", labels: [:])
            await btrfsExpectCode(.failedPrecondition) { try await s.commit("again", key: "base", labels: [:]) }
            await btrfsExpectCode(.failedPrecondition) { try await s.mounts("base") }
            _ = try await s.prepare("child", parent: "base", labels: [:])
            let idBase = try await id(s, "base")
            let idChild = try await id(s, "child")
            await btrfsExpectCode(.failedPrecondition) { try await s.remove("base") }
            #expect(Subvolume.isSubvolume(s.path(.committed, idBase)))
            try await s.remove("child")
            #expect(!FileManager.default.fileExists(atPath: s.path(.active, idChild)))
            try await s.remove("base")
            #expect(!FileManager.default.fileExists(atPath: s.path(.committed, idBase)))
            await btrfsExpectCode(.notFound) { try await s.remove("base") }
            #expect(try await s.walk(Filter.all).isEmpty)
        }
    }

    /// What kill -9 can leave: a committed snapshot's subvolume made before its transaction committed, and
    /// subvolumes no row names. Commit redoes the first; cleanup deletes the others and keeps live ones.
    @Test func leftoversOfInterruptedCallsAreRepairedAndCleaned() async throws {
        try await withSnapshotter { s, _ in
            // A prepare killed before its transaction committed: its id is handed out again.
            try Subvolume.create(s.path(.active, "1"))
            try "stale".write(toFile: s.path(.active, "1") + "/stale", atomically: false, encoding: .utf8)
            let mounts = try await s.prepare("a", parent: "", labels: [:])
            let idA = try await id(s, "a")
            #expect(idA == "1")
            try withBtrfsMounted(mounts) { (dir: String) throws in #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty) }
            try Subvolume.snapshot(from: s.path(.active, idA), to: s.path(.committed, idA), readOnly: true)
            try await s.commit("base", key: "a", labels: [:])
            _ = try await s.prepare("live", parent: "base", labels: [:])
            _ = try await s.view("seen", parent: "base", labels: [:])
            let orphans = [s.path(.active, "9999"), s.path(.view, "9998"), s.path(.committed, "9997")]
            for orphan in orphans { try Subvolume.create(orphan) }
            try Subvolume.create(s.path(.active, idA))  // an active subvolume its commit did not delete
            try await s.cleanup()
            for orphan in orphans + [s.path(.active, idA)] { #expect(!FileManager.default.fileExists(atPath: orphan)) }
            #expect(Subvolume.isSubvolume(s.path(.committed, idA)))
            #expect(Subvolume.isSubvolume(s.path(.active, try await id(s, "live"))))
            #expect(Subvolume.isSubvolume(s.path(.view, try await id(s, "seen"))))
        }
    }

    @Test func reopenKeepsSnapshotsAndMounts() async throws {
        let fs = try LoopBtrfs()
        defer { fs.tearDown() }
        let root = fs.mountPoint + "/nested/root"
        var s = try BtrfsSnapshotter(root: root)
        let first = try await s.prepare("a", parent: "", labels: ["k": "v"])
        try withBtrfsMounted(first) { try "x".write(toFile: $0 + "/f", atomically: false, encoding: .utf8) }
        try await s.commit("base", key: "a", labels: ["k": "v"])
        let active = try await s.prepare("b", parent: "base", labels: [:])
        await s.close()
        await s.close()  // harmless twice

        s = try BtrfsSnapshotter(root: root)
        #expect(try await s.mounts("b") == active)
        #expect(try await s.stat("base").labels == ["k": "v"])
        try withBtrfsMounted(active) { (dir: String) throws in #expect(try String(contentsOfFile: dir + "/f", encoding: .utf8) == "x") }
        var st = stat()
        #expect(lstat(root, &st) == 0 && (st.st_mode & 0o777) == 0o700)
        await s.close()
    }

    @Test func concurrentPreparesGetDistinctSubvolumes() async throws {
        try await withSnapshotter { s, _ in
            _ = try await s.prepare("a", parent: "", labels: [:])
            try await s.commit("base", key: "a", labels: [:])
            let results = try await withThrowingTaskGroup(of: [Mount].self) { group in
                for i in 0..<16 { group.addTask { try await s.prepare("c\(i)", parent: "base", labels: [:]) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(results.map { $0.first?.options.first ?? "" }).count == 16)
            #expect(try await s.walk(try Filter.parse(["kind==active"])).count == 16)
        }
    }

    /// Rows in a shared database off the btrfs: joined creates and commits follow the caller's transaction
    /// (a rolled-back create leaves no subvolume, a rolled-back commit no committed one; a commit deletes the
    /// active subvolume only once committed).
    @Test func joinedCallsFollowTheCallersTransaction() async throws {
        let fs = try LoopBtrfs()
        defer { fs.tearDown() }
        let path = fs.directory + "/meta.db"
        let root = fs.mountPoint + "/root"
        let s = try BtrfsSnapshotter(root: root, database: .shared(path: path, name: "btrfs"))
        try await SharedDatabaseTests.checkJoinedCalls(s, path: path) {
            try ["active", "view", "snapshots"].flatMap { dir in
                try FileManager.default.contentsOfDirectory(atPath: root + "/" + dir).map { dir + "/" + $0 }
            }
        }
        await s.close()
    }

    @Test func pluginSkipsOffBtrfsAndLoadsOnIt() async throws {
        let plain = "/var/tmp/berth-btrfs-plain-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: plain) }
        let fsType = try MountInfo.lookup("/var/tmp").fsType
        try #require(fsType != "btrfs")
        let skipped = try await load(rootPath: plain)
        #expect(skipped.record(type: .snapshotter, id: "btrfs")?.status
            == .skipped("path \(plain) (\(fsType)) must be a btrfs filesystem to be used with the btrfs snapshotter"))

        let fs = try LoopBtrfs()
        defer { fs.tearDown() }
        let loaded = try await load(rootPath: fs.mountPoint)
        let record = try #require(loaded.record(type: .snapshotter, id: "btrfs"))
        #expect(record.status == .loaded)
        #expect(record.meta.exports == ["root": fs.mountPoint])
        let s = try loaded.instance(.snapshotter, id: "btrfs", as: (any Snapshotter).self)
        #expect(try await s.prepare("k", parent: "", labels: [:]).first?.type == "btrfs")
        await s.close()
    }

    func load(rootPath: String) async throws -> PluginSet {
        let dir = "/var/tmp/berth-btrfs-daemon-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let toml = "version = 3\n[plugins.\"io.containerd.snapshotter.v1.btrfs\"]\nroot_path = \"\(rootPath)\"\n"
        var loaded = try ConfigLoader.load(text: toml, file: "b.toml", registrations: [registration])
        loaded.daemon.root = dir + "/root"
        loaded.daemon.state = dir + "/state"
        return await PluginLoader.load(
            [registration], configs: loaded.plugins,
            properties: DaemonProperties(config: loaded.daemon, logger: Logger(label: "test")))
    }

    @Test func mountinfoParsing() throws {
        let text = """
            22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
            40 22 0:35 / /var/lib/with\\040space rw,relatime shared:20 - btrfs /dev/loop3 rw,space_cache=v2
            41 40 0:35 /sub /var/lib/with\\040space/inner rw - btrfs /dev/loop3 rw
            """
        let info = try #require(MountInfo.parse(Substring(text.split(separator: "\n")[1])))
        #expect(info == MountInfo(mountPoint: "/var/lib/with space", fsType: "btrfs", source: "/dev/loop3"))
        #expect(MountInfo.parse("garbage line") == nil)
        #expect(try MountInfo.lookup("/", mountinfo: text).fsType == "ext4")
    }
}

/// Expects `body` to throw a BerthError with `code`.
func btrfsExpectCode<T>(
    _ code: BerthError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T
) async {
    do {
        _ = try await body()
        Issue.record("expected \(code), got success", sourceLocation: sourceLocation)
    } catch let error as BerthError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}
