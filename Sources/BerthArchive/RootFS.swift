#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import CBerthSys

/// Linux constants the Glibc module hides behind `_GNU_SOURCE` (stable ABI values).
enum LinuxFlags {
    static let O_PATH: Int32 = 0o10000000
    static let AT_SYMLINK_NOFOLLOW: Int32 = 0x100
    static let AT_REMOVEDIR: Int32 = 0x200
    static let UTIME_OMIT = 0x3fff_fffe
}

/// A directory inside a root, opened as an `O_PATH` descriptor, with its path relative to the root (no leading
/// slash; empty for the root itself). Close it with `close()`.
struct RootedDirectory {
    let fd: Int32
    let path: String
    func close() { _ = Glibc.close(fd) }
    func child(_ name: String) -> String { path.isEmpty ? name : path + "/" + name }
}

/// Resolves paths inside a root directory the way `openat2(RESOLVE_IN_ROOT)` does: `..` never climbs above the
/// root, absolute symlinks restart at the root, relative ones resolve from where they are. Every component is
/// opened with `O_NOFOLLOW` relative to its parent's descriptor, so nothing outside the root is ever reached.
/// A path of plain directories (the common case) is first opened in one `openat2` call that refuses any symlink
/// and stays in the root; anything else (a symlink, a missing or non-directory component, no `openat2`) takes
/// the component walk, so results and errors are the walk's.
final class RootFS {
    let root: String
    let rootFD: Int32
    /// False once `openat2` turned out to be missing (ENOSYS) or filtered (EPERM, seccomp).
    private var useOpenat2 = true
    /// Called for a directory the resolver creates: (its descriptor's parent, its name, its path in the root).
    var onCreateDirectory: ((Int32, String, String) -> Void)?

    static let maxSymlinks = 255

    init(_ root: String) throws(BerthError) {
        self.root = root
        rootFD = open(root, LinuxFlags.O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw .notFound("open root \(root): \(FileSystem.errnoMessage())") }
    }

    deinit { close(rootFD) }

    /// The lexically cleaned components of `name` taken as if under `/` (so leading `..` vanish), like Go's
    /// `filepath.Clean("/" + name)`.
    static func clean(_ name: String) -> [String] {
        var out: [String] = []
        for part in name.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if !out.isEmpty { out.removeLast() }
                continue
            }
            out.append(String(part))
        }
        return out
    }

    /// Opens the directory `components` inside the root, following symlinks within the root; with `create`,
    /// missing directories are made (mode 0755, then `onCreateDirectory`). A non-directory on the way is an error.
    func directory(_ components: [String], create: Bool) throws(BerthError) -> RootedDirectory {
        if let fast = directoryWithoutSymlinks(components) { return fast }
        var stack: [(fd: Int32, name: String)] = []
        func closeAll() { for level in stack { close(level.fd) } }
        func current() -> Int32 { stack.last?.fd ?? rootFD }
        var pending = Array(components.reversed())
        var links = 0
        while let component = pending.popLast() {
            if component.isEmpty || component == "." { continue }
            if component == ".." {
                if let last = stack.popLast() { close(last.fd) }
                continue
            }
            var fd = openat(current(), component, LinuxFlags.O_PATH | O_NOFOLLOW | O_CLOEXEC)
            if fd < 0 && errno == ENOENT && create {
                if mkdirat(current(), component, 0o755) != 0 && errno != EEXIST {
                    let message = FileSystem.errnoMessage()
                    closeAll()
                    throw .internalError("mkdir \(component): \(message)")
                }
                let path = (stack.map(\.name) + [component]).joined(separator: "/")
                onCreateDirectory?(current(), component, path)
                fd = openat(current(), component, LinuxFlags.O_PATH | O_NOFOLLOW | O_CLOEXEC)
            }
            guard fd >= 0 else {
                let code = errno
                closeAll()
                let path = (stack.map(\.name) + [component]).joined(separator: "/")
                if code == ENOENT { throw .notFound("\(path): no such file or directory") }
                throw .internalError("open \(path): \(FileSystem.errnoMessage(code))")
            }
            var st = stat()
            guard fstat(fd, &st) == 0 else {
                let message = FileSystem.errnoMessage()
                close(fd)
                closeAll()
                throw .internalError("stat \(component): \(message)")
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                stack.append((fd, component))
            case S_IFLNK:
                links += 1
                let target = Self.readlink(current(), component)
                close(fd)
                guard links <= Self.maxSymlinks, let target else {
                    closeAll()
                    throw .invalidArgument("\(component): too many levels of symbolic links")
                }
                if target.hasPrefix("/") {
                    closeAll()
                    stack.removeAll()
                }
                pending += target.split(separator: "/", omittingEmptySubsequences: true).reversed().map(String.init)
            default:
                close(fd)
                let path = (stack.map(\.name) + [component]).joined(separator: "/")
                closeAll()
                throw .invalidArgument("\(path): not a directory")
            }
        }
        guard let last = stack.popLast() else {
            let fd = dup(rootFD)
            guard fd >= 0 else { throw .internalError("dup: \(FileSystem.errnoMessage())") }
            return RootedDirectory(fd: fd, path: "")
        }
        let path = (stack.map(\.name) + [last.name]).joined(separator: "/")
        closeAll()
        return RootedDirectory(fd: last.fd, path: path)
    }

    /// `components` opened in one `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` call
    /// when every one is an existing directory (not a symlink); nil when that fails for any reason, so the
    /// caller walks the components instead.
    private func directoryWithoutSymlinks(_ components: [String]) -> RootedDirectory? {
        guard useOpenat2, !components.isEmpty,
              !components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." || $0.contains("/") })
        else { return nil }
        let path = components.joined(separator: "/")
        let resolve = berth_resolve_in_root | berth_resolve_no_symlinks | berth_resolve_no_magiclinks
        let flags = UInt64(LinuxFlags.O_PATH | O_DIRECTORY | O_CLOEXEC)
        let fd = berth_openat2(rootFD, path, flags, resolve)
        guard fd >= 0 else {
            if errno == ENOSYS || errno == EPERM { useOpenat2 = false }
            return nil
        }
        return RootedDirectory(fd: fd, path: path)
    }

    /// A symlink's target, or nil.
    static func readlink(_ dirfd: Int32, _ name: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlinkat(dirfd, name, &buffer, 4096)
        guard n >= 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `lstat` of `name` in `dirfd`; nil when absent.
    static func lstat(_ dirfd: Int32, _ name: String) -> stat? {
        var st = stat()
        return fstatat(dirfd, name, &st, LinuxFlags.AT_SYMLINK_NOFOLLOW) == 0 ? st : nil
    }

    /// Removes `name` in `dirfd` and, for a directory, everything under it, without following symlinks.
    /// `keep` (a path relative to the root → keep it) spares entries; a spared directory's other children go.
    static func removeAll(_ dirfd: Int32, _ name: String, path: String = "", keep: ((String) -> Bool)? = nil)
        throws(BerthError)
    {
        guard let st = lstat(dirfd, name) else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            let fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw .internalError("open \(path): \(FileSystem.errnoMessage())") }
            defer { close(fd) }
            var keptAny = false
            for child in try list(fd) {
                let childPath = path.isEmpty ? child : path + "/" + child
                if let keep, keep(childPath) {
                    keptAny = true
                    if let cst = lstat(fd, child), cst.st_mode & S_IFMT == S_IFDIR {
                        try removeChildren(fd, path: childPath, keep: keep)
                    }
                    continue
                }
                try removeAll(fd, child, path: childPath, keep: keep)
            }
            if keptAny { return }
            if unlinkat(dirfd, name, LinuxFlags.AT_REMOVEDIR) != 0 && errno != ENOENT {
                throw .internalError("remove \(path): \(FileSystem.errnoMessage())")
            }
        } else if unlinkat(dirfd, name, 0) != 0 && errno != ENOENT {
            throw .internalError("remove \(path): \(FileSystem.errnoMessage())")
        }
    }

    /// Removes the children of the directory open at `fd` (path `path` in the root) that `keep` does not spare.
    static func removeChildren(_ fd: Int32, path: String, keep: (String) -> Bool) throws(BerthError) {
        for child in try list(fd) {
            let childPath = path.isEmpty ? child : path + "/" + child
            if keep(childPath) {
                if let cst = lstat(fd, child), cst.st_mode & S_IFMT == S_IFDIR {
                    let sub = openat(fd, child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    guard sub >= 0 else { throw .internalError("open \(childPath): \(FileSystem.errnoMessage())") }
                    defer { close(sub) }
                    try removeChildren(sub, path: childPath, keep: keep)
                }
                continue
            }
            try removeAll(fd, child, path: childPath)
        }
    }

    /// The names in the directory open at `fd` (any descriptor that can be reopened for reading), sorted.
    static func list(_ fd: Int32) throws(BerthError) -> [String] {
        let readable = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard readable >= 0, let dir = fdopendir(readable) else {
            throw .internalError("opendir: \(FileSystem.errnoMessage())")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// `/proc/self/fd/N/name`: a path that reaches `name` inside the directory `dirfd` without resolving anything
    /// above it, for calls that have no `*at` form (xattrs).
    static func procPath(_ dirfd: Int32, _ name: String) -> String { "/proc/self/fd/\(dirfd)/\(name)" }
}

/// Extended attribute calls (not imported by the Glibc module), resolved from the C library.
enum Xattr {
    typealias ListFunction = @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, Int) -> Int
    typealias GetFunction =
        @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
    typealias SetFunction =
        @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32) -> Int32

    /// Sets an xattr on `path` without following a final symlink; returns 0 or errno.
    static func set(_ path: String, _ name: String, _ value: [UInt8]) -> Int32 {
        guard let lsetxattr = GNULibc.lsetxattr else { return ENOSYS }
        let rc = value.withUnsafeBytes { lsetxattr(path, name, $0.baseAddress, $0.count, 0) }
        return rc == 0 ? 0 : errno
    }

    /// Every xattr of `path` (not following a final symlink), by name; empty when none or unsupported.
    static func all(_ path: String) -> [String: [UInt8]] {
        guard let list = GNULibc.llistxattr, let get = GNULibc.lgetxattr else { return [:] }
        let size = list(path, nil, 0)
        guard size > 0 else { return [:] }
        var names = [CChar](repeating: 0, count: size)
        let got = list(path, &names, size)
        guard got > 0 else { return [:] }
        var result: [String: [UInt8]] = [:]
        for raw in names[..<got].split(separator: 0) {
            let name = String(decoding: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let length = get(path, name, nil, 0)
            guard length >= 0 else { continue }
            var value = [UInt8](repeating: 0, count: length)
            let n = value.withUnsafeMutableBytes { get(path, name, $0.baseAddress, length) }
            guard n >= 0 else { continue }
            result[name] = Array(value.prefix(n))
        }
        return result
    }
}
