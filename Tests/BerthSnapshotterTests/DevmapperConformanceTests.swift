import BerthCore
import BerthTestSupport
import Testing

@testable import BerthDevmapperSnapshotter

/// The conformance scenarios that mount nothing, against the devmapper snapshotter on `SimulatedThinPool` (this
/// kernel has no device-mapper). `labels` is left out: devmapper adds its file-system label, as containerd's does.
@Suite struct DevmapperConformanceTests {
    static let scenarios: [SnapshotterSuite.Scenario] = [
        .remove, .notFound, .alreadyExists, .closeTwice, .update, .walk, .statInWalk,
    ]

    @Test(arguments: scenarios)
    func conformanceWithoutKernel(_ scenario: SnapshotterSuite.Scenario) async throws {
        let suite = SnapshotterSuite { root in
            let settings = DevmapperSettings(
                rootPath: root, poolName: "pool", baseImageSizeBytes: 1 << 30, asyncRemove: false,
                discardBlocks: false, fsType: .ext4, fsOptions: "")
            return try DevmapperSnapshotter(settings: settings, executor: SimulatedThinPool(), retryDelay: .zero)
        }
        try await suite.run(scenario)
    }
}
