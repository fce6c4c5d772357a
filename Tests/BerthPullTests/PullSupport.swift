import BerthCore
import BerthEngineTestSupport
import BerthImage
import BerthOCI
import BerthRegistry
import BerthTestSupport
import Foundation
import Glibc
import Testing

typealias Digest = BerthCore.Digest

/// Collects a pull's progress reports.
final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [TransferProgress] = []

    var events: [TransferProgress] { lock.withLock { recorded } }
    var sink: ProgressSink { { [self] event in lock.withLock { recorded.append(event) } } }

    func names(_ event: String) -> [String] { events.filter { $0.event == event }.map(\.name) }
}

/// The in-process engine, a registry and a work directory; `stop()` cleans up all three.
struct PullFixture {
    let engine: TestEngine
    let registry: TestRegistry
    let dir: String

    static func start(_ mode: TestRegistry.Mode = .plain) async throws -> PullFixture {
        let registry = try await TestRegistry.start(mode)
        do {
            let engine = try await TestEngine.start()
            return PullFixture(engine: engine, registry: registry, dir: "/tmp/berth-pull-\(UUID().uuidString.prefix(8))")
        } catch {
            registry.stop()
            throw error
        }
    }

    /// Runs `body` with a fresh fixture and stops it however `body` ends (there is no async `defer`).
    static func with(_ mode: TestRegistry.Mode = .plain, _ body: (PullFixture) async throws -> Void) async throws {
        let fixture = try await start(mode)
        do {
            try await body(fixture)
        } catch {
            await fixture.stop()
            throw error
        }
        await fixture.stop()
    }

    var transferrer: LocalTransferrer {
        get throws { try #require(engine.transferrer as? LocalTransferrer) }
    }

    /// Builds an image of `kind` and pushes it as `<registry>/<name>:latest`.
    func push(_ kind: TestImages.Kind, name: String) async throws -> TestImageLayout {
        let layout = try await TestImages.build(kind, in: "\(dir)/\(name.replacingOccurrences(of: "/", with: "_"))")
        try await layout.push(to: registry, name: name)
        return layout
    }

    func reference(_ name: String, host: String? = nil) -> String { "\(host ?? registry.host)/\(name):latest" }

    /// Pulls in namespace `default`, unpacking into the default snapshotter unless told otherwise.
    @discardableResult
    func pull(
        _ name: String, store: ImageStoreSpec = ImageStoreSpec(unpacks: [UnpackSpec()]),
        credentials: CredentialSource = .none, log: ProgressLog = ProgressLog(), host: String? = nil
    ) async throws -> ImageRecord {
        let transferrer = try transferrer
        let spec = RegistrySpec(reference: reference(name, host: host), credentials: credentials)
        return try await inDefault { try await transferrer.pull(spec, into: store, progress: log.sink) }
    }

    /// Pulls `name`, which must fail with `code` and leave no lease behind.
    func expectFailedPull(_ name: String, _ code: BerthError.Code,
                          store: ImageStoreSpec = ImageStoreSpec(unpacks: [UnpackSpec()])) async throws {
        var caught: BerthError?
        do {
            try await pull(name, store: store)
        } catch let error as BerthError {
            caught = error
        }
        #expect(caught?.code == code, "\(String(describing: caught))")
        let leases = try await inDefault { try await engine.metadata.leases.list(.all) }
        #expect(leases.isEmpty)
    }

    func stop() async {
        unmountUnder(engine.root)
        await engine.stop()
        registry.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Runs `body` in namespace `default` (what the gRPC edge binds for a request).
func inDefault<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    try await RequestContext.$namespace.withValue("default") { try await body() }
}

/// Lazily unmounts whatever is still mounted below `root` (a failed test's leftovers).
func unmountUnder(_ root: String) {
    let mounts = (try? FileSystem.read("/proc/self/mountinfo")) ?? ""
    for line in mounts.split(separator: "\n") {
        let fields = line.split(separator: " ")
        if fields.count > 4, fields[4].hasPrefix(root) { umount2(String(fields[4]), Int32(MNT_DETACH)) }
    }
}

/// The chain IDs of an image, bottom first.
func chainIDs(_ layout: TestImageLayout) throws -> [Digest] { try Identity.chainIDs(layout.diffIDs) }

/// Every label of every blob in namespace `default`.
func contentLabels(_ engine: TestEngine) async throws -> [String: [String: String]] {
    let infos = try await inDefault { try await engine.metadata.content.list(.all) }
    return Dictionary(uniqueKeysWithValues: infos.map { ($0.digest.description, $0.labels) })
}

/// Checks what a pull of `layout` as `repository` must leave, as containerd labels it: GC references on the
/// manifest, the distribution source on every blob, uncompressed digests on layers, the config rooting the top
/// snapshot, snapshots committed by chain ID with `containerd.io/snapshot.ref`, and no lease left.
func expectPulled(
    _ fixture: PullFixture, _ layout: TestImageLayout, repository: String, record: ImageRecord,
    snapshotter: String = "overlayfs"
) async throws {
    let engine = fixture.engine
    #expect(record.target.digest == layout.descriptor.digest)
    #expect(record.target.mediaType == layout.descriptor.mediaType)
    let labels = try await contentLabels(engine)
    let source = "containerd.io/distribution.source.127.0.0.1"
    let manifest = try #require(labels[layout.manifest.digest.description])
    #expect(manifest["containerd.io/gc.ref.content.config"] == layout.manifestConfigDigest.description)
    for (index, layer) in layout.layers.enumerated() {
        #expect(manifest["containerd.io/gc.ref.content.l.\(index)"] == layer.digest.description)
        let layerLabels = try #require(labels[layer.digest.description])
        #expect(layerLabels["containerd.io/uncompressed"] == layout.diffIDs[index].description)
        #expect(layerLabels[source] == repository)
    }
    let chain = try chainIDs(layout)
    let config = try #require(labels[layout.manifestConfigDigest.description])
    #expect(config["containerd.io/gc.ref.snapshot.\(snapshotter)"] == chain.last?.description)
    #expect(config[source] == repository)
    #expect(manifest[source] == repository)
    let snapshots = try engine.snapshotter(snapshotter)
    for (index, chainID) in chain.enumerated() {
        let info = try await inDefault { try await snapshots.stat(chainID.description) }
        #expect(info.kind == .committed)
        #expect(info.parent == (index > 0 ? chain[index - 1].description : ""))
        #expect(info.labels["containerd.io/snapshot.ref"] == chainID.description)
    }
    let active = try await inDefault { try await snapshots.walk(.all) }.filter { $0.kind != .committed }
    #expect(active.isEmpty, "extraction snapshots left: \(active.map(\.name))")
    let leases = try await inDefault { try await engine.metadata.leases.list(.all) }
    #expect(leases.isEmpty, "leases left: \(leases.map(\.id))")
    let image = try await inDefault { try await engine.metadata.images.get(record.name) }
    #expect(image.target == record.target)
}

/// Mounts a read-only view of `chainID` and runs `body` on its root.
func withView<T: Sendable>(_ engine: TestEngine, _ chainID: Digest, snapshotter: String = "overlayfs",
                           _ body: (String) throws -> T) async throws -> T {
    let snapshots = try engine.snapshotter(snapshotter)
    let key = "view-\(UUID().uuidString.prefix(8))"
    let mounts = try await inDefault { try await snapshots.view(key, parent: chainID.description, labels: [:]) }
    let target = engine.root + "/" + key
    try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
    defer {
        try? FileManager.default.removeItem(atPath: target)
    }
    let result = try await Mounting.withMounts(mounts, at: target) { try body(target) }
    try await inDefault { try await snapshots.remove(key) }
    return result
}
