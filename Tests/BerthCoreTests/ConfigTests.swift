import Foundation
import Testing

@testable import BerthCore

struct SnapshotterConfig: PluginConfig, Equatable {
    var rootPath = ""
    var upperdirLabel = false
    var mountOptions: [String] = []
    init() {}
    enum CodingKeys: String, CodingKey {
        case rootPath = "root_path"
        case upperdirLabel = "upperdir_label"
        case mountOptions = "mount_options"
    }
}

struct GCConfig: PluginConfig, Equatable {
    var pauseThreshold = 0.02
    var mutationThreshold = 100
    var scheduleDelay = "0s"
    init() {}
    enum CodingKeys: String, CodingKey {
        case pauseThreshold = "pause_threshold"
        case mutationThreshold = "mutation_threshold"
        case scheduleDelay = "schedule_delay"
    }
}

let testRegistrations: [Registration] = [
    Registration(type: .snapshotter, id: "overlayfs", config: SnapshotterConfig.self) { _, c in c },
    Registration(type: .gc, id: "scheduler", config: GCConfig.self) { _, c in c },
    Registration(type: .event, id: "exchange") { _ in 0 },
]

/// A scratch directory for config files with imports.
func scratchDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "berth-config-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct ConfigTests {
    @Test func version2FileLoadsWithPluginSections() throws {
        let loaded = try ConfigLoader.load(text: """
            version = 2
            root = "/srv/berth"
            disabled_plugins = ["io.containerd.event.v1.exchange"]
            oom_score = -999

            [grpc]
              address = "/tmp/b.sock"
              gid = 42

            [plugins."io.containerd.snapshotter.v1.overlayfs"]
              root_path = "/fast"
              mount_options = ["volatile"]

            [plugins."io.containerd.gc.v1.scheduler"]
              pause_threshold = 0.5

            [timeouts]
              "io.containerd.timeout.shim.cleanup" = "10s"
            """, file: "v2.toml", registrations: testRegistrations)
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.daemon.root == "/srv/berth")
        #expect(loaded.daemon.state == "/run/berth")
        #expect(loaded.daemon.oomScore == -999)
        #expect(loaded.daemon.grpc.address == "/tmp/b.sock")
        #expect(loaded.daemon.grpc.gid == 42)
        #expect(loaded.daemon.grpc.maxRecvMessageSize == 16 << 20)
        #expect(loaded.daemon.disabledPlugins == ["io.containerd.event.v1.exchange"])
        #expect(loaded.daemon.timeouts["io.containerd.timeout.shim.cleanup"] == "10s")
        #expect(loaded.daemon.timeouts["io.containerd.timeout.shim.load"] == "5s")
        let overlay = try #require(loaded.plugins["io.containerd.snapshotter.v1.overlayfs"] as? SnapshotterConfig)
        #expect(overlay.rootPath == "/fast")
        #expect(overlay.mountOptions == ["volatile"])
        #expect(overlay.upperdirLabel == false)
        let gc = try #require(loaded.plugins["io.containerd.gc.v1.scheduler"] as? GCConfig)
        #expect(gc.pauseThreshold == 0.5)
        #expect(gc.mutationThreshold == 100)
    }

    @Test func version4ServerSectionsMoveToTheTop() throws {
        let loaded = try ConfigLoader.load(text: """
            version = 4
            [plugins."io.containerd.server.v1.grpc"]
              address = "/tmp/v4.sock"
            [plugins."io.containerd.server.v1.debug"]
              level = "debug"
            """, file: "v4.toml", registrations: testRegistrations)
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.daemon.grpc.address == "/tmp/v4.sock")
        #expect(loaded.daemon.debug.level == "debug")
    }

    @Test func syntaxErrorNamesFileLineAndColumn() {
        #expect {
            try ConfigLoader.load(text: "version = 3\nroot = \"/x\"\n[grpc\naddress = 1\n", file: "/etc/berth/bad.toml",
                                  registrations: testRegistrations)
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("/etc/berth/bad.toml: line 3, column ") && (error as? BerthError)?.code == .invalidArgument
        }
    }

    @Test func wrongTypeNamesKeyExpectedTypeAndLine() {
        #expect {
            try ConfigLoader.load(text: "version = 3\n\n[grpc]\n  address = 1\n", file: "t.toml",
                                  registrations: testRegistrations)
        } throws: { error in
            "\(error)".contains("t.toml: line 4: key \"grpc.address\": expected string, found integer")
        }
        #expect {
            try ConfigLoader.load(text: """
                version = 3
                [plugins."io.containerd.gc.v1.scheduler"]
                  mutation_threshold = "many"
                """, file: "p.toml", registrations: testRegistrations)
        } throws: { error in
            "\(error)".contains("p.toml: line 3: key \"plugins.\"io.containerd.gc.v1.scheduler\".mutation_threshold\": expected integer, found string")
        }
    }

    @Test func unknownKeysAndSectionsAreWarningsWithLines() throws {
        let loaded = try ConfigLoader.load(text: """
            version = 3
            bogus = true
            [grpc]
              adress = "/typo.sock"
            [plugins."io.containerd.snapshotter.v1.overlayfs"]
              root_pth = "/x"
            [plugins."io.containerd.snapshotter.v1.zfs"]
              root_path = ""
            """, file: "w.toml", registrations: testRegistrations)
        let texts = loaded.warnings.map(\.description)
        #expect(texts.contains("w.toml:2: unknown key \"bogus\" (ignored)"))
        #expect(texts.contains("w.toml:4: unknown key \"grpc.adress\" (ignored)"))
        #expect(texts.contains("w.toml:6: unknown key \"plugins.\"io.containerd.snapshotter.v1.overlayfs\".root_pth\" (ignored)"))
        #expect(texts.contains { $0.hasPrefix("w.toml:7: section [plugins.\"io.containerd.snapshotter.v1.zfs\"] is for a plugin Berth does not have") })
        #expect(loaded.daemon.grpc.address == "/run/berth/berthd.sock")
    }

    @Test func badVersionsAndDurationsAreErrors() {
        #expect(throws: BerthError.self) {
            try ConfigLoader.load(text: "version = 1\n", file: "v1.toml", registrations: testRegistrations)
        }
        #expect(throws: BerthError.self) {
            try ConfigLoader.load(text: "version = 9\n", file: "v9.toml", registrations: testRegistrations)
        }
        #expect {
            try ConfigLoader.load(text: "version = 3\n[timeouts]\n\"io.containerd.timeout.shim.load\" = \"5 seconds\"\n",
                                  file: "d.toml", registrations: testRegistrations)
        } throws: { error in "\(error)".contains("d.toml: line 3: key \"timeouts.io.containerd.timeout.shim.load\"") }
    }

    @Test func importsMergeTablesOverrideScalarsAndUnionLists() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/conf.d", withIntermediateDirectories: true)
        try """
            version = 3
            root = "/main"
            state = "/main-state"
            imports = ["conf.d/*.toml"]
            disabled_plugins = ["io.containerd.event.v1.exchange"]
            [grpc]
              address = "/main.sock"
              uid = 7
            [plugins."io.containerd.snapshotter.v1.overlayfs"]
              root_path = "/main-overlay"
            """.write(toFile: dir + "/config.toml", atomically: true, encoding: .utf8)
        try """
            version = 3
            root = "/imported"
            disabled_plugins = ["io.containerd.gc.v1.scheduler"]
            [grpc]
              address = "/imported.sock"
            [plugins."io.containerd.snapshotter.v1.overlayfs"]
              upperdir_label = true
            """.write(toFile: dir + "/conf.d/10-more.toml", atomically: true, encoding: .utf8)
        try "version = 3\nbogus_in_import = 1\n".write(toFile: dir + "/conf.d/20-x.toml", atomically: true, encoding: .utf8)

        let loaded = try ConfigLoader.load(path: dir + "/config.toml", registrations: testRegistrations)
        #expect(loaded.files == [dir + "/config.toml", dir + "/conf.d/10-more.toml", dir + "/conf.d/20-x.toml"])
        #expect(loaded.daemon.root == "/imported")
        #expect(loaded.daemon.state == "/main-state")
        #expect(loaded.daemon.grpc.address == "/imported.sock")
        #expect(loaded.daemon.grpc.uid == 7)
        #expect(Set(loaded.daemon.disabledPlugins) == ["io.containerd.event.v1.exchange", "io.containerd.gc.v1.scheduler"])
        let overlay = try #require(loaded.plugins["io.containerd.snapshotter.v1.overlayfs"] as? SnapshotterConfig)
        #expect(overlay.rootPath == "/main-overlay")
        #expect(overlay.upperdirLabel)
        #expect(loaded.warnings.map(\.description) == ["\(dir)/conf.d/20-x.toml:2: unknown key \"bogus_in_import\" (ignored)"])
    }

    @Test func absentFileGivesDefaults() throws {
        let loaded = try ConfigLoader.load(path: "/nonexistent/berth.toml", registrations: testRegistrations)
        #expect(loaded.daemon == DaemonConfig())
        #expect(loaded.warnings.isEmpty)
    }

    @Test func unknownPluginInDisabledListWarns() throws {
        let loaded = try ConfigLoader.load(
            text: "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n", file: "c.toml",
            registrations: testRegistrations)
        #expect(loaded.warnings.map(\.description) == [
            "c.toml:2: disabled_plugins names \"io.containerd.grpc.v1.cri\", which is not a plugin of this build"
        ])
    }

    @Test func defaultConfigRoundTripsWithoutWarnings() throws {
        let text = try ConfigRender.defaults(registrations: testRegistrations)
        #expect(text.contains("version = 3"))
        #expect(text.contains("[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]"))
        #expect(text.contains("# "))
        let loaded = try ConfigLoader.load(text: text, file: "default.toml", registrations: testRegistrations)
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.daemon == DaemonConfig())
    }

    @Test func dumpShowsEffectiveValues() throws {
        let loaded = try ConfigLoader.load(text: """
            version = 2
            [plugins."io.containerd.gc.v1.scheduler"]
              mutation_threshold = 5
            """, file: "d.toml", registrations: testRegistrations)
        let dumped = try ConfigRender.dump(loaded, registrations: testRegistrations)
        let reloaded = try ConfigLoader.load(text: dumped, file: "dump.toml", registrations: testRegistrations)
        #expect((reloaded.plugins["io.containerd.gc.v1.scheduler"] as? GCConfig)?.mutationThreshold == 5)
        #expect(reloaded.warnings.isEmpty)
    }
}
