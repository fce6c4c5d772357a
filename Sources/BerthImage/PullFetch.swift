import BerthCore
import BerthOCI
import BerthRegistry
import Foundation

/// One pull in progress: the registry client, the namespaced stores, the pull's lease and the shared coordinator.
/// Every method runs with `RequestContext.lease` bound to `lease`, so ingests, blobs and snapshots are leased.
struct PullSession: Sendable {
    let client: RegistryClient
    let reference: Reference
    let namespace: String
    let lease: String
    let content: any ContentMetadata
    let leases: any LeaseManager
    let coordinator: PullCoordinator
    let downloads: AsyncSemaphore
    let progress: PullProgress
    let source: DistributionSource

    /// How a blob got into the store.
    enum Outcome: Sendable, Equatable {
        /// This pull downloaded it.
        case downloaded
        /// Another pull downloaded it while this one waited.
        case shared
        /// It was there before.
        case existed
    }

    /// Bytes gathered per content write.
    static let writeSize = 1 << 20

    func lockKey(_ digest: Digest) -> String { "content/\(namespace)/\(digest)" }

    func exists(_ digest: Digest) async -> ContentInfo? { try? await content.info(digest) }

    /// Puts existing content in this pull's lease (it may belong to nobody else yet) and adds the distribution
    /// source label.
    func adopt(_ info: ContentInfo, labels: [String: String] = [:]) async throws(BerthError) {
        try await leases.addResource(lease, LeaseResource(id: info.digest.description, type: "content"))
        var wanted = labels
        if let value = source.value(adding: info.labels[source.key]) { wanted[source.key] = value }
        wanted = wanted.filter { info.labels[$0.key] != $0.value }
        guard !wanted.isEmpty else { return }
        var update = info
        update.labels = wanted
        _ = try await content.update(update, paths: wanted.keys.sorted().map { "labels." + $0 })
    }

    /// A manifest or index: read from the store when present, else fetched (verified) and committed with its GC
    /// labels (children computed by `labels` from the bytes) and the distribution source label.
    func document(_ descriptor: OCIDescriptor, labels: ([UInt8]) throws(BerthError) -> [String: String])
        async throws(BerthError) -> [UInt8]
    {
        progress.report(TransferProgress.Event.waiting, descriptor)
        return try await coordinator.withLock(lockKey(descriptor.digest)) { () throws(BerthError) -> [UInt8] in
            if let info = await exists(descriptor.digest) {
                let bytes = try await readAll(descriptor.digest)
                try await adopt(info, labels: try labels(bytes))
                progress.report(TransferProgress.Event.alreadyExists, descriptor, progress: descriptor.size)
                return bytes
            }
            let bytes = try await client.fetchManifest(reference, descriptor)
            var wanted = try labels(bytes)
            if let value = source.value(adding: nil) { wanted[source.key] = value }
            let writer = try await openWriter(refKey(descriptor), descriptor)
            guard let writer else {
                if let info = await exists(descriptor.digest) { try await adopt(info, labels: wanted) }
                progress.report(TransferProgress.Event.alreadyExists, descriptor, progress: descriptor.size)
                return bytes
            }
            do throws(BerthError) {
                try await writer.truncate(0)
                try await writer.write(bytes)
                _ = try await writer.commit(size: descriptor.size, expected: descriptor.digest, labels: wanted)
            } catch let error where error.code == .alreadyExists {
                if let info = await exists(descriptor.digest) { try await adopt(info, labels: wanted) }
            } catch {
                await writer.close()
                throw error
            }
            await writer.close()
            progress.report(TransferProgress.Event.complete, descriptor, progress: descriptor.size)
            return bytes
        }
    }

    /// A config or layer, streamed into an ingest (resuming one an earlier pull left), at most
    /// `maxConcurrentDownloads` at once. A blob another pull is downloading is waited for, not fetched twice.
    func blob(_ descriptor: OCIDescriptor) async throws(BerthError) -> Outcome {
        if let info = await exists(descriptor.digest) {
            try await adopt(info)
            progress.report(TransferProgress.Event.alreadyExists, descriptor, progress: descriptor.size)
            return .existed
        }
        return try await coordinator.withLock(lockKey(descriptor.digest)) { () throws(BerthError) -> Outcome in
            if let info = await exists(descriptor.digest) {
                try await adopt(info)
                progress.report(TransferProgress.Event.complete, descriptor, progress: descriptor.size)
                return .shared
            }
            await downloads.acquire()
            do throws(BerthError) {
                let outcome = try await download(descriptor)
                await downloads.release()
                return outcome
            } catch {
                await downloads.release()
                throw error
            }
        }
    }

    private func download(_ descriptor: OCIDescriptor) async throws(BerthError) -> Outcome {
        let ref = refKey(descriptor)
        guard let writer = try await openWriter(ref, descriptor) else {
            if let info = await exists(descriptor.digest) { try await adopt(info) }
            progress.report(TransferProgress.Event.alreadyExists, descriptor, progress: descriptor.size)
            return .existed
        }
        let labels = source.value(adding: nil).map { [source.key: $0] } ?? [:]
        // Chunks are gathered into writes of up to `writeSize` (fewer hops to the writer, whose large writes hash
        // while they hit the file); what is buffered is written out before a failure leaves the ingest to resume.
        var pending: [UInt8] = []
        do {
            var offset = try await writer.status().offset
            if offset > descriptor.size {
                try await writer.truncate(0)
                offset = 0
            }
            progress.downloading(descriptor, offset)
            // The stream checks the size; the commit verifies the digest of the whole blob (also after a resume).
            var iterator = client.fetchBlob(reference, descriptor, offset: offset, verifyDigest: false)
                .makeAsyncIterator()
            pending.reserveCapacity(Self.writeSize)
            while let chunk = try await iterator.nextChunk() {
                pending += chunk
                if pending.count >= Self.writeSize {
                    try await writer.write(pending)
                    pending.removeAll(keepingCapacity: true)
                }
                progress.downloading(descriptor, iterator.received)
            }
            if !pending.isEmpty { try await writer.write(pending) }
            _ = try await writer.commit(size: descriptor.size, expected: descriptor.digest, labels: labels)
        } catch let error where error.code == .alreadyExists {
            await writer.close()
            if let info = await exists(descriptor.digest) { try await adopt(info) }
        } catch {
            if error.code != .failedPrecondition, !pending.isEmpty { try? await writer.write(pending) }
            await writer.close()
            if error.code == .failedPrecondition {
                // Wrong size or digest: drop the ingest so the next pull starts over instead of resuming bad bytes.
                try? await content.abort(ref)
            }
            throw error
        }
        await writer.close()
        progress.report(TransferProgress.Event.complete, descriptor, progress: descriptor.size)
        return .downloaded
    }

    /// Opens the ingest, or nil when the blob got committed meanwhile. An ingest locked by another client (a
    /// `ctr pull` writing the same ref) is waited for until it commits or unlocks, as containerd's fetcher does.
    private func openWriter(_ ref: String, _ descriptor: OCIDescriptor) async throws(BerthError)
        -> (any MetadataContentWriter)?
    {
        var attempts = 0
        while true {
            do {
                return try await content.writer(ref: ref, total: descriptor.size, expected: descriptor.digest)
            } catch where error.code == .alreadyExists {
                return nil
            } catch where error.code == .unavailable && attempts < 3000 {
                attempts += 1
                if await exists(descriptor.digest) != nil { return nil }
                do { try await Task.sleep(for: .milliseconds(100)) } catch { throw BerthError(.canceled, "pull canceled") }
            }
        }
    }

    func readAll(_ digest: Digest) async throws(BerthError) -> [UInt8] {
        let reader = try await content.reader(digest)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(min(reader.size, 64 << 20)))
        do {
            while Int64(bytes.count) < reader.size {
                let chunk = try await reader.read(at: Int64(bytes.count), count: 1 << 20)
                if chunk.isEmpty { break }
                bytes += chunk
            }
        } catch {
            await reader.close()
            throw error
        }
        await reader.close()
        return bytes
    }
}
