#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// Scenarios about metadata: update with field paths, walk filters, labels, usage, concurrency, restart.
extension SnapshotterScenario {
    /// c1 ← c2 committed; a1 on c2, a2 alone (active); v1 on c2, v2 alone (views). containerd's base set.
    func baseSnapshots(_ s: any Snapshotter) async throws {
        _ = try await s.prepare("c1-a", parent: "", labels: Self.gcRoot)
        try await s.commit("c1", key: "c1-a", labels: Self.gcRoot)
        _ = try await s.prepare("c2-a", parent: "c1", labels: Self.gcRoot)
        try await s.commit("c2", key: "c2-a", labels: Self.gcRoot)
        _ = try await s.prepare("a1", parent: "c2", labels: Self.gcRoot)
        _ = try await s.prepare("a2", parent: "", labels: Self.gcRoot)
        _ = try await s.view("v1", parent: "c2", labels: Self.gcRoot)
        _ = try await s.view("v2", parent: "", labels: Self.gcRoot)
    }

    static let baseCases: [(name: String, kind: SnapshotKind, parent: String)] = [
        ("c1", .committed, ""), ("c2", .committed, "c1"), ("a1", .active, "c2"), ("a2", .active, ""),
        ("v1", .view, "c2"), ("v2", .view, ""),
    ]

    /// containerd's Update: times, immutable fields, `labels.KEY` and `labels` paths, InvalidArgument for others.
    func update(_ s: any Snapshotter) async throws {
        // Stored times may differ from Date() in the last bits (seconds as a double): allow a millisecond.
        let slack: TimeInterval = 0.001
        let t1 = Date().addingTimeInterval(-slack)
        try await baseSnapshots(s)
        let t2 = Date().addingTimeInterval(slack)
        for (name, kind, parent) in Self.baseCases {
            var info = try await s.stat(name)
            try check(info.createdAt >= t1 && info.createdAt <= t2, "\(name): created \(info.createdAt) not in [\(t1), \(t2)]")
            try equal(info.updatedAt, info.createdAt, "\(name): updated time at creation")
            try equal(info.kind, kind, "\(name): kind")
            try equal(info.parent, parent, "\(name): parent")
            let created = info.createdAt
            var expected = ["l1": "v1", "l2": "v2", "l3": "v3"].merging(Self.gcRoot) { a, _ in a }
            info.parent = "doesnotexist"
            info.labels = expected
            let u1 = Date().addingTimeInterval(-slack)
            info = try await s.update(info, paths: [])
            let u2 = Date().addingTimeInterval(slack)
            try equal(info.createdAt, created, "\(name): created time after update")
            try check(info.updatedAt >= u1 && info.updatedAt <= u2, "\(name): updated \(info.updatedAt) not in [\(u1), \(u2)]")
            try equal(info.kind, kind, "\(name): kind after update")
            try equal(info.parent, parent, "\(name): parent after update")
            try equal(info.name, name, "\(name): name after update")
            try equal(info.labels, expected, "\(name): labels after update")

            expected = ["l1": "updated", "l3": "v3"].merging(Self.gcRoot) { a, _ in a }
            info.labels = ["l1": "updated", "l4": "v4"]
            info = try await s.update(info, paths: ["labels.l1", "labels.l2"])
            try equal(info.labels, expected, "\(name): labels after labels.l1, labels.l2")

            expected = ["l4": "v4"].merging(Self.gcRoot) { a, _ in a }
            info.labels = expected
            info = try await s.update(info, paths: ["labels"])
            try equal(info.labels, expected, "\(name): labels after labels")
            try equal(try await s.stat(name).labels, expected, "\(name): stored labels")

            info.parent = "doesnotexist"
            try await expectError(.invalidArgument, "\(name): update of parent") {
                try await s.update(info, paths: ["parent"])
            }
        }
    }

    /// containerd's Walk table: kind, name, parent, label presence and value filters.
    func walk(_ s: any Snapshotter) async throws {
        let root = ["containerd.io/gc.root": "check-walk"]
        let rootAnd = { (label: String) in root.merging(["l": label]) { a, _ in a } }
        _ = try await s.prepare("a-np", parent: "", labels: root)
        _ = try await s.prepare("p-tmp", parent: "", labels: root)
        try await s.commit("p", key: "p-tmp", labels: root)
        _ = try await s.prepare("a", parent: "p", labels: root)
        _ = try await s.view("v", parent: "p", labels: root)
        _ = try await s.prepare("p-wl-tmp", parent: "", labels: root)
        try await s.commit("p-wl", key: "p-wl-tmp", labels: rootAnd("1"))
        _ = try await s.prepare("a-wl", parent: "p-wl", labels: rootAnd("2"))
        _ = try await s.view("v-wl", parent: "p-wl", labels: rootAnd("3"))
        _ = try await s.prepare("a-np-wl", parent: "", labels: rootAnd("2"))
        let cases: [(matches: [String], filters: [String])] = [
            (["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"], ["labels.\"containerd.io/gc.root\"==check-walk"]),
            (["a-np", "a", "a-wl", "a-np-wl"], ["kind==active,labels.\"containerd.io/gc.root\"==check-walk"]),
            (["v", "v-wl"], ["kind==view,labels.\"containerd.io/gc.root\"==check-walk"]),
            (["p", "p-wl"], ["kind==committed,labels.\"containerd.io/gc.root\"==check-walk"]),
            (["p", "a-np-wl"], ["name==p", "name==a-np-wl"]),
            (["a-wl"], ["name==a-wl,labels.l"]),
            (["a", "v"], ["parent==p"]),
            (["a", "v", "a-wl", "v-wl"], ["parent!=\"\",labels.\"containerd.io/gc.root\"==check-walk"]),
            (["p-wl", "a-wl", "v-wl", "a-np-wl"], ["labels.l"]),
            (["a-wl", "a-np-wl"], ["labels.l==2"]),
        ]
        for (index, testCase) in cases.enumerated() {
            let filter = try Filter.parse(testCase.filters)
            let actual = try await s.walk(filter).map(\.name).sorted()
            try equal(actual, testCase.matches.sorted(), "walk case \(index) \(testCase.filters)")
        }
        try equal(try await s.walk(.all).count, 8, "unfiltered walk")
    }

    /// Every walked info equals its Stat.
    func statInWalk(_ s: any Snapshotter) async throws {
        try await baseSnapshots(s)
        let walked = try await s.walk(.all)
        try equal(Set(walked.map(\.name)), Set(Self.baseCases.map(\.name)), "walked names")
        for info in walked { try equal(try await s.stat(info.name), info, "stat of \(info.name)") }
    }

    /// Usage of an active snapshot grows with writes (size in allocated bytes, inodes); commit records it.
    func usage(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in try write(dir + "/big-in-parent", String(repeating: "p", count: 1 << 20)) }
        let mounts = try await s.prepare("active", parent: "base", labels: [:])
        let before = try await s.usage("active")
        try check(before.inodes >= 1, "an empty snapshot counts its own directory (inodes \(before.inodes))")
        try await mounted(mounts, "active") { dir in
            try write(dir + "/big", String(repeating: "x", count: 1 << 20))
            try makeDirectory(dir + "/dir")
            for i in 0..<3 { try write(dir + "/dir/small-\(i)", "\(i)") }
            try check(link(dir + "/big", dir + "/big-link") == 0, "link: \(FileSystem.errnoMessage())")
        }
        let after = try await s.usage("active")
        try check(after.size >= before.size + (1 << 20), "size grew by 1 MiB: \(before.size) → \(after.size)")
        try equal(after.inodes, before.inodes + 5, "inodes after writing a file, a dir, 3 files and a hard link")
        try await s.commit("committed", key: "active", labels: [:])
        try equal(try await s.usage("committed"), after, "usage recorded at commit")
    }

    /// Labels are the snapshot's own: set at prepare/view, replaced at commit, never taken from the parent;
    /// empty values are dropped.
    func labels(_ s: any Snapshotter) async throws {
        let prepared = ["a": "1", "containerd.io/snapshot/x": "y"]
        _ = try await s.prepare("active", parent: "", labels: prepared)
        try equal(try await s.stat("active").labels, prepared, "labels of the active snapshot")
        try await s.commit("committed", key: "active", labels: ["b": "2"])
        try equal(try await s.stat("committed").labels, ["b": "2"], "labels after commit")
        _ = try await s.prepare("child", parent: "committed", labels: [:])
        try equal(try await s.stat("child").labels, [:], "labels of a child prepared without labels")
        _ = try await s.view("view", parent: "committed", labels: ["v": "1", "empty": ""])
        try equal(try await s.stat("view").labels, ["v": "1"], "labels of a view (empty value dropped)")
        var info = try await s.stat("committed")
        info.labels = ["b": ""]
        info = try await s.update(info, paths: ["labels.b"])
        try equal(info.labels, [:], "labels after setting b to empty")
        try equal(SnapshotLabels.inherited(["containerd.io/snapshot/x": "1", "containerd.io/snapshot.ref": "r", "a": "b"]),
                  ["containerd.io/snapshot/x": "1", "containerd.io/snapshot.ref": "r"], "inherited labels")
    }

    /// 20 prepares at once on one parent: all succeed with their own directories, all see the parent.
    func concurrentPrepares(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in try write(dir + "/shared", "base\n") }
        let results = try await withThrowingTaskGroup(of: (Int, [Mount]).self) { group in
            for i in 0..<20 {
                group.addTask { (i, try await s.prepare("concurrent-\(i)", parent: "base", labels: [:])) }
            }
            var all: [Int: [Mount]] = [:]
            for try await (i, mounts) in group { all[i] = mounts }
            return all
        }
        try equal(results.count, 20, "prepares that returned")
        try equal(Set(results.values).count, 20, "distinct mounts")
        for i in 0..<20 {
            try await mounted(results[i] ?? [], "concurrent-\(i)") { dir in
                try expectFile(dir + "/shared", "base\n")
                try check(try names(dir) == ["shared"], "concurrent-\(i) sees another's files")
                try write(dir + "/own", "\(i)")
            }
        }
        for i in 0..<20 {
            try await mounted(s, "concurrent-\(i)") { dir in try expectFile(dir + "/own", "\(i)") }
        }
        try equal(try await s.walk(.all).count, 21, "snapshots after the concurrent prepares")
    }

    /// A new instance on the same root sees every snapshot, label, usage and file; work continues.
    func reopen(_ s: any Snapshotter) async throws {
        try await layer(s, "base", labels: ["l": "base"]) { dir in try write(dir + "/foo", "foo\n") }
        let baseUsage = try await s.usage("base")
        let mounts = try await s.prepare("active", parent: "base", labels: ["l": "active"])
        try await mounted(mounts, "active") { dir in try write(dir + "/bar", "bar\n") }
        _ = try await s.view("view", parent: "base", labels: [:])
        let before = try await s.walk(.all)
        await s.close()

        let again = try await factory(root)
        do {
            try equal(try await again.walk(.all), before, "walk after reopen")
            try equal(try await again.usage("base"), baseUsage, "usage of base after reopen")
            try equal(try await again.mounts("active"), mounts, "mounts of active after reopen")
            try await mounted(again, "active") { dir in
                try expectFile(dir + "/foo", "foo\n")
                try expectFile(dir + "/bar", "bar\n")
            }
            try await again.commit("top", key: "active", labels: [:])
            let child = try await again.prepare("child", parent: "top", labels: [:])
            try await mounted(child, "child") { dir in try expectFile(dir + "/bar", "bar\n") }
            try await again.remove("view")
        } catch {
            await again.close()
            throw error
        }
        await again.close()
    }

    /// Two views of one committed snapshot (a view's parent): both mount, removing one keeps the other.
    func viewOnViewParent(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in try write(dir + "/foo", "foo\n") }
        let first = try await s.view("v1", parent: "base", labels: [:])
        let parent = try await s.stat("v1").parent
        try equal(parent, "base", "parent of v1")
        let second = try await s.view("v2", parent: parent, labels: [:])
        try await mounted(first, "v1") { dir in try expectFile(dir + "/foo", "foo\n") }
        try await mounted(second, "v2") { dir in try expectFile(dir + "/foo", "foo\n") }
        try await s.remove("v1")
        try await mounted(s, "v2") { dir in try expectFile(dir + "/foo", "foo\n") }
        try await expectError(.failedPrecondition, "removing base with a view") { try await s.remove("base") }
    }

    /// `cleanup()` after removals frees space but keeps every live snapshot intact.
    func cleanupKeepsSnapshots(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in try write(dir + "/foo", "foo\n") }
        let mounts = try await s.prepare("active", parent: "base", labels: [:])
        try await mounted(mounts, "active") { dir in try write(dir + "/bar", "bar\n") }
        _ = try await s.view("view", parent: "base", labels: [:])
        _ = try await s.prepare("doomed", parent: "base", labels: [:])
        try await s.remove("doomed")
        try await s.cleanup()
        try await s.cleanup()
        try equal(Set(try await s.walk(.all).map(\.name)), ["base", "active", "view"], "snapshots after cleanup")
        try await mounted(s, "active") { dir in
            try expectFile(dir + "/foo", "foo\n")
            try expectFile(dir + "/bar", "bar\n")
        }
        try await mounted(s, "view") { dir in try expectFile(dir + "/foo", "foo\n") }
    }
}
