import BerthCore
import Foundation
import Logging
import Testing

import BerthContentPlugin
import BerthEventsPlugin
import BerthMetadataPlugin
import BerthNativeSnapshotter
@testable import BerthExamplePlugin

/// The documented example plugin, loaded through the real graph and loader with the plugins it needs.
@Suite struct GreeterTests {
    func load(_ toml: String) async throws -> PluginSet {
        let dir = NSTemporaryDirectory() + "berth-greeter-\(UUID().uuidString)"
        let registrations = [
            BerthEventsPlugin.registration, BerthContentPlugin.registration, BerthNativeSnapshotter.registration,
            BerthMetadataPlugin.registration, BerthExamplePlugin.registration,
        ]
        var loaded = try ConfigLoader.load(text: "version = 3\n" + toml, file: "g.toml", registrations: registrations)
        loaded.daemon.root = dir + "/root"
        loaded.daemon.state = dir + "/state"
        return await PluginLoader.load(
            try PluginGraph.order(registrations), configs: loaded.plugins,
            properties: DaemonProperties(config: loaded.daemon, logger: Logger(label: "test")))
    }

    @Test func greetsWithConfigOrNamespaceLabel() async throws {
        let set = try await load("[plugins.\"io.containerd.internal.v1.greeter\"]\ngreeting = \"Moin\"\n")
        let greeter = try set.instance(.internal, id: "greeter", as: Greeter.self)
        #expect(try await greeter.greet("Ada", namespace: "default") == "Moin, Ada!")
        let store = try set.single(.metadata, as: (any MetadataProvider).self).namespaces
        try await store.create("north", labels: ["greeting": "Hej"])
        #expect(try await greeter.greet("Ada", namespace: "north") == "Hej, Ada!")
        let record = try #require(set.record(type: .internal, id: "greeter"))
        #expect(record.meta.exports == ["greeting": "Moin"])
        #expect(record.meta.capabilities == ["greet"])
    }

    @Test func disabledByConfigIsSkipped() async throws {
        let set = try await load("[plugins.\"io.containerd.internal.v1.greeter\"]\nenabled = false\n")
        #expect(set.record(type: .internal, id: "greeter")?.status == .skipped("greeter disabled by its config (enabled = false)"))
    }
}
