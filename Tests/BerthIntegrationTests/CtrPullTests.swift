import BerthCore
import BerthTestSupport
import Foundation
import Testing

/// Runs blocking work (starting berthd, running ctr) on a GCD thread so async tests never block the pool.
func pullOffPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// `ctr image pull --plain-http` from Debian's docker-registry into berthd: the pull unpacks every layer through
/// Diff/Apply and Snapshots into overlayfs and native snapshots keyed by chain ID, whiteouts, opaque dirs,
/// hardlinks and xattrs included.
@Suite(.serialized) struct CtrPullTests {
    /// containerd's chain IDs: chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " + diff(n)).
    static func chainIDs(_ diffIDs: [BerthCore.Digest]) throws -> [String] {
        var chains: [String] = []
        for diff in diffIDs {
            guard let last = chains.last else {
                chains.append(diff.description)
                continue
            }
            let out = try execute("/bin/sh", ["-c", "printf '%s %s' '\(last)' '\(diff)' | sha256sum | cut -d' ' -f1"])
            chains.append("sha256:" + out.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return chains
    }

    @Test(arguments: ["overlayfs", "native"]) func pullUnpacksSeveralLayers(snapshotter: String) async throws {
        let registry = try await TestRegistry.start(.plain)
        defer { registry.stop() }
        let scratch = "/tmp/berth-pull-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let image = try await TestImages.build(.multiLayer, in: scratch + "/layout", name: "berth/layers")
        try await image.push(to: registry, name: "berth/layers")
        let chains = try Self.chainIDs(image.diffIDs)
        let reference = "\(registry.host)/berth/layers:latest"

        let daemon = try await pullOffPool { try Daemon(extra: DiffCtrTests.noBackgroundGC) }
        defer { daemon.remove() }
        let pull = try await pullOffPool {
            try daemon.ctr(["image", "pull", "--plain-http", "--snapshotter", snapshotter, reference], timeout: 120)
        }
        #expect(pull.succeeded, "\(pull.stderr)\n\(daemon.logText.suffix(3000))")
        let ls = try await pullOffPool { try daemon.ctr(["snapshots", "--snapshotter", snapshotter, "ls"]) }
        for chain in chains { #expect(ls.stdout.contains(chain), "\(ls.stdout)") }

        let top = try #require(chains.last)
        let target = daemon.directory + "/view"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        let mounted = try await pullOffPool { () throws -> CommandResult in
            _ = try daemon.ctr(["snapshots", "--snapshotter", snapshotter, "view", "v", top])
            let mounts = try daemon.ctr(["snapshots", "--snapshotter", snapshotter, "mounts", target, "v"])
            return try execute("/bin/sh", ["-c", mounts.stdout])
        }
        #expect(mounted.succeeded, "\(mounted.stderr)")
        defer { _ = try? execute("/bin/umount", [target]) }
        for path in TestImageExpectations.present {
            #expect(FileManager.default.fileExists(atPath: target + "/" + path), "\(path) missing")
        }
        for path in TestImageExpectations.absent {
            #expect(!FileManager.default.fileExists(atPath: target + "/" + path), "\(path) not hidden")
        }
        let (a, b) = TestImageExpectations.hardlinks
        let ia = try FileManager.default.attributesOfItem(atPath: target + "/" + a)[.systemFileNumber] as? Int
        let ib = try FileManager.default.attributesOfItem(atPath: target + "/" + b)[.systemFileNumber] as? Int
        #expect(ia != nil && ia == ib)
        let x = TestImageExpectations.xattr
        #expect(TestImages.getXattr(target + "/" + x.path, name: x.name) == x.value)
    }

    @Test func pullOfSingleLayerBusyboxRuns() async throws {
        let registry = try await TestRegistry.start(.plain)
        defer { registry.stop() }
        let scratch = "/tmp/berth-pull-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let image = try await TestImages.build(.oci, in: scratch + "/layout", name: "library/busybox")
        try await image.push(to: registry, name: "library/busybox")
        let daemon = try await pullOffPool { try Daemon(extra: DiffCtrTests.noBackgroundGC) }
        defer { daemon.remove() }
        let reference = "\(registry.host)/library/busybox:latest"
        let pull = try await pullOffPool { try daemon.ctr(["image", "pull", "--plain-http", reference], timeout: 120) }
        #expect(pull.succeeded, "\(pull.stderr)\n\(daemon.logText.suffix(3000))")
        let chain = try #require(image.diffIDs.first).description
        let target = daemon.directory + "/view"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        let shell = try await pullOffPool { () throws -> CommandResult in
            _ = try daemon.ctr(["snapshots", "view", "v", chain])
            let mounts = try daemon.ctr(["snapshots", "mounts", target, "v"])
            let mounted = try execute("/bin/sh", ["-c", mounts.stdout])
            guard mounted.succeeded else { return mounted }
            defer { _ = try? execute("/bin/umount", [target]) }
            return try execute("/usr/sbin/chroot", [target, "/bin/busybox", "echo", "pulled"])
        }
        #expect(shell.stdout == "pulled\n", "\(shell.stderr)")
    }
}
