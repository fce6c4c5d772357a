import BerthCore
import BerthImage
import BerthOCI
import BerthTestSupport
import Foundation
import Testing

/// Import of OCI layouts and `docker save` archives through the local transferrer, in-process.
@Suite(.serialized) struct ImportTests {
    @Test func importsAnOCIArchiveByItsContainerdName() async throws {
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.oci)
            let progress = ProgressLog()
            try await f.importArchive(archive, progress: progress)
            let images = try await f.images()
            #expect(images.map(\.name) == ["docker.io/library/busybox:latest"])
            #expect(images.first?.target.digest == layout.descriptor.digest)
            #expect(images.first?.target.mediaType == MediaType.ociManifest)
            #expect(progress.names("saved") == ["docker.io/library/busybox:latest"])
            // GC labels as a pull sets them: the manifest references its config and layer.
            let manifest = try #require(try await f.contentInfo(layout.descriptor.digest))
            #expect(manifest.labels["containerd.io/gc.ref.content.config"] == layout.manifestConfigDigest.description)
            #expect(manifest.labels["containerd.io/gc.ref.content.l.0"] == layout.layers[0].digest.description)
            // The import's lease is gone, and the image alone keeps its blobs through a collection.
            #expect(try await f.leases().isEmpty)
            let left = Set(try await f.contentAfterGC().map(\.digest))
            #expect(left.isSuperset(of: [layout.descriptor.digest, layout.manifestConfigDigest, layout.layers[0].digest]))
        }
    }

    @Test func importsAMultiPlatformIndexForTheHost() async throws {
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiPlatform, name: "example.com/berth/multi", tag: "v2")
            try await f.importArchive(archive)
            let image = try #require(try await f.images().first)
            #expect(image.name == "example.com/berth/multi:v2")
            #expect(image.target.digest == layout.descriptor.digest)
            #expect(image.target.mediaType == MediaType.ociIndex)
            let index = try #require(try await f.contentInfo(layout.descriptor.digest))
            // Only the host's manifest is referenced (containerd's FilterPlatforms on import).
            #expect(index.labels["containerd.io/gc.ref.content.m.0"] == layout.manifest.digest.description)
            #expect(index.labels["containerd.io/gc.ref.content.m.1"] == nil)
        }
    }

    @Test func namesFollowBaseNameIndexNameAndDigests() async throws {
        try await Fixture.with { f in
            // An OCI layout whose entry carries only a tag (as skopeo writes it).
            let (layout, _) = try await f.build(.oci)
            let index = #"{"schemaVersion":2,"manifests":[{"mediaType":"\#(layout.descriptor.mediaType)","digest":"\#(layout.descriptor.digest)","size":\#(layout.descriptor.size),"annotations":{"org.opencontainers.image.ref.name":"1.0"}}]}"#
            try Data(index.utf8).write(to: URL(fileURLWithPath: layout.path + "/index.json"))
            let archive = try await layout.archive(to: f.scratch + "/tagonly.tar")
            let store = ImageStoreSpec(
                name: "example.com/whole:index",
                extraReferences: [ImageReference(name: "example.com/base", isPrefix: true, addDigest: true)])
            try await f.importArchive(archive, store)
            let images = try await f.images()
            #expect(images.map(\.name) == [
                "example.com/base:1.0", "example.com/base@\(layout.descriptor.digest)", "example.com/whole:index",
            ])
            #expect(images.last?.target.mediaType == MediaType.ociIndex)
            // Without a base name, a tag-only name gets containerd's dated prefix.
            try await f.importArchive(archive)
            #expect(try await f.images().contains { $0.name.hasPrefix("import-") && $0.name.hasSuffix(":1.0") })
        }
    }

    @Test func importsSkopeoOCIArchive() async throws {
        try await Fixture.with { f in
            let (layout, _) = try await f.build(.multiLayer)
            let archive = f.scratch + "/skopeo-oci.tar"
            try await tool("/usr/bin/skopeo", ["copy", "--quiet", "oci:\(layout.path):latest",
                                               "oci-archive:\(archive):example.com/skopeo/layers:v1"])
            try await f.importArchive(archive)
            let image = try #require(try await f.images().first)
            #expect(image.name == "example.com/skopeo/layers:v1")
            #expect(image.target.digest == layout.manifest.digest)
        }
    }

    @Test(arguments: [false, true]) func importsDockerArchiveFromSkopeo(compress: Bool) async throws {
        try await Fixture.with { f in
            let (layout, _) = try await f.build(.multiLayer)
            let archive = f.scratch + "/docker.tar"
            try await tool("/usr/bin/skopeo", ["copy", "--quiet", "oci:\(layout.path):latest",
                                               "docker-archive:\(archive):berth/saved:v3"])
            let names = try await tarNames(archive)
            #expect(names.contains("manifest.json"))
            #expect(!names.contains("oci-layout"))
            try await f.importArchive(archive, ImageStoreSpec(forceCompress: compress))
            let image = try #require(try await f.images().first)
            #expect(image.name == "docker.io/berth/saved:v3")
            #expect(image.target.mediaType == MediaType.dockerManifest)
            let metadata = f.metadata
            let manifestBytes = try await f.run { () -> Data in
                let reader = try await metadata.content.reader(image.target.digest)
                let bytes = try await reader.read(at: 0, count: Int(reader.size))
                await reader.close()
                return Data(bytes)
            }
            let manifest = try JSONDecoder().decode(Manifest.self, from: manifestBytes)
            #expect(manifest.config.digest == layout.manifestConfigDigest)
            #expect(manifest.layers.count == 3)
            for (layer, diffID) in zip(manifest.layers, layout.diffIDs) {
                if compress {
                    #expect(layer.mediaType == MediaType.dockerLayerGzip)
                    let info = try #require(try await f.contentInfo(layer.digest))
                    #expect(info.labels["containerd.io/uncompressed"] == diffID.description)
                } else {
                    #expect(layer.mediaType == MediaType.dockerLayer)
                    #expect(layer.digest == diffID)
                }
            }
            #expect(try await f.leases().isEmpty)
        }
    }

    @Test func concurrentImportsOfOneArchiveBothSucceed() async throws {
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiLayer)
            async let first: Void = f.importArchive(archive, ImageStoreSpec(name: "example.com/first:1"))
            async let second: Void = f.importArchive(archive, ImageStoreSpec(name: "example.com/second:1"))
            _ = try await (first, second)
            let names = try await f.images().map(\.name)
            #expect(names == ["docker.io/library/busybox:latest", "example.com/first:1", "example.com/second:1"])
            #expect(try await f.leases().isEmpty)
            let left = Set(try await f.contentAfterGC().map(\.digest))
            #expect(left.isSuperset(of: layout.layers.map(\.digest)))
        }
    }

    @Test func importUnpacksIntoTheNamedSnapshotter() async throws {
        try await Fixture.with { f in
            let (layout, archive) = try await f.build(.multiLayer)
            let progress = ProgressLog()
            try await f.importArchive(archive, ImageStoreSpec(unpacks: [UnpackSpec(snapshotter: "native")]), progress: progress)
            let chain = try #require(try Identity.chainID(layout.diffIDs))
            let snapshotter = try f.engine.snapshotter("native")
            let info = try await f.run { try await snapshotter.stat(chain.description) }
            #expect(info.kind == .committed)
            let config = try #require(try await f.contentInfo(layout.manifestConfigDigest))
            #expect(config.labels["containerd.io/gc.ref.snapshot.native"] == chain.description)
            // Pull's events, named by ref key, one pair per layer.
            let layers = layout.layers.map { "layer-\($0.digest)" }
            #expect(progress.names(TransferProgress.Event.extracting) == layers)
            #expect(progress.names(TransferProgress.Event.extracted) == layers)
            // The snapshots survive the lease's end and a collection.
            _ = try await f.contentAfterGC()
            #expect(try await f.run { try await snapshotter.stat(chain.description) }.kind == .committed)
        }
    }
}

/// Malformed archives fail with a clear error and leave no image, lease or (after GC) content behind.
@Suite(.serialized) struct MalformedImportTests {
    func expectNothingKept(_ f: Fixture) async throws {
        #expect(try await f.images().isEmpty)
        #expect(try await f.leases().isEmpty)
        #expect(try await f.contentAfterGC().isEmpty)
    }

    @Test func missingBlobFails() async throws {
        try await Fixture.with { f in
            let (layout, _) = try await f.build(.oci)
            try FileManager.default.removeItem(atPath: layout.blobPath(layout.layers[0].digest))
            let archive = try await layout.archive(to: f.scratch + "/missing.tar")
            let error = await #expect(throws: BerthError.self) { try await f.importArchive(archive) }
            #expect(error?.code == .notFound)
            #expect(error?.message.contains(layout.layers[0].digest.description) == true, "\(String(describing: error))")
            try await expectNothingKept(f)
        }
    }

    @Test func digestMismatchFails() async throws {
        try await Fixture.with { f in
            let (layout, _) = try await f.build(.oci)
            try Data("not the layer".utf8).write(to: URL(fileURLWithPath: layout.blobPath(layout.layers[0].digest)))
            let archive = try await layout.archive(to: f.scratch + "/mismatch.tar")
            let error = await #expect(throws: BerthError.self) { try await f.importArchive(archive) }
            #expect(error?.code == .failedPrecondition, "\(String(describing: error))")
            #expect(error?.message.contains(layout.layers[0].digest.encoded) == true, "\(String(describing: error))")
            try await expectNothingKept(f)
            #expect(try await f.contentInfo(layout.layers[0].digest) == nil)
        }
    }

    @Test(arguments: ["../escape", "/etc/absolute", "blobs/../../up"]) func escapingNamesFail(name: String) async throws {
        try await Fixture.with { f in
            let (layout, _) = try await f.build(.oci)
            let archive = f.scratch + "/evil.tar"
            let script = """
                import tarfile, io, os, sys
                src, out, evil = sys.argv[1], sys.argv[2], sys.argv[3]
                with tarfile.open(out, "w") as t:
                    t.add(src, arcname=".")
                    data = b"gotcha"
                    info = tarfile.TarInfo(evil); info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
                """
            try await tool("/usr/bin/python3", ["-c", script, layout.path, archive, name])
            let error = await #expect(throws: BerthError.self) { try await f.importArchive(archive) }
            #expect(error?.code == .invalidArgument, "\(String(describing: error))")
            #expect(error?.message.contains(name) == true, "\(String(describing: error))")
            try await expectNothingKept(f)
        }
    }

    @Test func notAnImageArchiveFails() async throws {
        try await Fixture.with { f in
            let archive = f.scratch + "/plain.tar"
            try await tool("/bin/sh", ["-c", "cd \(f.scratch) && echo hi > a.txt && tar -cf plain.tar a.txt"])
            let error = await #expect(throws: BerthError.self) { try await f.importArchive(archive) }
            #expect(error?.message.contains("unrecognized image format") == true, "\(String(describing: error))")
            try await expectNothingKept(f)
        }
    }
}
