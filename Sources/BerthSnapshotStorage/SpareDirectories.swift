#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Dispatch
import Synchronization

/// A small stock of empty snapshot directories, made ahead of need in `<root>/spares`, so that Prepare and View
/// rename one into place instead of creating directories while the client waits.
///
/// Why: on a busy ext4 a `mkdir` costs 100–800 µs (the inode allocator skips recently freed inodes one by one), and
/// every new snapshot needs two (its directory and `fs`): about a quarter of a Prepare. A spare is the backend's
/// `prepareSpare` result on a `mkdtemp` name, made on a background queue once the taking transaction has ended (a
/// `mkdir` in `spares/` while the transaction renames out of it would hold that directory's lock against the
/// rename). When the stock is empty (a burst of creations), `take` makes one on the spot, as before. Spares are not
/// snapshots: they live outside `snapshots/`, so listings, usage and cleanup never see them, and the ones a previous
/// run left are deleted at start.
final class SpareDirectories: Sendable {
    /// How many spares to keep ready: enough for a Prepare right after another.
    static let target = 2

    let directory: String
    let prepare: @Sendable (String) throws(BerthError) -> Void
    private let stock = Mutex<(ready: [String], closed: Bool)>(([], false))
    private let queue = DispatchQueue(label: "berth.snapshot-spares", qos: .utility)

    init(directory: String, prepare: @escaping @Sendable (String) throws(BerthError) -> Void) throws(BerthError) {
        self.directory = directory
        self.prepare = prepare
        if FileSystem.exists(directory) { try SnapshotFiles.removeTree(directory) }
        guard mkdir(directory, 0o700) == 0 else {
            throw .internalError("mkdir \(directory): \(FileSystem.errnoMessage())")
        }
        refill()
    }

    /// A spare to build a new snapshot in; the caller renames or removes it, then calls `refill()`.
    func take() throws(BerthError) -> String {
        if let spare = stock.withLock({ $0.ready.popLast() }) { return spare }
        return try make()
    }

    /// Stops refilling and waits for a refill under way. Spares left on disk go at the next start.
    func close() {
        stock.withLock { $0.closed = true }
        queue.sync {}
    }

    private func make() throws(BerthError) -> String {
        let path = try SnapshotFiles.makeTemporaryDirectory(in: directory, prefix: "new-")
        do throws(BerthError) {
            try prepare(path)
        } catch {
            try? SnapshotFiles.removeTree(path)
            throw error
        }
        return path
    }

    /// Tops the stock up in the background. A failure (a full disk) stops it: `take` then reports the error itself.
    func refill() {
        queue.async { [self] in
            while stock.withLock({ !$0.closed && $0.ready.count < Self.target }) {
                guard let path = try? make() else { return }
                stock.withLock { $0.ready.append(path) }
            }
        }
    }
}
