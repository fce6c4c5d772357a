import BerthCore
import Foundation
import Testing

@testable import BerthRuntimeV2

/// A task bundle left with its rootfs mounted (a shim that died before unmounting it) is still removed whole.
@Suite(.enabled(if: getuid() == 0))
struct BundleTests {
    @Test func deleteUnmountsEveryMountStackedOnRootfs() throws {
        let base = NSTemporaryDirectory() + "berth-bundle-\(UUID().uuidString)"
        let bundle = Bundle(root: base + "/root", state: base + "/state", namespace: "ns", id: "c1")
        defer {
            while umount2(bundle.rootfs, 2) == 0 {}  // MNT_DETACH: nothing left mounted if the test failed
            try? FileManager.default.removeItem(atPath: base)
        }
        try bundle.create(spec: Array(#"{"ociVersion":"1.0.2"}"#.utf8), work: true)
        try FileSystem.makeDirectories(bundle.rootfs)
        for _ in 0..<2 {
            #expect(mount("tmpfs", bundle.rootfs, "tmpfs", 0, nil) == 0)
        }
        #expect(FileManager.default.createFile(atPath: bundle.rootfs + "/inside", contents: Data("x".utf8)))
        bundle.delete()
        let mounts = (try? FileSystem.read("/proc/self/mountinfo")) ?? ""
        #expect(!mounts.contains(" \(bundle.rootfs) "))
        #expect(!FileManager.default.fileExists(atPath: bundle.path))
        #expect(!FileManager.default.fileExists(atPath: base + "/state/ns"))
        // A bundle whose rootfs was never mounted goes the same way.
        let plain = Bundle(root: base + "/root", state: base + "/state", namespace: "ns", id: "c2")
        try plain.create(spec: Array("{}".utf8), work: false)
        plain.delete()
        #expect(!FileManager.default.fileExists(atPath: plain.path))
    }
}
