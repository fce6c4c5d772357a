#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Crypto
import Foundation
import Synchronization

/// The on-disk layout, containerd's local store's: `blobs/<algorithm>/<hex>` for committed blobs (mode 0444) and
/// `ingest/<sha256 of ref>/` for unfinished writes, holding `data` plus the small files `ref`, `startedat`,
/// `updatedat`, `total` and `expected` from which a status is rebuilt after a restart or a crash.
struct Layout: Sendable {
    let root: String

    var blobs: String { root + "/blobs" }
    var ingests: String { root + "/ingest" }

    func blobDirectory(_ algorithm: String) -> String { blobs + "/" + algorithm }
    func blobPath(_ digest: Digest) -> String { blobDirectory(digest.algorithm) + "/" + digest.encoded }

    /// The ingest directory of `ref`: hashed, so any string is a valid ref and never escapes the root.
    func ingestPath(_ ref: String) -> String { ingests + "/" + Hex.encode(SHA256.hash(data: Array(ref.utf8))) }

    /// Where an ingest is assembled before being renamed into place, so a half-created ingest is never listed.
    func ingestStagingPath(_ ref: String) -> String {
        ingests + "/.new-" + Hex.encode(SHA256.hash(data: Array(ref.utf8)))
    }
}

/// State the store shares with its writers: the refs held by open writers (containerd keeps the same in-process
/// table) and the critical section in which a commit checks for an existing blob and renames into place.
final class StoreState: Sendable {
    let layout: Layout
    private let locked = Mutex<Set<String>>([])
    private let commitSection = Mutex(())

    init(layout: Layout) { self.layout = layout }

    /// Takes the lock of `ref`; Unavailable with containerd's text when an open writer holds it.
    func lock(_ ref: String) throws(BerthError) {
        let taken = locked.withLock { $0.insert(ref).inserted }
        guard taken else { throw .unavailable("ref \(ref) locked") }
    }

    func unlock(_ ref: String) {
        _ = locked.withLock { $0.remove(ref) }
    }

    /// Runs `body` alone among commits of this store, so "already exists" is decided without a race.
    func commitExclusively<T>(_ body: () throws(BerthError) -> T) throws(BerthError) -> T {
        try commitSection.withLock { _ throws(BerthError) -> T in try body() }
    }
}

/// Reading, creating and updating the small files of an ingest directory.
enum Ingest {
    static let dataFile = "data"

    /// The status recorded in `path`, or nil when there is no complete ingest there (absent, half-created, a
    /// leftover of a commit interrupted after its rename, or belonging to another ref by hash collision).
    static func load(_ path: String, ref expectedRef: String? = nil) throws(BerthError) -> IngestStatus? {
        guard let data = try Posix.stat(path + "/" + dataFile),
            let ref = try Posix.readSmallFile(path + "/ref"), !ref.isEmpty
        else { return nil }
        if let expectedRef, ref != expectedRef { return nil }
        let modified = Posix.date(data.st_mtim)
        let started = try Posix.readSmallFile(path + "/startedat").flatMap(Timestamp.parse) ?? modified
        var updated = try Posix.readSmallFile(path + "/updatedat").flatMap(Timestamp.parse) ?? modified
        // As containerd: updatedat is not rewritten on every write, so the data file's mtime may be newer.
        if modified > updated { updated = modified }
        let total = try Posix.readSmallFile(path + "/total").flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) }
        let expected = try Posix.readSmallFile(path + "/expected").flatMap { try? Digest(parsing: $0) }
        return IngestStatus(
            ref: ref, offset: Int64(data.st_size), total: total ?? 0, expected: expected, startedAt: started,
            updatedAt: updated)
    }

    /// Creates a fresh ingest for `ref` (replacing whatever invalid directory was there): its files are written
    /// in a staging directory that is then renamed into place, so a listed ingest always has `ref` and `data`.
    static func create(_ layout: Layout, ref: String, total: Int64, expected: Digest?, now: Date)
        throws(BerthError)
    {
        let path = layout.ingestPath(ref)
        let staging = layout.ingestStagingPath(ref)
        try Posix.removeFlatDirectory(staging)
        try Posix.removeFlatDirectory(path)
        guard mkdir(staging, 0o755) == 0 else { throw Posix.error("mkdir", staging) }
        let stamp = Timestamp.format(now)
        try Posix.writeSmallFile(staging + "/ref", ref)
        try Posix.writeSmallFile(staging + "/startedat", stamp)
        try Posix.writeSmallFile(staging + "/updatedat", stamp)
        if total > 0 { try Posix.writeSmallFile(staging + "/total", String(total)) }
        if let expected { try Posix.writeSmallFile(staging + "/expected", expected.description) }
        let fd = try Posix.open(staging + "/" + dataFile, O_WRONLY | O_CREAT | O_TRUNC)
        close(fd)
        guard rename(staging, path) == 0 else { throw Posix.error("rename", staging) }
    }

    /// Records a new total and/or expected digest (0 / nil leave them).
    static func update(_ path: String, total: Int64, expected: Digest?) throws(BerthError) {
        if total > 0 { try Posix.writeSmallFile(path + "/total", String(total)) }
        if let expected { try Posix.writeSmallFile(path + "/expected", expected.description) }
    }

    /// Removes staging directories and ingests that can never be resumed (no `data` or no `ref`), as left by a
    /// crash during creation or between a commit's rename and its cleanup.
    static func sweep(_ layout: Layout) throws(BerthError) {
        for name in try Posix.list(layout.ingests) {
            let path = layout.ingests + "/" + name
            if name.hasPrefix(".new-") {
                try Posix.removeFlatDirectory(path)
            } else if try load(path) == nil {
                try Posix.removeFlatDirectory(path)
            }
        }
    }
}
