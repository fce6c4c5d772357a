import BerthCore
import BerthNativeSnapshotter
import BerthOverlaySnapshotter
import BerthSnapshotStorage
import BerthTestSupport
import Foundation
import Testing

@testable import BerthMetadataPlugin

/// The snapshotter conformance suite run through the metadata layer, with the backend's rows in the metadata
/// database: every Prepare, View and Commit goes through the joined path (one transaction for the backend's rows
/// and the metadata rows), as in berthd. containerd runs the same suite over its metadata snapshotter.
@Suite struct JoinedConformanceTests {
    /// A backend seen through the metadata layer in namespace `conformance`; closing closes both.
    struct Joined: Snapshotter {
        let store: MetadataStore
        let backend: DirectorySnapshotter
        let view: any Snapshotter

        init(root: String, open: (String, SnapshotDatabase) throws -> DirectorySnapshotter) throws {
            let path = root + "/meta.db"
            backend = try open(root + "/backend", .shared(path: path, name: "backend"))
            store = try MetadataStore(path: path, snapshotters: ["backend": backend])
            view = try Metadata(store: store).snapshots.snapshotter("backend")
        }

        func inNamespace<T>(_ body: () async throws(BerthError) -> T) async throws(BerthError) -> T {
            let result: Result<T, BerthError> = await RequestContext.$namespace.withValue("conformance") {
                do throws(BerthError) { return .success(try await body()) } catch { return .failure(error) }
            }
            return try result.get()
        }

        func stat(_ key: String) async throws(BerthError) -> SnapshotInfo {
            try await inNamespace { () throws(BerthError) in try await view.stat(key) }
        }
        func update(_ info: SnapshotInfo, paths: [String]) async throws(BerthError) -> SnapshotInfo {
            try await inNamespace { () throws(BerthError) in try await view.update(info, paths: paths) }
        }
        func usage(_ key: String) async throws(BerthError) -> SnapshotUsage {
            try await inNamespace { () throws(BerthError) in try await view.usage(key) }
        }
        func mounts(_ key: String) async throws(BerthError) -> [Mount] {
            try await inNamespace { () throws(BerthError) in try await view.mounts(key) }
        }
        func prepare(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
            try await inNamespace { () throws(BerthError) in try await view.prepare(key, parent: parent, labels: labels) }
        }
        func view(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
            try await inNamespace { () throws(BerthError) in try await view.view(key, parent: parent, labels: labels) }
        }
        func commit(_ name: String, key: String, labels: [String: String]) async throws(BerthError) {
            try await inNamespace { () throws(BerthError) in try await view.commit(name, key: key, labels: labels) }
        }
        func remove(_ key: String) async throws(BerthError) {
            try await inNamespace { () throws(BerthError) in try await view.remove(key) }
        }
        func walk(_ filter: Filter) async throws(BerthError) -> [SnapshotInfo] {
            try await inNamespace { () throws(BerthError) in try await view.walk(filter) }
        }
        func close() async {
            try? await store.close()
            await backend.close()
        }
    }

    static let overlay = SnapshotterSuite(scratch: "/var/tmp") { root in
        let joined = try Joined(root: root) { path, database in try OverlaySnapshotter.open(root: path, database: database) }
        #expect((joined.view as? NamespacedSnapshotter)?.joined != nil)
        return joined
    }
    static let native = SnapshotterSuite(scratch: "/var/tmp") { root in
        try Joined(root: root) { path, database in try NativeSnapshotter.open(root: path, database: database) }
    }

    @Test(arguments: SnapshotterSuite.Scenario.allCases)
    func overlayThroughMetadata(_ scenario: SnapshotterSuite.Scenario) async throws {
        try await Self.overlay.run(scenario)
    }

    @Test(arguments: SnapshotterSuite.Scenario.allCases)
    func nativeThroughMetadata(_ scenario: SnapshotterSuite.Scenario) async throws {
        try await Self.native.run(scenario)
    }
}
