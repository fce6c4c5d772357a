import BerthCore
import BerthImage
import BerthOCI
import BerthRegistry
import BerthTestSupport
import Foundation
import Testing

/// Push through the local transferrer to Debian's docker-registry, read back with skopeo.
@Suite(.serialized) struct PushTests {
    func push(_ f: Fixture, _ image: String, to reference: String, credentials: CredentialSource = .none,
              platforms: [OCIPlatform] = [], progress: ProgressLog? = nil) async throws
    {
        let transferrer = f.transferrer
        try await f.run {
            try await transferrer.transfer(
                .imageStore(ImageStoreSpec(name: image, platforms: platforms)),
                .registry(RegistrySpec(reference: reference, defaultScheme: "http", credentials: credentials)),
                progress: progress?.sink)
        }
    }

    /// `skopeo inspect --raw docker://…`: the manifest bytes the registry serves.
    func rawManifest(_ reference: String, creds: Bool = false) async throws -> String {
        var arguments = ["inspect", "--raw", "--tls-verify=false"]
        if creds { arguments += ["--creds", "\(TestRegistry.username):\(TestRegistry.password)"] }
        return try await tool("/usr/bin/skopeo", arguments + ["docker://\(reference)"])
    }

    @Test func pushesAMultiLayerImageToAPlainRegistry() async throws {
        let registry = try await TestRegistry.start(.plain)
        defer { registry.stop() }
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiLayer, name: "example.com/berth/layers", tag: "v1")
            try await f.importArchive(archive)
            let progress = ProgressLog()
            let reference = "\(registry.host)/berth/pushed:v1"
            try await push(f, "example.com/berth/layers:v1", to: reference, progress: progress)
            let raw = try await rawManifest(reference)
            #expect(try Identity.sha256Digest(Array(raw.utf8)) == layout.descriptor.digest)
            // Every layer was uploaded once and reported complete with byte progress.
            let completed = Set(progress.names("complete"))
            for layer in layout.layers { #expect(completed.contains(layer.digest.description)) }
            #expect(progress.all.contains { $0.event == "pushing" && $0.total > 0 && $0.progress == $0.total })
            // A pull back gives the same image.
            let copy = f.scratch + "/pulled"
            try await tool("/usr/bin/skopeo", ["copy", "--quiet", "--src-tls-verify=false", "docker://\(reference)",
                                               "oci:\(copy):v1"])
            let pulled = try JSONDecoder().decode(Index.self, from: try Data(contentsOf: URL(fileURLWithPath: copy + "/index.json")))
            #expect(pulled.manifests.first?.digest == layout.descriptor.digest)

            // A second push finds every blob already there.
            let again = ProgressLog()
            try await push(f, "example.com/berth/layers:v1", to: "\(registry.host)/berth/pushed:v2", progress: again)
            #expect(Set(again.names("exists")).isSuperset(of: layout.layers.map(\.digest.description)))
            #expect(!again.all.contains { $0.event == "pushing" })
        }
    }

    @Test func pushesAnIndexWithEveryPlatform() async throws {
        let registry = try await TestRegistry.start(.plain)
        defer { registry.stop() }
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiPlatform, name: "example.com/berth/multi", tag: "m")
            try await f.importArchive(archive, ImageStoreSpec(allMetadata: true))
            let reference = "\(registry.host)/berth/multi:m"
            try await push(f, "example.com/berth/multi:m", to: reference)
            let raw = try await rawManifest(reference)
            #expect(try Identity.sha256Digest(Array(raw.utf8)) == layout.descriptor.digest)
            let index = try JSONDecoder().decode(Index.self, from: Data(raw.utf8))
            for manifest in index.manifests {
                let child = try await rawManifest("\(registry.host)/berth/multi@\(manifest.digest)")
                #expect(try Identity.sha256Digest(Array(child.utf8)) == manifest.digest)
            }
        }
    }

    @Test func pushesWithBasicAuth() async throws {
        let registry = try await TestRegistry.start(.basic)
        defer { registry.stop() }
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.oci, name: "example.com/berth/auth", tag: "a")
            try await f.importArchive(archive)
            let reference = "\(registry.host)/berth/auth:a"
            // Without credentials the registry refuses.
            await #expect(throws: BerthError.self) { try await push(f, "example.com/berth/auth:a", to: reference) }
            let credentials = CredentialSource.fixed(Credentials(username: TestRegistry.username, secret: TestRegistry.password))
            try await push(f, "example.com/berth/auth:a", to: reference, credentials: credentials)
            let raw = try await rawManifest(reference, creds: true)
            #expect(try Identity.sha256Digest(Array(raw.utf8)) == layout.descriptor.digest)
        }
    }

    @Test func mountsBlobsFromTheSourceRepository() async throws {
        let registry = try await TestRegistry.start(.plain)
        defer { registry.stop() }
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiLayer, name: "example.com/berth/src", tag: "s")
            try await f.importArchive(archive)
            try await push(f, "example.com/berth/src:s", to: "\(registry.host)/berth/source:s")
            // Label the blobs as a pull from that repository would.
            let metadata = f.metadata
            let label = "containerd.io/distribution.source.\(registry.host)"
            for digest in layout.layers.map(\.digest) + [layout.manifestConfigDigest] {
                try await f.run {
                    var info = try await metadata.content.info(digest)
                    info.labels[label] = "berth/source"
                    _ = try await metadata.content.update(info, paths: ["labels.\(label)"])
                }
            }
            let progress = ProgressLog()
            let reference = "\(registry.host)/berth/target:t"
            try await push(f, "example.com/berth/src:s", to: reference, progress: progress)
            #expect(Set(progress.names("mounted")).isSuperset(of: layout.layers.map(\.digest.description)),
                    "\(progress.all.map { "\($0.event) \($0.name)" })")
            #expect(!progress.all.contains { $0.event == "pushing" })
            let raw = try await rawManifest(reference)
            #expect(try Identity.sha256Digest(Array(raw.utf8)) == layout.descriptor.digest)
        }
    }

    @Test func pushOfAMissingImageFails() async throws {
        try await Fixture.with { f in
            let error = await #expect(throws: BerthError.self) {
                try await push(f, "example.com/none:1", to: "127.0.0.1:1/none:1")
            }
            #expect(error?.code == .notFound)
        }
    }
}
