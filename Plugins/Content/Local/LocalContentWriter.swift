#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Crypto
import Foundation

/// An open ingest: bytes go straight to the `data` file with `pwrite` (no user-space buffer, so the file's length
/// is always the offset a restarted store reports) and into a running SHA-256. Holds the ref's lock, in-process
/// and as an `flock` on the data file (released by the kernel if the process dies), until closed or committed.
actor LocalContentWriter: ContentWriter {
    nonisolated let ref: String
    private let state: StoreState
    private let path: String
    /// The data file, -1 once closed or committed.
    private var fd: Int32
    private var offset: Int64
    private var hasher: SHA256
    private var total: Int64
    private var expected: Digest?
    private let startedAt: Date
    private var updatedAt: Date
    /// The digest of the empty content, returned by `digest()` only if hex encoding ever failed to validate.
    private let fallbackDigest: Digest
    /// A write is awaiting its `pwrite`: the actor may be re-entered then, so other mutations are refused and a
    /// close is deferred until the write is done (the descriptor must not be closed under it).
    private var writing = false
    private var closeRequested = false

    /// Writes at least this large hash on this task while a child task does the `pwrite`, using both cores.
    static let parallelThreshold = 128 << 10
    /// Every this many bytes written, writeback of them is started (see `Posix.startWriteback`).
    static let writebackInterval: Int64 = 8 << 20
    /// Offsets up to which writeback has been started, and up to which pages have been dropped (`streamPlan`).
    private var writebackOffset: Int64 = 0
    private var droppedOffset: Int64 = 0

    private init(
        ref: String, state: StoreState, path: String, fd: Int32, offset: Int64, hasher: SHA256, status: IngestStatus,
        fallbackDigest: Digest
    ) {
        self.ref = ref
        self.state = state
        self.path = path
        self.fd = fd
        self.offset = offset
        self.hasher = hasher
        self.total = status.total
        self.expected = status.expected
        self.startedAt = status.startedAt
        self.updatedAt = status.updatedAt
        self.fallbackDigest = fallbackDigest
    }

    deinit {
        // A writer dropped without close (a cancelled stream) must not keep its ref locked.
        if fd >= 0 {
            Glibc.close(fd)
            state.unlock(ref)
        }
    }

    /// Takes the data file's flock, retrying for up to 100 ms: a process this one is spawning holds a copy of every
    /// descriptor from its fork until its exec closes the close-on-exec ones, and with it the lock of a writer that
    /// was just closed. Another process's writer holds it for longer and still gets "ref locked".
    private static func lockBriefly(_ fd: Int32) -> Bool {
        for _ in 0..<50 {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
            if errno != EWOULDBLOCK { return false }
            usleep(2_000)
        }
        return flock(fd, LOCK_EX | LOCK_NB) == 0
    }

    /// Opens the ingest of `ref`, which the caller has locked in `state`: resumes a valid one (its running digest
    /// restored by rehashing the data already on disk) or creates it. `total`/`expected` update the record.
    static func open(state: StoreState, ref: String, total: Int64, expected: Digest?) throws(BerthError)
        -> LocalContentWriter
    {
        let layout = state.layout
        let path = layout.ingestPath(ref)
        let resuming = try Ingest.load(path, ref: ref) != nil
        if !resuming { try Ingest.create(layout, ref: ref, total: total, expected: expected, now: Date()) }
        let dataPath = path + "/" + Ingest.dataFile
        // A crash between a commit's chmod 0444 and its rename leaves a read-only ingest: make it writable again.
        _ = chmod(dataPath, 0o644)
        let fd = try Posix.open(dataPath, O_RDWR)
        guard lockBriefly(fd) else {
            let code = errno
            Glibc.close(fd)
            if code == EWOULDBLOCK { throw .unavailable("ref \(ref) locked") }
            throw Posix.error("flock", dataPath, code)
        }
        do throws(BerthError) {
            // Only the holder of the flock may change the record.
            if resuming { try Ingest.update(path, total: total, expected: expected) }
            guard let status = try Ingest.load(path, ref: ref) else {
                throw .internalError("ingest \(path) for ref \(ref) vanished while opening")
            }
            let (hasher, offset) = try Posix.rehash(fd, path: dataPath)
            let empty = try Digest(algorithm: "sha256", encoded: Hex.encode(SHA256().finalize()))
            return LocalContentWriter(
                ref: ref, state: state, path: path, fd: fd, offset: offset, hasher: hasher, status: status,
                fallbackDigest: empty)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    private func openFD(_ operation: String) throws(BerthError) -> Int32 {
        guard fd >= 0, !closeRequested else { throw .failedPrecondition("cannot \(operation) on closed writer") }
        guard !writing else {
            throw .failedPrecondition("cannot \(operation) ref \(ref) while a write to it is in progress")
        }
        return fd
    }

    private var dataPath: String { path + "/" + Ingest.dataFile }

    func write(_ bytes: [UInt8]) async throws(BerthError) {
        let fd = try openFD("write")
        guard !bytes.isEmpty else { return }
        let at = offset
        let before = hasher
        let plan = streamPlan(end: at + Int64(bytes.count))
        let failure: Int32?
        if bytes.count >= Self.parallelThreshold {
            writing = true
            async let written = Self.pwrite(fd, bytes, at: at, then: plan)
            bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            failure = await written
            writing = false
        } else {
            failure = bytes.withUnsafeBytes { Posix.pwriteAll(fd, $0, at: at) }
            if failure == nil {
                bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
                plan.run(fd)
            }
        }
        if let failure {
            // Keep file, offset and digest consistent: drop whatever part of this write reached the file.
            hasher = before
            _ = ftruncate(fd, off_t(at))
            if closeRequested { finishClose() }
            throw Posix.error("write", dataPath, failure)
        }
        offset += Int64(bytes.count)
        updatedAt = Date()
        if closeRequested { finishClose() }
    }

    /// What to tell the kernel after a write: start writeback of the bytes since the last start, and wait for and
    /// drop from the page cache what was started a while ago. Hints only; the commit's fsync is what counts.
    struct StreamPlan: Sendable {
        var writeback: Range<Int64>?
        var drop: Range<Int64>?

        func run(_ fd: Int32) {
            if let writeback { Posix.startWriteback(fd, offset: writeback.lowerBound, count: Int64(writeback.count)) }
            if let drop { Posix.dropWritten(fd, offset: drop.lowerBound, count: Int64(drop.count)) }
        }
    }

    /// Streams a large ingest to disk as it arrives: every 8 MiB, writeback of the new bytes is started, and bytes
    /// whose writeback started 16 MiB ago are dropped from the page cache. The commit's fsync then has almost
    /// nothing left (1 GiB: 5 ms instead of 0.5 s here), and a big ingest recycles a few MiB of warm page cache
    /// instead of filling it (first-touch page allocation halved throughput on this VM). Reads of a fresh large
    /// blob come from disk, as they would once the page cache evicted it.
    private func streamPlan(end: Int64) -> StreamPlan {
        var plan = StreamPlan()
        guard end - writebackOffset >= Self.writebackInterval else { return plan }
        plan.writeback = writebackOffset..<end
        writebackOffset = end
        if writebackOffset - droppedOffset >= 4 * Self.writebackInterval {
            let dropEnd = writebackOffset - 2 * Self.writebackInterval
            plan.drop = droppedOffset..<dropEnd
            droppedOffset = dropEnd
        }
        return plan
    }

    /// Off the actor so the copy into the page cache, and any wait for writeback, overlap the hashing.
    private nonisolated static func pwrite(_ fd: Int32, _ bytes: [UInt8], at offset: Int64, then plan: StreamPlan)
        async -> Int32?
    {
        let failure = bytes.withUnsafeBytes { Posix.pwriteAll(fd, $0, at: offset) }
        if failure == nil { plan.run(fd) }
        return failure
    }

    func truncate(_ size: Int64) async throws(BerthError) {
        let fd = try openFD("truncate")
        guard size >= 0, size <= offset else {
            throw .invalidArgument("cannot truncate ingest \(ref) to \(size): it holds \(offset) bytes")
        }
        guard ftruncate(fd, off_t(size)) == 0 else { throw Posix.error("truncate", dataPath) }
        if size == 0 {
            hasher = SHA256()
        } else {
            hasher = try Posix.rehash(fd, path: dataPath, length: size).0
        }
        offset = size
        writebackOffset = min(writebackOffset, size)
        droppedOffset = min(droppedOffset, size)
        updatedAt = Date()
        try Posix.writeSmallFile(path + "/updatedat", Timestamp.format(updatedAt))
    }

    func update(total: Int64, expected: Digest?) async throws(BerthError) {
        _ = try openFD("update")
        guard total >= 0 else { throw .invalidArgument("negative total \(total)") }
        // Only what changes is written: clients repeat total and expected on many messages of a stream.
        let newTotal = total > 0 && total != self.total ? total : 0
        let newExpected = expected != nil && expected != self.expected ? expected : nil
        try Ingest.update(path, total: newTotal, expected: newExpected)
        if newTotal > 0 { self.total = newTotal }
        if let newExpected { self.expected = newExpected }
    }

    func status() async throws(BerthError) -> IngestStatus {
        guard fd >= 0 else { throw .failedPrecondition("cannot get status on closed writer") }
        return IngestStatus(
            ref: ref, offset: offset, total: total, expected: expected, startedAt: startedAt, updatedAt: updatedAt)
    }

    func digest() async -> Digest { (try? currentDigest()) ?? fallbackDigest }

    private func currentDigest() throws(BerthError) -> Digest {
        try Digest(algorithm: "sha256", encoded: Hex.encode(hasher.finalize()))
    }

    func commit(size: Int64, expected: Digest?) async throws(BerthError) -> Digest {
        let fd = try openFD("commit")
        guard size >= 0 else { throw .invalidArgument("negative commit size \(size)") }
        if size > 0 && size != offset {
            throw .failedPrecondition("unexpected commit size \(offset), expected \(size)")
        }
        let actual = try currentDigest()
        if let want = expected ?? self.expected, want != actual {
            throw .failedPrecondition("unexpected commit digest \(actual), expected \(want)")
        }
        // Durable before visible: data synced, read-only and stamped with the commit time before the rename.
        guard fsync(fd) == 0 else { throw Posix.error("fsync", dataPath) }
        guard fchmod(fd, 0o444) == 0, futimens(fd, nil) == 0 else { throw Posix.error("chmod", dataPath) }
        let layout = state.layout
        let target = layout.blobPath(actual)
        let data = dataPath
        let exists = try state.commitExclusively { () throws(BerthError) -> Bool in
            if try Posix.stat(target) != nil { return true }
            if try Posix.stat(layout.blobDirectory(actual.algorithm)) == nil {
                try FileSystem.makeDirectories(layout.blobDirectory(actual.algorithm), mode: 0o755)
            }
            guard rename(data, target) == 0 else {
                let code = errno
                _ = fchmod(fd, 0o644)
                throw Posix.error("rename", data, code)
            }
            try Posix.syncDirectory(layout.blobDirectory(actual.algorithm))
            return false
        }
        // Committed (or already there): the ingest is done either way.
        Glibc.close(fd)
        self.fd = -1
        try? Posix.removeFlatDirectory(path)
        state.unlock(ref)
        if exists { throw .alreadyExists("content \(actual)") }
        return actual
    }

    func close() async {
        if writing {
            closeRequested = true
        } else {
            finishClose()
        }
    }

    private func finishClose() {
        guard fd >= 0 else { return }
        try? Posix.writeSmallFile(path + "/updatedat", Timestamp.format(updatedAt))
        Glibc.close(fd)
        fd = -1
        state.unlock(ref)
    }
}
