import Foundation
import Testing

/// The snapshotters through Debian's `ctr snapshots` (containerd 1.6) against berthd: real mounts of what
/// `ctr snapshots mounts` prints, containerd's error messages, and GC of snapshots.
@Suite(.serialized) struct SnapshotCtrTests {
    static let snapshotters = ["overlayfs", "native"]

    func snap(_ d: Daemon, _ snapshotter: String, _ arguments: [String], namespace: String? = nil) throws -> CommandResult {
        try d.ctr(["snapshots", "--snapshotter", snapshotter] + arguments, namespace: namespace)
    }

    /// Runs `body` with the mount command line `ctr snapshots mounts` printed for `key` mounted on a fresh
    /// directory; always unmounts and removes the directory.
    func withMounted<T>(_ d: Daemon, _ snapshotter: String, _ key: String, _ body: (String) throws -> T) throws -> T {
        let target = d.directory + "/mnt-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        defer {
            _ = try? execute("/bin/umount", [target])
            try? FileManager.default.removeItem(atPath: target)
        }
        let mounts = try snap(d, snapshotter, ["mounts", target, key])
        guard mounts.succeeded else { throw DaemonFailed(log: "mounts: \(mounts.stderr)") }
        let line = mounts.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.hasPrefix("mount -t "), "\(line)")
        let mounted = try execute("/bin/sh", ["-c", line])
        guard mounted.succeeded else { throw DaemonFailed(log: "\(line): \(mounted.stderr)") }
        return try body(target)
    }

    /// `ctr leases rm --sync` of a throwaway lease runs a collection and waits for it.
    func collect(_ d: Daemon) throws {
        #expect(try d.ctr(["leases", "create", "--id", "gc-trigger"]).succeeded)
        #expect(try d.ctr(["leases", "rm", "--sync", "gc-trigger"]).succeeded)
    }

    /// The backend's snapshot directories; waits up to 5 s for a count other than `unless` (removal may lag).
    func backendSnapshots(_ d: Daemon, _ snapshotter: String, settledFrom unless: Int? = nil) -> [String] {
        let dir = d.directory + "/root/io.containerd.snapshotter.v1.\(snapshotter)/snapshots"
        let deadline = Date().addingTimeInterval(5)
        while true {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            if entries.count != unless || Date() > deadline { return entries }
            usleep(50_000)
        }
    }

    func keys(_ d: Daemon, _ snapshotter: String) throws -> [String: String] {
        let ls = try snap(d, snapshotter, ["ls"])
        var kinds: [String: String] = [:]
        for line in ls.stdout.split(separator: "\n").dropFirst() {
            let cells = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if let key = cells.first, let kind = cells.last { kinds[key] = kind }
        }
        return kinds
    }

    @Test(arguments: snapshotters) func prepareWriteCommitReadThroughChild(snapshotter: String) throws {
        try withDaemon(extra: quietGC) { d in
            #expect(try snap(d, snapshotter, ["prepare", "base"]).succeeded)
            try withMounted(d, snapshotter, "base") { dir in
                try "hello\n".write(toFile: dir + "/greeting", atomically: false, encoding: .utf8)
                try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: true)
            }
            let commit = try snap(d, snapshotter, ["commit", "base-c", "base"])
            #expect(commit.succeeded, "\(commit.stderr)")
            #expect(try snap(d, snapshotter, ["prepare", "child", "base-c"]).succeeded)
            try withMounted(d, snapshotter, "child") { dir in
                #expect((try? String(contentsOfFile: dir + "/greeting", encoding: .utf8)) == "hello\n")
                try "more\n".write(toFile: dir + "/etc/second", atomically: false, encoding: .utf8)
            }
            #expect(try snap(d, snapshotter, ["view", "look", "base-c"]).succeeded)
            try withMounted(d, snapshotter, "look") { dir in
                #expect((try? String(contentsOfFile: dir + "/greeting", encoding: .utf8)) == "hello\n")
                #expect(!FileManager.default.fileExists(atPath: dir + "/etc/second"))
                #expect(FileManager.default.createFile(atPath: dir + "/nope", contents: Data()) == false)
            }

            #expect(try keys(d, snapshotter) == ["base-c": "Committed", "child": "Active", "look": "View"])
            let ls = try snap(d, snapshotter, ["ls"])
            #expect(ls.stdout.hasPrefix("KEY"), "\(ls.stdout)")
            #expect(ls.stdout.contains("child") && ls.stdout.contains("base-c"))
            let tree = try snap(d, snapshotter, ["tree"])
            #expect(tree.stdout.contains(" base-c\n"), "\(tree.stdout)")
            #expect(tree.stdout.contains("\\_ child"), "\(tree.stdout)")

            let info = try snap(d, snapshotter, ["info", "child"])
            #expect(info.succeeded, "\(info.stderr)")
            #expect(info.stdout.contains("\"Kind\": \"Active\""), "\(info.stdout)")
            #expect(info.stdout.contains("\"Parent\": \"base-c\""), "\(info.stdout)")

            let usage = try snap(d, snapshotter, ["usage", "child"])
            #expect(usage.succeeded, "\(usage.stderr)")
            #expect(usage.stdout.contains("child"), "\(usage.stdout)")
            let all = try snap(d, snapshotter, ["usage"])
            #expect(all.stdout.split(separator: "\n").count == 4, "\(all.stdout)")

            let label = try snap(d, snapshotter, ["label", "child", "team=blue"])
            #expect(label.succeeded, "\(label.stderr)")
            #expect(label.stdout.contains("team=blue"), "\(label.stdout)")
            #expect(try snap(d, snapshotter, ["info", "child"]).stdout.contains("\"team\": \"blue\""))
            #expect(try snap(d, snapshotter, ["ls", "labels.team==blue"]).stdout.contains("child"))

            // Removal: children first; the backend data goes at the next collection.
            #expect(try snap(d, snapshotter, ["rm", "child", "look"]).succeeded)
            #expect(try snap(d, snapshotter, ["rm", "base-c"]).succeeded)
            #expect(try keys(d, snapshotter).isEmpty)
            #expect(!backendSnapshots(d, snapshotter).isEmpty)
            let before = backendSnapshots(d, snapshotter).count
            try collect(d)
            #expect(backendSnapshots(d, snapshotter, settledFrom: before).isEmpty)
        }
    }

    @Test(arguments: snapshotters) func errorsMatchContainerd(snapshotter: String) throws {
        try withDaemon(extra: quietGC) { d in
            #expect(try snap(d, snapshotter, ["prepare", "a"]).succeeded)
            let duplicate = try snap(d, snapshotter, ["prepare", "a"])
            #expect(!duplicate.succeeded)
            #expect(duplicate.stderr.contains("snapshot \"a\": already exists"), "\(duplicate.stderr)")

            let unknown = try snap(d, snapshotter, ["rm", "ghost"])
            #expect(!unknown.succeeded)
            #expect(unknown.stderr.contains("snapshot ghost does not exist: not found"), "\(unknown.stderr)")
            let noParent = try snap(d, snapshotter, ["prepare", "b", "ghost"])
            #expect(noParent.stderr.contains("parent snapshot ghost does not exist: not found"), "\(noParent.stderr)")
            #expect(try snap(d, snapshotter, ["mounts", "/mnt", "ghost"]).stderr.contains("not found"))

            #expect(try snap(d, snapshotter, ["commit", "a-c", "a"]).succeeded)
            #expect(try snap(d, snapshotter, ["prepare", "a-child", "a-c"]).succeeded)
            let parent = try snap(d, snapshotter, ["rm", "a-c"])
            #expect(!parent.succeeded)
            #expect(parent.stderr.contains("cannot remove snapshot with child: failed precondition"), "\(parent.stderr)")
            let taken = try snap(d, snapshotter, ["commit", "a-c", "a-child"])
            #expect(taken.stderr.contains("snapshot \"a-c\": already exists"), "\(taken.stderr)")

            let missing = try d.ctr(["snapshots", "--snapshotter", "nope", "ls"])
            #expect(!missing.succeeded)
            #expect(missing.stderr.contains("snapshotter not loaded: nope"), "\(missing.stderr)")

            // Snapshots are per namespace.
            #expect(try snap(d, snapshotter, ["ls"], namespace: "other").stdout.split(separator: "\n").count == 1)
            #expect(try snap(d, snapshotter, ["prepare", "a"], namespace: "other").succeeded)
            let busy = try d.ctr(["namespaces", "rm", "other"])
            #expect(!busy.succeeded)
            #expect(busy.stderr.contains("snapshots"), "\(busy.stderr)")
        }
    }

    /// ctr labels what it prepares `containerd.io/gc.root`; without it a snapshot lives only through references:
    /// another snapshot's `containerd.io/gc.ref.snapshot.<name>` label or being a parent of a kept one.
    @Test(arguments: snapshotters) func collectionFollowsRootsReferencesAndParents(snapshotter: String) throws {
        try withDaemon(extra: quietGC) { d in
            let unroot = "containerd.io/gc.root="
            #expect(try snap(d, snapshotter, ["prepare", "p1"]).succeeded)
            #expect(try snap(d, snapshotter, ["commit", "c1", "p1"]).succeeded)
            #expect(try snap(d, snapshotter, ["label", "c1", unroot]).succeeded)
            #expect(try snap(d, snapshotter, ["prepare", "holder", "c1"]).succeeded)
            #expect(try snap(d, snapshotter, ["prepare", "x"]).succeeded)
            #expect(try snap(d, snapshotter, ["label", "x", unroot]).succeeded)
            #expect(try snap(d, snapshotter, [
                "label", "holder", "containerd.io/gc.ref.snapshot.\(snapshotter)/extra=x",
            ]).succeeded)
            #expect(try snap(d, snapshotter, ["prepare", "y"]).succeeded)
            #expect(try snap(d, snapshotter, ["label", "y", unroot]).succeeded)
            #expect(backendSnapshots(d, snapshotter).count == 4)

            try collect(d)
            #expect(Set(try keys(d, snapshotter).keys) == ["c1", "holder", "x"])
            #expect(backendSnapshots(d, snapshotter, settledFrom: 4).count == 3)

            #expect(try snap(d, snapshotter, ["label", "holder", unroot]).succeeded)
            try collect(d)
            #expect(try keys(d, snapshotter).isEmpty)
            #expect(backendSnapshots(d, snapshotter, settledFrom: 3).isEmpty)
        }
    }

    @Test func eventsForPrepareCommitRemove() throws {
        try withDaemon(extra: quietGC) { d in
            let events = try Capture(ctrPath, ["--address", d.socket, "events"])
            defer { events.stop() }
            usleep(300_000)
            #expect(try snap(d, "native", ["prepare", "e"]).succeeded)
            #expect(try snap(d, "native", ["commit", "e-c", "e"]).succeeded)
            #expect(try snap(d, "native", ["rm", "e-c"]).succeeded)
            let deadline = Date().addingTimeInterval(10)
            while !events.text.contains("/snapshot/remove") && Date() < deadline { usleep(50_000) }
            for topic in ["/snapshot/prepare", "/snapshot/commit", "/snapshot/remove"] {
                #expect(events.text.contains(topic), "\(events.text)")
            }
        }
    }

    @Test func pluginsListSnapshottersAndTheServiceDefault() throws {
        try withDaemon(extra: """
            [plugins."io.containerd.grpc.v1.snapshots"]
              default = "native"
            """) { d in
            let r = try d.ctr(["plugins", "ls"])
            for line in ["io.containerd.snapshotter.v1", "io.containerd.grpc.v1"] { #expect(r.stdout.contains(line)) }
            let snapshotters = r.stdout.split(separator: "\n").filter { $0.hasPrefix("io.containerd.snapshotter.v1") }
                .map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(snapshotters.contains { $0.contains(" overlayfs ") && $0.hasSuffix("ok") }, "\(r.stdout)")
            #expect(snapshotters.contains { $0.contains(" native ") && $0.hasSuffix("ok") }, "\(r.stdout)")
            let detailed = try d.ctr(["plugins", "ls", "--detailed", "id==snapshots"])
            #expect(detailed.stdout.contains("default"), "\(detailed.stdout)")
            #expect(detailed.stdout.contains("native"), "\(detailed.stdout)")
            // berth without --snapshotter uses the daemon's default.
            #expect(try d.berth(["snapshots", "prepare", "k"]).succeeded)
            #expect(try d.ctr(["snapshots", "--snapshotter", "native", "ls"]).stdout.contains("k"))
        }
    }
}
