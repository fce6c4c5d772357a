#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// The scenarios' dispatch and the basic chains (containerd's Basic, Stat*, Transitivity, PrepareView, Remove…).
extension SnapshotterScenario {
    func run(_ s: any Snapshotter) async throws {
        switch scenario {
        case .basic: try await basic(s)
        case .statActive: try await statActive(s)
        case .statCommitted: try await statCommitted(s)
        case .transitivity: try await transitivity(s)
        case .prepareViewFailing: try await prepareViewFailing(s)
        case .update: try await update(s)
        case .remove: try await remove(s)
        case .walk: try await walk(s)
        case .layerFileUpdate: try await layerFileUpdate(s)
        case .removeDirectoryInLowerLayer: try await removeDirectoryInLowerLayer(s)
        case .chown: try await chownInChild(s)
        case .directoryPermissionOnCommit: try await directoryPermissionOnCommit(s)
        case .removeIntermediateSnapshot: try await removeIntermediateSnapshot(s)
        case .deletedFilesInChildSnapshot: try await deletedFilesInChildSnapshot(s)
        case .moveFileFromLowerLayer: try await moveFileFromLowerLayer(s)
        case .viewReadonly: try await viewReadonly(s)
        case .multiParentView: try await multiParentView(s)
        case .statInWalk: try await statInWalk(s)
        case .closeTwice: try await closeTwice(s)
        case .rootPermission: try await rootPermission(s)
        case .layers128: try await layers128(s)
        case .commitNonActive: try await commitNonActive(s)
        case .notFound: try await notFound(s)
        case .alreadyExists: try await alreadyExists(s)
        case .usage: try await usage(s)
        case .labels: try await labels(s)
        case .concurrentPrepares: try await concurrentPrepares(s)
        case .reopen: try await reopen(s)
        case .viewOnViewParent: try await viewOnViewParent(s)
        case .cleanupKeepsSnapshots: try await cleanupKeepsSnapshots(s)
        }
    }

    static let gcRoot = ["containerd.io/gc.root": "2026-01-01T00:00:00Z"]

    /// Prepare → write → commit, a child sees the files and changes them, a view of the grandchild sees both,
    /// removal order is enforced.
    func basic(_ s: any Snapshotter) async throws {
        let preparing = work + "/preparing"
        let mounts = try await s.prepare(preparing, parent: "", labels: Self.gcRoot)
        try await mounted(mounts, "preparing") { dir in
            try write(dir + "/foo", "foo\n", mode: 0o777)
            for sub in ["/a", "/a/b", "/a/b/c"] { try makeDirectory(dir + sub) }
        }
        let committed = work + "/committed"
        try await s.commit(committed, key: preparing, labels: Self.gcRoot)
        let info = try await s.stat(committed)
        try equal(info.parent, "", "parent of \(committed)")
        try equal(info.kind, .committed, "kind of \(committed)")
        try await expectError(.notFound, "stat of the committed active key") { try await s.stat(preparing) }

        let next = work + "/nextlayer"
        let nextMounts = try await s.prepare(next, parent: committed, labels: Self.gcRoot)
        try await mounted(nextMounts, "nextlayer") { dir in
            try expectFile(dir + "/foo", "foo\n")
            try check(Mounting.isDirectory(dir + "/a/b/c"), "a/b/c missing in the child")
            try write(dir + "/bar", "bar\n", mode: 0o777)
            try write(dir + "/foo", "bar\n", mode: 0o777)
            try removeAll(dir + "/a/b")
        }
        let nextInfo = try await s.stat(next)
        try equal(nextInfo.parent, committed, "parent of \(next)")
        try equal(nextInfo.kind, .active, "kind of \(next)")
        let nextCommitted = work + "/committed-next"
        try await s.commit(nextCommitted, key: next, labels: Self.gcRoot)
        let info2 = try await s.stat(nextCommitted)
        try equal(info2.parent, committed, "parent of \(nextCommitted)")
        try equal(info2.kind, .committed, "kind of \(nextCommitted)")
        try await expectError(.notFound, "stat of the second committed active key") { try await s.stat(next) }

        let walked = Dictionary(uniqueKeysWithValues: try await s.walk(.all).map { ($0.name, $0) })
        try equal(walked[committed], info, "walked info of \(committed)")
        try equal(walked[nextCommitted], info2, "walked info of \(nextCommitted)")

        let nextnext = work + "/nextnextlayer"
        let viewMounts = try await s.view(nextnext, parent: nextCommitted, labels: Self.gcRoot)
        try await mounted(viewMounts, "nextnextlayer") { dir in
            try expectFile(dir + "/foo", "bar\n")
            try expectFile(dir + "/bar", "bar\n")
            try check(Mounting.isDirectory(dir + "/a"), "/a missing in the view")
            try expectAbsent(dir + "/a/b")
        }
        try await s.remove(nextnext)
        try await expectError(.failedPrecondition, containing: "remove", "removing a parent") {
            try await s.remove(committed)
        }
        try await s.remove(nextCommitted)
        try await s.remove(committed)
        try equal(try await s.walk(.all).count, 0, "snapshots left")
    }

    func statActive(_ s: any Snapshotter) async throws {
        let key = work + "/preparing"
        let mounts = try await s.prepare(key, parent: "", labels: Self.gcRoot)
        try await mounted(mounts, "preparing") { dir in try write(dir + "/foo", "foo\n") }
        let info = try await s.stat(key)
        try equal(info.name, key, "name")
        try equal(info.kind, .active, "kind")
        try equal(info.parent, "", "parent")
        try equal(info.labels, Self.gcRoot, "labels")
    }

    func statCommitted(_ s: any Snapshotter) async throws {
        let key = work + "/preparing"
        let mounts = try await s.prepare(key, parent: "", labels: Self.gcRoot)
        try await mounted(mounts, "preparing") { dir in try write(dir + "/foo", "foo\n") }
        let name = work + "/committed"
        try await s.commit(name, key: key, labels: Self.gcRoot)
        let info = try await s.stat(name)
        try equal(info.name, name, "name")
        try equal(info.kind, .committed, "kind")
        try equal(info.parent, "", "parent")
    }

    /// A ← B ← C: C sees B's version of a file A created.
    func transitivity(_ s: any Snapshotter) async throws {
        try await layer(s, "A") { dir in try write(dir + "/foo", "foo\n") }
        try await layer(s, "B", parent: "A") { dir in
            try expectFile(dir + "/foo", "foo\n")
            try write(dir + "/foo", "bar\n")
        }
        let mounts = try await s.prepare("C", parent: "B", labels: [:])
        try await mounted(mounts, "C") { dir in try expectFile(dir + "/foo", "bar\n") }
    }

    /// Parents must be committed snapshots that exist.
    func prepareViewFailing(_ s: any Snapshotter) async throws {
        _ = try await s.prepare("p-active", parent: "", labels: [:])
        try await layer(s, "committed") { dir in try write(dir + "/foo", "foo\n") }
        _ = try await s.view("v", parent: "committed", labels: [:])
        try await expectError(.invalidArgument, "prepare on a view") {
            try await s.prepare("on-view", parent: "v", labels: [:])
        }
        try await expectError(.invalidArgument, "view on a view") { try await s.view("v2", parent: "v", labels: [:]) }
        try await expectError(.invalidArgument, "prepare on an active snapshot") {
            try await s.prepare("on-active", parent: "p-active", labels: [:])
        }
        try await expectError(.notFound, "prepare on a missing parent") {
            try await s.prepare("on-missing", parent: "missing", labels: [:])
        }
        try await expectError(.notFound, "view on a missing parent") {
            try await s.view("v-missing", parent: "missing", labels: [:])
        }
        let names = Set(try await s.walk(.all).map(\.name))
        try equal(names, ["p-active", "committed", "v"], "snapshots after the failures")
    }

    /// Remove frees the key for reuse; removing twice is NotFound; a committed snapshot goes once childless.
    func remove(_ s: any Snapshotter) async throws {
        _ = try await s.prepare("committed-a", parent: "", labels: Self.gcRoot)
        try await s.commit("committed-1", key: "committed-a", labels: Self.gcRoot)
        _ = try await s.prepare("reuse-1", parent: "committed-1", labels: Self.gcRoot)
        try await s.remove("reuse-1")
        _ = try await s.view("reuse-1", parent: "committed-1", labels: Self.gcRoot)
        try await s.remove("reuse-1")
        _ = try await s.prepare("reuse-1", parent: "", labels: Self.gcRoot)
        try await s.remove("reuse-1")
        try await expectError(.notFound, "second removal") { try await s.remove("reuse-1") }
        try await s.remove("committed-1")
        try await expectError(.notFound, "stat after removal") { try await s.stat("committed-1") }
    }

    func removeIntermediateSnapshot(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in try makeDirectory(dir + "/dir") }
        try await layer(s, "middle", parent: "base") { dir in try write(dir + "/dir/file", "x") }
        _ = try await s.prepare("top", parent: "middle", labels: [:])
        try await expectError(.failedPrecondition, "removing the intermediate snapshot") { try await s.remove("middle") }
        try await expectError(.failedPrecondition, "removing the base") { try await s.remove("base") }
        try await s.remove("top")
        try await s.remove("middle")
        try await s.remove("base")
    }

    /// Every operation on a missing key is NotFound.
    func notFound(_ s: any Snapshotter) async throws {
        try await expectError(.notFound, "stat") { try await s.stat("missing") }
        try await expectError(.notFound, "mounts") { try await s.mounts("missing") }
        try await expectError(.notFound, "usage") { try await s.usage("missing") }
        try await expectError(.notFound, "remove") { try await s.remove("missing") }
        try await expectError(.notFound, "commit") { try await s.commit("name", key: "missing", labels: [:]) }
        try await expectError(.notFound, "update") {
            try await s.update(SnapshotInfo(kind: .active, name: "missing"), paths: [])
        }
    }

    /// Keys are unique across kinds; a failed commit leaves the active snapshot in place.
    func alreadyExists(_ s: any Snapshotter) async throws {
        _ = try await s.prepare("a", parent: "", labels: [:])
        try await expectError(.alreadyExists, "prepare with a taken key") { try await s.prepare("a", parent: "", labels: [:]) }
        try await expectError(.alreadyExists, "view with a taken key") { try await s.view("a", parent: "", labels: [:]) }
        _ = try await s.prepare("b", parent: "", labels: [:])
        try await s.commit("c", key: "b", labels: [:])
        _ = try await s.prepare("d", parent: "", labels: [:])
        try await expectError(.alreadyExists, "commit to a taken name") { try await s.commit("c", key: "d", labels: [:]) }
        try await expectError(.alreadyExists, "commit to an active key's name") {
            try await s.commit("a", key: "d", labels: [:])
        }
        try equal(try await s.stat("d").kind, .active, "kind of the active snapshot after the failed commits")
        try await s.commit("e", key: "d", labels: [:])
    }

    /// Only active snapshots commit; committed snapshots have no mounts.
    func commitNonActive(_ s: any Snapshotter) async throws {
        try await layer(s, "committed") { _ in }
        _ = try await s.view("view", parent: "committed", labels: [:])
        try await expectError(.failedPrecondition, "commit of a committed snapshot") {
            try await s.commit("again", key: "committed", labels: [:])
        }
        try await expectError(.failedPrecondition, "commit of a view") {
            try await s.commit("from-view", key: "view", labels: [:])
        }
        try await expectError(.failedPrecondition, "mounts of a committed snapshot") { try await s.mounts("committed") }
        try equal(try await s.stat("view").kind, .view, "the view after the failed commit")
        try await expectError(.notFound, "the failed commit's name") { try await s.stat("from-view") }
    }

    func closeTwice(_ s: any Snapshotter) async throws {
        _ = try await s.prepare("a", parent: "", labels: [:])
        await s.close()
        await s.close()
    }

    /// The root of a fresh snapshot is 0755 (containerd's RootPermission).
    func rootPermission(_ s: any Snapshotter) async throws {
        let mounts = try await s.prepare("preparing", parent: "", labels: [:])
        try await mounted(mounts, "preparing") { dir in
            try equal(try status(dir).st_mode & 0o777, 0o755, "mode of the snapshot root")
        }
    }
}
