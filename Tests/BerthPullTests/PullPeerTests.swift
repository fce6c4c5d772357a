import BerthCore
import BerthEngineTestSupport
import BerthImage
import BerthOCI
import BerthRegistry
import BerthTestSupport
import Foundation
import Glibc
import Testing

/// Hosts seen by a credential callback.
final class AskedHosts: @unchecked Sendable {
    private let lock = NSLock()
    private var hosts: [String] = []
    var all: [String] { lock.withLock { hosts } }
    func add(_ host: String) { lock.withLock { hosts.append(host) } }
}

/// Pulls that meet other pulls, dropped connections, auth and containerd itself.
@Suite(.serialized) struct PullPeerTests {
    /// Two pulls of one image at once, through a slowed proxy so they overlap: each blob and manifest is fetched
    /// from the registry once, both succeed, and both leave the same image.
    @Test func concurrentPullsDownloadEachBlobOnce() async throws {
        try await PullFixture.with { fixture in
            let proxy = try TestProxy(upstreamPort: fixture.registry.port, throttle: 20_000)
            defer { proxy.stop() }
            let layout = try await fixture.push(.multiLayer, name: "test/twice")
            let (first, second) = (ProgressLog(), ProgressLog())
            async let a = fixture.pull("test/twice", log: first, host: proxy.host)
            async let b = fixture.pull("test/twice", store: ImageStoreSpec(name: "other", unpacks: [UnpackSpec()]),
                                       log: second, host: proxy.host)
            let (recordA, recordB) = try await (a, b)
            #expect(recordA.target == recordB.target)
            for digest in [layout.manifestConfigDigest] + layout.layers.map(\.digest) {
                #expect(proxy.blobGets(digest.description) == 1, "\(digest): \(proxy.requests)")
            }
            let manifestGets = proxy.requests.filter { $0.hasPrefix("GET ") && $0.contains("/manifests/sha256:") }
            #expect(manifestGets.count <= 1, "\(manifestGets)")
            try await expectPulled(fixture, layout, repository: "test/twice", record: recordA)
            let both = try await inDefault { try await fixture.engine.metadata.images.list(.all) }.map(\.name).sorted()
            #expect(both == [recordA.name, "other"].sorted())
            // Each pull reported every layer as finished one way or the other.
            for log in [first, second] {
                let done = Set(log.names(TransferProgress.Event.complete) + log.names(TransferProgress.Event.alreadyExists))
                #expect(done.isSuperset(of: layout.layers.map { "layer-\($0.digest)" }))
            }
        }
    }

    /// The registry goes away in the middle of a layer: the pull fails and keeps the ingest; the next pull resumes
    /// it with a Range request from where the first stopped, and succeeds.
    @Test func resumesAfterADroppedPull() async throws {
        try await PullFixture.with { fixture in
            let proxy = try TestProxy(upstreamPort: fixture.registry.port)
            defer { proxy.stop() }
            let layout = try await fixture.push(.oci, name: "test/resume")
            let layer = layout.layers[0]
            proxy.cut(layer.digest.description, after: Int(layer.size / 2), thenRefuse: true)
            await #expect(throws: BerthError.self) { try await fixture.pull("test/resume", host: proxy.host) }
            let ingests = try await inDefault { try await fixture.engine.metadata.content.statuses(.all) }
            let partial = try #require(ingests.first { $0.ref == "layer-\(layer.digest)" }, "\(ingests.map(\.ref))")
            #expect(partial.offset > 0 && partial.offset < layer.size)
            let leases = try await inDefault { try await fixture.engine.metadata.leases.list(.all) }
            #expect(leases.isEmpty)

            proxy.setRefusing(false)
            let record = try await fixture.pull("test/resume", host: proxy.host)
            let ranged = proxy.requests.filter { $0.contains("/blobs/\(layer.digest) ") && $0.lowercased().contains("range: bytes=") }
            let resumedAt = try #require(ranged.last.flatMap { $0.split(separator: "=").last }.flatMap { Int64($0.dropLast()) })
            #expect(resumedAt == partial.offset, "\(ranged)")
            try await expectPulled(fixture, layout, repository: "test/resume", record: record)
        }
    }

    /// Basic auth with credentials from the callback (asked once per host); without them the pull is refused.
    @Test func basicAuthThroughTheCallback() async throws {
        try await PullFixture.with(.basic) { fixture in
            let layout = try await fixture.push(.oci, name: "test/basic")
            await #expect(throws: BerthError.self) { try await fixture.pull("test/basic") }
            let asked = AskedHosts()
            let credentials = CredentialSource.callback { host in
                asked.add(host)
                return Credentials(username: TestRegistry.username, secret: TestRegistry.password)
            }
            let record = try await fixture.pull("test/basic", credentials: credentials)
            #expect(asked.all == [fixture.registry.host])
            try await expectPulled(fixture, layout, repository: "test/basic", record: record)
            // Wrong credentials from the callback fail the pull.
            let wrong = CredentialSource.callback { _ in Credentials(username: TestRegistry.username, secret: "nope") }
            await #expect(throws: BerthError.self) {
                try await fixture.pull("test/basic", store: ImageStoreSpec(name: "again"), credentials: wrong)
            }
        }
    }

    /// Token auth: the callback's credentials go to the token server (an OAuth2 POST as the user).
    @Test func tokenAuthThroughTheCallback() async throws {
        try await PullFixture.with(.token) { fixture in
            let layout = try await fixture.push(.oci, name: "test/token")
            let asked = AskedHosts()
            let credentials = CredentialSource.callback { host in
                asked.add(host)
                return Credentials(username: TestRegistry.username, secret: TestRegistry.password)
            }
            let record = try await fixture.pull("test/token", credentials: credentials)
            #expect(asked.all == [fixture.registry.host])
            let tokenRequests = fixture.registry.tokenServer?.requests ?? []
            #expect(tokenRequests.contains { $0.hasPrefix("POST \(TestRegistry.username) ") && $0.contains("repository:test/token:pull") },
                    "\(tokenRequests)")
            try await expectPulled(fixture, layout, repository: "test/token", record: record)
        }
    }

    /// containerd 1.6's `ctr images pull` of the same image into containerd leaves the same blobs with the same
    /// labels, the same image record, and the same snapshots (keys, parents, kinds); our snapshots carry
    /// containerd's daemon-side unpacker label `containerd.io/snapshot.ref` on top.
    @Test func sameResultAsContainerd() async throws {
        try await PullFixture.with { fixture in
            let containerd = try await TestContainerd.start(prefix: "berth-pull-ctd")
            defer { containerd.stop() }
            let layout = try await fixture.push(.multiLayer, name: "test/compare")
            let reference = fixture.reference("test/compare")
            let pulled = try await containerd.ctr(["images", "pull", "--plain-http", reference])
            try #require(pulled.succeeded, "\(pulled.stderr)")
            let record = try await fixture.pull("test/compare")
            try await expectPulled(fixture, layout, repository: "test/compare", record: record)

            // Blobs and their labels.
            var theirs: [String: [String: String]] = [:]
            for line in try await containerd.ctr(["content", "ls"]).stdout.split(separator: "\n").dropFirst() {
                let fields = line.split(whereSeparator: \.isWhitespace)
                guard let digest = fields.first, let last = fields.last else { continue }
                theirs[String(digest)] = last == "-" ? [:] : Dictionary(
                    uniqueKeysWithValues: last.split(separator: ",").map { pair in
                        let parts = pair.split(separator: "=", maxSplits: 1)
                        return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
                    })
            }
            let ours = try await contentLabels(fixture.engine)
            #expect(ours == theirs)

            // The image record.
            let images = try await containerd.ctr(["images", "ls"]).stdout.split(separator: "\n").dropFirst()
            let image = try #require(images.first).split(whereSeparator: \.isWhitespace)
            #expect(String(image[0]) == record.name)
            #expect(String(image[2]) == record.target.digest.description)
            #expect(String(image[1]) == record.target.mediaType)

            // Snapshots: keys, parents, kinds; labels.
            var theirSnapshots: Set<String> = []
            for line in try await containerd.ctr(["snapshots", "ls"]).stdout.split(separator: "\n").dropFirst() {
                let fields = line.split(whereSeparator: \.isWhitespace).map(String.init)
                theirSnapshots.insert(fields.count == 2 ? "\(fields[0]) - \(fields[1])" : fields.joined(separator: " "))
            }
            let snapshots = try await inDefault { try await fixture.engine.snapshotter("overlayfs").walk(.all) }
            let ourSnapshots = Set(snapshots.map { "\($0.name) \($0.parent.isEmpty ? "-" : $0.parent) \($0.kind)" })
            #expect(ourSnapshots == theirSnapshots)
            for snapshot in snapshots {
                let info = try await containerd.ctr(["snapshots", "info", snapshot.name]).stdout
                let object = try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any]
                let labels = object?["Labels"] as? [String: String] ?? [:]
                var mine = snapshot.labels
                mine.removeValue(forKey: "containerd.io/snapshot.ref")
                #expect(mine == labels, "\(snapshot.name)")
            }
        }
    }
}
