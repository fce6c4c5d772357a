import BerthCore
import BerthOCI
import BerthRegistry
import BerthTestSupport
import Crypto
import Foundation
import Testing

typealias Digest = BerthCore.Digest

/// A small directory-backed `ContentStore` (ingests in `ingest/<ref>`, blobs in `blobs/<hex>`) for the puller tests:
/// BerthImageTests does not depend on the content plugin. It verifies size and digest at commit like the real one.
actor DirectoryContentStore: ContentStore {
    let root: String
    var locked = Set<String>()

    init(root: String) throws {
        self.root = root
        try FileManager.default.createDirectory(atPath: root + "/blobs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/ingest", withIntermediateDirectories: true)
    }

    func blobPath(_ digest: Digest) -> String { root + "/blobs/" + digest.encoded }
    func ingestPath(_ ref: String) -> String { root + "/ingest/" + ref.replacingOccurrences(of: ":", with: "_") }

    func info(_ digest: Digest) throws(BerthError) -> ContentInfo {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: blobPath(digest)) else {
            throw .notFound("content \(digest)")
        }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        return ContentInfo(digest: digest, size: size, createdAt: Date(), updatedAt: Date())
    }

    func walk() throws(BerthError) -> [ContentInfo] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/blobs")) ?? []
        var infos: [ContentInfo] = []
        for name in names { infos.append(try info(try Digest(algorithm: "sha256", encoded: name))) }
        return infos
    }

    func delete(_ digest: Digest) throws(BerthError) {
        guard (try? FileManager.default.removeItem(atPath: blobPath(digest))) != nil else { throw .notFound("content \(digest)") }
    }

    func reader(_ digest: Digest) throws(BerthError) -> any ContentReader { throw .notImplemented("reader") }

    func status(_ ref: String) throws(BerthError) -> IngestStatus {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: ingestPath(ref)) else { throw .notFound(ref) }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        return IngestStatus(ref: ref, offset: size, total: 0, expected: nil, startedAt: Date(), updatedAt: Date())
    }

    func statuses() throws(BerthError) -> [IngestStatus] { [] }

    func abort(_ ref: String) throws(BerthError) { try? FileManager.default.removeItem(atPath: ingestPath(ref)) }

    func writer(ref: String, total: Int64, expected: Digest?) throws(BerthError) -> any ContentWriter {
        guard locked.insert(ref).inserted else { throw .unavailable("ref \(ref) locked") }
        let path = ingestPath(ref)
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        return try DirectoryWriter(store: self, ref: ref, path: path, expected: expected)
    }

    func unlock(_ ref: String) { locked.remove(ref) }

    /// Moves a verified ingest into place.
    func commit(ref: String, path: String, digest: Digest) throws(BerthError) {
        if FileManager.default.fileExists(atPath: blobPath(digest)) {
            try? FileManager.default.removeItem(atPath: path)
            throw .alreadyExists("content \(digest)")
        }
        guard (try? FileManager.default.moveItem(atPath: path, toPath: blobPath(digest))) != nil else {
            throw .internalError("rename \(path)")
        }
    }
}

actor DirectoryWriter: ContentWriter {
    let store: DirectoryContentStore
    nonisolated let ref: String
    let path: String
    var expected: Digest?
    let emptyDigest: Digest

    init(store: DirectoryContentStore, ref: String, path: String, expected: Digest?) throws(BerthError) {
        emptyDigest = try Digest(parsing: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        self.store = store
        self.ref = ref
        self.path = path
        self.expected = expected
    }

    func bytes() -> Data { FileManager.default.contents(atPath: path) ?? Data() }

    func write(_ bytes: [UInt8]) throws(BerthError) {
        guard let handle = FileHandle(forWritingAtPath: path) else { throw .internalError("open \(path)") }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: bytes)
        } catch {
            throw .internalError("write \(path): \(error)")
        }
    }

    func truncate(_ size: Int64) throws(BerthError) { _ = Glibc.truncate(path, off_t(size)) }
    func update(total: Int64, expected: Digest?) { if let expected { self.expected = expected } }
    func status() async throws(BerthError) -> IngestStatus { try await store.status(ref) }

    func digest() -> Digest {
        let hex = SHA256.hash(data: bytes()).map { String(format: "%02x", $0) }.joined()
        return (try? Digest(algorithm: "sha256", encoded: hex)) ?? emptyDigest
    }

    func commit(size: Int64, expected: Digest?) async throws(BerthError) -> Digest {
        let data = bytes()
        guard size <= 0 || Int64(data.count) == size else { throw .failedPrecondition("\(ref): size \(data.count) != \(size)") }
        let actual = digest()
        if let wanted = expected ?? self.expected, wanted != actual {
            throw .failedPrecondition("\(ref): digest \(actual) != \(wanted)")
        }
        try await store.commit(ref: ref, path: path, digest: actual)
        return actual
    }

    func close() async { await store.unlock(ref) }
}

/// The puller against docker-registry: platforms, dedup, skipping what is stored, resuming an interrupted ingest.
@Suite(.serialized) struct PullerTests {
    @Test func pullsTheHostPlatformOrAllAndSkipsStoredContent() async throws {
        let setup = try await RegistryClientTests.setup(.plain, kind: .multiPlatform)
        defer { setup.cleanup() }
        let client = RegistryClient()
        defer { Task { await client.shutdown() } }
        let reference = try Reference.parseDocker("\(setup.registry.host)/test/busybox:latest")
        let store = try DirectoryContentStore(root: setup.dir + "/content")
        let result = try await Puller(client: client, store: store).pull(reference)
        #expect(result.target.digest == setup.layout.descriptor.digest)
        #expect(result.manifests.map(\.digest) == [setup.layout.manifest.digest])
        #expect(result.blobs.count == 2)
        #expect(result.downloaded.count == 4)  // index, manifest, config, layer
        for digest in result.downloaded {
            #expect(try TestImages.sha256File(await store.blobPath(digest)) == digest)
        }
        let again = try await Puller(client: client, store: store).pull(reference)
        #expect(again.downloaded.isEmpty)
        let all = try await Puller(client: client, store: store, platforms: .all, allMatching: true).pull(reference)
        #expect(all.manifests.count == 2)
        #expect(all.blobs.count == 3)  // two configs, one shared layer
        #expect(all.downloaded.count == 2)  // the other platform's manifest and config
    }

    @Test func resumesAnInterruptedIngestWithRange() async throws {
        let setup = try await RegistryClientTests.setup(.plain)
        defer { setup.cleanup() }
        let proxy = try TestProxy(upstreamPort: setup.registry.port)
        defer { proxy.stop() }
        let client = RegistryClient()
        defer { Task { await client.shutdown() } }
        let reference = try Reference.parseDocker("127.0.0.1:\(proxy.port)/test/busybox:latest")
        let store = try DirectoryContentStore(root: setup.dir + "/content")
        let layer = setup.layout.layers[0]
        let partial = Array(try setup.layout.blob(layer.digest).prefix(100_000))
        let writer = try await store.writer(ref: "layer-\(layer.digest)", total: layer.size, expected: layer.digest)
        try await writer.write(partial)
        await writer.close()
        let result = try await Puller(client: client, store: store).pull(reference)
        #expect(result.downloaded.contains(layer.digest))
        #expect(try TestImages.sha256File(await store.blobPath(layer.digest)) == layer.digest)
        #expect(proxy.requests.contains { $0.contains("/blobs/\(layer.digest)") && $0.lowercased().contains("range: bytes=100000-") })
    }
}
