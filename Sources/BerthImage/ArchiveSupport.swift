import BerthArchive
import BerthCore
import BerthOCI
import Foundation

/// A client's transfer stream read as a `ByteSource` (what the tar reader pulls from).
final class TransferStreamSource: ByteSource {
    let stream: any TransferByteStream
    init(_ stream: any TransferByteStream) { self.stream = stream }
    func read() async throws(BerthError) -> [UInt8] { try await stream.read() }
}

/// Writes to a client's transfer stream in chunks of at most `chunk` bytes (the streaming service sends each
/// write as one `Data` message); `finish` does not close the stream, the caller does.
final class TransferStreamSink: ByteSink {
    let stream: any TransferByteStream
    let chunk: Int
    private(set) var count: Int64 = 0

    init(_ stream: any TransferByteStream, chunk: Int = 256 << 10) {
        self.stream = stream
        self.chunk = chunk
    }

    func write(_ bytes: [UInt8]) async throws(BerthError) {
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            try await stream.write(Array(bytes[offset..<end]))
            count += Int64(end - offset)
            offset = end
        }
    }

    func finish() async throws(BerthError) {}
}

/// Content helpers shared by import, export and push; everything runs in the request's namespace (and lease).
struct ContentAccess {
    let content: any ContentMetadata
    let leases: any LeaseManager

    /// Manifests, indexes and configs larger than this are refused (containerd's import JSON limit is 20 MiB).
    static let jsonLimit: Int64 = 20 << 20

    /// A whole (small) blob: manifests, indexes, configs.
    func read(_ digest: Digest, limit: Int64 = jsonLimit) async throws(BerthError) -> [UInt8] {
        let reader = try await content.reader(digest)
        guard reader.size <= limit else {
            await reader.close()
            throw .invalidArgument("blob \(digest) is too large (\(reader.size) bytes, limit \(limit))")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(reader.size))
        do {
            while Int64(bytes.count) < reader.size {
                let chunk = try await reader.read(at: Int64(bytes.count), count: Int(reader.size) - bytes.count)
                guard !chunk.isEmpty else { break }
                bytes += chunk
            }
        } catch {
            await reader.close()
            throw error
        }
        await reader.close()
        guard Int64(bytes.count) == reader.size else { throw .internalError("short read of \(digest)") }
        return bytes
    }

    /// Keeps an already present blob alive under the request's lease (the metadata store only adds blobs it
    /// commits).
    func protect(_ digest: Digest) async {
        guard let lease = RequestContext.lease else { return }
        try? await leases.addResource(lease, LeaseResource(id: digest.description, type: "content"))
    }

    /// Stores `bytes` (a manifest or index the transfer made) as a blob; an existing blob is kept.
    func write(_ bytes: [UInt8], ref: String, labels: [String: String] = [:]) async throws(BerthError) -> Digest {
        let digest = try Digests.sha256(bytes)
        let writer: any MetadataContentWriter
        do {
            writer = try await content.writer(ref: ref, total: Int64(bytes.count), expected: digest)
        } catch let error where error.code == .alreadyExists {
            await protect(digest)
            return digest
        }
        do {
            try await writer.truncate(0)
            try await writer.write(bytes)
            _ = try await writer.commit(size: Int64(bytes.count), expected: digest, labels: labels)
        } catch let error where error.code == .alreadyExists {
            await protect(digest)
        } catch {
            await writer.close()
            throw error
        }
        await writer.close()
        return digest
    }

    /// Sets containerd's GC reference labels on `parent` for its children (`containerd.io/gc.ref.content.m.<i>`
    /// for manifests, `.config` for a config, `.l.<i>` for layers, `.<i>` otherwise), as `images.SetChildrenLabels`.
    func labelChildren(_ parent: Digest, _ children: [OCIDescriptor]) async throws(BerthError) {
        guard !children.isEmpty else { return }
        let labels = childGCLabels(children)
        var info = try await content.info(parent)
        for (key, value) in labels { info.labels[key] = value }
        _ = try await content.update(info, paths: labels.keys.sorted().map { "labels.\($0)" })
    }

    /// Runs `body` under a new lease that expires in a day (containerd's client `WithLease`), deleting the lease
    /// afterwards whatever happens: on failure the GC then collects what the transfer wrote.
    func withLease<T>(_ body: () async throws(BerthError) -> T) async throws(BerthError) -> T {
        if RequestContext.lease != nil { return try await body() }
        let expire = RFC3339.format(Date().addingTimeInterval(24 * 3600))
        let lease = try await leases.create(id: "", labels: [GCLabels.expire: expire])
        let result: Result<T, BerthError>
        do {
            let value = try await RequestContext.$lease.withValue(lease.id) { () async throws -> T in try await body() }
            result = .success(value)
        } catch let error as BerthError {
            result = .failure(error)
        } catch {
            result = .failure(.wrap(error))
        }
        try? await leases.delete(lease.id)
        return try result.get()
    }
}

/// JSON written byte-for-byte as Go's `encoding/json` writes containerd's structs, so that manifests and indexes
/// Berth makes get the digests containerd would give them.
enum GoJSON {
    /// A JSON string literal with Go's escaping (`<`, `>`, `&` as `\u003c`…, no `\/`).
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<", ">", "&", "\u{2028}", "\u{2029}":
                out += String(format: "\\u%04x", scalar.value)
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// An OCI descriptor as `ocispec.Descriptor` marshals it (mediaType, digest, size, annotations, platform).
    static func descriptor(_ d: OCIDescriptor) -> String {
        var fields = ["\"mediaType\":" + string(d.mediaType), "\"digest\":" + string(d.digest.description),
                      "\"size\":\(d.size)"]
        if let annotations = d.annotations, !annotations.isEmpty {
            let pairs = annotations.keys.sorted().map { string($0) + ":" + string(annotations[$0] ?? "") }
            fields.append("\"annotations\":{" + pairs.joined(separator: ",") + "}")
        }
        if let p = d.platform {
            var platform = ["\"architecture\":" + string(p.architecture), "\"os\":" + string(p.os)]
            if let version = p.osVersion, !version.isEmpty { platform.append("\"os.version\":" + string(version)) }
            if let features = p.osFeatures, !features.isEmpty {
                platform.append("\"os.features\":[" + features.map(string).joined(separator: ",") + "]")
            }
            if let variant = p.variant, !variant.isEmpty { platform.append("\"variant\":" + string(variant)) }
            fields.append("\"platform\":{" + platform.joined(separator: ",") + "}")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// An index as `ocispec.Index` (schemaVersion and manifests).
    static func index(_ manifests: [OCIDescriptor]) -> [UInt8] {
        Array(("{\"schemaVersion\":2,\"manifests\":[" + manifests.map(descriptor).joined(separator: ",") + "]}").utf8)
    }

    /// The Docker schema 2 manifest containerd's importer builds for a `docker save` image.
    static func dockerManifest(config: OCIDescriptor, layers: [OCIDescriptor]) -> [UInt8] {
        Array(("{\"schemaVersion\":2,\"mediaType\":" + string(MediaType.dockerManifest) + ",\"config\":"
            + descriptor(config) + ",\"layers\":[" + layers.map(descriptor).joined(separator: ",") + "]}").utf8)
    }
}

/// Archive entry names, cleaned as Go's `path.Clean` (`a/../b` is `b`); names that leave the archive root are
/// refused.
enum ArchivePath {
    static func clean(_ name: String) throws(BerthError) -> String {
        if name.hasPrefix("/") { throw .invalidArgument("archive entry \(name.debugDescription): absolute path") }
        var parts: [Substring] = []
        for part in name.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                guard parts.popLast() != nil else {
                    throw .invalidArgument("archive entry \(name.debugDescription): path escapes the archive (..)")
                }
            default: parts.append(part)
            }
        }
        return parts.joined(separator: "/")
    }

    /// `dir(name)/target` cleaned: where a symlink entry points inside the archive.
    static func resolve(_ name: String, link: String) throws(BerthError) -> String {
        if link.hasPrefix("/") { throw .invalidArgument("archive entry \(name.debugDescription): absolute link") }
        let dir = name.split(separator: "/").dropLast().joined(separator: "/")
        return try clean(dir.isEmpty ? link : dir + "/" + link)
    }

    /// The digest an OCI layout names a blob by (`blobs/<alg>/<hex>`), nil for other names.
    static func blobDigest(_ name: String) -> Digest? {
        let parts = name.split(separator: "/")
        guard parts.count == 3, parts[0] == "blobs" else { return nil }
        return try? Digest(algorithm: String(parts[1]), encoded: String(parts[2]))
    }
}
