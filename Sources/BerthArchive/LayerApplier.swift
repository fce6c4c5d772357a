#if canImport(Glibc)
    import Glibc
#endif
import BerthCore

/// How an apply treats OCI whiteouts and what it may touch.
public struct ApplyOptions: Sendable {
    public enum Whiteouts: Sendable, Equatable {
        /// `.wh.NAME` deletes NAME, `.wh..wh..opq` empties the directory (native, btrfs, bind mounts).
        case delete
        /// Written in overlayfs form into an upperdir: char device 0/0 for `.wh.NAME`, `trusted.overlay.opaque=y`.
        case overlay
    }

    public var whiteouts: Whiteouts
    /// The overlay's lowerdirs (top first): a directory the layer needs but does not list is created with the
    /// mode, owner and times it has in the topmost lowerdir that has it (containerd's `mkparent`).
    public var lowerDirectories: [String]
    /// Bound on the uncompressed bytes (0: none). Exceeding it fails the apply.
    public var maxUncompressedBytes: Int64
    /// Name for error messages (the layer digest).
    public var label: String
    /// When small files go to writer threads (`FileWriters`).
    public var writerThreads: WriterThreads
    /// Whether to hash the compressed stream too (`AppliedLayer.compressedDigest`). A blob read from the content
    /// store was verified when it was committed, so appliers of stored blobs skip it, as containerd's does.
    public var hashCompressed: Bool

    public enum WriterThreads: Sendable, Equatable {
        /// Once creating files on the apply's own thread proves slow (see `Extractor.noteCreate`).
        case whenSlow
        case always
        case never
    }

    public init(whiteouts: Whiteouts = .delete, lowerDirectories: [String] = [], maxUncompressedBytes: Int64 = 0,
                label: String = "layer", writerThreads: WriterThreads = .whenSlow, hashCompressed: Bool = true) {
        self.whiteouts = whiteouts
        self.lowerDirectories = lowerDirectories
        self.maxUncompressedBytes = maxUncompressedBytes
        self.label = label
        self.writerThreads = writerThreads
        self.hashCompressed = hashCompressed
    }
}

/// What an apply read: the compressed blob's digest and size and the uncompressed tar's (the diff ID).
public struct AppliedLayer: Sendable, Equatable {
    /// nil when the apply did not hash it (`ApplyOptions.hashCompressed`).
    public var compressedDigest: BerthCore.Digest?
    public var compressedSize: Int64
    public var diffID: BerthCore.Digest
    public var uncompressedSize: Int64
    public var compression: Compression
}

/// Applies layer tars to a directory. Every path is resolved inside the root (`RootFS`), so a layer cannot
/// create or change anything outside it, whatever names, symlinks or hardlinks it contains.
public enum LayerApplier {
    static let whiteoutPrefix = ".wh."
    static let opaqueMarker = ".wh..wh..opq"

    /// Applies a possibly compressed layer (gzip, zstd or plain tar, recognised by magic) to `root`, hashing both
    /// the compressed and the uncompressed stream while it streams.
    public static func apply(_ source: any ByteSource, to root: String, options: ApplyOptions = ApplyOptions())
        async throws(BerthError) -> AppliedLayer
    {
        let compressed = DigestingSource(source, hashing: options.hashCompressed)
        let peek = PeekSource(compressed)
        let head = try await peek.peek(6)
        guard let compression = Compression.detect(head) else {
            throw .notImplemented("\(options.label): unsupported compression format")
        }
        let decompressed = try await Compression.decompressing(peek)
        let limited = LimitingSource(decompressed, limit: options.maxUncompressedBytes, what: options.label)
        let uncompressed = DigestingSource(limited)
        let tar = TarReader(uncompressed)
        try await applyTar(tar, to: root, options: options)
        try await tar.drain()
        while try await !compressed.read().isEmpty {}
        return AppliedLayer(
            compressedDigest: options.hashCompressed ? try compressed.digest() : nil, compressedSize: compressed.count,
            diffID: try uncompressed.digest(), uncompressedSize: uncompressed.count, compression: compression)
    }

    /// Applies the entries of an uncompressed tar stream to `root`.
    public static func applyTar(_ tar: TarReader, to root: String, options: ApplyOptions = ApplyOptions())
        async throws(BerthError)
    {
        let extractor = try Extractor(root: root, options: options)
        defer { extractor.close() }
        while let entry = try await tar.next() {
            do {
                try await extractor.extract(entry, data: tar)
            } catch where error.message.hasPrefix(options.label + ": entry ") {
                throw error  // a writer thread's failure, already naming its entry
            } catch {
                throw BerthError(error.code, "\(options.label): entry \"\(entry.name)\": \(error.message)")
            }
        }
        try extractor.finish()
    }
}

/// The state of one apply: the root, what this layer unpacked (opaque directories keep those), and the
/// directory times to set once their children are in place.
final class Extractor {
    let fs: RootFS
    let options: ApplyOptions
    private var unpacked = Set<String>()
    private var directoryTimes: [(path: String, seconds: Int64, nanoseconds: Int32)] = []
    /// Writer threads for small regular files, started per `ApplyOptions.writerThreads`; `pending` holds the paths
    /// of files queued since the last drain. No entry touches a pending path (or a path below one) before a drain.
    private var writers: FileWriters?
    private var pending = Set<String>()
    /// Small files created on this thread in the current probe, and the time their `openat` took. Handing files
    /// to threads costs more than it saves where creating one takes ~15 µs (a fresh ext4), and saves most of
    /// the time where it takes ~300 µs (ext4 without a journal passing over recently deleted inodes).
    private var probed = 0
    private var probeNanoseconds: UInt64 = 0
    private(set) var slowCreates = false
    static let probeFiles = 64
    static let slowCreate: UInt64 = 50_000
    /// The previous entry's parent, kept open for the next entry in the same directory. It is kept only when
    /// that entry removed nothing (no whiteout, no replaced path), so resolving its components again would
    /// reach the same directory: entries only add names, and an added name is never an existing directory.
    private var lastParent: (components: [String], directory: RootedDirectory)?

    init(root: String, options: ApplyOptions) throws(BerthError) {
        fs = try RootFS(root)
        self.options = options
        let lowers = options.lowerDirectories
        if !lowers.isEmpty {
            fs.onCreateDirectory = { parent, name, path in Self.copyLowerMetadata(parent, name, path, lowers) }
        }
    }

    /// A parent the layer does not list takes its metadata from the first lowerdir that has it.
    static func copyLowerMetadata(_ parent: Int32, _ name: String, _ path: String, _ lowers: [String]) {
        for lower in lowers {
            var st = stat()
            guard Glibc.lstat(lower + "/" + path, &st) == 0 else { continue }
            guard st.st_mode & S_IFMT == S_IFDIR else { return }
            _ = fchownat(parent, name, st.st_uid, st.st_gid, LinuxFlags.AT_SYMLINK_NOFOLLOW)
            _ = fchmodat(parent, name, st.st_mode & 0o7777, 0)
            var times = [st.st_atim, st.st_mtim]
            _ = utimensat(parent, name, &times, LinuxFlags.AT_SYMLINK_NOFOLLOW)
            return
        }
    }

    deinit { lastParent?.directory.close() }

    /// Stops the writer threads (after `finish`, or when the apply failed).
    func close() {
        writers?.close()
        writers = nil
    }

    /// The open parent directory `components`: the cached one when it is the same, else resolved (creating
    /// missing directories). The caller owns it.
    private func parentDirectory(_ components: [String]) throws(BerthError) -> RootedDirectory {
        if let cached = lastParent {
            lastParent = nil
            if cached.components == components { return cached.directory }
            cached.directory.close()
        }
        return try fs.directory(components, create: true)
    }

    /// Waits for the queued files (a no-op when none are).
    private func drain() throws(BerthError) {
        guard !pending.isEmpty else { return }
        pending.removeAll(keepingCapacity: true)
        try writers?.drain()
    }

    /// Whether the entry may run while queued files are still being written: it must be a regular file or a
    /// directory (nothing that removes or links names) and name no pending path, nor a path below one.
    private func mayOverlap(_ entry: TarEntry, _ components: [String], _ base: String) -> Bool {
        guard !pending.isEmpty else { return true }
        guard entry.type == .regular || entry.type == .directory, !base.hasPrefix(LayerApplier.whiteoutPrefix)
        else { return false }
        var path = ""
        for component in components + [base] {
            path = path.isEmpty ? component : path + "/" + component
            if pending.contains(path) { return false }
        }
        return true
    }

    /// Hands a small regular file to the writer threads; false when it should stream here instead.
    private func queueFile(_ entry: TarEntry, base: String, path: String, in parent: RootedDirectory, data: TarReader)
        async throws(BerthError) -> Bool
    {
        guard entry.size <= FileWriters.maxJobBytes else { return false }
        if writers == nil {
            guard options.writerThreads == .always || (slowCreates && options.writerThreads == .whenSlow) else {
                return false
            }
            writers = try FileWriters(count: FileWriters.defaultCount)
        }
        guard let writers else { return false }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(entry.size))
        while true {
            let chunk = try await data.read()
            if chunk.isEmpty { break }
            bytes += chunk
        }
        let directory = dup(parent.fd)
        guard directory >= 0 else { throw .internalError("dup: \(FileSystem.errnoMessage())") }
        try writers.submit(FileJob(
            directory: directory, name: base, entry: entry, data: bytes,
            context: "\(options.label): entry \"\(entry.name)\""))
        pending.insert(path)
        unpacked.insert(path)
        return true
    }

    func extract(_ entry: TarEntry, data: TarReader) async throws(BerthError) {
        var components = RootFS.clean(entry.name)
        guard let base = components.popLast() else { return }  // the root itself: skipped, as containerd does
        if !mayOverlap(entry, components, base) { try drain() }
        let parent = try parentDirectory(components)
        // Whether `parent` may serve the next entry: not after anything was removed in it.
        var reusable = true
        defer {
            if reusable { lastParent = (components, parent) } else { parent.close() }
        }
        let path = parent.child(base)
        // A path reached through a symlink may differ from the entry's own: check the resolved one too.
        if pending.contains(path) { try drain() }

        if base.hasPrefix(LayerApplier.whiteoutPrefix) {
            reusable = false
            try whiteout(base, in: parent)
            return
        }

        if let existing = RootFS.lstat(parent.fd, base),
           !(existing.st_mode & S_IFMT == S_IFDIR && entry.type == .directory)
        {
            reusable = false
            try drain()  // a replaced directory may hold queued files
            try RootFS.removeAll(parent.fd, base, path: path)
        }

        switch entry.type {
        case .directory:
            if RootFS.lstat(parent.fd, base) == nil, mkdirat(parent.fd, base, 0o700) != 0 {
                throw .internalError("mkdir: \(FileSystem.errnoMessage())")
            }
        case .regular:
            if try await queueFile(entry, base: base, path: path, in: parent, data: data) { return }
            let small = entry.size <= FileWriters.maxJobBytes
            let started = small ? Self.monotonicNanoseconds() : 0
            let fd = openat(parent.fd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if small { noteCreate(Self.monotonicNanoseconds() - started) }
            guard fd >= 0 else { throw .internalError("create: \(FileSystem.errnoMessage())") }
            defer { Glibc.close(fd) }
            while true {
                let chunk = try await data.read()
                if chunk.isEmpty { break }
                guard FileSystem.writeAll(fd, chunk) else { throw .internalError("write: \(FileSystem.errnoMessage())") }
            }
        case .symlink:
            guard symlinkat(entry.linkname, parent.fd, base) == 0 else {
                throw .internalError("symlink: \(FileSystem.errnoMessage())")
            }
        case .hardlink:
            try hardlink(entry, base: base, in: parent)
            unpacked.insert(path)
            return
        case .charDevice, .blockDevice, .fifo:
            let kind: mode_t = entry.type == .fifo ? S_IFIFO : entry.type == .charDevice ? S_IFCHR : S_IFBLK
            let device = Self.makedev(entry.devmajor, entry.devminor)
            guard mknodat(parent.fd, base, kind | mode_t(entry.mode & 0o7777), dev_t(device)) == 0 else {
                throw .internalError("mknod: \(FileSystem.errnoMessage())")
            }
        case .other(let flag):
            throw .notImplemented("unhandled tar header type \(flag)")
        }
        try setMetadata(entry, base: base, in: parent)
        unpacked.insert(path)
    }

    /// Adds one small file's creation time to the probe; a probe averaging `slowCreate` or more starts the writer
    /// threads for the rest of the layer.
    func noteCreate(_ nanoseconds: UInt64) {
        probed += 1
        probeNanoseconds += nanoseconds
        guard probed == Self.probeFiles else { return }
        if probeNanoseconds / UInt64(Self.probeFiles) >= Self.slowCreate { slowCreates = true }
        probed = 0
        probeNanoseconds = 0
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Owner, xattrs, mode and times, in that order (a chown clears setuid bits and file capabilities).
    private func setMetadata(_ entry: TarEntry, base: String, in parent: RootedDirectory) throws(BerthError) {
        if fchownat(parent.fd, base, uid_t(entry.uid), gid_t(entry.gid), LinuxFlags.AT_SYMLINK_NOFOLLOW) != 0 {
            throw .internalError("chown: \(FileSystem.errnoMessage())")
        }
        if !entry.xattrs.isEmpty {
            let target = RootFS.procPath(parent.fd, base)
            for key in entry.xattrs.keys.sorted() {
                let code = Xattr.set(target, key, entry.xattrs[key] ?? [])
                // containerd skips xattrs the file system does not support; anything else fails the apply.
                if code != 0 && code != EOPNOTSUPP {
                    throw .internalError("setxattr \(key): \(FileSystem.errnoMessage(code))")
                }
            }
        }
        if entry.type != .symlink, fchmodat(parent.fd, base, mode_t(entry.mode & 0o7777), 0) != 0 {
            throw .internalError("chmod: \(FileSystem.errnoMessage())")
        }
        if entry.type == .directory {
            directoryTimes.append((parent.child(base), entry.mtime, entry.mtimeNanoseconds))
        } else {
            try Self.setTimes(parent.fd, base, entry.mtime, entry.mtimeNanoseconds)
        }
    }

    static func setTimes(_ dirfd: Int32, _ name: String, _ seconds: Int64, _ nanoseconds: Int32) throws(BerthError) {
        let time = timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds))
        var times = [time, time]
        guard utimensat(dirfd, name, &times, LinuxFlags.AT_SYMLINK_NOFOLLOW) == 0 else {
            throw .internalError("set times: \(FileSystem.errnoMessage())")
        }
    }

    /// A hardlink whose target resolves inside the root (a target outside it, or missing, fails the apply).
    private func hardlink(_ entry: TarEntry, base: String, in parent: RootedDirectory) throws(BerthError) {
        var target = RootFS.clean(entry.linkname)
        guard let targetBase = target.popLast() else { throw .invalidArgument("invalid hardlink to the root") }
        let targetParent: RootedDirectory
        do {
            targetParent = try fs.directory(target, create: false)
        } catch {
            throw .invalidArgument("invalid hardlink \"\(entry.name)\" -> \"\(entry.linkname)\": \(error.message)")
        }
        defer { targetParent.close() }
        guard linkat(targetParent.fd, targetBase, parent.fd, base, 0) == 0 else {
            throw .invalidArgument(
                "invalid hardlink \"\(entry.name)\" -> \"\(entry.linkname)\": \(FileSystem.errnoMessage())")
        }
    }

    /// `.wh.NAME` and `.wh..wh..opq`, as deletions or in overlay form.
    private func whiteout(_ base: String, in parent: RootedDirectory) throws(BerthError) {
        if base == LayerApplier.opaqueMarker {
            switch options.whiteouts {
            case .overlay:
                let code = Xattr.set(RootFS.procPath(parent.fd, "."), "trusted.overlay.opaque", Array("y".utf8))
                guard code == 0 else { throw .internalError("set opaque xattr: \(FileSystem.errnoMessage(code))") }
            case .delete:
                let unpacked = self.unpacked
                try RootFS.removeChildren(parent.fd, path: parent.path) { unpacked.contains($0) }
            }
            return
        }
        let name = String(base.dropFirst(LayerApplier.whiteoutPrefix.count))
        // `.wh..wh.*` other than the opaque marker are reserved (AUFS metadata): ignored, as containerd does.
        guard !name.isEmpty, name != ".", name != "..", !name.hasPrefix(".wh.") else { return }
        switch options.whiteouts {
        case .overlay:
            try RootFS.removeAll(parent.fd, name, path: parent.child(name))
            guard mknodat(parent.fd, name, S_IFCHR, 0) == 0 else {
                throw .internalError("mknod whiteout: \(FileSystem.errnoMessage())")
            }
        case .delete:
            try RootFS.removeAll(parent.fd, name, path: parent.child(name))
        }
    }

    /// Sets directory times last, so creating their children does not change them.
    func finish() throws(BerthError) {
        try drain()
        lastParent?.directory.close()
        lastParent = nil
        for (path, seconds, nanoseconds) in directoryTimes.reversed() {
            var components = RootFS.clean(path)
            guard let base = components.popLast() else { continue }
            guard let parent = try? fs.directory(components, create: false) else { continue }
            defer { parent.close() }
            guard let st = RootFS.lstat(parent.fd, base), st.st_mode & S_IFMT == S_IFDIR else { continue }
            try Self.setTimes(parent.fd, base, seconds, nanoseconds)
        }
    }

    /// Linux's `makedev` (the glibc macro does not import).
    static func makedev(_ major: UInt32, _ minor: UInt32) -> UInt64 {
        let ma = UInt64(major), mi = UInt64(minor)
        return ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
    }
}
