import BerthCore
import BerthNativeSnapshotter
import BerthOverlaySnapshotter
import BerthSnapshotStorage
import BerthTestSupport
import Testing

/// Per-scenario roots live under /var/tmp: a disk file system here (overlay upper directories cannot be on
/// overlay, and /tmp may be tmpfs elsewhere).
let snapshotScratch = "/var/tmp"

let overlaySuite = SnapshotterSuite(scratch: snapshotScratch) { root in try OverlaySnapshotter.open(root: root) }
let nativeSuite = SnapshotterSuite(scratch: snapshotScratch) { root in try NativeSnapshotter.open(root: root) }

@Suite("overlayfs snapshotter conformance")
struct OverlayConformance {
    @Test(arguments: SnapshotterSuite.Scenario.allCases)
    func scenario(_ scenario: SnapshotterSuite.Scenario) async throws {
        try await overlaySuite.run(scenario)
    }
}

@Suite("native snapshotter conformance")
struct NativeConformance {
    @Test(arguments: SnapshotterSuite.Scenario.allCases)
    func scenario(_ scenario: SnapshotterSuite.Scenario) async throws {
        try await nativeSuite.run(scenario)
    }
}
