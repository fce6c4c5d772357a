import BerthCore
import BerthNativeSnapshotter
import BerthSnapshotStorage
import Foundation
import Testing

@testable import BerthMetadataPlugin

/// The metadata plugin's namespaced snapshotters and snapshot GC over a real native backend on disk.
@Suite struct SnapshotMetadataTests {
    /// A metadata store with one real `native` backend in a fresh directory, removed afterwards.
    final class Fixture: @unchecked Sendable {
        let directory: String
        let backend: DirectorySnapshotter
        let store: MetadataStore
        var metadata: Metadata { Metadata(store: store) }

        /// `joined`: the backend keeps its rows in the metadata database, so creates and commits are one
        /// transaction (`JoinableSnapshotter`); else in its own file, with the backend called first.
        init(joined: Bool) throws {
            directory = NSTemporaryDirectory() + "berth-snapmeta-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let path = directory + "/meta.db"
            backend = try NativeSnapshotter.open(
                root: directory + "/native", database: joined ? .shared(path: path, name: "native") : .own)
            store = try MetadataStore(path: path, snapshotters: ["native": backend])
        }

        func snapshotter() throws -> any Snapshotter { try metadata.snapshots.snapshotter("native") }

        func backendKeys() async throws -> [String] { try await backend.walk(.all).map(\.name).sorted() }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    func code(_ error: any Error) -> BerthError.Code? { (error as? BerthError)?.code }

    func inNamespace<T>(_ ns: String, lease: String? = nil, _ body: () async throws -> T) async rethrows -> T {
        try await RequestContext.$namespace.withValue(ns) {
            try await RequestContext.$lease.withValue(lease) { try await body() }
        }
    }

    @Test(arguments: [false, true]) func keysAreNamespacedAndBackendKeysCarryNamespaceAndID(joined: Bool) async throws {
        let f = try Fixture(joined: joined)
        let sn = try f.snapshotter()
        #expect(((sn as? NamespacedSnapshotter)?.joined != nil) == joined)
        _ = try await inNamespace("a") { try await sn.prepare("k", parent: "", labels: [:]) }
        _ = try await inNamespace("b") { try await sn.prepare("k", parent: "", labels: [:]) }
        #expect(try await inNamespace("a") { try await sn.stat("k") }.kind == .active)
        #expect(try await inNamespace("b") { try await sn.walk(.all) }.map(\.name) == ["k"])
        let keys = try await f.backendKeys()
        #expect(keys.count == 2)
        #expect(keys.contains { $0.hasPrefix("a/") && $0.hasSuffix("/k") })
        #expect(keys.contains { $0.hasPrefix("b/") && $0.hasSuffix("/k") })
        await #expect { try await inNamespace("c") { try await sn.stat("k") } } throws: { code($0) == .notFound }
    }

    @Test(arguments: [false, true]) func errorsCarryContainerdCodes(joined: Bool) async throws {
        let f = try Fixture(joined: joined)
        let sn = try f.snapshotter()
        try await inNamespace("default") {
            _ = try await sn.prepare("p", parent: "", labels: [:])
            await #expect { try await sn.prepare("p", parent: "", labels: [:]) } throws: { code($0) == .alreadyExists }
            await #expect { try await sn.prepare("q", parent: "nope", labels: [:]) } throws: { code($0) == .notFound }
            try await sn.commit("base", key: "p", labels: [:])
            await #expect { try await sn.stat("p") } throws: { code($0) == .notFound }
            await #expect { try await sn.commit("base", key: "x", labels: [:]) } throws: { code($0) == .alreadyExists }
            _ = try await sn.prepare("child", parent: "base", labels: [:])
            _ = try await sn.view("v", parent: "base", labels: [:])
            await #expect { try await sn.commit("vc", key: "v", labels: [:]) } throws: { code($0) == .failedPrecondition }
            await #expect { try await sn.remove("base") } throws: { (error: any Error) in
                code(error) == .failedPrecondition && "\(error)".contains("cannot remove snapshot with child")
            }
            await #expect { try await sn.remove("missing") } throws: { code($0) == .notFound }
            await #expect { _ = try await sn.update(SnapshotInfo(kind: .active, name: "child"), paths: ["parent"]) }
                throws: { code($0) == .invalidArgument }
            #expect(try await sn.stat("child").parent == "base")
            let all = try await sn.walk(.all)
            #expect(try await sn.walk(try Filter.parse("kind==view")).map(\.name) == ["v"], "\(all)")
        }
        #expect(throws: BerthError.self) { try f.metadata.snapshots.snapshotter("nope") }
        do {
            _ = try f.metadata.snapshots.snapshotter("nope")
        } catch {
            #expect(error.message == "snapshotter not loaded: nope")
            #expect(error.code == .invalidArgument)
        }
        await #expect { try await sn.stat("child") } throws: { code($0) == .failedPrecondition }
    }

    @Test(arguments: [false, true]) func onlyInheritedLabelsReachTheBackend(joined: Bool) async throws {
        let f = try Fixture(joined: joined)
        let sn = try f.snapshotter()
        let inherited = SnapshotLabels.inheritedPrefix + "x"
        try await inNamespace("default") {
            _ = try await sn.prepare("k", parent: "", labels: ["mine": "1", inherited: "y"])
            #expect(try await sn.stat("k").labels == ["mine": "1", inherited: "y"])
            let backendKey = try #require(try await f.backendKeys().first)
            #expect(try await f.backend.stat(backendKey).labels == [inherited: "y"])
            let updated = try await sn.update(
                SnapshotInfo(kind: .active, name: "k", labels: ["other": "2"]), paths: ["labels.other", "labels.mine"])
            #expect(updated.labels == ["other": "2", inherited: "y"])
            _ = try await sn.update(SnapshotInfo(kind: .active, name: "k", labels: ["z": "3"]), paths: [])
            #expect(try await sn.stat("k").labels == ["z": "3"])
            #expect(try await f.backend.stat(backendKey).labels.isEmpty)
        }
    }

    @Test(arguments: [false, true]) func namespaceWithSnapshotsCannotBeDeleted(joined: Bool) async throws {
        let f = try Fixture(joined: joined)
        let sn = try f.snapshotter()
        _ = try await inNamespace("busy") { try await sn.prepare("k", parent: "", labels: [:]) }
        await #expect { try await f.store.delete("busy") } throws: { (error: any Error) in
            code(error) == .failedPrecondition && "\(error)".contains("snapshots")
        }
        try await inNamespace("busy") { try await sn.remove("k") }
        try await f.store.delete("busy")
    }

    @Test(arguments: [false, true]) func leaseHeaderAddsSnapshotsAndCommitMovesTheResource(joined: Bool) async throws {
        let f = try Fixture(joined: joined)
        let sn = try f.snapshotter()
        let leases = f.metadata.leases
        try await inNamespace("default") {
            _ = try await leases.create(id: "L", labels: [:])
            try await inNamespace("default", lease: "L") {
                _ = try await sn.prepare("k", parent: "", labels: [:])
                #expect(try await leases.listResources("L") == [LeaseResource(id: "k", type: "snapshots/native")])
                try await sn.commit("c", key: "k", labels: [:])
                #expect(try await leases.listResources("L") == [LeaseResource(id: "c", type: "snapshots/native")])
                await #expect { try await inNamespace("default", lease: "missing") { try await sn.prepare("x", parent: "", labels: [:]) } }
                    throws: { code($0) == .notFound }
            }
            // The lease keeps "c"; deleting the lease lets GC remove it and sweep the backend.
            var stats = try await f.metadata.gc.collect()
            #expect(stats.removedSnapshots == 0)
            #expect(try await sn.walk(.all).map(\.name) == ["c"])
            try await leases.delete("L")
            stats = try await f.metadata.gc.collect()
            #expect(stats.removedSnapshots == 1)
            #expect(stats.sweptSnapshots == 1)
            #expect(try await sn.walk(.all).isEmpty)
        }
        #expect(try await f.backendKeys().isEmpty)
    }

    /// Roots: image content labels (through gc.ref.content), gc.root, snapshot gc.ref labels, parents. The rest
    /// goes, children before parents, from metadata and then from the backend.
    @Test(arguments: [false, true]) func collectionMarksFromImagesLabelsAndParents(joined: Bool) async throws {
        let f = try Fixture(joined: joined)
        let sn = try f.snapshotter()
        let meta = f.metadata
        try await inNamespace("default") {
            // An image whose config references a layer's chain, whose snapshot is "layer2" (child of "layer1").
            _ = try await sn.prepare("l1", parent: "", labels: [:])
            try await sn.commit("layer1", key: "l1", labels: [:])
            _ = try await sn.prepare("l2", parent: "layer1", labels: [:])
            try await sn.commit("layer2", key: "l2", labels: [:])
            let config = try Digest(parsing: "sha256:" + String(repeating: "a", count: 64))
            let manifest = try Digest(parsing: "sha256:" + String(repeating: "b", count: 64))
            let view = ContentView(store: f.store)
            try await view.record(
                namespace: "default", digest: config, size: 1,
                labels: [GCLabels.snapshotRefPrefix + "native": "layer2"], lease: nil)
            try await view.record(
                namespace: "default", digest: manifest, size: 1,
                labels: [GCLabels.contentRefPrefix + ".config": config.description], lease: nil)
            _ = try await meta.images.create(ImageRecord(
                name: "img", target: Descriptor(mediaType: "application/json", digest: manifest, size: 1)))
            // A root, which references "ref" through a label; "ref"'s parent is "refbase".
            _ = try await sn.prepare("rb", parent: "", labels: [:])
            try await sn.commit("refbase", key: "rb", labels: [:])
            _ = try await sn.prepare("ref", parent: "refbase", labels: [:])
            _ = try await sn.prepare(
                "root", parent: "", labels: [GCLabels.root: "now", GCLabels.snapshotRefPrefix + "native/extra": "ref"])
            // Garbage: a chain of three nobody references.
            _ = try await sn.prepare("g1", parent: "", labels: [:])
            try await sn.commit("g1c", key: "g1", labels: [:])
            _ = try await sn.prepare("g2", parent: "g1c", labels: [:])
            try await sn.commit("g2c", key: "g2", labels: [:])
            _ = try await sn.view("g3", parent: "g2c", labels: [:])

            let stats = try await meta.gc.collect()
            #expect(stats.removedSnapshots == 3)
            #expect(stats.sweptSnapshots == 3)
            #expect(try await sn.walk(.all).map(\.name) == ["layer1", "layer2", "ref", "refbase", "root"])
            #expect(try await f.backendKeys().count == 5)

            // Dropping the image frees its layers (and its content).
            try await meta.images.delete("img")
            let second = try await meta.gc.collect()
            #expect(second.removedSnapshots == 2)
            #expect(second.removedContent == 2)
            #expect(try await sn.walk(.all).map(\.name) == ["ref", "refbase", "root"])
            _ = try await sn.update(SnapshotInfo(kind: .active, name: "root"), paths: ["labels"])
            #expect(try await meta.gc.collect().removedSnapshots == 3)
        }
        #expect(try await f.backendKeys().isEmpty)
    }

    /// A backend snapshot that no row references (a crash between backend call and row) is swept, and ids are
    /// allocated past it after a restart.
    @Test(arguments: [false, true]) func orphanedBackendSnapshotsAreSweptAndIDsNotReused(joined: Bool) async throws {
        let f = try Fixture(joined: joined)
        _ = try await f.backend.prepare("default/41/orphan", parent: "", labels: [:])
        await f.store.seedSnapshotIDs()
        let sn = try f.snapshotter()
        _ = try await inNamespace("default") { try await sn.prepare("k", parent: "", labels: [GCLabels.root: "x"]) }
        #expect(try await f.backendKeys().contains("default/42/k"))
        let stats = try await f.metadata.gc.collect()
        #expect(stats.sweptSnapshots == 1)
        #expect(try await f.backendKeys() == ["default/42/k"])
    }
}
