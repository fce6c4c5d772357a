import BerthCore
import BerthOCI
import BerthTestSupport
import Foundation
import Testing

/// containerd 1.6's `ctr images import|export|tag|push` against berthd (ctr does these itself through the
/// Content, Images and Leases services), read back by skopeo and umoci; `berth images inspect|tag` beside them.
@Suite(.serialized) struct CtrImagesTests {
    /// A daemon, a scratch directory and a multi-layer test image as an OCI archive.
    struct Setup {
        let daemon: Daemon
        let scratch: String
        let layout: TestImageLayout
        let archive: String

        func ctr(_ arguments: [String], timeout: Double = 120) async throws -> CommandResult {
            let daemon = self.daemon
            return try await pullOffPool { try daemon.ctr(arguments, timeout: timeout) }
        }

        func berth(_ arguments: [String]) async throws -> CommandResult {
            let daemon = self.daemon
            return try await pullOffPool { try daemon.berth(arguments, timeout: 60) }
        }

        func names() async throws -> [String] {
            try await ctr(["images", "ls", "-q"]).stdout.split(separator: "\n").map(String.init).sorted()
        }
    }

    static func with(name: String = "example.com/berth/layers", tag: String = "v1", _ body: (Setup) async throws -> Void)
        async throws
    {
        let scratch = "/var/tmp/berth-ctrimg-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let layout = try await TestImages.build(.multiLayer, in: scratch + "/layout", name: name, tag: tag)
        let archive = try await layout.archive(to: scratch + "/image.tar")
        let daemon = try await pullOffPool { try Daemon() }
        defer { daemon.remove() }
        try await body(Setup(daemon: daemon, scratch: scratch, layout: layout, archive: archive))
    }

    @Test func ctrImportsOCIAndDockerArchives() async throws {
        try await Self.with { s in
            let imported = try await s.ctr(["images", "import", s.archive])
            #expect(imported.succeeded, "\(imported.stderr)\n\(s.daemon.logText.suffix(2000))")
            let docker = s.scratch + "/docker.tar"
            try await TestCommand.check("/usr/bin/skopeo", ["copy", "--quiet", "oci:\(s.layout.path):v1",
                                                            "docker-archive:\(docker):berth/saved:d1"])
            let importedDocker = try await s.ctr(["images", "import", docker])
            #expect(importedDocker.succeeded, "\(importedDocker.stderr)")
            #expect(try await s.names() == ["docker.io/berth/saved:d1", "example.com/berth/layers:v1"])
            let check = try await s.ctr(["images", "check"])
            #expect(check.stdout.split(separator: "\n").dropFirst().allSatisfy { $0.contains("complete") }, "\(check.stdout)")

            // berth images inspect sees the descriptor, platform, layers and the overlayfs unpack ctr did.
            let inspect = try await s.berth(["images", "inspect", "--format", "json", "example.com/berth/layers:v1"])
            #expect(inspect.succeeded, "\(inspect.stderr)")
            let report = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
            #expect((report?["target"] as? [String: Any])?["digest"] as? String == s.layout.descriptor.digest.description)
            #expect(report?["platforms"] as? [String] == [Platforms.hostString])
            #expect((report?["unpacked"] as? [String])?.contains("overlayfs") == true, "\(inspect.stdout)")
            let manifests = report?["manifests"] as? [[String: Any]]
            #expect((manifests?.first?["layers"] as? [Any])?.count == 3)
            #expect(manifests?.first?["chainID"] as? String == (try Identity.chainID(s.layout.diffIDs))?.description)
        }
    }

    @Test func ctrExportIsReadBySkopeoAndUmoci() async throws {
        try await Self.with { s in
            #expect(try await s.ctr(["images", "import", "--no-unpack", s.archive]).succeeded)
            let exported = s.scratch + "/export.tar"
            let export = try await s.ctr(["images", "export", exported, "example.com/berth/layers:v1"])
            #expect(export.succeeded, "\(export.stderr)")
            let raw = try await TestCommand.check("/usr/bin/skopeo", ["inspect", "--raw", "oci-archive:\(exported):v1"])
            #expect(try Identity.sha256Digest(Array(raw.utf8)) == s.layout.descriptor.digest)
            let layout = s.scratch + "/exported"
            try FileManager.default.createDirectory(atPath: layout, withIntermediateDirectories: true)
            try await TestCommand.check("/usr/bin/tar", ["-C", layout, "-xf", exported])
            let bundle = s.scratch + "/bundle"
            try await TestCommand.check("/usr/bin/umoci", ["unpack", "--rootless", "--image", layout + ":v1", bundle])
            for path in TestImageExpectations.present {
                #expect(FileManager.default.fileExists(atPath: bundle + "/rootfs/" + path), "\(path) missing")
            }
        }
    }

    @Test func ctrAndBerthTagImages() async throws {
        try await Self.with { s in
            #expect(try await s.ctr(["images", "import", "--no-unpack", s.archive]).succeeded)
            let tag = try await s.ctr(["images", "tag", "example.com/berth/layers:v1", "example.com/berth/layers:copy"])
            #expect(tag.succeeded, "\(tag.stderr)")
            let again = try await s.ctr(["images", "tag", "example.com/berth/layers:v1", "example.com/berth/layers:copy"])
            #expect(!again.succeeded)
            #expect(again.stderr.contains("already exists"), "\(again.stderr)")
            #expect(try await s.ctr(["images", "tag", "--force", "example.com/berth/layers:v1",
                                     "example.com/berth/layers:copy"]).succeeded)
            let berthTag = try await s.berth(["images", "tag", "example.com/berth/layers:copy", "example.com/berth/other:1"])
            #expect(berthTag.succeeded, "\(berthTag.stderr)")
            #expect(!(try await s.berth(["images", "tag", "example.com/berth/layers:v1", "example.com/berth/other:1"])).succeeded)
            #expect(try await s.berth(["images", "tag", "--force", "example.com/berth/layers:v1", "example.com/berth/other:1"])
                .succeeded)
            let ls = try await s.ctr(["images", "ls"])
            let digest = s.layout.descriptor.digest.description
            for name in ["example.com/berth/layers:v1", "example.com/berth/layers:copy", "example.com/berth/other:1"] {
                #expect(ls.stdout.split(separator: "\n").contains { $0.hasPrefix(name + " ") && $0.contains(digest) },
                        "\(ls.stdout)")
            }
        }
    }

    @Test func ctrPushesToThePlainRegistry() async throws {
        let registry = try await TestRegistry.start(.plain)
        defer { registry.stop() }
        try await Self.with { s in
            #expect(try await s.ctr(["images", "import", "--no-unpack", s.archive]).succeeded)
            let reference = "\(registry.host)/berth/pushed:p1"
            #expect(try await s.ctr(["images", "tag", "example.com/berth/layers:v1", reference]).succeeded)
            let push = try await s.ctr(["images", "push", "--plain-http", reference])
            #expect(push.succeeded, "\(push.stderr)\n\(s.daemon.logText.suffix(2000))")
            let raw = try await TestCommand.check(
                "/usr/bin/skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(reference)"])
            #expect(try Identity.sha256Digest(Array(raw.utf8)) == s.layout.descriptor.digest)
            // And ctr pulls it back into a fresh name after the image is removed.
            #expect(try await s.ctr(["images", "rm", "--sync", reference, "example.com/berth/layers:v1"]).succeeded)
            let pull = try await s.ctr(["images", "pull", "--plain-http", reference])
            #expect(pull.succeeded, "\(pull.stderr)")
        }
    }
}
