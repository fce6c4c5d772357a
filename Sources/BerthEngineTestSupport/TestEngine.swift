import BerthContentPlugin
import BerthCore
import BerthDiffService
import BerthEventsPlugin
import BerthImage
import BerthMetadataPlugin
import BerthNativeSnapshotter
import BerthOverlaySnapshotter
import BerthTransferPlugin
import BerthWalkingDiffer
import Foundation
import Logging

/// The image engine in-process, as berthd builds it: events, content, overlayfs and native snapshotters,
/// metadata, the walking differ and diff service, and the local transferrer, all under a temporary root.
/// Tests of pull, push, import and export use it without a daemon.
public final class TestEngine: Sendable {
    public let root: String
    public let plugins: PluginSet
    public let metadata: any MetadataProvider
    public let transferrer: any Transferrer

    /// Loads the plugins under a fresh directory in /var/tmp (overlayfs needs a real filesystem, not tmpfs).
    public static func start(namespace: String = "default") async throws -> TestEngine {
        let root = "/var/tmp/berth-engine-\(UUID().uuidString.prefix(8))"
        var config = DaemonConfig()
        config.root = root + "/root"
        config.state = root + "/state"
        var logger = Logger(label: "test-engine")
        logger.logLevel = .warning
        let registrations = [
            BerthEventsPlugin.registration, BerthContentPlugin.registration, BerthOverlaySnapshotter.registration,
            BerthNativeSnapshotter.registration, BerthMetadataPlugin.registration, BerthWalkingDiffer.registration,
            BerthDiffService.serviceRegistration, BerthTransferPlugin.registration,
        ]
        let set = await PluginLoader.load(
            registrations, configs: [:], properties: DaemonProperties(config: config, logger: logger))
        for record in set.all {
            if case .failed(let error) = record.status { throw error }
        }
        return TestEngine(
            root: root, plugins: set, metadata: try set.single(.metadata, as: (any MetadataProvider).self),
            transferrer: try set.instance(.transfer, id: "local", as: (any Transferrer).self))
    }

    init(root: String, plugins: PluginSet, metadata: any MetadataProvider, transferrer: any Transferrer) {
        self.root = root
        self.plugins = plugins
        self.metadata = metadata
        self.transferrer = transferrer
    }

    /// A snapshotter by id, namespaced through the metadata store.
    public func snapshotter(_ name: String) throws -> any Snapshotter {
        try metadata.snapshots.snapshotter(name)
    }

    /// Closes the plugins and removes the root.
    public func stop() async {
        var logger = Logger(label: "test-engine")
        logger.logLevel = .critical
        await plugins.closeAll(logger: logger)
        try? FileManager.default.removeItem(atPath: root)
    }
}
