#if canImport(Glibc)
    import Glibc
#endif
import Foundation

/// Performs the `[Mount]` a snapshotter returns, as containerd's `mount.Mount.Mount` on Linux: option words become
/// `MS_*` flags (containerd's table) and everything else is file-system data. Bind mounts are made read-only by a
/// second remount; overlay mounts whose options would not fit in a page are made with lowerdirs relative to their
/// common parent (containerd's trick: a dedicated thread with its own cwd via `unshare(CLONE_FS)`).
/// Shared by the snapshotter tests, the Diff service and the shim, so it only knows generic mount types.
public enum Mounting {
    // Linux's mount flags (<linux/mount.h>; stable ABI), spelled out because Glibc's enum constants import as Int.
    public static let MS_RDONLY: UInt = 0x1, MS_NOSUID: UInt = 0x2, MS_NODEV: UInt = 0x4, MS_NOEXEC: UInt = 0x8
    public static let MS_SYNCHRONOUS: UInt = 0x10, MS_REMOUNT: UInt = 0x20, MS_MANDLOCK: UInt = 0x40
    public static let MS_DIRSYNC: UInt = 0x80, MS_NOATIME: UInt = 0x400, MS_NODIRATIME: UInt = 0x800
    public static let MS_BIND: UInt = 0x1000, MS_REC: UInt = 0x4000, MS_SILENT: UInt = 0x8000
    public static let MS_UNBINDABLE: UInt = 0x20000, MS_PRIVATE: UInt = 0x40000, MS_SLAVE: UInt = 0x80000
    public static let MS_SHARED: UInt = 0x100000, MS_RELATIME: UInt = 0x200000, MS_STRICTATIME: UInt = 0x1000000
    static let propagationFlags = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE
    /// umount2 flags.
    public static let MNT_DETACH: Int32 = 2

    /// containerd's option table: word → (clear the flag instead of setting it, flag).
    static let flagTable: [String: (clear: Bool, flag: UInt)] = [
        "async": (true, MS_SYNCHRONOUS), "atime": (true, MS_NOATIME), "bind": (false, MS_BIND),
        "defaults": (false, 0), "dev": (true, MS_NODEV), "diratime": (true, MS_NODIRATIME),
        "dirsync": (false, MS_DIRSYNC), "exec": (true, MS_NOEXEC), "mand": (false, MS_MANDLOCK),
        "noatime": (false, MS_NOATIME), "nodev": (false, MS_NODEV), "nodiratime": (false, MS_NODIRATIME),
        "noexec": (false, MS_NOEXEC), "nomand": (true, MS_MANDLOCK), "norelatime": (true, MS_RELATIME),
        "nostrictatime": (true, MS_STRICTATIME), "nosuid": (false, MS_NOSUID), "rbind": (false, MS_BIND | MS_REC),
        "relatime": (false, MS_RELATIME), "remount": (false, MS_REMOUNT), "ro": (false, MS_RDONLY),
        "rw": (true, MS_RDONLY), "strictatime": (false, MS_STRICTATIME), "suid": (true, MS_NOSUID),
        "sync": (false, MS_SYNCHRONOUS),
        "shared": (false, MS_SHARED), "rshared": (false, MS_SHARED | MS_REC),
        "private": (false, MS_PRIVATE), "rprivate": (false, MS_PRIVATE | MS_REC),
        "slave": (false, MS_SLAVE), "rslave": (false, MS_SLAVE | MS_REC),
        "unbindable": (false, MS_UNBINDABLE), "runbindable": (false, MS_UNBINDABLE | MS_REC),
    ]

    /// Option words split into `MS_*` flags and file-system data (`lowerdir=…`, `size=…`), in order.
    public struct ParsedOptions: Equatable, Sendable {
        public var flags: UInt = 0
        public var data: [String] = []
    }

    public static func parseOptions(_ options: [String]) -> ParsedOptions {
        var parsed = ParsedOptions()
        for option in options {
            if let entry = flagTable[option], entry.flag != 0 {
                if entry.clear { parsed.flags &= ~entry.flag } else { parsed.flags |= entry.flag }
            } else if flagTable[option] == nil {
                parsed.data.append(option)
            }
        }
        return parsed
    }

    /// Mounts every mount in order; each lands at `target` joined with its own `target` (stacked mounts).
    /// On failure the mounts already made are undone.
    public static func mountAll(_ mounts: [Mount], at target: String) throws(BerthError) {
        var done: [String] = []
        for mount in mounts {
            let point = mount.target.isEmpty ? target : target + "/" + mount.target
            do {
                try Self.mount(mount, at: point)
            } catch {
                for made in done.reversed() { try? unmount(made, detach: true) }
                throw error
            }
            done.append(point)
        }
    }

    /// Performs one mount at `target` (which must exist).
    public static func mount(_ mount: Mount, at target: String) throws(BerthError) {
        var parsed = parseOptions(mount.options)
        var type = mount.type
        var source = mount.source
        // A btrfs mount whose source is a subvolume directory is a bind mount of that directory.
        if type == "btrfs", isDirectory(source) {
            type = "bind"
            parsed.flags |= MS_BIND
            parsed.data.removeAll { $0.hasPrefix("subvol=") || $0.hasPrefix("subvolid=") }
        }
        if type == "bind" { parsed.flags |= MS_BIND }
        if source.isEmpty { source = type }
        var chdir: String?
        var data = parsed.data
        if type == "overlay", data.reduce(0, { $0 + $1.count }) >= Int(getpagesize()) - 512 {
            (chdir, data) = compactLowerdir(data)
        }
        let dataString = data.joined(separator: ",")
        guard dataString.utf8.count < Int(getpagesize()) else {
            throw .invalidArgument("mount options is too long (\(dataString.utf8.count) bytes) for \(target)")
        }
        let flags = parsed.flags & ~propagationFlags
        if parsed.flags & MS_REMOUNT == 0 || !dataString.isEmpty {
            try mountSyscall(source: source, target: target, type: type, flags: flags, data: dataString, chdir: chdir)
        }
        if parsed.flags & propagationFlags != 0 {
            let propagation = parsed.flags & (propagationFlags | MS_REC | MS_SILENT)
            guard Glibc.mount("", target, "", propagation, nil) == 0 else {
                throw .internalError("mount propagation of \(target): \(FileSystem.errnoMessage())")
            }
        }
        if flags & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY {
            guard Glibc.mount("", target, "", flags | MS_REMOUNT, nil) == 0 else {
                let message = FileSystem.errnoMessage()
                try? unmount(target, detach: true)
                throw .internalError("remount \(target) read-only: \(message)")
            }
        }
    }

    /// Unmounts `target` once; EBUSY is retried (50 × 50 ms, as containerd); `detach` is a lazy unmount.
    /// A path that is not a mount point is not an error.
    public static func unmount(_ target: String, detach: Bool = false) throws(BerthError) {
        for _ in 0..<50 {
            if umount2(target, detach ? MNT_DETACH : 0) == 0 { return }
            let code = errno
            if code == EINVAL || code == ENOENT { return }
            if code != EBUSY { throw .internalError("unmount \(target): \(FileSystem.errnoMessage(code))") }
            usleep(50_000)
        }
        throw .internalError("unmount \(target): \(FileSystem.errnoMessage(EBUSY))")
    }

    /// Unmounts every mount stacked at `target` (until it is no longer a mount point).
    public static func unmountAll(_ target: String, detach: Bool = false) throws(BerthError) {
        for _ in 0..<64 {
            if umount2(target, detach ? MNT_DETACH : 0) != 0 {
                let code = errno
                if code == EINVAL || code == ENOENT { return }
                if code != EBUSY { throw .internalError("unmount \(target): \(FileSystem.errnoMessage(code))") }
                try unmount(target, detach: detach)
            }
        }
    }

    /// Mounts `mounts` at `target`, runs `body`, and unmounts whatever happens (lazily if a plain unmount fails).
    public static func withMounts<T>(_ mounts: [Mount], at target: String, _ body: () async throws -> T)
        async throws -> T
    {
        try mountAll(mounts, at: target)
        let result: T
        do {
            result = try await body()
        } catch {
            if (try? unmountAll(target)) == nil { try? unmountAll(target, detach: true) }
            throw error
        }
        do {
            try unmountAll(target)
        } catch {
            try? unmountAll(target, detach: true)
            throw error
        }
        return result
    }

    /// Rewrites `lowerdir=` relative to the lowerdirs' common parent directory; returns that directory (the
    /// mount must run with it as cwd) and the new data, or nil and the data unchanged when that does not help.
    public static func compactLowerdir(_ data: [String]) -> (String?, [String]) {
        guard let index = data.firstIndex(where: { $0.hasPrefix("lowerdir=") }) else { return (nil, data) }
        let dirs = data[index].dropFirst("lowerdir=".count).split(separator: ":").map(String.init)
        guard dirs.count > 1, let shortest = dirs.min(), let longest = dirs.max() else { return (nil, data) }
        var common = String(zip(shortest, longest).prefix { $0 == $1 }.map(\.0))
        // Back to a directory boundary: ids are digits, so "snapshots/1" is not a directory to use.
        guard let slash = common.lastIndex(of: "/") else { return (nil, data) }
        common = String(common[...slash])
        guard common != "/" else { return (nil, data) }
        var relative: [String] = []
        for dir in dirs {
            guard dir.count > common.count else { return (nil, data) }
            relative.append(String(dir.dropFirst(common.count)))
        }
        var out = data
        out.remove(at: index)
        out.append("lowerdir=" + relative.joined(separator: ":"))
        return (String(common.dropLast()), out)
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    private static func mountSyscall(source: String, target: String, type: String, flags: UInt, data: String,
                                     chdir: String?) throws(BerthError)
    {
        let describe = { (code: Int32) -> BerthError in
            .internalError(
                "mount source: \"\(source)\", target: \"\(target)\", fstype: \(type), flags: \(flags), data: "
                    + "\"\(data)\", err: \(FileSystem.errnoMessage(code))")
        }
        guard let chdir else {
            guard Glibc.mount(source, target, type, flags, data.isEmpty ? nil : data) == 0 else { throw describe(errno) }
            return
        }
        let code = onPrivateCwdThread(chdir) {
            Glibc.mount(source, target, type, flags, data) == 0 ? 0 : errno
        }
        if code != 0 { throw describe(code) }
    }

    /// Runs `body` on a new thread that has its own cwd (`unshare(CLONE_FS)`) set to `directory`, so the
    /// process's cwd never changes; returns `body`'s errno-style result (or the errno of the set-up).
    static func onPrivateCwdThread(_ directory: String, _ body: @escaping @Sendable () -> Int32) -> Int32 {
        final class Job: @unchecked Sendable {
            let directory: String
            let body: @Sendable () -> Int32
            var result: Int32 = 0
            init(_ directory: String, _ body: @escaping @Sendable () -> Int32) {
                self.directory = directory
                self.body = body
            }
        }
        guard GNULibc.unshare != nil else { return ENOSYS }
        let job = Job(directory, body)
        let context = Unmanaged.passRetained(job).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let job = Unmanaged<Job>.fromOpaque(raw).takeUnretainedValue()
            let clone_fs: Int32 = 0x200
            if let unshare = GNULibc.unshare, unshare(clone_fs) != 0 {
                job.result = errno
            } else if Glibc.chdir(job.directory) != 0 {
                job.result = errno
            } else {
                job.result = job.body()
            }
            return nil
        }, context)
        guard created == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            return created
        }
        pthread_join(thread, nil)
        let result = job.result
        Unmanaged<Job>.fromOpaque(context).release()
        return result
    }
}

/// glibc functions the Swift Glibc module does not import (declared only with `_GNU_SOURCE`, or in headers the
/// module leaves out), resolved once with `dlsym`. Each is nil when the C library lacks it.
public enum GNULibc {
    private static func resolve<F>(_ name: String, as _: F.Type) -> F? {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, name) else { return nil }
        return unsafeBitCast(symbol, to: F.self)
    }

    public typealias UnshareFunction = @convention(c) (Int32) -> Int32
    public typealias StatfsFunction = @convention(c) (UnsafePointer<CChar>, UnsafeMutableRawPointer) -> Int32
    public typealias ListXattrFunction = @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, Int) -> Int
    public typealias GetXattrFunction =
        @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
    public typealias SetXattrFunction =
        @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32) -> Int32
    public typealias CopyFileRangeFunction =
        @convention(c) (Int32, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int64>?, Int, UInt32) -> Int

    public static let unshare = resolve("unshare", as: UnshareFunction.self)
    public static let statfs = resolve("statfs", as: StatfsFunction.self)
    public static let llistxattr = resolve("llistxattr", as: ListXattrFunction.self)
    public static let lgetxattr = resolve("lgetxattr", as: GetXattrFunction.self)
    public static let lsetxattr = resolve("lsetxattr", as: SetXattrFunction.self)
    public static let copyFileRange = resolve("copy_file_range", as: CopyFileRangeFunction.self)

    /// The file-system magic of the file system holding `path` (`statfs.f_type`), or nil with errno set.
    public static func fileSystemType(_ path: String) -> Int? {
        guard let statfs else { return nil }
        // struct statfs is 120 bytes on 64-bit Linux; f_type is its first field (a long).
        var buffer = [Int](repeating: 0, count: 32)
        let rc = buffer.withUnsafeMutableBytes { bytes -> Int32 in
            guard let base = bytes.baseAddress else { return -1 }
            return statfs(path, base)
        }
        return rc == 0 ? buffer[0] : nil
    }

    public static let overlayMagic = 0x794c_7630
    public static let tmpfsMagic = 0x0102_1994
    public static let btrfsMagic = 0x9123_683e
}
