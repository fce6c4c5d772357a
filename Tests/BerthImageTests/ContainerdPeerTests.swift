import BerthCore
import BerthOCI
import BerthTestSupport
import Foundation
import Glibc
import Testing

/// Debian's containerd 1.6 on its own root, state and socket, for checking the fixtures against the real peer.
final class TestContainerd: @unchecked Sendable {
    let directory: String
    let socket: String
    let process = Process()

    init() async throws {
        directory = "/tmp/berth-img-ctd-\(UUID().uuidString.prefix(8))"
        socket = directory + "/containerd.sock"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try """
            version = 2
            root = "\(directory)/root"
            state = "\(directory)/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "\(socket)"
            [ttrpc]
              address = "\(socket).ttrpc"
            """.write(toFile: directory + "/config.toml", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/containerd")
        process.arguments = ["--config", directory + "/config.toml"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !(try await ctr(["version"]).succeeded) {
            guard Date() < deadline, process.isRunning else {
                stop()
                throw TestRegistryError("containerd did not start")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func ctr(_ arguments: [String]) async throws -> TestCommand.Result {
        try await TestCommand.run("/usr/bin/ctr", ["--address", socket, "--namespace", "berth-fixtures"] + arguments, timeout: 120)
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let mounts = (try? FileSystem.read("/proc/self/mountinfo")) ?? ""
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 4, fields[4].hasPrefix(directory) { umount2(String(fields[4]), Int32(MNT_DETACH)) }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// `ctr` (containerd 1.6) imports the OCI archives and pulls what the fixtures push, in every registry mode.
@Suite(.serialized) struct ContainerdPeerTests {
    @Test func ctrImportsTheArchives() async throws {
        let containerd = try await TestContainerd()
        let dir = "/tmp/berth-img-archive-\(UUID().uuidString.prefix(8))"
        defer {
            containerd.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        for (kind, name) in [(TestImages.Kind.oci, "docker.io/library/busybox"), (.docker, "docker.io/test/docker"),
                             (.multiPlatform, "docker.io/test/multi"), (.multiLayer, "docker.io/test/layers")] {
            let layout = try await TestImages.build(kind, in: "\(dir)/\(name.split(separator: "/").last ?? "x")", name: name)
            let archive = try await layout.archive(to: layout.path + ".tar")
            let imported = try await containerd.ctr(["images", "import", archive])
            #expect(imported.succeeded, "\(imported.stderr)")
            let list = try await containerd.ctr(["images", "ls", "-q"])
            #expect(list.stdout.split(separator: "\n").contains { $0 == "\(name):latest" }, "\(list.stdout)")
            let check = try await containerd.ctr(["images", "check", "name==\(name):latest"])
            #expect(check.stdout.contains("complete"), "\(check.stdout)")
        }
    }

    @Test(arguments: ["plain", "basic", "token", "tls"])
    func ctrPullsFromTheRegistry(mode: String) async throws {
        let registryMode: TestRegistry.Mode = mode == "basic" ? .basic : mode == "token" ? .token : mode == "tls" ? .tls : .plain
        let registry = try await TestRegistry.start(registryMode)
        let containerd = try await TestContainerd()
        let dir = "/tmp/berth-img-pull-\(UUID().uuidString.prefix(8))"
        defer {
            containerd.stop()
            registry.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        let layout = try await TestImages.build(.multiLayer, in: dir)
        try await layout.push(to: registry, name: "test/layers")
        var arguments = ["images", "pull"]
        if mode == "tls" {
            // ctr trusts the fixture's CA through a hosts.toml, as containerd's config_path does.
            let hostDir = dir + "-hosts/" + registry.host
            try FileManager.default.createDirectory(atPath: hostDir, withIntermediateDirectories: true)
            try "server = \"https://\(registry.host)\"\n[host.\"https://\(registry.host)\"]\n  ca = \"\(registry.caPath ?? "")\"\n"
                .write(toFile: hostDir + "/hosts.toml", atomically: true, encoding: .utf8)
            arguments += ["--hosts-dir", dir + "-hosts"]
        } else {
            arguments += ["--plain-http"]
        }
        defer { try? FileManager.default.removeItem(atPath: dir + "-hosts") }
        if mode == "basic" || mode == "token" { arguments += ["--user", "\(TestRegistry.username):\(TestRegistry.password)"] }
        let pulled = try await containerd.ctr(arguments + ["\(registry.host)/test/layers:latest"])
        #expect(pulled.succeeded, "\(pulled.stderr) \(registry.log)")
        let snapshots = try await containerd.ctr(["snapshots", "ls"])
        let top = try #require(try Identity.chainID(layout.diffIDs))
        #expect(snapshots.stdout.contains(top.description), "\(snapshots.stdout)")
    }
}
