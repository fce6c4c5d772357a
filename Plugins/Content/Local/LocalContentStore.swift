#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// containerd's local content store (`io.containerd.content.v1.content`): content-addressed blobs on the file
/// system, written through resumable ingests. Not namespaced and label-free; the metadata plugin adds those.
///
/// A final class rather than an actor: it has no mutable state of its own (ref locks and the commit section live
/// in a `StoreState` shared with the writers), and not serialising calls keeps a long rehash on resume or a
/// large delete from stalling `info`/`status` of other refs.
public final class LocalContentStore: ContentStore, Closable {
    let state: StoreState
    var layout: Layout { state.layout }

    /// Opens (creating) the store at `root` and sweeps ingests that a crash left unusable.
    public init(root: String) throws(BerthError) {
        let layout = Layout(root: root)
        try FileSystem.makeDirectories(layout.blobDirectory("sha256"), mode: 0o755)
        try FileSystem.makeDirectories(layout.ingests, mode: 0o755)
        try Ingest.sweep(layout)
        self.state = StoreState(layout: layout)
    }

    public func info(_ digest: BerthCore.Digest) async throws(BerthError) -> ContentInfo {
        guard let st = try Posix.stat(layout.blobPath(digest)), (st.st_mode & S_IFMT) == S_IFREG else {
            throw .notFound("content \(digest)")
        }
        return Self.info(digest, st)
    }

    /// As containerd: created is the commit time (the blob's mtime), updated its atime.
    static func info(_ digest: Digest, _ st: stat) -> ContentInfo {
        ContentInfo(
            digest: digest, size: Int64(st.st_size), createdAt: Posix.date(st.st_mtim),
            updatedAt: Posix.date(st.st_atim))
    }

    /// Every committed blob, sorted by digest. Names that are not valid digests (stray files) are skipped.
    public func walk() async throws(BerthError) -> [ContentInfo] {
        var infos: [ContentInfo] = []
        for algorithm in try Posix.list(layout.blobs).sorted() {
            let directory = layout.blobDirectory(algorithm)
            for name in try Posix.list(directory) {
                guard let digest = try? Digest(algorithm: algorithm, encoded: name),
                    let st = try Posix.stat(directory + "/" + name), (st.st_mode & S_IFMT) == S_IFREG
                else { continue }
                infos.append(Self.info(digest, st))
            }
        }
        return infos.sorted { $0.digest < $1.digest }
    }

    public func delete(_ digest: BerthCore.Digest) async throws(BerthError) {
        let path = layout.blobPath(digest)
        guard unlink(path) == 0 else {
            if errno == ENOENT { throw .notFound("content \(digest)") }
            throw Posix.error("unlink", path)
        }
    }

    public func reader(_ digest: BerthCore.Digest) async throws(BerthError) -> any ContentReader {
        let path = layout.blobPath(digest)
        let fd: Int32
        do {
            fd = try Posix.open(path, O_RDONLY)
        } catch where error.code == .notFound {
            throw .notFound("content \(digest)")
        }
        do {
            let st = try Posix.fstat(fd, path)
            return LocalContentReader(fd: fd, size: Int64(st.st_size), path: path)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    public func status(_ ref: String) async throws(BerthError) -> IngestStatus {
        try Self.validate(ref)
        guard let status = try Ingest.load(layout.ingestPath(ref), ref: ref) else {
            throw .notFound("ingest ref \"\(ref)\"")
        }
        return status
    }

    /// Every resumable ingest, sorted by ref.
    public func statuses() async throws(BerthError) -> [IngestStatus] {
        var result: [IngestStatus] = []
        for name in try Posix.list(layout.ingests) where !name.hasPrefix(".") {
            if let status = try Ingest.load(layout.ingests + "/" + name) { result.append(status) }
        }
        return result.sorted { $0.ref < $1.ref }
    }

    /// Removes the ingest even while a writer holds it (as containerd); that writer's commit then fails NotFound.
    public func abort(_ ref: String) async throws(BerthError) {
        try Self.validate(ref)
        let path = layout.ingestPath(ref)
        guard try Ingest.load(path, ref: ref) != nil else { throw .notFound("ingest ref \"\(ref)\"") }
        try Posix.removeFlatDirectory(path)
    }

    public func writer(ref: String, total: Int64, expected: BerthCore.Digest?) async throws(BerthError)
        -> any ContentWriter
    {
        try Self.validate(ref)
        guard total >= 0 else { throw .invalidArgument("negative total \(total) for ref \(ref)") }
        // As containerd: no point ingesting what is already committed.
        if let expected, try Posix.stat(layout.blobPath(expected)) != nil {
            throw .alreadyExists("content \(expected)")
        }
        try state.lock(ref)
        do {
            return try LocalContentWriter.open(state: state, ref: ref, total: total, expected: expected)
        } catch {
            state.unlock(ref)
            throw error
        }
    }

    /// Nothing to release: open writers and readers own their descriptors and close them themselves.
    public func close() async throws {}

    static func validate(_ ref: String) throws(BerthError) {
        guard !ref.isEmpty else { throw .invalidArgument("ref must not be empty") }
    }
}
