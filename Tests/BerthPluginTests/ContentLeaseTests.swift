import BerthContentPlugin
import BerthCore
import Foundation
import Testing

@testable import BerthMetadataPlugin

/// Content written under a lease stays in that lease when the namespace already has it, as in containerd: two
/// clients importing the same archive at once each hold what they wrote by their own lease, so the first one's
/// lease going away (and a collection) does not take a blob the second still needs.
@Suite struct ContentLeaseTests {
    final class Fixture: @unchecked Sendable {
        let directory = NSTemporaryDirectory() + "berth-contentlease-\(UUID().uuidString)"
        let store: MetadataStore
        let digest: Digest
        var metadata: Metadata { Metadata(store: store) }

        init() throws {
            digest = try Digest(parsing: ContentLeaseTests.digestText)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            store = try MetadataStore(
                path: directory + "/meta.db", backend: try LocalContentStore(root: directory + "/content"))
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    static let blob = Array("the index an import writes".utf8)
    /// `printf 'the index an import writes' | sha256sum`
    static let digestText = "sha256:eec507cb057a76f08f861931a40050df6e16cd76166bbaee45e71a07cdcbc22a"

    func write(_ f: Fixture, ref: String) async -> BerthError.Code? {
        do throws(BerthError) {
            let writer = try await ContentView(store: f.store).writer(ref: ref, total: Int64(Self.blob.count), expected: f.digest)
            try await writer.write(Self.blob)
            _ = try await writer.commit(size: Int64(Self.blob.count), expected: f.digest, labels: [:])
            return nil
        } catch {
            return error.code
        }
    }

    func inLease<T>(_ lease: String, _ body: () async throws -> T) async rethrows -> T {
        try await RequestContext.$namespace.withValue("default") {
            try await RequestContext.$lease.withValue(lease) { try await body() }
        }
    }

    /// A fixture whose namespace "default" has the leases "first" and "second".
    func fixture() async throws -> Fixture {
        let f = try Fixture()
        try await RequestContext.$namespace.withValue("default") {
            _ = try await f.metadata.leases.create(id: "first", labels: [:])
            _ = try await f.metadata.leases.create(id: "second", labels: [:])
        }
        return f
    }

    /// "second" holds the blob and nothing else, and keeps it through a collection once "first" is gone.
    func expectSecondLeaseKeepsTheBlob(_ f: Fixture) async throws {
        let resource = LeaseResource(id: f.digest.description, type: "content")
        #expect(try await inLease("second") { try await f.metadata.leases.listResources("second") } == [resource])
        try await RequestContext.$namespace.withValue("default") {
            try await f.metadata.leases.delete("first")
            _ = try await f.metadata.gc.collect()
            #expect(try await ContentView(store: f.store).info(f.digest).size == Int64(Self.blob.count))
        }
    }

    @Test func writerForContentTheNamespaceHasAddsItToTheLease() async throws {
        let f = try await fixture()
        #expect(try await inLease("first") { await write(f, ref: "a") } == nil)
        #expect(try await inLease("second") { await write(f, ref: "b") } == .alreadyExists)
        try await expectSecondLeaseKeepsTheBlob(f)
        try await RequestContext.$namespace.withValue("default") {
            try await f.metadata.leases.delete("second")
            _ = try await f.metadata.gc.collect()
            await #expect { try await ContentView(store: f.store).info(f.digest) } throws: { ($0 as? BerthError)?.code == .notFound }
        }
    }

    /// Both writers opened before either committed: the second commit finds the blob there, keeps it in its lease
    /// and drops its ingest.
    @Test func commitThatFindsTheBlobKeepsItInTheLease() async throws {
        let f = try await fixture()
        let content = ContentView(store: f.store)
        let size = Int64(Self.blob.count)
        let first = try await inLease("first") { try await content.writer(ref: "a", total: size, expected: f.digest) }
        let second = try await inLease("second") { try await content.writer(ref: "b", total: size, expected: f.digest) }
        try await first.write(Self.blob)
        try await second.write(Self.blob)
        _ = try await inLease("first") { try await first.commit(size: size, expected: f.digest, labels: [:]) }
        await #expect { try await inLease("second") { _ = try await second.commit(size: size, expected: f.digest, labels: [:]) } }
            throws: { ($0 as? BerthError)?.code == .alreadyExists }
        try await expectSecondLeaseKeepsTheBlob(f)
    }
}
