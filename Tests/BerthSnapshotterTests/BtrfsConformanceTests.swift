import BerthCore
import BerthSnapshotStorage
import BerthTestSupport
import Testing

@testable import BerthBtrfsSnapshotter

/// The shared snapshotter conformance suite against the btrfs backend, each scenario on a loop-mounted btrfs
/// of its own (torn down afterwards, also on failure), with the rows in the snapshotter's own file on the btrfs
/// or (`shared`, as berthd) in a shared database off it.
@Suite struct BtrfsConformanceTests {
    @Test(arguments: SnapshotterSuite.Scenario.allCases, [false, true])
    func conformance(_ scenario: SnapshotterSuite.Scenario, shared: Bool) async throws {
        let fs = try LoopBtrfs(sizeMB: 384)
        defer { fs.tearDown() }
        let database = shared ? SnapshotDatabase.shared(path: fs.directory + "/meta.db", name: "btrfs") : .own
        let suite = SnapshotterSuite(scratch: fs.mountPoint) { root in try BtrfsSnapshotter(root: root, database: database) }
        try await suite.run(scenario)
    }
}
