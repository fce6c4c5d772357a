import Logging
import Testing

@testable import BerthCore

/// Builds a registration whose init returns its URI (or throws what `fail` says).
func plugin(
    _ type: PluginType, _ id: String, requires: [Requirement] = [], fail: (any Error & Sendable)? = nil
) -> Registration {
    Registration(type: type, id: id, requires: requires) { ic in
        if let fail { throw fail }
        return "\(ic.type.rawValue).\(ic.id)"
    }
}

@Suite struct PluginGraphTests {
    @Test func dependenciesComeFirstAndRegistrationOrderBreaksTies() throws {
        let ordered = try PluginGraph.order([
            plugin(.grpc, "namespaces", requires: [.type(.metadata)]),
            plugin(.metadata, "bolt", requires: [.type(.event), .type(.snapshotter)]),
            plugin(.snapshotter, "overlayfs"),
            plugin(.snapshotter, "native"),
            plugin(.event, "exchange"),
        ])
        #expect(ordered.map(\.id) == ["exchange", "overlayfs", "native", "bolt", "namespaces"])
    }

    @Test func specificPluginRequirement() throws {
        let ordered = try PluginGraph.order([
            plugin(.internal, "user", requires: [.plugin(.snapshotter, "native")]),
            plugin(.snapshotter, "overlayfs"),
            plugin(.snapshotter, "native"),
        ])
        #expect(ordered.map(\.id) == ["native", "user", "overlayfs"])
    }

    @Test func allRequirementWaitsForEveryOtherPlugin() throws {
        let ordered = try PluginGraph.order([
            plugin(.server, "grpc", requires: [.all]),
            plugin(.grpc, "version"),
            plugin(.event, "exchange"),
        ])
        #expect(ordered.map(\.id) == ["version", "exchange", "grpc"])
    }

    @Test func cycleIsAnErrorNamingThePlugins() {
        #expect {
            try PluginGraph.order([
                plugin(.metadata, "bolt", requires: [.type(.content)]),
                plugin(.content, "content", requires: [.plugin(.gc, "scheduler")]),
                plugin(.gc, "scheduler", requires: [.type(.metadata)]),
            ])
        } throws: { error in
            let message = "\(error)"
            return message.contains("cycle")
                && message.contains("io.containerd.metadata.v1.bolt -> io.containerd.content.v1.content -> io.containerd.gc.v1.scheduler -> io.containerd.metadata.v1.bolt")
        }
    }

    @Test func unprovidedRequirementIsAnError() {
        #expect {
            try PluginGraph.order([plugin(.grpc, "images", requires: [.type(.metadata)])])
        } throws: { error in
            "\(error)".contains("io.containerd.grpc.v1.images requires io.containerd.metadata.v1, which no plugin provides")
        }
        #expect {
            try PluginGraph.order([plugin(.grpc, "x", requires: [.plugin(.snapshotter, "zfs")]), plugin(.snapshotter, "native")])
        } throws: { error in "\(error)".contains("requires io.containerd.snapshotter.v1.zfs") }
    }

    @Test func disabledPluginsAreLeftOutButStillProvide() throws {
        let ordered = try PluginGraph.order(
            [plugin(.event, "exchange"), plugin(.metadata, "bolt", requires: [.type(.event)])],
            disabled: ["io.containerd.event.v1.exchange"])
        #expect(ordered.map(\.uri) == ["io.containerd.metadata.v1.bolt"])
    }

    @Test func duplicateURIIsRejected() {
        #expect(throws: BerthError.self) {
            try PluginGraph.order([plugin(.event, "exchange"), plugin(.event, "exchange")])
        }
    }
}

@Suite struct PluginLoaderTests {
    func properties() -> DaemonProperties {
        var config = DaemonConfig()
        config.root = "/tmp/berth-loader-test/root"
        config.state = "/tmp/berth-loader-test/state"
        return DaemonProperties(config: config, logger: Logger(label: "test"))
    }

    @Test func statusesAreKeptAndLookupsAreTyped() async throws {
        let ordered = try PluginGraph.order([
            plugin(.event, "exchange"),
            plugin(.snapshotter, "btrfs", fail: PluginSkip("not on btrfs")),
            plugin(.snapshotter, "broken", fail: BerthError.invalidArgument("bad option")),
            Registration(type: .grpc, id: "user", requires: [.type(.event)]) { ic in
                try ic.single(.event, as: String.self) + " seen"
            },
        ])
        let set = await PluginLoader.load(ordered, configs: [:], properties: properties())
        let statuses = set.all.map { ($0.id, $0.status) }
        #expect(statuses.count == 4)
        #expect(set.record(type: .snapshotter, id: "btrfs")?.status == .skipped("not on btrfs"))
        #expect(set.record(type: .snapshotter, id: "broken")?.status == .failed(.invalidArgument("bad option")))
        #expect(try set.instance(.grpc, id: "user", as: String.self) == "io.containerd.event.v1.exchange seen")
        #expect(set.all(.snapshotter, as: String.self).isEmpty)
        #expect(throws: BerthError.self) { try set.single(.snapshotter, as: String.self) }
    }

    @Test func aPluginWhoseRequirementFailedFailsWithTheReason() async throws {
        let ordered = try PluginGraph.order([
            plugin(.metadata, "bolt", fail: BerthError.internalError("disk full")),
            Registration(type: .grpc, id: "namespaces", requires: [.type(.metadata)]) { ic in
                try ic.single(.metadata, as: String.self)
            },
        ])
        let set = await PluginLoader.load(ordered, configs: [:], properties: properties())
        guard case .failed(let error)? = set.record(type: .grpc, id: "namespaces")?.status else {
            Issue.record("namespaces should have failed")
            return
        }
        #expect(error.description.contains("io.containerd.metadata.v1.bolt failed to load"))
        #expect(error.description.contains("disk full"))
    }

    @Test func requiredPluginsMustLoad() async throws {
        let ordered = try PluginGraph.order([
            plugin(.event, "exchange"),
            plugin(.snapshotter, "btrfs", fail: PluginSkip("not on btrfs")),
        ])
        let set = await PluginLoader.load(ordered, configs: [:], properties: properties())
        try PluginLoader.checkRequired(["io.containerd.event.v1.exchange"], in: set)
        #expect {
            try PluginLoader.checkRequired(
                ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs"], in: set)
        } throws: { error in
            let message = "\(error)"
            return message.contains("io.containerd.snapshotter.v1.btrfs: skipped: not on btrfs")
                && message.contains("io.containerd.snapshotter.v1.zfs: not loaded")
        }
    }

    @Test func closeRunsInReverseInitOrder() async throws {
        actor Journal {
            var closed: [String] = []
            func add(_ s: String) { closed.append(s) }
        }
        struct Recorder: Closable {
            let name: String
            let journal: Journal
            func close() async throws { await journal.add(name) }
        }
        let journal = Journal()
        let ordered = try PluginGraph.order([
            Registration(type: .server, id: "grpc", requires: [.type(.event)]) { _ in Recorder(name: "server", journal: journal) },
            Registration(type: .event, id: "exchange") { _ in Recorder(name: "exchange", journal: journal) },
        ])
        let set = await PluginLoader.load(ordered, configs: [:], properties: properties())
        await set.closeAll(logger: Logger(label: "test"))
        #expect(await journal.closed == ["server", "exchange"])
    }
}
