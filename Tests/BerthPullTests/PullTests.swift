import BerthCore
import BerthEngineTestSupport
import BerthImage
import BerthOCI
import BerthRegistry
import BerthTestSupport
import Foundation
import Testing

/// The daemon-side pull (`LocalTransferrer.pull`) against Debian's docker-registry, into the in-process engine
/// (content store, metadata, overlayfs and native snapshotters, walking differ).
@Suite(.serialized) struct PullTests {
    @Test(arguments: ["oci", "docker", "multiLayer"])
    func pullsAndUnpacks(kind: String) async throws {
        let imageKind: TestImages.Kind = kind == "docker" ? .docker : kind == "multiLayer" ? .multiLayer : .oci
        try await PullFixture.with { fixture in
            let name = "test/\(kind.lowercased())"
            let layout = try await fixture.push(imageKind, name: name)
            let log = ProgressLog()
            let record = try await fixture.pull(name, log: log)
            #expect(record.name == fixture.reference(name))
            try await expectPulled(fixture, layout, repository: name, record: record)

            // Progress: resolving/resolved name the reference, blobs are named by ref key below their manifest.
            #expect(log.names(TransferProgress.Event.resolving) == [fixture.reference(name)])
            #expect(log.names(TransferProgress.Event.resolved) == [fixture.reference(name)])
            let layerNames = layout.layers.map { "layer-\($0.digest)" }
            #expect(Set(log.names(TransferProgress.Event.waiting)).isSuperset(of: layerNames))
            #expect(Set(log.names(TransferProgress.Event.complete)).isSuperset(of: layerNames + ["config-\(layout.manifestConfigDigest)"]))
            #expect(Set(log.names(TransferProgress.Event.extracted)) == Set(layerNames))
            #expect(log.names(TransferProgress.Event.saved) == [record.name])
            let layerEvent = try #require(log.events.first { $0.name == layerNames[0] })
            #expect(layerEvent.parents == ["manifest-\(layout.manifest.digest)"])
            let downloads = log.events.filter { $0.event == TransferProgress.Event.downloading && $0.name == layerNames[0] }
            #expect(!downloads.isEmpty)
            #expect(downloads.allSatisfy { $0.total == layout.layers[0].size && $0.progress <= $0.total })
            // Extraction starts only after the layer is complete.
            let events = log.events.map { "\($0.event) \($0.name)" }
            for layer in layerNames {
                let complete = try #require(events.firstIndex(of: "complete \(layer)"))
                let extracting = try #require(events.firstIndex(of: "extracting \(layer)"))
                #expect(complete < extracting)
            }

            if imageKind == .multiLayer, let top = try chainIDs(layout).last {
                try await withView(fixture.engine, top) { root in
                    for path in TestImageExpectations.present {
                        #expect(FileManager.default.fileExists(atPath: "\(root)/\(path)"), "\(path) missing")
                    }
                    for path in TestImageExpectations.absent {
                        #expect(!FileManager.default.fileExists(atPath: "\(root)/\(path)"), "\(path) present")
                    }
                }
            }

            // A second pull downloads nothing and reports every blob as already there.
            let again = ProgressLog()
            let second = try await fixture.pull(name, log: again)
            #expect(second.target == record.target)
            #expect(again.names(TransferProgress.Event.downloading).isEmpty)
            #expect(Set(again.names(TransferProgress.Event.alreadyExists)).isSuperset(of: layerNames))
            #expect(again.names(TransferProgress.Event.extracting).isEmpty)
            try await expectPulled(fixture, layout, repository: name, record: second)
        }
    }

    @Test func pullsWithoutUnpackAndIntoNative() async throws {
        try await PullFixture.with { fixture in
            let layout = try await fixture.push(.multiLayer, name: "test/plain")
            let record = try await fixture.pull("test/plain", store: ImageStoreSpec(name: "renamed:1", labels: ["a": "b"]))
            #expect(record.name == "renamed:1")
            #expect(record.labels == ["a": "b"])
            let labels = try await contentLabels(fixture.engine)
            #expect(labels[layout.layers[0].digest.description]?["containerd.io/uncompressed"] == nil)
            #expect(labels[layout.manifestConfigDigest.description]?.keys.contains { $0.hasPrefix("containerd.io/gc.ref.snapshot.") } == false)
            let overlay = try await inDefault { try await fixture.engine.snapshotter("overlayfs").walk(.all) }
            #expect(overlay.isEmpty)

            let native = try await fixture.pull("test/plain", store: ImageStoreSpec(unpacks: [UnpackSpec(snapshotter: "native")]))
            try await expectPulled(fixture, layout, repository: "test/plain", record: native, snapshotter: "native")
            if let top = try chainIDs(layout).last {
                try await withView(fixture.engine, top, snapshotter: "native") { root in
                    #expect(FileManager.default.fileExists(atPath: root + "/opq/new.txt"))
                    #expect(!FileManager.default.fileExists(atPath: root + "/opq/old.txt"))
                }
            }
        }
    }

    @Test func multiPlatformChoosesTheHostOrFetchesAllMetadata() async throws {
        try await PullFixture.with { fixture in
            let layout = try await fixture.push(.multiPlatform, name: "test/multi")
            let indexBytes = try layout.blob(layout.descriptor.digest)
            let index = try JSONDecoder().decode(Index.self, from: indexBytes)
            let other = try #require(index.manifests.first { $0.digest != layout.manifest.digest })
            let record = try await fixture.pull("test/multi")
            #expect(record.target.digest == layout.descriptor.digest)
            #expect(record.target.mediaType == MediaType.ociIndex)
            var labels = try await contentLabels(fixture.engine)
            let indexLabels = try #require(labels[layout.descriptor.digest.description])
            // Like containerd, the index references every manifest, fetched or not.
            #expect(indexLabels["containerd.io/gc.ref.content.m.0"] == index.manifests[0].digest.description)
            #expect(indexLabels["containerd.io/gc.ref.content.m.1"] == index.manifests[1].digest.description)
            #expect(labels[other.digest.description] == nil, "the other platform's manifest was fetched")
            try await expectPulled(fixture, layout, repository: "test/multi", record: record)

            let metadata = try await fixture.pull(
                "test/multi", store: ImageStoreSpec(name: "all-metadata", allMetadata: true, unpacks: [UnpackSpec()]))
            #expect(metadata.target.digest == layout.descriptor.digest)
            labels = try await contentLabels(fixture.engine)
            let otherLabels = try #require(labels[other.digest.description])
            let otherManifest = try JSONDecoder().decode(Manifest.self, from: try layout.blob(other.digest))
            #expect(otherLabels["containerd.io/gc.ref.content.config"] == otherManifest.config.digest.description)
            #expect(labels[otherManifest.config.digest.description] != nil, "the other platform's config is missing")
            // Only the host's platform is unpacked.
            let otherConfig = labels[otherManifest.config.digest.description] ?? [:]
            #expect(!otherConfig.keys.contains { $0.hasPrefix("containerd.io/gc.ref.snapshot.") })

            // A platform the index lacks is NotFound, and leaves no lease.
            let missing = OCIPlatform(os: "linux", architecture: "s390x")
            try await fixture.expectFailedPull("test/multi", .notFound, store: ImageStoreSpec(platforms: [missing]))
        }
    }

    @Test func unknownReferenceIsNotFound() async throws {
        try await PullFixture.with { fixture in
            _ = try await fixture.push(.oci, name: "test/known")
            try await fixture.expectFailedPull("test/unknown", .notFound)
            let images = try await inDefault { try await fixture.engine.metadata.images.list(.all) }
            #expect(images.isEmpty)
        }
    }

    /// A blob whose bytes the registry serves changed (same size) fails the pull: nothing is committed for it, no
    /// snapshot or ingest is left, and the lease is gone.
    @Test func tamperedBlobCommitsNothing() async throws {
        try await PullFixture.with { fixture in
            let layout = try await fixture.push(.multiLayer, name: "test/tampered")
            let victim = layout.layers[1]
            let path = fixture.registry.blobDataPath(victim.digest.description)
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count / 2] ^= 0xff
            try bytes.write(to: URL(fileURLWithPath: path))
            try await fixture.expectFailedPull("test/tampered", .failedPrecondition)
            let labels = try await contentLabels(fixture.engine)
            #expect(labels[victim.digest.description] == nil)
            let ingests = try await inDefault { try await fixture.engine.metadata.content.statuses(.all) }
            #expect(ingests.isEmpty, "\(ingests.map(\.ref))")
            let snapshots = try await inDefault { try await fixture.engine.snapshotter("overlayfs").walk(.all) }
            let chain = try chainIDs(layout)
            #expect(!snapshots.contains { $0.name == chain[1].description || $0.name == chain[2].description })
            #expect(!snapshots.contains { $0.kind == .active })
            let images = try await inDefault { try await fixture.engine.metadata.images.list(.all) }
            #expect(images.isEmpty)
        }
    }

    /// GC after a pull keeps everything (the lease is gone, the image roots it); after the image is deleted, a
    /// collection removes its blobs and snapshots.
    @Test func gcKeepsThePulledImageUntilItIsDeleted() async throws {
        try await PullFixture.with { fixture in
            let layout = try await fixture.push(.multiLayer, name: "test/gc")
            let record = try await fixture.pull("test/gc")
            let engine = fixture.engine
            _ = try await inDefault { try await engine.metadata.gc.collect() }
            try await expectPulled(fixture, layout, repository: "test/gc", record: record)
            try await inDefault { try await engine.metadata.images.delete(record.name) }
            _ = try await inDefault { try await engine.metadata.gc.collect() }
            let labels = try await contentLabels(engine)
            #expect(labels.isEmpty, "\(labels.keys)")
            let snapshots = try await inDefault { try await engine.snapshotter("overlayfs").walk(.all) }
            #expect(snapshots.isEmpty, "\(snapshots.map(\.name))")
        }
    }
}
