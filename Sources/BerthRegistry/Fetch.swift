import AsyncHTTPClient
import BerthCore
import BerthOCI
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

extension RegistryClient {
    /// Resolves a reference to the descriptor of its manifest or index, as containerd's resolver: on each host with
    /// the resolve capability, `HEAD /v2/<path>/manifests/<tag|digest>` with the manifest Accept list, falling back to
    /// GET when the registry gives no digest (then the digest is computed); a digest reference must match.
    public func resolve(_ reference: Reference) async throws(BerthError) -> OCIDescriptor {
        let hosts = try hosts(for: reference.domain, capability: .resolve)
        let scopes: Set<String> = [Self.pullScope(reference.path)]
        let accept = MediaType.manifestAccept.joined(separator: ", ")
        var lastError = BerthError.notFound("\(reference): not found")
        for host in hosts {
            for method in [HTTPMethod.HEAD, .GET] {
                let response: HTTPClientResponse
                do {
                    response = try await send(
                        method, host: host, path: "/\(reference.path)/manifests/\(reference.object)",
                        headers: [("Accept", accept)], scopes: scopes)
                } catch {
                    lastError = error
                    break
                }
                if response.status == .notFound {
                    try? await drain(response)
                    lastError = .notFound("\(reference): not found")
                    break
                }
                guard response.status == .ok else {
                    lastError = await failure(response, "resolve \(reference)")
                    break
                }
                let mediaType = response.headers.first(name: "Content-Type").map { String($0.split(separator: ";")[0]) } ?? ""
                let headerDigest = response.headers.first(name: "Docker-Content-Digest").flatMap { try? Digest(parsing: $0) }
                if method == .HEAD {
                    try? await drain(response)
                    guard let digest = headerDigest ?? reference.digest,
                        let size = response.headers.first(name: "Content-Length").flatMap(Int64.init)
                    else { continue }
                    if let wanted = reference.digest, wanted != digest {
                        throw .failedPrecondition("\(reference): registry returned digest \(digest)")
                    }
                    return OCIDescriptor(mediaType: Self.mediaType(mediaType, body: nil), digest: digest, size: size)
                }
                let body = try await collect(response, limit: Self.maxManifestSize, what: "resolve \(reference)")
                let digest = try Identity.sha256Digest(body)
                if let wanted = reference.digest, wanted != digest {
                    throw .failedPrecondition("\(reference): content has digest \(digest)")
                }
                return OCIDescriptor(mediaType: Self.mediaType(mediaType, body: body), digest: digest, size: Int64(body.count))
            }
        }
        throw lastError
    }

    /// A manifest's media type: the header's, or the document's own `mediaType` when the header is generic.
    static func mediaType(_ header: String, body: [UInt8]?) -> String {
        if !header.isEmpty, header != "application/json", header != "application/octet-stream" { return header }
        guard let body, let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else { return header }
        if let mediaType = object["mediaType"] as? String { return mediaType }
        return object["manifests"] != nil ? MediaType.ociIndex : MediaType.ociManifest
    }

    /// Fetches a manifest or index by descriptor (`GET /manifests/<digest>`), verifying size and digest.
    public func fetchManifest(_ reference: Reference, _ descriptor: OCIDescriptor) async throws(BerthError) -> [UInt8] {
        guard descriptor.size <= Int64(Self.maxManifestSize) else {
            throw .invalidArgument("manifest \(descriptor.digest) is \(descriptor.size) bytes, more than \(Self.maxManifestSize)")
        }
        var lastError = BerthError.notFound("\(reference.name)@\(descriptor.digest): not found")
        for host in try hosts(for: reference.domain, capability: .pull) {
            let response = try await send(
                .GET, host: host, path: "/\(reference.path)/manifests/\(descriptor.digest)",
                headers: [("Accept", ([descriptor.mediaType] + MediaType.manifestAccept).joined(separator: ", "))],
                scopes: [Self.pullScope(reference.path)])
            guard response.status == .ok else {
                lastError = await failure(response, "fetch \(reference.name)@\(descriptor.digest)")
                continue
            }
            let body = try await collect(response, limit: Self.maxManifestSize, what: "fetch \(descriptor.digest)")
            guard Int64(body.count) == descriptor.size else {
                throw .failedPrecondition("\(descriptor.digest): got \(body.count) bytes, expected \(descriptor.size)")
            }
            let digest = try Identity.sha256Digest(body)
            guard digest == descriptor.digest else {
                throw .failedPrecondition("\(descriptor.digest): content has digest \(digest)")
            }
            return body
        }
        throw lastError
    }

    /// Streams a blob (`GET /blobs/<digest>`) from `offset`, verifying as bytes arrive: never more than the
    /// descriptor's size, and at the end the size and (from offset 0, or with `prefix` hashing the bytes before
    /// `offset`) the digest; the last `next()` throws on a mismatch, so a consumer that commits only after the
    /// stream ends commits nothing. A dropped connection is resumed with `Range` from the bytes already received.
    /// `verifyDigest: false` leaves the digest to the consumer (a content store verifies it again at commit, so
    /// hashing twice is wasted CPU); sizes are always checked.
    public func fetchBlob(
        _ reference: Reference, _ descriptor: OCIDescriptor, offset: Int64 = 0, prefix: SHA256? = nil,
        verifyDigest: Bool = true
    ) -> BlobStream {
        BlobStream(client: self, reference: reference, descriptor: descriptor, offset: offset,
                   hasher: !verifyDigest ? nil : offset == 0 ? SHA256() : prefix)
    }

    /// Reads a whole blob into memory (configs, small layers), verified.
    public func fetchBlobBytes(_ reference: Reference, _ descriptor: OCIDescriptor) async throws(BerthError) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(min(descriptor.size, 64 << 20)))
        var iterator = fetchBlob(reference, descriptor).makeAsyncIterator()
        while let chunk = try await iterator.nextChunk() { bytes += chunk }
        return bytes
    }
}

/// A verified blob download as an async sequence of byte chunks (see `RegistryClient.fetchBlob`).
public struct BlobStream: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let client: RegistryClient
    let reference: Reference
    let descriptor: OCIDescriptor
    let offset: Int64
    let hasher: SHA256?

    public func makeAsyncIterator() -> Iterator {
        Iterator(stream: self, received: offset, hasher: hasher)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let stream: BlobStream
        /// Bytes of the blob received so far, counting from 0 (the initial offset included).
        public private(set) var received: Int64
        var hasher: SHA256?
        var body: HTTPClientResponse.Body.AsyncIterator?
        var finished = false
        var reconnects = 0
        /// Bytes past the resume point from a server that ignored `Range`.
        var pending: [UInt8]?

        init(stream: BlobStream, received: Int64, hasher: SHA256?) {
            self.stream = stream
            self.received = received
            self.hasher = hasher
        }

        public mutating func next() async throws -> [UInt8]? { try await nextChunk() }

        /// `next()` with the typed error.
        public mutating func nextChunk() async throws(BerthError) -> [UInt8]? {
            guard !finished else { return nil }
            let size = stream.descriptor.size
            while true {
                if received == size, body == nil {
                    try verify()
                    return nil
                }
                if body == nil { body = try await open() }
                let chunk: ByteBuffer?
                do {
                    if let bytes = pending {
                        pending = nil
                        chunk = ByteBuffer(bytes: bytes)
                    } else {
                        chunk = try await body?.next()
                    }
                } catch {
                    // The connection dropped mid-body: resume from what we have.
                    body = nil
                    reconnects += 1
                    guard reconnects <= stream.client.retry.attempts else {
                        throw BerthError(.unavailable, "fetch \(stream.descriptor.digest): \(error)")
                    }
                    try await stream.client.backoff(reconnects)
                    continue
                }
                guard let chunk else {
                    body = nil
                    if received < size {
                        reconnects += 1
                        guard reconnects <= stream.client.retry.attempts else {
                            throw BerthError(.unavailable, "fetch \(stream.descriptor.digest): body ended at \(received) of \(size) bytes")
                        }
                        continue
                    }
                    try verify()
                    return nil
                }
                let bytes = Array(buffer: chunk)
                guard received + Int64(bytes.count) <= size else {
                    finished = true
                    throw BerthError(.failedPrecondition, "\(stream.descriptor.digest): more than the expected \(size) bytes")
                }
                received += Int64(bytes.count)
                hasher?.update(data: bytes)
                if bytes.isEmpty { continue }
                return bytes
            }
        }

        mutating func verify() throws(BerthError) {
            finished = true
            guard received == stream.descriptor.size else {
                throw BerthError(.failedPrecondition, "\(stream.descriptor.digest): got \(received) bytes, expected \(stream.descriptor.size)")
            }
            if let hasher {
                let hex = hasher.finalize().map { String(format: "%02x", $0) }.joined()
                guard stream.descriptor.digest.algorithm == "sha256", hex == stream.descriptor.digest.encoded else {
                    throw BerthError(.failedPrecondition, "\(stream.descriptor.digest): content has digest sha256:\(hex)")
                }
            }
        }

        /// Starts (or resumes with `Range`) the download on the first host that has the blob.
        mutating func open() async throws(BerthError) -> HTTPClientResponse.Body.AsyncIterator {
            let client = stream.client
            let reference = stream.reference
            let descriptor = stream.descriptor
            var lastError = BerthError.notFound("\(reference.name)@\(descriptor.digest): not found")
            for host in try client.hosts(for: reference.domain, capability: .pull) {
                let headers = received > 0 ? [("Range", "bytes=\(received)-")] : []
                let response: HTTPClientResponse
                do {
                    response = try await client.send(
                        .GET, host: host, path: "/\(reference.path)/blobs/\(descriptor.digest)", headers: headers,
                        scopes: [RegistryClient.pullScope(reference.path)], timeout: .hours(6))
                } catch {
                    lastError = error
                    continue
                }
                if response.status == .partialContent || (response.status == .ok && received == 0) {
                    return response.body.makeAsyncIterator()
                }
                if response.status == .ok {
                    // The server ignored Range: skip what we already have.
                    var iterator = response.body.makeAsyncIterator()
                    var skip = received
                    while skip > 0 {
                        guard let chunk = try? await iterator.next() else { break }
                        if Int64(chunk.readableBytes) > skip {
                            pending = Array(Array(buffer: chunk)[Int(skip)...])
                            break
                        }
                        skip -= Int64(chunk.readableBytes)
                    }
                    return iterator
                }
                lastError = await client.failure(response, "fetch \(reference.name)@\(descriptor.digest)")
                if response.status != .notFound { break }
            }
            finished = true
            throw lastError
        }
    }
}
