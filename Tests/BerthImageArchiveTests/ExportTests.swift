import BerthCore
import BerthImage
import BerthOCI
import BerthTestSupport
import Foundation
import Testing

/// Export through the local transferrer, read back by skopeo, umoci and oci-image-tool, and imported again.
@Suite(.serialized) struct ExportTests {
    @Test func ociExportIsReadBySkopeoUmociAndOCIImageTool() async throws {
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiLayer, name: "example.com/berth/layers", tag: "v1")
            try await f.importArchive(archive)
            let exported = try await f.exportArchive(ImageStoreSpec(name: "example.com/berth/layers:v1"), file: "out.tar")

            let names = try await tarNames(exported)
            #expect(names.first == "blobs/")
            #expect(names.contains("oci-layout") && names.contains("index.json") && names.contains("manifest.json"))
            let index = try JSONDecoder().decode(Index.self, from: try await tarMember(exported, "index.json"))
            #expect(index.manifests.count == 1)
            #expect(index.manifests.first?.digest == layout.descriptor.digest)
            #expect(index.manifests.first?.annotations?[Annotation.containerdImageName] == "example.com/berth/layers:v1")
            #expect(index.manifests.first?.annotations?[Annotation.refName] == "v1")
            let docker = try JSONSerialization.jsonObject(with: try await tarMember(exported, "manifest.json")) as? [[String: Any]]
            #expect(docker?.first?["RepoTags"] as? [String] == ["example.com/berth/layers:v1"])
            #expect((docker?.first?["Layers"] as? [String])?.count == 3)

            let inspect = try await tool("/usr/bin/skopeo", ["inspect", "--raw", "oci-archive:\(exported):v1"])
            #expect(try Identity.sha256Digest(Array(inspect.utf8)) == layout.descriptor.digest)
            let skopeoDocker = try await tool("/usr/bin/skopeo", ["inspect", "docker-archive:\(exported)"])
            #expect(skopeoDocker.contains("\"Layers\""), "\(skopeoDocker)")

            let dir = f.scratch + "/unpacked"
            try await tool("/usr/bin/tar", ["-C", f.scratch, "--one-top-level=exported-layout", "-xf", exported])
            // This oci-image-tool (Debian's) validates a layout directory as type "image", found by ref name.
            try await tool("/usr/bin/oci-image-tool", ["validate", "--type", "image", "--ref", "name=v1",
                                                       f.scratch + "/exported-layout"])
            try await tool("/usr/bin/umoci", ["unpack", "--rootless", "--image", f.scratch + "/exported-layout:v1", dir])
            for path in TestImageExpectations.present {
                #expect(FileManager.default.fileExists(atPath: dir + "/rootfs/" + path), "\(path) missing")
            }
            for path in TestImageExpectations.absent {
                #expect(!FileManager.default.fileExists(atPath: dir + "/rootfs/" + path), "\(path) present")
            }
        }
    }

    @Test func roundTripKeepsDigests() async throws {
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiPlatform, name: "example.com/berth/multi", tag: "rt")
            try await f.importArchive(archive, ImageStoreSpec(allMetadata: true))
            let exported = try await f.exportArchive(
                ImageStoreSpec(name: "example.com/berth/multi:rt"), ExportSpec(allPlatforms: true), file: "rt.tar")
            // Every blob of the original layout is in the export, under the same digest.
            let names = Set(try await tarNames(exported))
            let original = try FileManager.default.contentsOfDirectory(atPath: layout.path + "/blobs/sha256")
            for hex in original { #expect(names.contains("blobs/sha256/\(hex)"), "\(hex) missing") }
            try await tool("/usr/bin/tar", ["-C", f.scratch, "--one-top-level=rt-layout", "-xf", exported])
            try await tool("/usr/bin/oci-image-tool", ["validate", "--type", "image", "--ref", "name=rt", f.scratch + "/rt-layout"])

            // Imported into a fresh engine, the image has the same target.
            try await Fixture.with { g in
                try await g.importArchive(exported)
                let image = try #require(try await g.images().first)
                #expect(image.name == "example.com/berth/multi:rt")
                #expect(image.target.digest == layout.descriptor.digest)
            }
        }
    }

    @Test func hostPlatformExportLeavesOtherPlatformsOut() async throws {
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiPlatform, name: "example.com/berth/multi", tag: "one")
            try await f.importArchive(archive, ImageStoreSpec(allMetadata: true))
            let exported = try await f.exportArchive(ImageStoreSpec(name: "example.com/berth/multi:one"), file: "one.tar")
            let names = Set(try await tarNames(exported))
            #expect(names.contains("blobs/sha256/\(layout.manifest.digest.encoded)"))
            let index = try JSONDecoder().decode(Index.self, from: try layout.blob(layout.descriptor.digest))
            let other = try #require(index.manifests.first { $0.digest != layout.manifest.digest })
            #expect(!names.contains("blobs/sha256/\(other.digest.encoded)"))
            let docker = try JSONSerialization.jsonObject(with: try await tarMember(exported, "manifest.json")) as? [[String: Any]]
            #expect(docker?.count == 1)
        }
    }

    @Test func dockerFormatExportIsReadBySkopeoAndImportedAgain() async throws {
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiLayer, name: "docker.io/library/layers", tag: "d1")
            try await f.importArchive(archive)
            let exported = try await f.exportArchive(
                ImageStoreSpec(name: "docker.io/library/layers:d1"), ExportSpec(format: .docker), file: "docker.tar")
            let names = try await tarNames(exported)
            #expect(names.contains("manifest.json") && names.contains("repositories"))
            #expect(!names.contains("oci-layout"))
            for diffID in layout.diffIDs { #expect(names.contains(diffID.encoded + ".tar")) }
            let inspect = try await tool("/usr/bin/skopeo", ["inspect", "docker-archive:\(exported)"])
            for diffID in layout.diffIDs { #expect(inspect.contains(diffID.description), "\(inspect)") }

            try await Fixture.with { g in
                try await g.importArchive(exported)
                let image = try #require(try await g.images().first)
                #expect(image.name == "docker.io/library/layers:d1")
                #expect(image.target.mediaType == MediaType.dockerManifest)
            }
        }
    }

    @Test func exportOfEveryImageNamesEach() async throws {
        try await Fixture.with { f in
            let (_, a) = try await f.build(.oci, name: "example.com/a", tag: "1")
            let (_, b) = try await f.build(.docker, name: "example.com/b", tag: "2")
            try await f.importArchive(a)
            try await f.importArchive(b)
            let exported = try await f.exportArchive(ImageStoreSpec(), file: "all.tar")
            let index = try JSONDecoder().decode(Index.self, from: try await tarMember(exported, "index.json"))
            #expect(index.manifests.compactMap { $0.annotations?[Annotation.containerdImageName] }.sorted()
                == ["example.com/a:1", "example.com/b:2"])
        }
    }

    @Test func missingImageFails() async throws {
        try await Fixture.with { f in
            let error = await #expect(throws: BerthError.self) {
                _ = try await f.exportArchive(ImageStoreSpec(name: "example.com/none:1"), file: "none.tar")
            }
            #expect(error?.code == .notFound)
        }
    }
}
