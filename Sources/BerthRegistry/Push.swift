import AsyncHTTPClient
import BerthCore
import BerthOCI
import Foundation
import NIOCore
import NIOHTTP1

extension RegistryClient {
    /// The outcome of starting an upload with a cross-repository mount.
    public enum MountResult: Sendable, Equatable {
        case mounted
        /// The registry could not mount; upload to this session instead.
        case upload(location: String)
    }

    /// The first host of a reference's registry that can push.
    func pushHost(_ reference: Reference) throws(BerthError) -> RegistryHost {
        guard let host = try hosts(for: reference.domain, capability: .push).first else {
            throw .notFound("no push host for \(reference.domain)")
        }
        return host
    }

    /// `HEAD /blobs/<digest>`: the blob's size if the repository has it, nil if not.
    public func blobSize(_ reference: Reference, _ digest: Digest) async throws(BerthError) -> Int64? {
        let host = try pushHost(reference)
        let response = try await send(
            .HEAD, host: host, path: "/\(reference.path)/blobs/\(digest)", scopes: [Self.pushScope(reference.path)])
        switch response.status {
        case .ok:
            try? await drain(response)
            return response.headers.first(name: "Content-Length").flatMap(Int64.init) ?? 0
        case .notFound:
            try? await drain(response)
            return nil
        default: throw await failure(response, "check blob \(digest)")
        }
    }

    /// Starts an upload session, mounting `digest` from repository `from` of the same registry when given.
    public func startUpload(_ reference: Reference, mount digest: Digest? = nil, from: String? = nil)
        async throws(BerthError) -> MountResult
    {
        let host = try pushHost(reference)
        var path = "/\(reference.path)/blobs/uploads/"
        var scopes: Set<String> = [Self.pushScope(reference.path)]
        if let digest, let from {
            path += "?mount=\(digest)&from=\(from)"
            scopes.insert(Self.pullScope(from))
        }
        let response = try await send(.POST, host: host, path: path, scopes: scopes)
        switch response.status {
        case .created where digest != nil:
            try? await drain(response)
            return .mounted
        case .accepted, .created:
            try? await drain(response)
            guard let location = response.headers.first(name: "Location") else {
                throw BerthError(.unknown, "upload to \(reference.name): no Location")
            }
            return .upload(location: absolute(location, host: host))
        default:
            throw await failure(response, "start upload to \(reference.name)")
        }
    }

    /// Uploads a blob in one `PUT` (after the session `POST`), unless the repository already has it.
    public func pushBlob(_ reference: Reference, _ descriptor: OCIDescriptor, bytes: [UInt8]) async throws(BerthError) {
        guard Int64(bytes.count) == descriptor.size else {
            throw .invalidArgument("blob \(descriptor.digest): \(bytes.count) bytes, descriptor says \(descriptor.size)")
        }
        if try await blobSize(reference, descriptor.digest) != nil { return }
        guard case .upload(let location) = try await startUpload(reference) else { return }
        try await finishUpload(reference, location: location, digest: descriptor.digest, body: bytes)
    }

    /// Uploads a blob in chunks (`PATCH` with `Content-Range` each, then `PUT ?digest=`), unless already present.
    /// `mountFrom` names a repository of the same registry to mount from first.
    public func pushBlob<Chunks: AsyncSequence>(
        _ reference: Reference, _ descriptor: OCIDescriptor, chunks: Chunks, mountFrom: String? = nil
    ) async throws(BerthError) where Chunks.Element == [UInt8] {
        if try await blobSize(reference, descriptor.digest) != nil { return }
        let start = try await startUpload(reference, mount: mountFrom == nil ? nil : descriptor.digest, from: mountFrom)
        guard case .upload(var location) = start else { return }
        let host = try pushHost(reference)
        var offset: Int64 = 0
        do {
            for try await chunk in chunks where !chunk.isEmpty {
                let response = try await send(
                    .PATCH, host: host, path: "", url: location,
                    headers: [
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Range", "\(offset)-\(offset + Int64(chunk.count) - 1)"),
                    ],
                    body: chunk, scopes: [Self.pushScope(reference.path)], timeout: .minutes(30))
                guard response.status == .accepted || response.status == .noContent else {
                    throw await failure(response, "upload chunk at \(offset) of \(descriptor.digest)")
                }
                try? await drain(response)
                offset += Int64(chunk.count)
                if let next = response.headers.first(name: "Location") { location = absolute(next, host: host) }
            }
        } catch let error as BerthError {
            throw error
        } catch {
            throw BerthError.wrap(error, "reading \(descriptor.digest)")
        }
        guard offset == descriptor.size else {
            throw .failedPrecondition("blob \(descriptor.digest): sent \(offset) bytes, descriptor says \(descriptor.size)")
        }
        try await finishUpload(reference, location: location, digest: descriptor.digest, body: nil)
    }

    /// `PUT <location>?digest=…` closing an upload session, with the remaining bytes if any.
    func finishUpload(_ reference: Reference, location: String, digest: Digest, body: [UInt8]?) async throws(BerthError) {
        let host = try pushHost(reference)
        let separator = location.contains("?") ? "&" : "?"
        let response = try await send(
            .PUT, host: host, path: "", url: location + separator + "digest=\(digest)",
            headers: [("Content-Type", "application/octet-stream")], body: body,
            scopes: [Self.pushScope(reference.path)], timeout: .minutes(30))
        guard response.status == .created || response.status == .noContent || response.status == .accepted else {
            throw await failure(response, "commit blob \(digest)")
        }
        try? await drain(response)
    }

    /// `PUT /manifests/<tag or digest>` with the document's media type; returns the digest the registry reports.
    @discardableResult
    public func pushManifest(_ reference: Reference, _ descriptor: OCIDescriptor, bytes: [UInt8], tag: String? = nil)
        async throws(BerthError) -> Digest
    {
        let host = try pushHost(reference)
        let object = tag ?? reference.tag ?? descriptor.digest.description
        let response = try await send(
            .PUT, host: host, path: "/\(reference.path)/manifests/\(object)",
            headers: [("Content-Type", descriptor.mediaType)], body: bytes, scopes: [Self.pushScope(reference.path)])
        guard response.status == .created || response.status == .ok else {
            throw await failure(response, "push manifest \(reference.name):\(object)")
        }
        try? await drain(response)
        if let header = response.headers.first(name: "Docker-Content-Digest"), let digest = try? Digest(parsing: header) {
            return digest
        }
        return descriptor.digest
    }

    /// A Location header made absolute against the host.
    func absolute(_ location: String, host: RegistryHost) -> String {
        if location.hasPrefix("http://") || location.hasPrefix("https://") { return location }
        return "\(host.scheme)://\(host.host)" + (location.hasPrefix("/") ? location : "/" + location)
    }
}
