import BerthCore
import Foundation
import Logging
import Testing

@testable import BerthDevmapperSnapshotter

/// devmapper's config keys, size parsing, the kernel check and the plugin's skip here (no device-mapper).
@Suite struct DevmapperConfigTests {
    @Test(arguments: [
        ("32", 32), ("32b", 32), ("32B", 32), ("32k", 32 << 10), ("32KiB", 32 << 10), ("32kb", 32 << 10),
        ("10GB", 10 << 30), ("10 GB", 10 << 30), ("10g", 10 << 30), ("10Gi", 10 << 30), ("1.5m", 3 << 19),
        ("1tb", 1 << 40), ("2P", 2 << 50), ("0", 0),
    ] as [(String, UInt64)])
    func parsesSizesLikeGoUnits(text: String, bytes: UInt64) throws {
        #expect(try parseSize(text) == bytes)
    }

    @Test(arguments: ["", "abc", "10XB", "1.2.3", "-1", "10GBB", ".5", "5.", "10  GB", "10bi", "1e3"])
    func rejectsMalformedSizes(text: String) {
        #expect(throws: BerthError.invalidArgument("invalid size: '\(text)'")) { try parseSize(text) }
    }

    @Test func validationNamesEveryBadKey() throws {
        var config = DevmapperConfig()
        config.fsType = "btrfs"
        config.baseImageSize = "10 zonks"
        let error = try #require(throws: BerthError.self) { try config.validated() }
        #expect(error.code == .invalidArgument)
        for key in ["pool_name is required", "root_path is required", "base_image_size", "\"10 zonks\"", "fs_type"] {
            #expect(error.message.contains(key), "\(error.message) lacks \(key)")
        }
        config = DevmapperConfig()
        config.poolName = "pool"
        let missing = try #require(throws: BerthError.self) { try config.validated(defaultRoot: "/r") }
        #expect(missing.message == "devmapper config: base_image_size is required")
        config.baseImageSize = "1000"
        #expect(throws: BerthError.self) { try config.validated(defaultRoot: "/r") }  // not whole sectors
        config.poolName = "bad/name"
        config.baseImageSize = "1MB"
        #expect(throws: BerthError.self) { try config.validated(defaultRoot: "/r") }
    }

    @Test func validConfigFillsDefaults() throws {
        var config = DevmapperConfig()
        config.poolName = "pool"
        config.baseImageSize = "10GB"
        #expect(try config.validated(defaultRoot: "/var/lib/x") == DevmapperSettings(
            rootPath: "/var/lib/x", poolName: "pool", baseImageSizeBytes: 10 << 30, asyncRemove: false,
            discardBlocks: false, fsType: .ext4, fsOptions: ""))
        config.rootPath = "/own"
        config.fsType = "xfs"
        let settings = try config.validated(defaultRoot: "/var/lib/x")
        #expect(settings.rootPath == "/own" && settings.fsType == .xfs)
    }

    @Test func decodesContainerdKeysFromTOML() throws {
        let toml = """
            version = 3
            [plugins."io.containerd.snapshotter.v1.devmapper"]
              pool_name = "containerd-pool"
              root_path = "/var/lib/dm"
              base_image_size = "8GB"
              async_remove = true
              discard_blocks = true
              fs_type = "xfs"
              fs_options = "-m reflink=0"
            """
        let loaded = try ConfigLoader.load(text: toml, file: "d.toml", registrations: [registration])
        let config = try #require(loaded.plugins["io.containerd.snapshotter.v1.devmapper"] as? DevmapperConfig)
        let settings = try config.validated()
        #expect(settings == DevmapperSettings(
            rootPath: "/var/lib/dm", poolName: "containerd-pool", baseImageSizeBytes: 8 << 30, asyncRemove: true,
            discardBlocks: true, fsType: .xfs, fsOptions: "-m reflink=0"))
    }

    @Test func kernelCheckReadsProcAndControl() {
        #expect(DeviceMapperSupport.missingReason(procMisc: " 59 device-mapper\n", procDevices: "", controlExists: false) == nil)
        #expect(DeviceMapperSupport.missingReason(procMisc: "", procDevices: "Block devices:\n253 device-mapper\n", controlExists: false) == nil)
        #expect(DeviceMapperSupport.missingReason(procMisc: nil, procDevices: nil, controlExists: true) == nil)
        let reason = DeviceMapperSupport.missingReason(procMisc: "237 loop-control\n", procDevices: "7 loop\n", controlExists: false)
        #expect(reason?.contains("device-mapper is not available") == true)
        // This machine: the real files say no device-mapper.
        #expect(DeviceMapperSupport.missingReason() != nil)
    }

    /// Through the real config loader and plugin loader: here the plugin is skipped with the kernel reason,
    /// whatever the config says; `ctr plugins ls` shows that as skip.
    @Test func pluginSkipsWithoutDeviceMapper() async throws {
        for extra in ["", "pool_name = \"pool\"\nbase_image_size = \"1GB\"\n"] {
            let dir = "/var/tmp/berth-dm-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let toml = "version = 3\n[plugins.\"io.containerd.snapshotter.v1.devmapper\"]\n" + extra
            var loaded = try ConfigLoader.load(text: toml, file: "d.toml", registrations: [registration])
            loaded.daemon.root = dir + "/root"
            loaded.daemon.state = dir + "/state"
            let set = await PluginLoader.load(
                [registration], configs: loaded.plugins,
                properties: DaemonProperties(config: loaded.daemon, logger: Logger(label: "test")))
            let status = set.record(type: .snapshotter, id: "devmapper")?.status
            #expect(status == .skipped(DeviceMapperSupport.missingReason() ?? ""))
        }
    }
}
