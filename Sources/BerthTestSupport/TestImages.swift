import BerthCore
import BerthOCI
import Crypto
import Foundation
import Glibc

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`) holding one test image under `tag`.
public struct TestImageLayout: Sendable {
    /// The layout directory.
    public let path: String
    /// The `org.opencontainers.image.ref.name` of the image in `index.json`.
    public let tag: String
    /// The full name in `io.containerd.image.name` (what `ctr images import` names it).
    public let imageName: String
    /// The top descriptor: a manifest, or an index for multi-platform images.
    public let descriptor: OCIDescriptor
    /// The manifest for the host platform (the descriptor itself for single-platform images).
    public let manifest: OCIDescriptor
    /// The host-platform image's config, layers and their uncompressed digests.
    public let config: ImageConfig
    public let layers: [OCIDescriptor]
    /// The host-platform image's config blob.
    public let manifestConfigDigest: BerthCore.Digest
    public var diffIDs: [BerthCore.Digest] { config.rootfs.diffIDs }

    /// The path of a blob in the layout.
    public func blobPath(_ digest: BerthCore.Digest) -> String { "\(path)/blobs/\(digest.algorithm)/\(digest.encoded)" }

    /// A blob's bytes.
    public func blob(_ digest: BerthCore.Digest) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: blobPath(digest))) }

    /// `tar -C layout -cf <archive> .`: an OCI archive for `ctr images import`.
    @discardableResult
    public func archive(to archivePath: String) async throws -> String {
        try await TestCommand.check(
            "/usr/bin/tar", ["--sort=name", "--numeric-owner", "--owner=0", "--group=0", "-C", path, "-cf", archivePath, "."])
        return archivePath
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://HOST/NAME:TAG` (all platforms), with `--dest-creds` when the registry
    /// has auth and `--dest-cert-dir` for its CA when TLS.
    public func push(to registry: TestRegistry, name: String, tag pushTag: String? = nil) async throws {
        var arguments = ["copy", "--quiet", "--all", "--preserve-digests"]
        if registry.mode.auth != .none {
            arguments += ["--dest-creds", "\(TestRegistry.username):\(TestRegistry.password)"]
        }
        if registry.mode.tls, let caPath = registry.caPath {
            let certDir = registry.directory + "/skopeo-certs"
            try? FileManager.default.createDirectory(atPath: certDir, withIntermediateDirectories: true)
            if !FileManager.default.fileExists(atPath: certDir + "/ca.crt") {
                try FileManager.default.copyItem(atPath: caPath, toPath: certDir + "/ca.crt")
            }
            arguments += ["--dest-cert-dir", certDir]
        } else {
            arguments += ["--dest-tls-verify=false"]
        }
        var source = "oci:\(path):\(tag)"
        var dirTransport: String?
        if descriptor.mediaType == MediaType.dockerManifest {
            // skopeo's oci: transport only lists OCI media types; give it the image in its dir: layout instead.
            let dir = path + ".dir-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data("Directory Transport Version: 1.1\n".utf8).write(to: URL(fileURLWithPath: dir + "/version"))
            try FileManager.default.copyItem(atPath: blobPath(descriptor.digest), toPath: dir + "/manifest.json")
            for digest in [manifestConfigDigest] + layers.map(\.digest) {
                try? FileManager.default.copyItem(atPath: blobPath(digest), toPath: "\(dir)/\(digest.encoded)")
            }
            source = "dir:\(dir)"
            dirTransport = dir
        }
        defer { if let dirTransport { try? FileManager.default.removeItem(atPath: dirTransport) } }
        arguments += [source, "docker://\(registry.host)/\(name):\(pushTag ?? tag)"]
        try await TestCommand.check("/usr/bin/skopeo", arguments, timeout: 300)
    }
}

/// What the several-layer image's final filesystem must show (for tests of apply/unpack).
public enum TestImageExpectations {
    /// Files the upper layers keep or add.
    public static let present = ["data/keep.txt", "opq/new.txt", "data/hard1", "data/hard2", "data/xattr.txt", "bin/busybox"]
    /// Files a whiteout or opaque dir removes.
    public static let absent = ["data/gone.txt", "opq/old.txt", "opq/sub/old2.txt", "gonedir/file.txt", "gonedir"]
    /// `data/hard1` and `data/hard2` are one inode.
    public static let hardlinks = ("data/hard1", "data/hard2")
    /// `data/xattr.txt` carries this extended attribute.
    public static let xattr = (path: "data/xattr.txt", name: "user.berth.test", value: "layered")
}

/// Test images built from Debian's `busybox-static`, written as OCI image layouts.
public enum TestImages {
    /// Applets linked to `/bin/busybox` in the rootfs.
    public static let applets = [
        "sh", "echo", "true", "false", "sleep", "cat", "id", "ls", "env", "pwd", "hostname", "printf", "wc", "head", "mkdir",
        "rm", "touch", "ps", "kill",
    ]
    public static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    static let created = "2026-01-01T00:00:00Z"

    /// The kinds of test image.
    public enum Kind: Sendable {
        /// One-layer busybox, OCI manifest.
        case oci
        /// One-layer busybox, Docker schema 2 manifest and media types.
        case docker
        /// An OCI index with the host's image and an arm64 (or amd64 on arm64 hosts) entry.
        case multiPlatform
        /// Three layers: busybox, files, then whiteouts, an opaque dir, hardlinks and an xattr.
        case multiLayer
    }

    /// Builds an image of `kind` as a layout at `directory` (created), tagged `tag`, named `name` for containerd.
    public static func build(
        _ kind: Kind, in directory: String, name: String = "docker.io/library/busybox", tag: String = "latest"
    ) async throws -> TestImageLayout {
        let blobs = directory + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        let work = directory + ".work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let docker = kind == .docker

        var layers: [(OCIDescriptor, BerthCore.Digest)] = []
        let base = work + "/base"
        try makeBusyboxRootfs(at: base)
        layers.append(try await writeLayer(from: base, work: work, blobs: blobs, docker: docker))
        if kind == .multiLayer {
            let files = work + "/files"
            try makeFilesLayer(at: files)
            layers.append(try await writeLayer(from: files, work: work, blobs: blobs, docker: false))
            let changes = work + "/changes"
            try makeChangesLayer(at: changes)
            layers.append(try await writeLayer(from: changes, work: work, blobs: blobs, docker: false))
        }

        let host = Platforms.host
        let (manifestDescriptor, config) = try writeImage(
            platform: host, layers: layers, blobs: blobs, docker: docker)
        let manifestData = try Data(contentsOf: URL(fileURLWithPath: "\(blobs)/\(manifestDescriptor.digest.encoded)"))
        let configDigest = try JSONDecoder().decode(Manifest.self, from: manifestData).config.digest
        var top = manifestDescriptor
        if kind == .multiPlatform {
            let other = host.architecture == "arm64"
                ? OCIPlatform(os: "linux", architecture: "amd64") : OCIPlatform(os: "linux", architecture: "arm64", variant: "v8")
            let (otherDescriptor, _) = try writeImage(platform: other, layers: layers, blobs: blobs, docker: false)
            var entries = [manifestDescriptor, otherDescriptor]
            entries[0].platform = host
            entries[1].platform = other
            let index = Index(manifests: entries)
            top = try writeBlob(try encode(index), mediaType: MediaType.ociIndex, blobs: blobs)
        }
        var entry = top
        entry.annotations = [Annotation.refName: tag, Annotation.containerdImageName: "\(name):\(tag)"]
        let layoutIndex = Index(mediaType: MediaType.ociIndex, manifests: [entry])
        try encode(layoutIndex).write(to: URL(fileURLWithPath: directory + "/index.json"))
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: directory + "/oci-layout"))
        return TestImageLayout(
            path: directory, tag: tag, imageName: "\(name):\(tag)", descriptor: top, manifest: manifestDescriptor,
            config: config, layers: layers.map(\.0), manifestConfigDigest: configDigest)
    }

    /// A rootfs with `/bin/busybox`, its applet links, `/etc/passwd` and `/etc/group`, and the usual empty dirs.
    public static func makeBusyboxRootfs(at root: String) throws {
        let fm = FileManager.default
        for dir in ["bin", "tmp", "proc", "sys", "dev", "etc", "root"] {
            try fm.createDirectory(atPath: "\(root)/\(dir)", withIntermediateDirectories: true)
        }
        chmod("\(root)/tmp", 0o1777)
        chmod("\(root)/root", 0o700)
        try fm.copyItem(atPath: "/bin/busybox", toPath: "\(root)/bin/busybox")
        for applet in applets { try fm.createSymbolicLink(atPath: "\(root)/bin/\(applet)", withDestinationPath: "busybox") }
        try Data("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n".utf8)
            .write(to: URL(fileURLWithPath: "\(root)/etc/passwd"))
        try Data("root:x:0:\nnobody:x:65534:\n".utf8).write(to: URL(fileURLWithPath: "\(root)/etc/group"))
    }

    /// Layer 2 of the several-layer image: files the next layer deletes, keeps or hides.
    static func makeFilesLayer(at root: String) throws {
        for (path, text) in [
            ("data/keep.txt", "keep\n"), ("data/gone.txt", "gone\n"), ("opq/old.txt", "old\n"), ("opq/sub/old2.txt", "old2\n"),
            ("gonedir/file.txt", "in a removed dir\n"),
        ] {
            try write(text, to: "\(root)/\(path)")
        }
    }

    /// Layer 3: `.wh.` whiteouts for a file and a dir, an opaque dir, a hardlink pair and a file with an xattr.
    static func makeChangesLayer(at root: String) throws {
        try write("", to: "\(root)/data/.wh.gone.txt")
        try write("", to: "\(root)/.wh.gonedir")
        try write("", to: "\(root)/opq/.wh..wh..opq")
        try write("new\n", to: "\(root)/opq/new.txt")
        try write("linked\n", to: "\(root)/data/hard1")
        guard link("\(root)/data/hard1", "\(root)/data/hard2") == 0 else { throw TestRegistryError("link: errno \(errno)") }
        let x = TestImageExpectations.xattr
        try write("has an xattr\n", to: "\(root)/\(x.path)")
        try setXattr("\(root)/\(x.path)", name: x.name, value: x.value)
    }

    /// setxattr(2), looked up at run time: Swift's Glibc module does not import <sys/xattr.h>.
    public static func setXattr(_ path: String, name: String, value: String) throws {
        typealias SetXattr = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer, Int, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setxattr") else {
            throw TestRegistryError("setxattr not found")
        }
        let function = unsafeBitCast(symbol, to: SetXattr.self)
        let status = value.withCString { function(path, name, $0, strlen($0), 0) }
        guard status == 0 else { throw TestRegistryError("setxattr \(name) on \(path): errno \(errno)") }
    }

    /// getxattr(2) as text, nil when absent.
    public static func getXattr(_ path: String, name: String) -> String? {
        typealias GetXattr = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer, Int) -> Int
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "getxattr") else { return nil }
        let function = unsafeBitCast(symbol, to: GetXattr.self)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let length = function(path, name, &buffer, buffer.count)
        return length < 0 ? nil : String(decoding: buffer[0..<length], as: UTF8.self)
    }

    static func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// Tars `root` (GNU tar, sorted, numeric root owners, fixed mtime, PAX xattrs), gzips it (`gzip -n`) into a blob.
    /// Returns the layer descriptor and its diff ID.
    static func writeLayer(from root: String, work: String, blobs: String, docker: Bool) async throws -> (OCIDescriptor, BerthCore.Digest) {
        let tarPath = work + "/layer-\(UUID().uuidString.prefix(8)).tar"
        let entries = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        try await TestCommand.check(
            "/usr/bin/tar",
            ["--sort=name", "--numeric-owner", "--owner=0", "--group=0", "--mtime=@1767225600", "--xattrs",
             "--xattrs-include=user.*", "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
             "-C", root, "-cf", tarPath] + entries)
        let diffID = try sha256File(tarPath)
        try await TestCommand.check("/usr/bin/gzip", ["-n", "-6", tarPath])
        let data = try Data(contentsOf: URL(fileURLWithPath: tarPath + ".gz"))
        try? FileManager.default.removeItem(atPath: tarPath + ".gz")
        let descriptor = try writeBlob(data, mediaType: docker ? MediaType.dockerLayerGzip : MediaType.ociLayerGzip, blobs: blobs)
        return (descriptor, diffID)
    }

    /// Writes the config and manifest of one platform's image; returns the manifest descriptor and the config.
    static func writeImage(platform: OCIPlatform, layers: [(OCIDescriptor, BerthCore.Digest)], blobs: String, docker: Bool) throws
        -> (OCIDescriptor, ImageConfig)
    {
        let config = ImageConfig(
            architecture: platform.architecture, os: platform.os, variant: platform.variant,
            config: ContainerConfig(env: ["PATH=" + path], cmd: ["sh"]),
            rootfs: RootFS(diffIDs: layers.map(\.1)),
            history: layers.indices.map { History(created: created, createdBy: "berth test layer \($0)") },
            created: created)
        let configDescriptor = try writeBlob(
            try encode(config), mediaType: docker ? MediaType.dockerConfig : MediaType.ociConfig, blobs: blobs)
        let manifest = Manifest(
            mediaType: docker ? MediaType.dockerManifest : MediaType.ociManifest, config: configDescriptor,
            layers: layers.map(\.0))
        let descriptor = try writeBlob(
            try encode(manifest), mediaType: docker ? MediaType.dockerManifest : MediaType.ociManifest, blobs: blobs)
        return (descriptor, config)
    }

    /// JSON with sorted keys and unescaped slashes, so documents are stable.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    /// Stores `data` as a blob and returns its descriptor.
    static func writeBlob(_ data: Data, mediaType: String, blobs: String) throws -> OCIDescriptor {
        let digest = try Digest(parsing: "sha256:" + hex(SHA256.hash(data: data)))
        try data.write(to: URL(fileURLWithPath: "\(blobs)/\(digest.encoded)"))
        return OCIDescriptor(mediaType: mediaType, digest: digest, size: Int64(data.count))
    }

    /// sha256 of a file, read in 1 MiB chunks.
    public static func sha256File(_ path: String) throws -> BerthCore.Digest {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw TestRegistryError("cannot open \(path)") }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return try Digest(parsing: "sha256:" + hex(hasher.finalize()))
    }

    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
