import BerthCore
import BerthTestSupport
import Testing

@testable import BerthBtrfsSnapshotter

/// The shared snapshotter conformance suite against the btrfs backend, each scenario on a loop-mounted btrfs
/// of its own (torn down afterwards, also on failure).
@Suite struct BtrfsConformanceTests {
    @Test(arguments: SnapshotterSuite.Scenario.allCases)
    func conformance(_ scenario: SnapshotterSuite.Scenario) async throws {
        let fs = try LoopBtrfs(sizeMB: 384)
        defer { fs.tearDown() }
        let suite = SnapshotterSuite(scratch: fs.mountPoint) { root in try BtrfsSnapshotter(root: root) }
        try await suite.run(scenario)
    }
}
