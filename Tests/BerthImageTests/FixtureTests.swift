import BerthCore
import BerthOCI
import BerthTestSupport
import Foundation
import Testing

/// The test image builder, checked by the real OCI tools: `oci-image-tool`, `umoci`, `tar`.
@Suite struct TestImagesTests {
    static func tempDir() -> String { "/tmp/berth-images-\(UUID().uuidString.prefix(8))" }

    @Test(arguments: [TestImages.Kind.oci, .multiPlatform, .multiLayer])
    func ociLayoutsValidate(kind: TestImages.Kind) async throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try await TestImages.build(kind, in: dir + "/layout")
        let result = try await TestCommand.run("/usr/bin/oci-image-tool", ["validate", "--type", "image", layout.path])
        #expect(result.succeeded, "\(result.stdout)\(result.stderr)")
        #expect(layout.config.config?.cmd == ["sh"])
        #expect(layout.config.architecture == Platforms.host.architecture)
        #expect(layout.layers.count == (kind == .multiLayer ? 3 : 1))
        #expect(layout.descriptor.mediaType == (kind == .multiPlatform ? MediaType.ociIndex : MediaType.ociManifest))
        // Every blob's name is its digest.
        for layer in layout.layers { #expect(try TestImages.sha256File(layout.blobPath(layer.digest)) == layer.digest) }
    }

    @Test func busyboxLayerContents() async throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try await TestImages.build(.docker, in: dir + "/layout")
        #expect(layout.manifest.mediaType == MediaType.dockerManifest)
        #expect(layout.layers[0].mediaType == MediaType.dockerLayerGzip)
        let manifest = try JSONDecoder().decode(Manifest.self, from: try layout.blob(layout.manifest.digest))
        #expect(manifest.config.mediaType == MediaType.dockerConfig)
        let listing = try await TestCommand.check("/usr/bin/tar", ["-tvzf", layout.blobPath(layout.layers[0].digest)])
        #expect(listing.contains("bin/busybox"))
        #expect(listing.contains("bin/sh -> busybox"))
        #expect(listing.contains("etc/passwd"))
        #expect(listing.contains("0/0"))
        // The diff ID is the digest of the uncompressed tar.
        try await TestCommand.check("/bin/sh", ["-c", "gzip -dc < \(layout.blobPath(layout.layers[0].digest)) > \(dir)/l.tar"])
        #expect(try TestImages.sha256File(dir + "/l.tar") == layout.diffIDs[0])
    }

    @Test func multiLayerUnpacksWithWhiteoutsHardlinksAndXattrs() async throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try await TestImages.build(.multiLayer, in: dir + "/layout")
        let listing = try await TestCommand.check("/usr/bin/tar", ["-tvzf", layout.blobPath(layout.layers[2].digest)])
        #expect(listing.contains("data/.wh.gone.txt"))
        #expect(listing.contains("opq/.wh..wh..opq"))
        #expect(listing.contains("data/hard2 link to data/hard1"))
        try await TestCommand.check("/usr/bin/umoci", ["unpack", "--image", "\(layout.path):latest", dir + "/bundle"])
        let rootfs = dir + "/bundle/rootfs/"
        for path in TestImageExpectations.present {
            #expect(FileManager.default.fileExists(atPath: rootfs + path), "\(path) missing")
        }
        for path in TestImageExpectations.absent {
            #expect(!FileManager.default.fileExists(atPath: rootfs + path), "\(path) present")
        }
        let opq = try FileManager.default.contentsOfDirectory(atPath: rootfs + "opq")
        #expect(opq == ["new.txt"])
        var first = stat()
        var second = stat()
        #expect(stat(rootfs + TestImageExpectations.hardlinks.0, &first) == 0)
        #expect(stat(rootfs + TestImageExpectations.hardlinks.1, &second) == 0)
        #expect(first.st_ino == second.st_ino)
        let x = TestImageExpectations.xattr
        #expect(TestImages.getXattr(rootfs + x.path, name: x.name) == x.value)
    }
}

/// Debian's docker-registry in every mode, with images pushed and inspected by skopeo.
@Suite(.serialized) struct TestRegistryTests {
    static func inspect(_ registry: TestRegistry, _ reference: String, creds: Bool) async throws -> TestCommand.Result {
        var arguments = ["inspect", "--raw"]
        if creds { arguments += ["--creds", "\(TestRegistry.username):\(TestRegistry.password)"] }
        if registry.mode.tls, let ca = registry.caPath {
            let certDir = registry.directory + "/inspect-certs"
            try? FileManager.default.createDirectory(atPath: certDir, withIntermediateDirectories: true)
            try? FileManager.default.copyItem(atPath: ca, toPath: certDir + "/ca.crt")
            arguments += ["--cert-dir", certDir]
        } else {
            arguments += ["--tls-verify=false"]
        }
        return try await TestCommand.run("/usr/bin/skopeo", arguments + ["docker://\(registry.host)/\(reference)"])
    }

    static func pushAndInspect(_ mode: TestRegistry.Mode, kind: TestImages.Kind = .oci) async throws -> TestRegistry {
        let registry = try await TestRegistry.start(mode)
        let dir = "/tmp/berth-push-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let layout = try await TestImages.build(kind, in: dir)
            try await layout.push(to: registry, name: "test/busybox")
            let result = try await inspect(registry, "test/busybox:latest", creds: mode.auth != .none)
            #expect(result.succeeded, "\(result.stderr) \(registry.log)")
            let expected = try layout.blob(layout.descriptor.digest)
            #expect(result.stdout.utf8.count == expected.count)
            #expect(Data(result.stdout.utf8) == expected)
            #expect(FileManager.default.fileExists(atPath: registry.blobDataPath(layout.layers[0].digest.description)))
        } catch {
            registry.stop()
            throw error
        }
        return registry
    }

    @Test func plain() async throws {
        let registry = try await Self.pushAndInspect(.plain, kind: .multiPlatform)
        defer { registry.stop() }
        let directory = registry.directory
        registry.stop()
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    @Test func dockerSchema2() async throws {
        let registry = try await Self.pushAndInspect(.plain, kind: .docker)
        registry.stop()
    }

    @Test func basicAuth() async throws {
        let registry = try await Self.pushAndInspect(.basic)
        defer { registry.stop() }
        let anonymous = try await Self.inspect(registry, "test/busybox:latest", creds: false)
        #expect(!anonymous.succeeded)
        let curl = try await TestCommand.run("/usr/bin/curl", ["-s", "-i", registry.baseURL + "/v2/"])
        #expect(curl.stdout.contains("401"))
        #expect(curl.stdout.lowercased().contains("www-authenticate: basic realm=\"berth-basic\""))
    }

    @Test func tls() async throws {
        let registry = try await Self.pushAndInspect(.tls)
        defer { registry.stop() }
        let caPath = try #require(registry.caPath)
        let verified = try await TestCommand.run("/usr/bin/curl", ["-s", "--cacert", caPath, registry.baseURL + "/v2/"])
        #expect(verified.succeeded && verified.stdout == "{}")
        let unverified = try await TestCommand.run("/usr/bin/curl", ["-s", registry.baseURL + "/v2/"])
        #expect(!unverified.succeeded)
    }

    @Test func tokenAuth() async throws {
        let registry = try await Self.pushAndInspect(.token)
        defer { registry.stop() }
        let server = try #require(registry.tokenServer)
        #expect(server.requests.contains { $0.contains("berth") && $0.contains("repository:test/busybox:") && $0.contains("push") })
        let curl = try await TestCommand.run("/usr/bin/curl", ["-s", "-i", registry.baseURL + "/v2/"])
        #expect(curl.stdout.contains("Bearer realm=\"http://127.0.0.1:\(server.port)/token\""))
        // Anonymous pull is allowed; an anonymous push is refused.
        let anonymous = try await Self.inspect(registry, "test/busybox:latest", creds: false)
        #expect(anonymous.succeeded, "\(anonymous.stderr)")
        let dir = "/tmp/berth-push-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try await TestImages.build(.oci, in: dir)
        let push = try await TestCommand.run(
            "/usr/bin/skopeo",
            ["copy", "--dest-tls-verify=false", "oci:\(layout.path):latest", "docker://\(registry.host)/anon/busybox:latest"])
        #expect(!push.succeeded)
    }
}
