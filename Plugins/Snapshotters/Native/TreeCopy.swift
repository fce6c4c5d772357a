#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthSnapshotStorage

/// Copies a directory tree the way a layer must be copied: owners, modes (setuid/setgid/sticky included), extended
/// attributes (`security.*` and `trusted.*` best effort), device nodes, fifos, sockets, symlinks (not followed),
/// hard links (as hard links inside the copy) and nanosecond atime/mtime. File data is cloned (FICLONE) where the
/// file system shares extents, else copied in the kernel (`copy_file_range`), else read and written; holes are
/// not preserved.
public enum TreeCopy {
    private struct Inode: Hashable {
        var device: UInt64
        var number: UInt64
    }

    /// Copies the contents of `source` into the existing directory `target`, then `source`'s own attributes
    /// onto `target` (as containerd's `fs.CopyDir`).
    public static func copyDirectory(from source: String, to target: String) throws(BerthError) {
        var st = stat()
        guard lstat(source, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw .internalError("copy \(source): not a directory or \(FileSystem.errnoMessage())")
        }
        var links: [Inode: String] = [:]
        try copyEntries(source, target, &links)
        try copyAttributes(source, target, st)
    }

    private static func copyEntries(_ source: String, _ target: String, _ links: inout [Inode: String])
        throws(BerthError)
    {
        for name in try SnapshotFiles.entries(source) {
            let from = source + "/" + name
            let to = target + "/" + name
            var st = stat()
            guard lstat(from, &st) == 0 else { throw failure("lstat", from) }
            let type = st.st_mode & S_IFMT
            let inode = Inode(device: UInt64(st.st_dev), number: UInt64(st.st_ino))
            if type != S_IFDIR, st.st_nlink > 1, let first = links[inode] {
                guard link(first, to) == 0 else { throw failure("link \(first) to", to) }
                continue
            }
            switch type {
            case S_IFDIR:
                guard mkdir(to, 0o700) == 0 else { throw failure("mkdir", to) }
                try copyEntries(from, to, &links)
            case S_IFREG:
                try copyFile(from, to)
            case S_IFLNK:
                try copySymlink(from, to)
            case S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK:
                guard mknod(to, st.st_mode, st.st_rdev) == 0 else { throw failure("mknod", to) }
            default:
                throw .internalError("copy \(from): unsupported file type \(String(type, radix: 8))")
            }
            try copyAttributes(from, to, st)
            if type != S_IFDIR, st.st_nlink > 1 { links[inode] = to }
        }
    }

    private static func failure(_ operation: String, _ path: String) -> BerthError {
        .internalError("\(operation) \(path): \(FileSystem.errnoMessage())")
    }

    private static func copySymlink(_ from: String, _ to: String) throws(BerthError) {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(from, &buffer, buffer.count - 1)
        guard count >= 0 else { throw failure("readlink", from) }
        let destination = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard symlink(destination, to) == 0 else { throw failure("symlink", to) }
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs (chown clears file capabilities), then times.
    private static func copyAttributes(_ from: String, _ to: String, _ st: stat) throws(BerthError) {
        let isLink = st.st_mode & S_IFMT == S_IFLNK
        guard lchown(to, st.st_uid, st.st_gid) == 0 else { throw failure("lchown", to) }
        if !isLink, chmod(to, st.st_mode & 0o7777) != 0 { throw failure("chmod", to) }
        try copyXattrs(from, to)
        var times = [st.st_atim, st.st_mtim]
        guard utimensat(AT_FDCWD, to, &times, AT_SYMLINK_NOFOLLOW) == 0 else { throw failure("utimensat", to) }
    }

    private static func copyXattrs(_ from: String, _ to: String) throws(BerthError) {
        guard let list = GNULibc.llistxattr, let get = GNULibc.lgetxattr, let set = GNULibc.lsetxattr else { return }
        let size = list(from, nil, 0)
        if size < 0 {
            if errno == ENOTSUP || errno == ENODATA { return }
            throw failure("llistxattr", from)
        }
        guard size > 0 else { return }
        var names = [CChar](repeating: 0, count: size)
        let listed = list(from, &names, size)
        guard listed >= 0 else { throw failure("llistxattr", from) }
        for nameBytes in names[0..<listed].split(separator: 0) {
            let name = String(decoding: nameBytes.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let bestEffort = name.hasPrefix("security.") || name.hasPrefix("trusted.")
            var value = [UInt8](repeating: 0, count: 256)
            var length = get(from, name, &value, value.count)
            if length < 0 && errno == ERANGE {
                let needed = get(from, name, nil, 0)
                if needed >= 0 {
                    value = [UInt8](repeating: 0, count: needed)
                    length = get(from, name, &value, value.count)
                }
            }
            guard length >= 0 else {
                if bestEffort || errno == ENODATA { continue }
                throw failure("lgetxattr \(name) of", from)
            }
            let rc = value.withUnsafeBytes { set(to, name, $0.baseAddress, length, 0) }
            if rc != 0 && !bestEffort { throw failure("lsetxattr \(name) on", to) }
        }
    }

    private static let cloneRequest: UInt = 0x4004_9409  // FICLONE = _IOW(0x94, 9, int)

    private static func copyFile(_ from: String, _ to: String) throws(BerthError) {
        let input = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard input >= 0 else { throw failure("open", from) }
        defer { close(input) }
        let output = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard output >= 0 else { throw failure("create", to) }
        defer { close(output) }
        if ioctl(output, cloneRequest, input) == 0 { return }
        if let copyRange = GNULibc.copyFileRange {
            var total = 0
            while true {
                let n = copyRange(input, nil, output, nil, 1 << 30, 0)
                if n > 0 {
                    total += n
                    continue
                }
                if n == 0 { return }
                if errno == EINTR { continue }
                // Not possible across these file systems: fall back to read/write from where we are.
                guard total == 0, [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP, EPERM].contains(errno) else {
                    throw failure("copy_file_range to", to)
                }
                break
            }
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw failure("read", from) }
            if n == 0 { return }
            guard FileSystem.writeAll(output, Array(buffer[0..<n])) else { throw failure("write", to) }
        }
    }
}
