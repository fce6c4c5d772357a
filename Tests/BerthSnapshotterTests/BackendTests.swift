#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthNativeSnapshotter
import BerthOverlaySnapshotter
import BerthSnapshotStorage
import Foundation
import Testing

/// What is particular to each backend: containerd's mount shapes and layout, config options, removal and cleanup.
@Suite("overlayfs and native backends")
struct BackendTests {
    @Test func registrationsAreContainerds() {
        #expect(BerthOverlaySnapshotter.registration.uri == "io.containerd.snapshotter.v1.overlayfs")
        #expect(BerthNativeSnapshotter.registration.uri == "io.containerd.snapshotter.v1.native")
    }

    @Test func overlayMountShapes() async throws {
        let scratch = try SnapshotScratch()
        let root = scratch.path + "/root"
        var config = OverlayConfig()
        config.mountOptions = ["volatile"]
        let s = try OverlaySnapshotter.open(root: root, config: config)
        let index = FileSystem.exists("/sys/module/overlay/parameters/index") ? ["index=off"] : []
        let dir = { (key: String) async throws -> String in
            let stored = try await s.store.read { tx throws(BerthError) in try tx.getInfo(key).id }
            return root + "/snapshots/" + stored
        }
        let a = try await s.prepare("a", parent: "", labels: [:])
        let aDir = try await dir("a")
        #expect(a == [Mount(type: "bind", source: aDir + "/fs", options: ["rw", "rbind"])])
        try await s.commit("A", key: "a", labels: [:])
        let v0 = try await s.view("v0", parent: "", labels: [:])
        let v0Dir = try await dir("v0")
        #expect(v0 == [Mount(type: "bind", source: v0Dir + "/fs", options: ["ro", "rbind"])])
        let v1 = try await s.view("v1", parent: "A", labels: [:])
        #expect(v1 == [Mount(type: "bind", source: aDir + "/fs", options: ["ro", "rbind"])])
        let b = try await s.prepare("b", parent: "A", labels: [:])
        let bDir = try await dir("b")
        #expect(b == [Mount(type: "overlay", source: "overlay", options: index + ["volatile", "workdir=\(bDir)/work", "upperdir=\(bDir)/fs", "lowerdir=\(aDir)/fs"])])
        try await s.commit("B", key: "b", labels: [:])
        let v2 = try await s.view("v2", parent: "B", labels: [:])
        let v2Dir = try await dir("v2")
        #expect(v2 == [Mount(type: "overlay", source: "overlay", options: index + ["volatile", "lowerdir=\(bDir)/fs:\(aDir)/fs"])])
        #expect(FileSystem.exists(bDir + "/work") && !FileSystem.exists(v2Dir + "/work"))
        #expect(!FileSystem.exists(aDir + "/work"))  // bind-mounted: no overlay work directory
        await #expect(throws: BerthError.self) { try await s.mounts("missing") }
        await s.close()
    }

    @Test func overlayUpperdirLabel() async throws {
        let scratch = try SnapshotScratch()
        var config = OverlayConfig()
        config.upperdirLabel = true
        let s = try OverlaySnapshotter.open(root: scratch.path + "/root", config: config)
        _ = try await s.prepare("a", parent: "", labels: ["x": "y"])
        let id = try await s.store.read { tx throws(BerthError) in try tx.getInfo("a").id }
        let expected = ["x": "y", OverlaySnapshotter.upperdirLabel: scratch.path + "/root/snapshots/\(id)/fs"]
        #expect(try await s.stat("a").labels == expected)
        #expect(try await s.walk(.all).first?.labels == expected)
        #expect(try await s.update(SnapshotInfo(kind: .active, name: "a", labels: ["x": "z"]), paths: []).labels[OverlaySnapshotter.upperdirLabel] != nil)
        await s.close()
    }

    /// Directories no snapshot owns (interrupted creations, removals) go at cleanup; live ones stay.
    @Test(arguments: ["overlayfs", "native"])
    func cleanupRemovesOnlyLeftovers(_ backend: String) async throws {
        let scratch = try SnapshotScratch()
        let root = scratch.path + "/root"
        let s = backend == "native" ? try NativeSnapshotter.open(root: root) : try OverlaySnapshotter.open(root: root)
        _ = try await s.prepare("keep", parent: "", labels: [:])
        try FileSystem.makeDirectories(root + "/snapshots/new-abc123/fs")
        try FileSystem.makeDirectories(root + "/snapshots/rm-99")
        try FileSystem.makeDirectories(root + "/snapshots/12345")
        try await s.cleanup()
        let ids = try await s.store.read { tx throws(BerthError) in try tx.idMap() }
        #expect(Set(try SnapshotFiles.entries(root + "/snapshots")) == Set(ids.keys))
        #expect(ids.count == 1)
        await s.close()
    }

    /// A crash can roll back a creation after its directory was renamed to the id (SQLite then reuses the id),
    /// or a removal after its rename to `rm-<id>`: both are repaired.
    @Test(arguments: ["overlayfs", "native"])
    func rolledBackCreationsAndRemovalsAreRepaired(_ backend: String) async throws {
        let scratch = try SnapshotScratch()
        let root = scratch.path + "/root"
        let open = { () throws -> DirectorySnapshotter in
            backend == "native" ? try NativeSnapshotter.open(root: root) : try OverlaySnapshotter.open(root: root)
        }
        var s = try open()
        let a = try await s.prepare("a", parent: "", labels: [:])
        let id = try await s.store.read { tx throws(BerthError) in try tx.getInfo("a").id }
        let next = String((Int(id) ?? 0) + 1)
        try FileSystem.makeDirectories(root + "/snapshots/\(next)/stale")
        _ = try await s.prepare("b", parent: "", labels: [:])
        #expect(try await s.store.read { tx throws(BerthError) in try tx.getInfo("b").id } == next)
        #expect(!FileSystem.exists(root + "/snapshots/\(next)/stale"))
        try writeFile(Self.writable(a) + "/kept", "yes")
        await s.close()
        #expect(rename(root + "/snapshots/\(id)", root + "/snapshots/rm-\(id)") == 0)
        s = try open()
        #expect(readFile(Self.writable(try await s.mounts("a")) + "/kept") == "yes")
        await s.close()
    }

    /// New snapshots are built in spares made ahead in `<root>/spares`: the stock refills after each take, spares
    /// never show up as snapshots, a burst larger than the stock still gets fresh directories, and the spares a
    /// previous run left are deleted at start.
    @Test(arguments: ["overlayfs", "native"])
    func sparesAreMadeAheadAndStayOutOfSnapshots(_ backend: String) async throws {
        let scratch = try SnapshotScratch()
        let root = scratch.path + "/root"
        try FileSystem.makeDirectories(root + "/spares/new-stale/fs")
        try writeFile(root + "/spares/new-stale/fs/junk", "old")
        let s = backend == "native" ? try NativeSnapshotter.open(root: root) : try OverlaySnapshotter.open(root: root)
        #expect(!FileSystem.exists(root + "/spares/new-stale"))
        func spares() throws -> [String] { try SnapshotFiles.entries(root + "/spares") }
        #expect(try await Self.eventually { try spares().count == 2 })
        let ready = Set(try spares())
        let a = try await s.prepare("a", parent: "", labels: [:])
        let upper = Self.writable(a)
        #expect(try SnapshotFiles.entries(upper).isEmpty)
        var st = stat()
        #expect(lstat(upper, &st) == 0 && st.st_mode & 0o7777 == 0o755)
        #expect(try await Self.eventually { try spares().count == 2 })
        #expect(ready.subtracting(try spares()).count == 1, "the prepare took one spare")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<8 { group.addTask { _ = try await s.prepare("burst\(i)", parent: "", labels: [:]) } }
            try await group.waitForAll()
        }
        let ids = try await s.store.read { tx throws(BerthError) in try tx.idMap() }
        #expect(ids.count == 9)
        #expect(Set(try SnapshotFiles.entries(root + "/snapshots")) == Set(ids.keys))
        await s.close()
    }

    static func eventually(_ condition: () throws -> Bool) async throws -> Bool {
        for _ in 0..<500 {
            if try condition() { return true }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        return try condition()
    }

    static func writable(_ mounts: [Mount]) -> String {
        mounts.first?.options.first { $0.hasPrefix("upperdir=") }.map { String($0.dropFirst(9)) } ?? mounts.first?.source ?? ""
    }

    @Test func syncRemoveDeletesBeforeReturning() async throws {
        let scratch = try SnapshotScratch()
        var config = OverlayConfig()
        config.syncRemove = true
        let root = scratch.path + "/root"
        let s = try OverlaySnapshotter.open(root: root, config: config)
        _ = try await s.prepare("a", parent: "", labels: [:])
        try await s.remove("a")
        #expect(try SnapshotFiles.entries(root + "/snapshots").isEmpty)
        await s.close()
    }

    @Test func asyncRemoveIsDoneByClose() async throws {
        let scratch = try SnapshotScratch()
        let root = scratch.path + "/root"
        let s = try OverlaySnapshotter.open(root: root)
        for i in 0..<5 { _ = try await s.prepare("a\(i)", parent: "", labels: [:]) }
        for i in 0..<5 { try await s.remove("a\(i)") }
        #expect(try await s.walk(.all).isEmpty)
        await s.close()
        #expect(try SnapshotFiles.entries(root + "/snapshots").isEmpty)
    }

    /// A root on overlay is refused with a reason (the plugin then skips); a root on ext4 is fine.
    @Test func overlayOnOverlayIsUnsupported() async throws {
        let scratch = try SnapshotScratch()
        #expect(OverlaySnapshotter.unsupportedReason(try scratch.dir("plain")) == nil)
        let lower1 = try scratch.dir("lower1")
        let lower2 = try scratch.dir("lower2")
        let target = try scratch.dir("merged")
        try await Mounting.withMounts([Mount(type: "overlay", source: "overlay", options: ["lowerdir=\(lower2):\(lower1)"])], at: target) {
            let reason = OverlaySnapshotter.unsupportedReason(target)
            #expect(reason?.contains("overlay") == true)
        }
    }

    @Test func nativeMountsAndIndependentCopies() async throws {
        let scratch = try SnapshotScratch()
        let root = scratch.path + "/root"
        let s = try NativeSnapshotter.open(root: root)
        let a = try await s.prepare("a", parent: "", labels: [:])
        #expect(a.count == 1 && a[0].type == "bind" && a[0].options == ["rbind", "rw"])
        try writeFile(a[0].source + "/file", "parent")
        try await s.commit("A", key: "a", labels: [:])
        let b = try await s.prepare("b", parent: "A", labels: [:])
        #expect(b[0].source != a[0].source)
        #expect(readFile(b[0].source + "/file") == "parent")
        try writeFile(b[0].source + "/file", "child")
        #expect(readFile(a[0].source + "/file") == "parent", "the parent is untouched by its child")
        let v = try await s.view("v", parent: "A", labels: [:])
        #expect(v == [Mount(type: "bind", source: a[0].source, options: ["rbind", "ro"])])
        await s.close()
    }
}
