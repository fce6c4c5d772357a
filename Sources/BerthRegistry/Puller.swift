import BerthCore
import BerthOCI
import Foundation

/// Fetches an image into a content store: the index or manifest, the chosen platforms' manifests, then configs and
/// layers at most `maxConcurrentDownloads` at a time, each through an ingest (`<kind>-<digest>`, as containerd's
/// `remotes.MakeRefKey`) so an interrupted pull resumes where it stopped. Blobs already committed are skipped.
/// Unpacking, leases and GC labels are the caller's (the pull service's).
public struct Puller: Sendable {
    public let client: RegistryClient
    public let store: any ContentStore
    public let platforms: PlatformMatcher
    /// All matching manifests of an index (`--all-platforms`/several `--platform`), else only the best one.
    public let allMatching: Bool
    public let maxConcurrentDownloads: Int

    public init(
        client: RegistryClient, store: any ContentStore, platforms: PlatformMatcher = .default, allMatching: Bool = false,
        maxConcurrentDownloads: Int = 3
    ) {
        self.client = client
        self.store = store
        self.platforms = platforms
        self.allMatching = allMatching
        self.maxConcurrentDownloads = max(1, maxConcurrentDownloads)
    }

    /// What a pull fetched.
    public struct Result: Sendable {
        /// The resolved top descriptor (what an image record points at).
        public var target: OCIDescriptor
        /// The image manifests chosen (one per platform).
        public var manifests: [OCIDescriptor]
        /// Configs and layers, in manifest order, without duplicates.
        public var blobs: [OCIDescriptor]
        /// Digests downloaded by this pull (the rest were already in the store).
        public var downloaded: Set<Digest>
    }

    public func pull(_ reference: Reference) async throws(BerthError) -> Result {
        let target = try await client.resolve(reference)
        var downloaded = Set<Digest>()
        let topBytes = try await client.fetchManifest(reference, target)
        if try await storeBytes(topBytes, target, kind: MediaType.isIndex(target.mediaType) ? "index" : "manifest") {
            downloaded.insert(target.digest)
        }
        var manifests: [(OCIDescriptor, [UInt8])] = []
        if MediaType.isIndex(target.mediaType) {
            let index = try decode(Index.self, topBytes, target)
            var chosen = platforms.select(index.manifests).filter { MediaType.isManifest($0.mediaType) }
            if !allMatching { chosen = Array(chosen.prefix(1)) }
            guard !chosen.isEmpty else {
                throw .notFound("\(reference): no match for platform in manifest \(target.digest)")
            }
            for descriptor in chosen {
                let bytes = try await client.fetchManifest(reference, descriptor)
                if try await storeBytes(bytes, descriptor, kind: "manifest") { downloaded.insert(descriptor.digest) }
                manifests.append((descriptor, bytes))
            }
        } else if MediaType.isManifest(target.mediaType) {
            manifests = [(target, topBytes)]
        } else {
            throw .notImplemented("\(reference): media type \(target.mediaType) cannot be pulled")
        }
        var blobs: [OCIDescriptor] = []
        var seen = Set<Digest>()
        for (descriptor, bytes) in manifests {
            let manifest = try decode(Manifest.self, bytes, descriptor)
            for blob in [manifest.config] + manifest.layers
            where !MediaType.isNonDistributable(blob.mediaType) && seen.insert(blob.digest).inserted {
                blobs.append(blob)
            }
        }
        let fetched = try await fetchAll(reference, blobs)
        return Result(target: target, manifests: manifests.map(\.0), blobs: blobs, downloaded: downloaded.union(fetched))
    }

    func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], _ descriptor: OCIDescriptor) throws(BerthError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw .invalidArgument("\(descriptor.digest): invalid \(T.self): \(error)")
        }
    }

    /// Downloads blobs with at most `maxConcurrentDownloads` in flight; returns the digests actually downloaded.
    func fetchAll(_ reference: Reference, _ blobs: [OCIDescriptor]) async throws(BerthError) -> Set<Digest> {
        do {
            return try await withThrowingTaskGroup(of: Digest?.self) { group in
                var pending = blobs[...]
                var downloaded = Set<Digest>()
                for _ in 0..<maxConcurrentDownloads {
                    guard let blob = pending.popFirst() else { break }
                    group.addTask { try await fetch(reference, blob) ? blob.digest : nil }
                }
                while let result = try await group.next() {
                    if let result { downloaded.insert(result) }
                    if let blob = pending.popFirst() {
                        group.addTask { try await fetch(reference, blob) ? blob.digest : nil }
                    }
                }
                return downloaded
            }
        } catch {
            throw BerthError.wrap(error)
        }
    }

    /// Fetches one blob through an ingest, resuming from the ingest's offset; false if it was already committed.
    func fetch(_ reference: Reference, _ blob: OCIDescriptor) async throws(BerthError) -> Bool {
        if (try? await store.info(blob.digest)) != nil { return false }
        let kind = MediaType.isConfig(blob.mediaType) ? "config" : "layer"
        let writer = try await store.writer(ref: "\(kind)-\(blob.digest)", total: blob.size, expected: blob.digest)
        do {
            var offset = try await writer.status().offset
            if offset > blob.size {
                try await writer.truncate(0)
                offset = 0
            }
            // From an offset the stream checks size only; the store verifies the digest of the whole at commit.
            var iterator = client.fetchBlob(reference, blob, offset: offset).makeAsyncIterator()
            while let chunk = try await iterator.nextChunk() { try await writer.write(chunk) }
            _ = try await writer.commit(size: blob.size, expected: blob.digest)
        } catch let error where error.code == .alreadyExists {
            await writer.close()
            return false
        } catch {
            await writer.close()
            throw error
        }
        await writer.close()
        return true
    }

    /// Stores an already fetched (and verified) document; false if it was there.
    func storeBytes(_ bytes: [UInt8], _ descriptor: OCIDescriptor, kind: String) async throws(BerthError) -> Bool {
        if (try? await store.info(descriptor.digest)) != nil { return false }
        let writer = try await store.writer(ref: "\(kind)-\(descriptor.digest)", total: descriptor.size, expected: descriptor.digest)
        do {
            try await writer.truncate(0)
            try await writer.write(bytes)
            _ = try await writer.commit(size: descriptor.size, expected: descriptor.digest)
        } catch let error where error.code == .alreadyExists {
            await writer.close()
            return false
        } catch {
            await writer.close()
            throw error
        }
        await writer.close()
        return true
    }
}
