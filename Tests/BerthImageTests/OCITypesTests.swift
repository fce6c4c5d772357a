import BerthCore
import Foundation
import Testing

@testable import BerthOCI

/// Codable OCI documents: real-shaped JSON decodes, and unknown fields survive a round trip.
@Suite struct OCITypesTests {
    static let digestA = "sha256:" + String(repeating: "a", count: 64)
    static let digestB = "sha256:" + String(repeating: "b", count: 64)
    static let digestC = "sha256:" + String(repeating: "c", count: 64)

    static func roundTrip<T: Codable>(_ type: T.Type, _ json: String) throws -> (T, [String: Any], [String: Any]) {
        let value = try JSONDecoder().decode(T.self, from: Data(json.utf8))
        let encoded = try JSONEncoder().encode(value)
        let original = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
        let again = try JSONSerialization.jsonObject(with: encoded) as? [String: Any] ?? [:]
        return (value, original, again)
    }

    @Test func manifestRoundTripKeepsUnknownFields() throws {
        let json = """
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(Self.digestA)","size":7,"x-extra":{"n":[1,2.5,true,null]}},
             "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\(Self.digestB)","size":32654,
                        "urls":["https://example.com/l"],"annotations":{"a":"b"}}],
             "annotations":{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"},
             "vendor.field":"kept"}
            """
        let (manifest, original, again) = try Self.roundTrip(Manifest.self, json)
        #expect(manifest.layers.count == 1)
        #expect(manifest.layers[0].size == 32654)
        #expect(manifest.layers[0].urls == ["https://example.com/l"])
        #expect(manifest.config.digest.description == Self.digestA)
        #expect(manifest.extras["vendor.field"] == .string("kept"))
        #expect(NSDictionary(dictionary: original).isEqual(to: again))
    }

    @Test func indexAndPlatformRoundTrip() throws {
        let json = """
            {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
             "manifests":[
               {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"\(Self.digestA)","size":528,
                "platform":{"architecture":"arm64","os":"linux","variant":"v8","os.features":["x"],"future":1}},
               {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"\(Self.digestB)","size":528,
                "platform":{"architecture":"amd64","os":"linux"}}]}
            """
        let (index, original, again) = try Self.roundTrip(Index.self, json)
        #expect(index.manifests.count == 2)
        #expect(index.manifests[0].platform?.variant == "v8")
        #expect(index.manifests[0].platform?.extras["future"] == .int(1))
        #expect(NSDictionary(dictionary: original).isEqual(to: again))
    }

    @Test func imageConfigRoundTrip() throws {
        let json = """
            {"created":"2026-11-29T12:00:00.123456789Z","architecture":"amd64","os":"linux",
             "config":{"User":"1000:1000","ExposedPorts":{"80/tcp":{}},"Env":["PATH=/bin"],"Entrypoint":["/bin/sh","-c"],
                       "Cmd":["echo","hi"],"Volumes":{"/data":{}},"WorkingDir":"/w","Labels":{"l":"v"},"StopSignal":"SIGQUIT",
                       "ArgsEscaped":true,"OnBuild":null},
             "rootfs":{"type":"layers","diff_ids":["\(Self.digestA)","\(Self.digestB)"]},
             "history":[{"created":"2026-11-29T12:00:00Z","created_by":"/bin/sh -c x","empty_layer":true}],
             "container":"abc","docker_version":"24.0"}
            """
        let (config, original, again) = try Self.roundTrip(ImageConfig.self, json)
        #expect(config.config?.exposedPorts == ["80/tcp"])
        #expect(config.config?.volumes == ["/data"])
        #expect(config.config?.stopSignal == "SIGQUIT")
        #expect(config.config?.extras["ArgsEscaped"] == .bool(true))
        #expect(config.rootfs.diffIDs.map(\.description) == [Self.digestA, Self.digestB])
        #expect(config.history?.first?.emptyLayer == true)
        #expect(config.extras["docker_version"] == .string("24.0"))
        #expect(NSDictionary(dictionary: original).isEqual(to: again))
    }

    @Test func invalidDocumentsAreRejected() {
        #expect(throws: (any Error).self) {
            try JSONDecoder().decode(OCIDescriptor.self, from: Data(#"{"mediaType":"x","digest":"sha256:abc","size":1}"#.utf8))
        }
        #expect(throws: (any Error).self) {
            try JSONDecoder().decode(Manifest.self, from: Data(#"{"schemaVersion":1,"name":"x"}"#.utf8))
        }
    }

    @Test func mediaTypeClassification() {
        #expect(MediaType.isManifest(MediaType.dockerManifest) && MediaType.isManifest(MediaType.ociManifest))
        #expect(MediaType.isIndex(MediaType.dockerManifestList) && MediaType.isIndex(MediaType.ociIndex))
        #expect(!MediaType.isIndex(MediaType.ociManifest))
        #expect(MediaType.compression(of: MediaType.ociLayer) == .uncompressed)
        #expect(MediaType.compression(of: MediaType.ociLayerGzip) == .gzip)
        #expect(MediaType.compression(of: MediaType.ociLayerZstd) == .zstd)
        #expect(MediaType.compression(of: MediaType.dockerLayerGzip) == .gzip)
        #expect(MediaType.compression(of: MediaType.dockerForeignLayerGzip) == .gzip)
        #expect(MediaType.compression(of: MediaType.ociConfig) == nil)
        #expect(MediaType.isNonDistributable(MediaType.dockerForeignLayerGzip))
        #expect(MediaType.isNonDistributable(MediaType.ociLayerNonDistributableGzip))
        #expect(!MediaType.isNonDistributable(MediaType.ociLayerGzip))
    }

    @Test func sha256AndChainIDs() throws {
        #expect(try Identity.sha256Digest([]).encoded == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(try Identity.sha256Digest(Array("abc".utf8)).encoded == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let bytes = (0..<5).flatMap { _ in (0...255).map { UInt8($0) } }
        #expect(try Identity.sha256Digest(bytes).encoded == "d414b085826eb06778483ba35564dc849e643359f69ed9747878ba6e54985bed")
        let ids = try [Self.digestA, Self.digestB, Self.digestC].map { (text: String) throws(BerthError) in try Digest(parsing: text) }
        #expect(try Identity.chainID([]) == nil)
        #expect(try Identity.chainID([ids[0]]) == ids[0])
        let chain = try Identity.chainIDs(ids).map(\.description)
        #expect(chain == [
            Self.digestA,
            "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c",
            "sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588",
        ])
    }
}

/// Image references, checked against containerd's `reference/docker` rules.
@Suite struct ReferenceTests {
    @Test(arguments: [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/foo/bar", "docker.io/foo/bar:latest", "foo/bar:latest"),
        ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("127.0.0.1:5000/a/b/c:v1.0-rc_1", "127.0.0.1:5000/a/b/c:v1.0-rc_1", "127.0.0.1:5000/a/b/c:v1.0-rc_1"),
        ("Registry.Example.com/x", "Registry.Example.com/x:latest", "Registry.Example.com/x:latest"),
        ("foo/b__ar-baz.q", "docker.io/foo/b__ar-baz.q:latest", "foo/b__ar-baz.q:latest"),
    ])
    func dockerNormalisation(input: String, full: String, familiar: String) throws {
        let reference = try Reference.parseDocker(input)
        #expect(reference.description == full)
        #expect(reference.familiar == familiar)
    }

    @Test func digestsAndTags() throws {
        let digest = "sha256:" + String(repeating: "7", count: 64)
        let both = try Reference.parseNormalized("busybox:1@\(digest)")
        #expect(both.tag == "1" && both.digest?.description == digest)
        let docker = try Reference.parseDocker("busybox:1@\(digest)")
        #expect(docker.description == "docker.io/library/busybox@\(digest)")
        #expect(docker.object == digest)
        let hostPort = try Reference.parseDocker("localhost:5000/x")
        #expect(hostPort.domain == "localhost:5000" && hostPort.path == "x" && hostPort.object == "latest")
        #expect(throws: BerthError.invalidArgument("repository name must have at least one component")) {
            try Reference.parse("")
        }
        #expect(try Reference.parse("a/b").domain == "a")
        let noDefault = try Reference.parseNormalized("a/b")
        #expect(noDefault.tag == nil && noDefault.name == "docker.io/a/b")
    }

    @Test(arguments: [
        ("", "invalid reference format"),
        ("Busybox", "repository name must be lowercase"),
        ("foo/Bar:tag", "repository name must be lowercase"),
        ("busybox:", "invalid reference format"),
        ("busybox:-tag", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("-a/b", "invalid reference format"),
        ("busybox@sha256:123", "invalid reference format"),
        ("busybox@sha256:" + String(repeating: "A", count: 64), "invalid checksum digest format"),
        (String(repeating: "a", count: 64), "cannot specify 64-byte hexadecimal strings"),
        ("x/" + String(repeating: "a", count: 260), "must not be more than 255 characters"),
        ("busybox:" + String(repeating: "t", count: 129), "invalid reference format"),
    ])
    func invalidReferences(input: String, message: String) {
        do {
            _ = try Reference.parseDocker(input)
            Issue.record("\(input) parsed")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains(message), "\(error.message)")
        }
    }
}

/// `platforms` behaviour: parse, format, normalise, match and order.
@Suite struct PlatformTests {
    @Test(arguments: [
        ("linux/arm64", "linux", "arm64", nil as String?, "linux/arm64"),
        ("linux/arm64/v8", "linux", "arm64", "v8", "linux/arm64/v8"),
        ("linux/arm", "linux", "arm", nil, "linux/arm"),
        ("linux/arm/v6", "linux", "arm", "v6", "linux/arm/v6"),
        ("linux/arm/v7", "linux", "arm", "v7", "linux/arm/v7"),
        ("arm", "linux", "arm", nil, "linux/arm"),
        ("armel", "linux", "arm", "v6", "linux/arm/v6"),
        ("armhf", "linux", "arm", nil, "linux/arm"),
        ("Aarch64", "linux", "arm64", nil, "linux/arm64"),
        ("x86_64", "linux", "amd64", nil, "linux/amd64"),
        ("Linux/x86_64", "linux", "amd64", nil, "linux/amd64"),
        ("i386", "linux", "386", nil, "linux/386"),
        ("s390x", "linux", "s390x", nil, "linux/s390x"),
        ("macOS", "darwin", Platforms.host.architecture, nil, "darwin/" + Platforms.host.architecture),
    ])
    func parse(input: String, os: String, arch: String, variant: String?, formatted: String) throws {
        let platform = try Platforms.parse(input)
        #expect(platform.os == os && platform.architecture == arch && platform.variant == variant)
        #expect(Platforms.format(platform) == formatted)
    }

    @Test(arguments: ["", "/linux/arm", "linux/arm/", "linux /arm", "linux/&arm", "linux/arm/foo/bar", "*", "linux/*", "foo"])
    func parseRejects(input: String) {
        #expect(throws: BerthError.self) { try Platforms.parse(input) }
    }

    @Test func hostDefault() {
        #if arch(x86_64)
        #expect(Platforms.hostString == "linux/amd64")
        #elseif arch(arm64)
        #expect(Platforms.hostString == "linux/arm64/v8")
        #endif
        #expect(PlatformMatcher.default.matches(Platforms.host))
        #expect(Platforms.format(OCIPlatform(os: "", architecture: "amd64")) == "unknown")
    }

    @Test func onlyMatchesCompatiblePlatformsInOrder() throws {
        let amd64 = PlatformMatcher.only(try Platforms.parse("linux/amd64"))
        #expect(amd64.matches(OCIPlatform(os: "linux", architecture: "amd64")))
        #expect(amd64.matches(OCIPlatform(os: "linux", architecture: "x86_64")))
        #expect(amd64.matches(OCIPlatform(os: "linux", architecture: "386")))
        #expect(!amd64.matches(OCIPlatform(os: "linux", architecture: "arm64")))
        #expect(!amd64.matches(OCIPlatform(os: "windows", architecture: "amd64")))
        #expect(amd64.less(OCIPlatform(os: "linux", architecture: "amd64"), OCIPlatform(os: "linux", architecture: "386")))

        let arm64 = PlatformMatcher.only(try Platforms.parse("linux/arm64"))
        #expect(arm64.matches(OCIPlatform(os: "linux", architecture: "arm64", variant: "v8")))
        #expect(arm64.matches(OCIPlatform(os: "linux", architecture: "arm", variant: "v7")))
        #expect(arm64.matches(OCIPlatform(os: "linux", architecture: "arm", variant: "v5")))
        #expect(!arm64.matches(OCIPlatform(os: "linux", architecture: "amd64")))

        let armv6 = PlatformMatcher.only(try Platforms.parse("linux/arm/v6"))
        #expect(armv6.matches(OCIPlatform(os: "linux", architecture: "arm", variant: "v5")))
        #expect(!armv6.matches(OCIPlatform(os: "linux", architecture: "arm", variant: "v7")))

        let strict = PlatformMatcher.onlyStrict(try Platforms.parse("linux/amd64"))
        #expect(!strict.matches(OCIPlatform(os: "linux", architecture: "386")))
    }

    @Test func selectFromIndex() throws {
        func descriptor(_ hex: Character, _ platform: OCIPlatform?) throws -> OCIDescriptor {
            OCIDescriptor(mediaType: MediaType.ociManifest, digest: try Digest(parsing: "sha256:" + String(repeating: hex, count: 64)),
                       size: 1, platform: platform)
        }
        let list = [
            try descriptor("1", OCIPlatform(os: "linux", architecture: "386")),
            try descriptor("2", OCIPlatform(os: "linux", architecture: "arm64", variant: "v8")),
            try descriptor("3", OCIPlatform(os: "linux", architecture: "amd64")),
            try descriptor("4", nil),
        ]
        let amd64 = PlatformMatcher.only(try Platforms.parse("linux/amd64")).select(list)
        #expect(amd64.map { $0.digest.encoded.first } == ["3", "1", "4"])
        let all = try PlatformMatcher.from(specifiers: [], allPlatforms: true).select(list)
        #expect(all.count == 4)
        let two = try PlatformMatcher.from(specifiers: ["linux/arm64", "linux/386"]).select(list)
        #expect(two.map { $0.digest.encoded.first } == ["1", "2", "4"])
    }
}
