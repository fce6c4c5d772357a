import BerthCore
import BerthNativeSnapshotter
import BerthSnapshotStorage
import Foundation
import Testing

@testable import BerthMetadataPlugin

/// The metadata plugin's container store: containerd's validation, field-path updates, filters, namespaces,
/// and containers as GC roots of their snapshots, over a real SQLite file and a real native snapshotter.
@Suite struct ContainersTests {
    final class Fixture: @unchecked Sendable {
        let directory: String
        let backend: DirectorySnapshotter
        let store: MetadataStore
        var metadata: Metadata { Metadata(store: store) }
        var containers: any ContainerStore { metadata.containers }

        init() throws {
            directory = NSTemporaryDirectory() + "berth-containers-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            backend = try NativeSnapshotter.open(root: directory + "/native")
            store = try MetadataStore(path: directory + "/meta.db", snapshotters: ["native": backend])
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    static let spec = TypedValue(typeURL: "types.containerd.io/opencontainers/runtime-spec/1/Spec", value: Array("{\"ociVersion\":\"1.0.2\"}".utf8))

    func code(_ error: any Error) -> BerthError.Code? { (error as? BerthError)?.code }

    func inNamespace<T>(_ ns: String, _ body: () async throws -> T) async rethrows -> T {
        try await RequestContext.$namespace.withValue(ns) { try await body() }
    }

    func record(_ id: String, labels: [String: String] = [:]) -> ContainerRecord {
        ContainerRecord(
            id: id, labels: labels, image: "docker.io/library/busybox:latest", runtimeName: "io.containerd.runc.v2",
            runtimeOptions: TypedValue(typeURL: "containerd.runc.v1.Options", value: [0x0a, 0x01, 0x41]), spec: Self.spec,
            extensions: ["ext": TypedValue(typeURL: "x/y", value: [1, 2, 3, 0, 255])])
    }

    @Test func createGetListKeepBytesAndNamespaces() async throws {
        let f = try Fixture()
        let created = try await inNamespace("a") { try await f.containers.create(record("c1", labels: ["k": "v"])) }
        #expect(created.createdAt == created.updatedAt && created.createdAt > Date(timeIntervalSinceNow: -60))
        let got = try await inNamespace("a") { try await f.containers.get("c1") }
        #expect(got.spec == Self.spec)
        #expect(got.runtimeOptions?.value == [0x0a, 0x01, 0x41])
        #expect(got.extensions["ext"]?.value == [1, 2, 3, 0, 255])
        #expect(got.labels == ["k": "v"])
        #expect(got.image == "docker.io/library/busybox:latest")
        // Other namespaces do not see it, and may use the same id.
        await #expect(throws: BerthError.self) { try await inNamespace("b") { try await f.containers.get("c1") } }
        _ = try await inNamespace("b") { try await f.containers.create(record("c1")) }
        let duplicate = await #expect(throws: BerthError.self) { try await inNamespace("a") { try await f.containers.create(record("c1")) } }
        #expect(duplicate?.code == .alreadyExists)

        _ = try await inNamespace("a") { try await f.containers.create(record("c2", labels: ["k": "w"])) }
        let byLabel = try await inNamespace("a") { try await f.containers.list(try Filter.parse(["labels.k==w"])) }
        #expect(byLabel.map(\.id) == ["c2"])
        let byRuntime = try await inNamespace("a") { try await f.containers.list(try Filter.parse(["runtime.name==io.containerd.runc.v2"])) }
        #expect(byRuntime.map(\.id) == ["c1", "c2"])
        // A namespace with containers cannot be deleted.
        let busy = await #expect(throws: BerthError.self) { try await f.store.delete("a") }
        #expect(busy?.code == .failedPrecondition)
        #expect(busy?.message.contains("containers") == true)
    }

    @Test func validationErrorsAreContainerds() async throws {
        let f = try Fixture()
        var noSpec = record("nospec")
        noSpec.spec = nil
        var noRuntime = record("noruntime")
        noRuntime.runtimeName = ""
        var keyWithoutSnapshotter = record("snap")
        keyWithoutSnapshotter.snapshotKey = "k"
        for (bad, text) in [
            (record("bad..id"), "container.ID"), (noSpec, "container.Spec must be set"),
            (noRuntime, "container.Runtime.Name must be set"), (keyWithoutSnapshotter, "container.Snapshotter must be set"),
        ] {
            let error = await #expect(throws: BerthError.self) { try await inNamespace("v") { try await f.containers.create(bad) } }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains(text) == true, "\(String(describing: error))")
        }
        let missing = await #expect(throws: BerthError.self) { try await inNamespace("v") { try await f.containers.delete("none") } }
        #expect(missing?.code == .notFound)
    }

    @Test func updateFollowsFieldPaths() async throws {
        let f = try Fixture()
        _ = try await inNamespace("u") { try await f.containers.create(record("c", labels: ["a": "1", "b": "2"])) }
        var change = record("c", labels: ["a": "9", "c": "3"])
        change.image = "other"
        change.spec = TypedValue(typeURL: Self.spec.typeURL, value: Array("{}".utf8))
        let labelOnly = try await inNamespace("u") { try await f.containers.update(change, paths: ["labels.a"]) }
        #expect(labelOnly.labels == ["a": "9", "b": "2"])
        #expect(labelOnly.image == "docker.io/library/busybox:latest")
        #expect(labelOnly.spec == Self.spec)
        let all = try await inNamespace("u") { try await f.containers.update(change, paths: []) }
        #expect(all.labels == ["a": "9", "c": "3"])
        #expect(all.image == "other")
        #expect(all.spec?.value == Array("{}".utf8))
        #expect(all.updatedAt > all.createdAt)
        var otherRuntime = change
        otherRuntime.runtimeName = "io.containerd.other.v1"
        let immutable = await #expect(throws: BerthError.self) { try await inNamespace("u") { try await f.containers.update(otherRuntime, paths: []) } }
        #expect(immutable?.code == .invalidArgument)
        let badPath = await #expect(throws: BerthError.self) { try await inNamespace("u") { try await f.containers.update(change, paths: ["runtime"]) } }
        #expect(badPath?.code == .invalidArgument)
    }

    @Test func containersKeepTheirSnapshotsThroughGC() async throws {
        let f = try Fixture()
        let snapshots = try f.metadata.snapshots.snapshotter("native")
        try await inNamespace("g") {
            _ = try await snapshots.prepare("kept", parent: "", labels: [:])
            _ = try await snapshots.prepare("dropped", parent: "", labels: [:])
            var c = record("c")
            c.snapshotter = "native"
            c.snapshotKey = "kept"
            _ = try await f.containers.create(c)
        }
        _ = try await f.metadata.gc.collect()
        let left = try await inNamespace("g") { try await snapshots.walk(.all).map(\.name) }
        #expect(left == ["kept"])
        try await inNamespace("g") { try await f.containers.delete("c") }
        _ = try await f.metadata.gc.collect()
        let after = try await inNamespace("g") { try await snapshots.walk(.all).map(\.name) }
        #expect(after.isEmpty)
    }
}
