import BerthCore
import BerthOCI
import Foundation

extension TransferProgress {
    /// The events a pull reports, spelled as containerd 2's transfer service spells them where it has them
    /// (`waiting`, `downloading`, `complete`, `already exists`, `extracting`, `extracted`, `saved`).
    public enum Event {
        /// Before resolving; `name` is the reference.
        public static let resolving = "resolving"
        /// The reference resolved; `name` is the reference, `descriptor` the top manifest or index.
        public static let resolved = "resolved"
        /// A blob or document is queued; `name` is its ref key (`layer-sha256:…`), `parents` its parents' ref keys
        /// (the reference for the top descriptor), `total` its size.
        public static let waiting = "waiting"
        /// Bytes arrive (`progress` of `total`), at most about ten reports a second per blob.
        public static let downloading = "downloading"
        /// Downloaded and committed (also when another pull downloaded it meanwhile).
        public static let complete = "complete"
        /// Already in the content store; nothing downloaded.
        public static let alreadyExists = "already exists"
        /// A layer is being applied to a snapshot (`progress` 0 of its size).
        public static let extracting = "extracting"
        /// A layer is unpacked and committed as its chain ID.
        public static let extracted = "extracted"
        /// The image record was created or updated; `name` is the image name, `descriptor` its target.
        public static let saved = "saved"
    }
}

/// containerd's `remotes.MakeRefKey`: the ingest ref and progress name of a descriptor (`layer-sha256:…`).
func refKey(_ descriptor: OCIDescriptor) -> String {
    let kind: String
    if MediaType.isIndex(descriptor.mediaType) {
        kind = "index"
    } else if MediaType.isManifest(descriptor.mediaType) {
        kind = "manifest"
    } else if MediaType.isConfig(descriptor.mediaType) {
        kind = "config"
    } else if MediaType.isLayer(descriptor.mediaType) {
        kind = "layer"
    } else {
        kind = "unknown"
    }
    return "\(kind)-\(descriptor.digest)"
}

/// GC labels, as containerd's `images.ChildGCLabels` + `SetChildrenMappedLabels` name a parent's children:
/// `containerd.io/gc.ref.content.config`, `.l.<i>` for layers, `.m.<i>` for manifests, `.<i>` otherwise.
func childGCLabels(_ children: [OCIDescriptor]) -> [String: String] {
    var labels: [String: String] = [:]
    var counts: [String: Int] = [:]
    for child in children {
        var key: String
        if MediaType.isConfig(child.mediaType) || child.mediaType == MediaType.dockerPluginConfig {
            key = GCLabels.contentRefPrefix + ".config"
        } else if MediaType.isManifest(child.mediaType) {
            key = GCLabels.contentRefPrefix + ".m."
        } else if MediaType.isLayer(child.mediaType) {
            key = GCLabels.contentRefPrefix + ".l."
        } else {
            key = GCLabels.contentRefPrefix + "."
        }
        let index = counts[key, default: 0]
        counts[key] = index + 1
        if index > 0 || key.hasSuffix(".") { key += String(index) }
        labels[key] = child.digest.description
    }
    return labels
}

/// containerd's distribution source label for a reference: key `containerd.io/distribution.source.<host>` (the
/// host without port), value the repository path; several repositories are a sorted, comma-separated set.
struct DistributionSource: Sendable {
    let key: String
    let repository: String

    init(_ reference: Reference) {
        var host = reference.domain
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":"), host.filter({ $0 == ":" }).count == 1 {
            host = String(host[..<colon])
        }
        key = "containerd.io/distribution.source." + host
        repository = reference.path
    }

    /// The label value with this repository added to `existing`; nil when it would break containerd's label size
    /// limit (containerd then skips the label).
    func value(adding existing: String?) -> String? {
        var repositories = Set((existing ?? "").split(separator: ",").map(String.init))
        repositories.insert(repository)
        let value = repositories.sorted().joined(separator: ",")
        return key.utf8.count + value.utf8.count > 4096 ? nil : value
    }
}

/// Limits concurrent downloads (FIFO).
actor AsyncSemaphore {
    var available: Int
    var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { available = max(1, count) }

    func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }
}

/// Lets the unpackers of one pull wait for the blobs they need. A failure anywhere fails every waiter, so no task of
/// the pull's group is left waiting when the group unwinds. With `allReady` (an import: every blob is in the store)
/// no wait blocks.
actor BlobReadiness {
    let allReady: Bool
    var ready: Set<Digest> = []
    var failure: BerthError?
    var waiters: [Digest: [CheckedContinuation<Void, any Error>]] = [:]

    init(allReady: Bool = false) { self.allReady = allReady }

    func finish(_ digest: Digest) {
        ready.insert(digest)
        for waiter in waiters.removeValue(forKey: digest) ?? [] { waiter.resume() }
    }

    func fail(_ error: BerthError) {
        if failure == nil { failure = error }
        let all = waiters
        waiters = [:]
        for waiter in all.values.joined() { waiter.resume(throwing: error) }
    }

    func wait(_ digest: Digest) async throws(BerthError) {
        if let failure { throw failure }
        if allReady || ready.contains(digest) { return }
        do {
            try await withCheckedThrowingContinuation { waiters[digest, default: []].append($0) }
        } catch {
            throw BerthError.wrap(error)
        }
    }
}

/// Deduplicates work across concurrent pulls of one transferrer (containerd's `lockBlobDescriptor` and
/// `lockSnChainID`): a keyed lock, so the second pull of a blob (or unpack of a chain ID) waits for the first and
/// then finds it committed instead of downloading it again or tripping over the ingest's "ref locked".
actor PullCoordinator {
    var held: Set<String> = []
    var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    /// How often a key was waited for (tests check that concurrent pulls met).
    private(set) var contended = 0

    init() {}

    func acquire(_ key: String) async {
        if held.insert(key).inserted { return }
        contended += 1
        await withCheckedContinuation { waiters[key, default: []].append($0) }
    }

    func release(_ key: String) {
        if var queue = waiters[key], !queue.isEmpty {
            let next = queue.removeFirst()
            waiters[key] = queue.isEmpty ? nil : queue
            next.resume()  // ownership passes to the next waiter
        } else {
            held.remove(key)
        }
    }

    /// Runs `body` holding `key`.
    nonisolated func withLock<T: Sendable>(_ key: String, _ body: () async throws(BerthError) -> T)
        async throws(BerthError) -> T
    {
        await acquire(key)
        do {
            let value = try await body()
            await release(key)
            return value
        } catch {
            await release(key)
            throw error
        }
    }
}

/// Reports a pull's progress through the sink: remembers each blob's parents and throttles `downloading`.
final class PullProgress: @unchecked Sendable {
    let sink: ProgressSink
    let root: String
    private let lock = NSLock()
    private var parents: [Digest: [String]] = [:]
    private var lastReport: [Digest: ContinuousClock.Instant] = [:]
    static let interval = Duration.milliseconds(100)

    init(sink: @escaping ProgressSink, root: String) {
        self.sink = sink
        self.root = root
    }

    /// Records that `child` hangs below `parent` (a ref key); returns whether it was new.
    func addParent(_ child: OCIDescriptor, _ parent: String) {
        lock.withLock {
            var list = parents[child.digest, default: []]
            if !list.contains(parent) { list.append(parent) }
            parents[child.digest] = list
        }
    }

    func parents(of descriptor: OCIDescriptor) -> [String] {
        lock.withLock { parents[descriptor.digest] } ?? [root]
    }

    func report(_ event: String, _ descriptor: OCIDescriptor, progress: Int64 = 0) {
        sink(TransferProgress(
            event: event, name: refKey(descriptor), parents: parents(of: descriptor), progress: progress,
            total: descriptor.size, descriptor: descriptor))
    }

    /// `downloading`, unless this blob reported less than `interval` ago (the last byte is always reported).
    func downloading(_ descriptor: OCIDescriptor, _ received: Int64) {
        let now = ContinuousClock.now
        let due = lock.withLock { () -> Bool in
            if received < descriptor.size, let last = lastReport[descriptor.digest], now - last < Self.interval {
                return false
            }
            lastReport[descriptor.digest] = now
            return true
        }
        if due { report(TransferProgress.Event.downloading, descriptor, progress: received) }
    }

    func status(_ event: String, name: String, descriptor: OCIDescriptor? = nil) {
        sink(TransferProgress(event: event, name: name, descriptor: descriptor))
    }
}
