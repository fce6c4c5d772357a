import BerthCore
import BerthOCI
import BerthRegistry
import BerthTestSupport
import Crypto
import Foundation
import Testing

/// hosts.toml, credentials and challenges, without a network.
@Suite struct RegistryConfigTests {
    static func tempDir() throws -> String {
        let dir = "/tmp/berth-hosts-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func defaultsWithoutConfig() throws {
        let resolver = HostsResolver()
        #expect(try resolver.hosts(for: "docker.io") == [RegistryHost(scheme: "https", host: "registry-1.docker.io")])
        #expect(try resolver.hosts(for: "example.com:5000") == [RegistryHost(host: "example.com:5000")])
        let local = try resolver.hosts(for: "127.0.0.1:5000")
        #expect(local.count == 1 && local[0].scheme == "http" && local[0].skipVerify)
        #expect(try HostsResolver(defaultScheme: "http").hosts(for: "example.com")[0].scheme == "http")
        #expect(try HostsResolver(defaultScheme: "https").hosts(for: "localhost:5000")[0].scheme == "https")
    }

    @Test func hostsTomlLikeContainerd() throws {
        let root = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/registry.example.com_5000_", withIntermediateDirectories: true)
        try Data("""
            server = "https://registry.example.com:5000"
            skip_verify = false

            [host."https://mirror.example.com/proxy"]
              capabilities = ["pull", "resolve"]
              ca = "mirror-ca.crt"
              client = [["/abs/client.cert", "client.key"]]
              skip_verify = true
              [host."https://mirror.example.com/proxy".header]
                x-custom = "1"
                x-list = ["a", "b"]

            [host."http://127.0.0.1:9999"]
              capabilities = ["push"]
              override_path = true
            """.utf8).write(to: URL(fileURLWithPath: root + "/registry.example.com_5000_/hosts.toml"))
        let hosts = try HostsResolver(configPath: root).hosts(for: "registry.example.com:5000")
        #expect(hosts.count == 3)
        #expect(hosts[0].baseURL == "https://mirror.example.com/proxy/v2")
        #expect(hosts[0].capabilities == [.pull, .resolve])
        #expect(hosts[0].caCertificates == [root + "/registry.example.com_5000_/mirror-ca.crt"])
        #expect(hosts[0].clientCertificates == [["/abs/client.cert", root + "/registry.example.com_5000_/client.key"]])
        #expect(hosts[0].skipVerify)
        #expect(hosts[0].headers == ["x-custom": ["1"], "x-list": ["a", "b"]])
        #expect(hosts[1].baseURL == "http://127.0.0.1:9999")
        #expect(hosts[1].capabilities == [.push])
        #expect(hosts[2].baseURL == "https://registry.example.com:5000/v2")
        #expect(hosts[2].capabilities == .all)

        // _default applies to any other host; a hosts.toml without server keeps the default server last.
        try FileManager.default.createDirectory(atPath: root + "/_default", withIntermediateDirectories: true)
        try Data("[host.\"https://cache.local\"]\n  capabilities = [\"pull\"]\n".utf8)
            .write(to: URL(fileURLWithPath: root + "/_default/hosts.toml"))
        let other = try HostsResolver(configPath: root).hosts(for: "quay.io")
        #expect(other.map(\.baseURL) == ["https://cache.local/v2", "https://quay.io/v2"])

        try Data("capabilities = [\"fly\"]\n".utf8).write(to: URL(fileURLWithPath: root + "/_default/hosts.toml"))
        #expect(throws: BerthError.self) { try HostsResolver(configPath: root).hosts(for: "quay.io") }
    }

    @Test func credentials() throws {
        #expect(Credentials.parse(user: "u:p:q") == Credentials(username: "u", secret: "p:q"))
        #expect(Credentials.parse(user: "u") == Credentials(username: "u", secret: ""))
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let auth = Data("alice:s3cret".utf8).base64EncodedString()
        try Data("""
            {"auths":{"https://index.docker.io/v1/":{"auth":"\(auth)"},"127.0.0.1:5000":{"username":"bob","password":"pw"},
                      "tok.example":{"identitytoken":"refresh"}}}
            """.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        #expect(try Credentials.fromDockerConfig(path: dir + "/config.json", host: "docker.io") == Credentials(username: "alice", secret: "s3cret"))
        #expect(try Credentials.fromDockerConfig(path: dir + "/config.json", host: "127.0.0.1:5000") == Credentials(username: "bob", secret: "pw"))
        #expect(try Credentials.fromDockerConfig(path: dir + "/config.json", host: "tok.example") == Credentials(username: "", secret: "refresh"))
        #expect(try Credentials.fromDockerConfig(path: dir + "/config.json", host: "quay.io") == nil)
    }

    @Test func challenges() {
        let parsed = AuthChallenge.parse(
            #"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push", Basic realm="x""#)
        #expect(parsed.count == 2)
        #expect(parsed[0].scheme == "bearer")
        #expect(parsed[0].parameters["realm"] == "https://auth.example/token")
        #expect(parsed[0].parameters["scope"] == "repository:a/b:pull,push")
        #expect(parsed[1] == AuthChallenge(scheme: "basic", parameters: ["realm": "x"]))
    }
}

/// The client against Debian's docker-registry in every mode, with images pushed by skopeo and by Berth.
@Suite(.serialized) struct RegistryClientTests {
    struct Setup {
        var registry: TestRegistry
        var layout: TestImageLayout
        var dir: String
        func cleanup() {
            registry.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    static func setup(_ mode: TestRegistry.Mode, kind: TestImages.Kind = .oci) async throws -> Setup {
        let registry = try await TestRegistry.start(mode)
        let dir = "/tmp/berth-client-\(UUID().uuidString.prefix(8))"
        do {
            let layout = try await TestImages.build(kind, in: dir + "/layout")
            try await layout.push(to: registry, name: "test/busybox")
            return Setup(registry: registry, layout: layout, dir: dir)
        } catch {
            registry.stop()
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    /// Resolves, fetches the manifest, config and layer, and checks each against the layout.
    static func pullAndCheck(_ client: RegistryClient, _ setup: Setup, reference text: String) async throws {
        let reference = try Reference.parseDocker(text)
        let descriptor = try await client.resolve(reference)
        #expect(descriptor.digest == setup.layout.descriptor.digest)
        #expect(descriptor.size == setup.layout.descriptor.size)
        #expect(descriptor.mediaType == setup.layout.descriptor.mediaType)
        let manifestBytes = try await client.fetchManifest(reference, descriptor)
        #expect(Data(manifestBytes) == (try setup.layout.blob(descriptor.digest)))
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(manifestBytes))
        let config = try await client.fetchBlobBytes(reference, manifest.config)
        #expect(Data(config) == (try setup.layout.blob(manifest.config.digest)))
        let layer = try await client.fetchBlobBytes(reference, manifest.layers[0])
        #expect(Data(layer) == (try setup.layout.blob(manifest.layers[0].digest)))
    }

    @Test func plainResolveFetchByTagAndDigest() async throws {
        let setup = try await Self.setup(.plain, kind: .docker)
        defer { setup.cleanup() }
        let client = RegistryClient()
        defer { Task { await client.shutdown() } }
        let host = try client.hosts(for: setup.registry.host, capability: .pull)[0]
        #expect(try await client.ping(host) == 200)
        try await Self.pullAndCheck(client, setup, reference: "\(setup.registry.host)/test/busybox:latest")
        try await Self.pullAndCheck(client, setup, reference: "\(setup.registry.host)/test/busybox@\(setup.layout.descriptor.digest)")
        await #expect(throws: BerthError.self) {
            try await client.resolve(try Reference.parseDocker("\(setup.registry.host)/test/busybox:missing"))
        }
        do {
            _ = try await client.resolve(try Reference.parseDocker("\(setup.registry.host)/test/nothing:latest"))
            Issue.record("resolved a missing repository")
        } catch {
            #expect(error.code == .notFound)
        }
    }

    @Test func multiPlatformIndexResolves() async throws {
        let setup = try await Self.setup(.plain, kind: .multiPlatform)
        defer { setup.cleanup() }
        let client = RegistryClient()
        defer { Task { await client.shutdown() } }
        let reference = try Reference.parseDocker("\(setup.registry.host)/test/busybox:latest")
        let descriptor = try await client.resolve(reference)
        #expect(descriptor.mediaType == MediaType.ociIndex)
        let index = try JSONDecoder().decode(Index.self, from: Data(try await client.fetchManifest(reference, descriptor)))
        let chosen = try #require(PlatformMatcher.default.select(index.manifests).first)
        #expect(chosen.digest == setup.layout.manifest.digest)
    }

    @Test func basicAuth() async throws {
        let setup = try await Self.setup(.basic)
        defer { setup.cleanup() }
        let anonymous = RegistryClient()
        defer { Task { await anonymous.shutdown() } }
        let reference = try Reference.parseDocker("\(setup.registry.host)/test/busybox:latest")
        await #expect(throws: BerthError.self) { try await anonymous.resolve(reference) }
        let wrong = RegistryClient(credentials: .fixed(Credentials(username: TestRegistry.username, secret: "nope")))
        defer { Task { await wrong.shutdown() } }
        await #expect(throws: BerthError.self) { try await wrong.resolve(reference) }
        let client = RegistryClient(credentials: .fixed(Credentials(username: TestRegistry.username, secret: TestRegistry.password)))
        defer { Task { await client.shutdown() } }
        try await Self.pullAndCheck(client, setup, reference: reference.description)
    }

    @Test func tlsWithTheCAFromHostsToml() async throws {
        let setup = try await Self.setup(.tls)
        defer { setup.cleanup() }
        let reference = try Reference.parseDocker("\(setup.registry.host)/test/busybox:latest")
        // Loopback defaults to plain HTTP; ask for https without trusting the CA: the handshake fails.
        let untrusted = RegistryClient(hosts: HostsResolver(defaultScheme: "https"), retry: RetryPolicy(attempts: 1))
        defer { Task { await untrusted.shutdown() } }
        await #expect(throws: BerthError.self) { try await untrusted.resolve(reference) }
        let configPath = setup.dir + "/certs.d"
        let hostDir = configPath + "/" + setup.registry.host
        try FileManager.default.createDirectory(atPath: hostDir, withIntermediateDirectories: true)
        try Data("server = \"https://\(setup.registry.host)\"\n[host.\"https://\(setup.registry.host)\"]\n  ca = \"\(setup.registry.caPath ?? "")\"\n".utf8)
            .write(to: URL(fileURLWithPath: hostDir + "/hosts.toml"))
        let client = RegistryClient(hosts: HostsResolver(configPath: configPath))
        defer { Task { await client.shutdown() } }
        try await Self.pullAndCheck(client, setup, reference: reference.description)
        // skip_verify instead of the CA, from a _default dir.
        let skipPath = setup.dir + "/certs-skip.d"
        try FileManager.default.createDirectory(atPath: skipPath + "/_default", withIntermediateDirectories: true)
        try Data("server = \"https://\(setup.registry.host)\"\nskip_verify = true\n".utf8)
            .write(to: URL(fileURLWithPath: skipPath + "/_default/hosts.toml"))
        let skipping = RegistryClient(hosts: HostsResolver(configPath: skipPath))
        defer { Task { await skipping.shutdown() } }
        try await Self.pullAndCheck(skipping, setup, reference: reference.description)
    }

    @Test func tokenAuthAnonymousPullAndCredentialedPush() async throws {
        let setup = try await Self.setup(.token)
        defer { setup.cleanup() }
        let server = try #require(setup.registry.tokenServer)
        let client = RegistryClient()
        defer { Task { await client.shutdown() } }
        try await Self.pullAndCheck(client, setup, reference: "\(setup.registry.host)/test/busybox:latest")
        #expect(server.requests.contains { $0.hasPrefix("GET - ") && $0.contains("repository:test/busybox:pull") })
        // Anonymous tokens carry no push right.
        let target = try Reference.parseDocker("\(setup.registry.host)/anon/copy:latest")
        await #expect(throws: BerthError.self) {
            try await client.pushBlob(target, setup.layout.layers[0], bytes: Array(try setup.layout.blob(setup.layout.layers[0].digest)))
        }
        let pusher = RegistryClient(credentials: .fixed(Credentials(username: TestRegistry.username, secret: TestRegistry.password)))
        defer { Task { await pusher.shutdown() } }
        try await Self.pushLayout(pusher, setup.layout, to: target)
        #expect(server.requests.contains { $0.hasPrefix("POST \(TestRegistry.username) ") && $0.contains("repository:anon/copy:pull,push") })
        try await Self.pullAndCheck(client, setup, reference: target.description)
    }

    /// Pushes config (monolithic) and layers (chunked, 64 KiB), then the manifest by tag.
    static func pushLayout(_ client: RegistryClient, _ layout: TestImageLayout, to reference: Reference, mountFrom: String? = nil) async throws {
        let manifestBytes = try layout.blob(layout.manifest.digest)
        let manifest = try JSONDecoder().decode(Manifest.self, from: manifestBytes)
        try await client.pushBlob(reference, manifest.config, bytes: Array(try layout.blob(manifest.config.digest)))
        for layer in manifest.layers {
            let data = Array(try layout.blob(layer.digest))
            let chunks = stride(from: 0, to: data.count, by: 65536).map { Array(data[$0..<min($0 + 65536, data.count)]) }
            let stream = AsyncStream<[UInt8]> { continuation in
                for chunk in chunks { continuation.yield(chunk) }
                continuation.finish()
            }
            try await client.pushBlob(reference, layer, chunks: stream, mountFrom: mountFrom)
        }
        try await client.pushManifest(reference, layout.manifest, bytes: Array(manifestBytes))
    }

    @Test func pushChunkedAndMountThenSkopeoReads() async throws {
        let registry = try await TestRegistry.start(.basic)
        let dir = "/tmp/berth-client-\(UUID().uuidString.prefix(8))"
        defer {
            registry.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        let layout = try await TestImages.build(.multiLayer, in: dir + "/layout")
        let client = RegistryClient(credentials: .fixed(Credentials(username: TestRegistry.username, secret: TestRegistry.password)))
        defer { Task { await client.shutdown() } }
        let first = try Reference.parseDocker("\(registry.host)/berth/layers:v1")
        try await Self.pushLayout(client, layout, to: first)
        let second = try Reference.parseDocker("\(registry.host)/berth/mounted:v1")
        for layer in layout.layers { #expect(try await client.blobSize(second, layer.digest) == nil) }
        #expect(try await client.startUpload(second, mount: layout.layers[0].digest, from: "berth/layers") == .mounted)
        try await Self.pushLayout(client, layout, to: second, mountFrom: "berth/layers")
        for layer in layout.layers { #expect(try await client.blobSize(second, layer.digest) == layer.size) }
        for name in ["berth/layers:v1", "berth/mounted:v1"] {
            let inspect = try await TestCommand.run(
                "/usr/bin/skopeo",
                ["inspect", "--tls-verify=false", "--creds", "\(TestRegistry.username):\(TestRegistry.password)", "docker://\(registry.host)/\(name)"])
            #expect(inspect.succeeded, "\(inspect.stderr)")
            #expect(inspect.stdout.contains(layout.manifest.digest.description))
        }
    }

    @Test func resumesAfterDroppedConnectionAndRetries503() async throws {
        let setup = try await Self.setup(.plain)
        defer { setup.cleanup() }
        let proxy = try TestProxy(upstreamPort: setup.registry.port, fail503: 1)
        defer { proxy.stop() }
        proxy.cut(after: 200_000, thenRefuse: false)
        let client = RegistryClient()
        defer { Task { await client.shutdown() } }
        let reference = try Reference.parseDocker("127.0.0.1:\(proxy.port)/test/busybox:latest")
        let layer = setup.layout.layers[0]
        #expect(layer.size > 400_000)
        let bytes = try await client.fetchBlobBytes(reference, layer)
        #expect(Data(bytes) == (try setup.layout.blob(layer.digest)))
        let blobGets = proxy.requests.filter { $0.contains("/blobs/\(layer.digest)") }
        #expect(blobGets.count == 3, "\(blobGets)")  // 503, cut, resumed
        #expect(blobGets.last?.lowercased().contains("range: bytes=") == true)
    }

    @Test func resumeFromAnOffsetWithThePrefixHash() async throws {
        let setup = try await Self.setup(.plain)
        defer { setup.cleanup() }
        let client = RegistryClient()
        defer { Task { await client.shutdown() } }
        let reference = try Reference.parseDocker("\(setup.registry.host)/test/busybox:latest")
        let layer = setup.layout.layers[0]
        let whole = Array(try setup.layout.blob(layer.digest))
        let offset = 123_457
        var prefix = SHA256()
        prefix.update(data: whole[0..<offset])
        var rest: [UInt8] = []
        for try await chunk in client.fetchBlob(reference, layer, offset: Int64(offset), prefix: prefix) { rest += chunk }
        #expect(rest == Array(whole[offset...]))
        // A wrong prefix fails the digest check at the end.
        var wrong = SHA256()
        wrong.update(data: [1, 2, 3])
        await #expect(throws: (any Error).self) {
            for try await _ in client.fetchBlob(reference, layer, offset: Int64(offset), prefix: wrong) {}
        }
    }

    @Test func tamperedBlobFailsAndCommitsNothing() async throws {
        let setup = try await Self.setup(.plain)
        defer { setup.cleanup() }
        let layer = setup.layout.layers[0]
        let stored = setup.registry.blobDataPath(layer.digest.description)
        var data = try Data(contentsOf: URL(fileURLWithPath: stored))
        data[data.count / 2] ^= 0xff
        try data.write(to: URL(fileURLWithPath: stored))
        let client = RegistryClient()
        defer { Task { await client.shutdown() } }
        let reference = try Reference.parseDocker("\(setup.registry.host)/test/busybox:latest")
        // A consumer that writes to an ingest file and renames it into place only when the stream ends cleanly.
        let ingest = setup.dir + "/ingest"
        let committed = setup.dir + "/committed"
        FileManager.default.createFile(atPath: ingest, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: ingest))
        do {
            for try await chunk in client.fetchBlob(reference, layer) { try handle.write(contentsOf: chunk) }
            try FileManager.default.moveItem(atPath: ingest, toPath: committed)
            Issue.record("tampered blob accepted")
        } catch let error as BerthError {
            #expect(error.code == .failedPrecondition)
            #expect(error.message.contains("content has digest"))
        }
        try handle.close()
        #expect(!FileManager.default.fileExists(atPath: committed))
    }
}
