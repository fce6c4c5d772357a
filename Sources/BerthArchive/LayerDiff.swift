#if canImport(Glibc)
    import Glibc
#endif
import BerthCore

/// Writes the changes from a lower to an upper directory tree as a layer tar (containerd's double walk and
/// `ChangeWriter`): entries added or changed in upper, `.wh.NAME` for names gone from lower, and the parent
/// directories of every change. Both trees are read without following symlinks.
public enum LayerDiff {
    /// Walks both trees and writes the tar to `writer` (finished at the end).
    /// `whiteoutTime` is the mtime of whiteout entries (containerd uses the time of the diff).
    public static func write(lower: String, upper: String, to writer: TarWriter, whiteoutTime: Int64)
        async throws(BerthError)
    {
        let walker = DiffWalker(lower: lower, upper: upper, writer: writer, whiteoutTime: whiteoutTime)
        try await walker.compare("")
        try await writer.finish()
    }
}

final class DiffWalker {
    let lower: String
    let upper: String
    let writer: TarWriter
    let whiteoutTime: Int64
    /// Directories already written (a change's parents are written once, before it).
    private var written = Set<String>()
    /// First path written for each multiply-linked inode (later ones become hardlink entries).
    private var inodes: [String: String] = [:]

    init(lower: String, upper: String, writer: TarWriter, whiteoutTime: Int64) {
        self.lower = lower
        self.upper = upper
        self.writer = writer
        self.whiteoutTime = whiteoutTime
    }

    static func join(_ dir: String, _ name: String) -> String { dir.isEmpty ? name : dir + "/" + name }
    func lowerPath(_ rel: String) -> String { rel.isEmpty ? lower : lower + "/" + rel }
    func upperPath(_ rel: String) -> String { rel.isEmpty ? upper : upper + "/" + rel }

    static func lstat(_ path: String) throws(BerthError) -> stat {
        var st = stat()
        guard Glibc.lstat(path, &st) == 0 else { throw .internalError("lstat \(path): \(FileSystem.errnoMessage())") }
        return st
    }

    static func list(_ path: String) throws(BerthError) -> [String] {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .internalError("open \(path): \(FileSystem.errnoMessage())") }
        defer { close(fd) }
        return try RootFS.list(fd)
    }

    /// Compares the directory `rel`, present as a directory in both trees.
    func compare(_ rel: String) async throws(BerthError) {
        let lowerNames = try Self.list(lowerPath(rel))
        let upperNames = try Self.list(upperPath(rel))
        var i = 0, j = 0
        while i < lowerNames.count || j < upperNames.count {
            if j == upperNames.count || (i < lowerNames.count && lowerNames[i] < upperNames[j]) {
                try await whiteout(Self.join(rel, lowerNames[i]))
                i += 1
            } else if i == lowerNames.count || upperNames[j] < lowerNames[i] {
                try await add(Self.join(rel, upperNames[j]))
                j += 1
            } else {
                let path = Self.join(rel, upperNames[j])
                let l = try Self.lstat(lowerPath(path))
                let u = try Self.lstat(upperPath(path))
                let lowerIsDir = l.st_mode & S_IFMT == S_IFDIR
                let upperIsDir = u.st_mode & S_IFMT == S_IFDIR
                if lowerIsDir && upperIsDir {
                    if try !same(path, l, u) { try await entry(path, u) }
                    try await compare(path)
                } else if upperIsDir {
                    try await add(path)
                } else if try !same(path, l, u) {
                    try await entry(path, u)
                }
                i += 1
                j += 1
            }
        }
    }

    /// containerd's `sameFile`: same inode; else equal type, mode, owner, device and capabilities, and for
    /// non-directories equal size and mtime, with contents (or link targets) compared when both mtimes lack
    /// sub-second precision (they may have been truncated by a tar).
    func same(_ path: String, _ l: stat, _ u: stat) throws(BerthError) -> Bool {
        if l.st_dev == u.st_dev && l.st_ino == u.st_ino { return true }
        guard l.st_mode == u.st_mode, l.st_uid == u.st_uid, l.st_gid == u.st_gid, l.st_rdev == u.st_rdev else {
            return false
        }
        let lx = Xattr.all(lowerPath(path)), ux = Xattr.all(upperPath(path))
        guard lx["security.capability"] == ux["security.capability"] else { return false }
        if u.st_mode & S_IFMT == S_IFDIR { return true }
        guard l.st_size == u.st_size, l.st_mtim.tv_sec == u.st_mtim.tv_sec else { return false }
        if l.st_mtim.tv_nsec == 0 && u.st_mtim.tv_nsec == 0 {
            if u.st_mode & S_IFMT == S_IFLNK {
                return RootFS.readlink(AT_FDCWD, lowerPath(path)) == RootFS.readlink(AT_FDCWD, upperPath(path))
            }
            if u.st_size == 0 { return true }
            return try sameContent(lowerPath(path), upperPath(path))
        }
        return l.st_mtim.tv_nsec == u.st_mtim.tv_nsec
    }

    func sameContent(_ a: String, _ b: String) throws(BerthError) -> Bool {
        let fa = open(a, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fa >= 0 else { throw .internalError("open \(a): \(FileSystem.errnoMessage())") }
        defer { close(fa) }
        let fb = open(b, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fb >= 0 else { throw .internalError("open \(b): \(FileSystem.errnoMessage())") }
        defer { close(fb) }
        var ba = [UInt8](repeating: 0, count: 65536), bb = [UInt8](repeating: 0, count: 65536)
        while true {
            let na = Self.readFull(fa, &ba), nb = Self.readFull(fb, &bb)
            guard na >= 0, nb >= 0 else { throw .internalError("read: \(FileSystem.errnoMessage())") }
            if na != nb || ba[..<na] != bb[..<nb] { return false }
            if na == 0 { return true }
        }
    }

    static func readFull(_ fd: Int32, _ buffer: inout [UInt8]) -> Int {
        var total = 0
        while total < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress.map { $0 + total }, $0.count - total) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return -1 }
            if n == 0 { break }
            total += n
        }
        return total
    }

    /// A path only in upper: it and, for a directory, everything under it.
    func add(_ path: String) async throws(BerthError) {
        let st = try Self.lstat(upperPath(path))
        try await entry(path, st)
        if st.st_mode & S_IFMT == S_IFDIR {
            for name in try Self.list(upperPath(path)) { try await add(Self.join(path, name)) }
        }
    }

    /// A path only in lower: a whiteout in its parent.
    func whiteout(_ path: String) async throws(BerthError) {
        let parent = path.split(separator: "/").dropLast().joined(separator: "/")
        try await parents(of: path)
        let base = path.split(separator: "/").last.map(String.init) ?? path
        var entry = TarEntry(name: Self.join(parent, LayerApplier.whiteoutPrefix + base), type: .regular, mode: 0)
        entry.mtime = whiteoutTime
        try await writer.writeHeader(entry)
    }

    /// Writes the not yet written parent directories of `path`, outermost first.
    func parents(of path: String) async throws(BerthError) {
        let parts = path.split(separator: "/").dropLast()
        var current = ""
        for part in parts {
            current = Self.join(current, String(part))
            if written.contains(current) { continue }
            try await header(current, try Self.lstat(upperPath(current)))
        }
    }

    /// One changed path: its parents, then its header and data.
    func entry(_ path: String, _ st: stat) async throws(BerthError) {
        try await parents(of: path)
        let type = st.st_mode & S_IFMT
        if type == S_IFREG && st.st_nlink > 1 {
            let key = "\(st.st_dev):\(st.st_ino)"
            if let first = inodes[key] {
                var link = try makeEntry(path, st)
                link.type = .hardlink
                link.size = 0
                link.linkname = first
                try await writer.writeHeader(link)
                return
            }
            inodes[key] = path
        }
        try await header(path, st)
        guard type == S_IFREG, st.st_size > 0 else { return }
        let fd = open(upperPath(path), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .internalError("open \(upperPath(path)): \(FileSystem.errnoMessage())") }
        defer { close(fd) }
        var left = Int64(st.st_size)
        var buffer = [UInt8](repeating: 0, count: streamChunkSize)
        while left > 0 {
            let n = Self.readFull(fd, &buffer)
            guard n > 0 else { throw .internalError("\(path) changed size while it was read") }
            let take = Int(min(Int64(n), left))
            try await writer.write(take == buffer.count ? buffer : Array(buffer[..<take]))
            left -= Int64(take)
        }
    }

    func header(_ path: String, _ st: stat) async throws(BerthError) {
        try await writer.writeHeader(try makeEntry(path, st))
        if st.st_mode & S_IFMT == S_IFDIR { written.insert(path) }
    }

    func makeEntry(_ path: String, _ st: stat) throws(BerthError) -> TarEntry {
        let type: TarEntryType
        switch st.st_mode & S_IFMT {
        case S_IFDIR: type = .directory
        case S_IFREG: type = .regular
        case S_IFLNK: type = .symlink
        case S_IFCHR: type = .charDevice
        case S_IFBLK: type = .blockDevice
        case S_IFIFO: type = .fifo
        default: throw .notImplemented("\(path): cannot put a socket in a layer")
        }
        var entry = TarEntry(
            name: type == .directory ? path + "/" : path, type: type, mode: UInt32(st.st_mode & 0o7777),
            uid: Int(st.st_uid), gid: Int(st.st_gid), size: type == .regular ? Int64(st.st_size) : 0,
            mtime: Int64(st.st_mtim.tv_sec))
        if type == .symlink {
            guard let target = RootFS.readlink(AT_FDCWD, upperPath(path)) else {
                throw .internalError("readlink \(path): \(FileSystem.errnoMessage())")
            }
            entry.linkname = target
        }
        if type == .charDevice || type == .blockDevice {
            let dev = UInt64(st.st_rdev)
            entry.devmajor = UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000))
            entry.devminor = UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & 0xffff_ff00))
        }
        entry.xattrs = Xattr.all(upperPath(path)).filter { !$0.key.hasPrefix("trusted.overlay.") }
        return entry
    }
}
