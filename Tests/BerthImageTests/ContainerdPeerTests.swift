import BerthCore
import BerthOCI
import BerthTestSupport
import Foundation
import Glibc
import Testing

/// `ctr` (containerd 1.6) imports the OCI archives and pulls what the fixtures push, in every registry mode.
@Suite(.serialized) struct ContainerdPeerTests {
    let fixtures = "berth-fixtures"

    @Test func ctrImportsTheArchives() async throws {
        let containerd = try await TestContainerd.start(prefix: "berth-img-ctd")
        let dir = "/tmp/berth-img-archive-\(UUID().uuidString.prefix(8))"
        defer {
            containerd.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        for (kind, name) in [(TestImages.Kind.oci, "docker.io/library/busybox"), (.docker, "docker.io/test/docker"),
                             (.multiPlatform, "docker.io/test/multi"), (.multiLayer, "docker.io/test/layers")] {
            let layout = try await TestImages.build(kind, in: "\(dir)/\(name.split(separator: "/").last ?? "x")", name: name)
            let archive = try await layout.archive(to: layout.path + ".tar")
            let imported = try await containerd.ctr(["images", "import", archive], namespace: fixtures)
            #expect(imported.succeeded, "\(imported.stderr)")
            let list = try await containerd.ctr(["images", "ls", "-q"], namespace: fixtures)
            #expect(list.stdout.split(separator: "\n").contains { $0 == "\(name):latest" }, "\(list.stdout)")
            let check = try await containerd.ctr(["images", "check", "name==\(name):latest"], namespace: fixtures)
            #expect(check.stdout.contains("complete"), "\(check.stdout)")
        }
    }

    @Test(arguments: ["plain", "basic", "token", "tls"])
    func ctrPullsFromTheRegistry(mode: String) async throws {
        let registryMode: TestRegistry.Mode = mode == "basic" ? .basic : mode == "token" ? .token : mode == "tls" ? .tls : .plain
        let registry = try await TestRegistry.start(registryMode)
        let containerd = try await TestContainerd.start(prefix: "berth-img-ctd")
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
        let pulled = try await containerd.ctr(arguments + ["\(registry.host)/test/layers:latest"], namespace: fixtures)
        #expect(pulled.succeeded, "\(pulled.stderr) \(registry.log)")
        let snapshots = try await containerd.ctr(["snapshots", "ls"], namespace: fixtures)
        let top = try #require(try Identity.chainID(layout.diffIDs))
        #expect(snapshots.stdout.contains(top.description), "\(snapshots.stdout)")
    }
}
