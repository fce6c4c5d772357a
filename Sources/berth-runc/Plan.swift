import CBerthRunc
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// C memory for the plan: allocated once per command and intentionally never freed, because forked
/// children read it and the berth-runc process exits right after.
enum CMem {
    static func str(_ s: String) -> UnsafePointer<CChar> {
        let bytes = Array(s.utf8CString)
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        p.initialize(from: bytes, count: bytes.count)
        return UnsafePointer(p)
    }
    static func optStr(_ s: String?) -> UnsafePointer<CChar>? { s.map(str) }
    static func array<T>(_ items: [T]) -> UnsafePointer<T>? {
        guard !items.isEmpty else { return nil }
        let p = UnsafeMutablePointer<T>.allocate(capacity: items.count)
        p.initialize(from: items, count: items.count)
        return UnsafePointer(p)
    }
    /// A NULL-terminated array of C strings.
    static func strings(_ items: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        let p = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: items.count + 1)
        for (i, s) in items.enumerated() { (p + i).initialize(to: str(s)) }
        (p + items.count).initialize(to: nil)
        return UnsafePointer(p)
    }
}

/// Linux constants (mount flags, capabilities, rlimits) by their OCI/runc names.
enum Linux {
    static let MS_RDONLY: UInt = 1, MS_NOSUID: UInt = 2, MS_NODEV: UInt = 4, MS_NOEXEC: UInt = 8
    static let MS_SYNCHRONOUS: UInt = 16, MS_REMOUNT: UInt = 32, MS_MANDLOCK: UInt = 64, MS_DIRSYNC: UInt = 128
    static let MS_NOSYMFOLLOW: UInt = 256, MS_NOATIME: UInt = 1024, MS_NODIRATIME: UInt = 2048, MS_BIND: UInt = 4096
    static let MS_REC: UInt = 16384, MS_UNBINDABLE: UInt = 1 << 17, MS_PRIVATE: UInt = 1 << 18
    static let MS_SLAVE: UInt = 1 << 19, MS_SHARED: UInt = 1 << 20, MS_RELATIME: UInt = 1 << 21, MS_STRICTATIME: UInt = 1 << 24

    /// Mount option → (flags to set, flags to clear).
    static let mountFlags: [String: (set: UInt, clear: UInt)] = [
        "async": (0, MS_SYNCHRONOUS), "atime": (0, MS_NOATIME), "bind": (MS_BIND, 0), "defaults": (0, 0),
        "dev": (0, MS_NODEV), "diratime": (0, MS_NODIRATIME), "dirsync": (MS_DIRSYNC, 0), "exec": (0, MS_NOEXEC),
        "mand": (MS_MANDLOCK, 0), "noatime": (MS_NOATIME, 0), "nodev": (MS_NODEV, 0), "nodiratime": (MS_NODIRATIME, 0),
        "noexec": (MS_NOEXEC, 0), "nomand": (0, MS_MANDLOCK), "norelatime": (0, MS_RELATIME),
        "nostrictatime": (0, MS_STRICTATIME), "nosuid": (MS_NOSUID, 0), "rbind": (MS_BIND | MS_REC, 0),
        "relatime": (MS_RELATIME, 0), "remount": (MS_REMOUNT, 0), "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY),
        "strictatime": (MS_STRICTATIME, 0), "suid": (0, MS_NOSUID), "sync": (MS_SYNCHRONOUS, 0),
        "nosymfollow": (MS_NOSYMFOLLOW, 0), "symfollow": (0, MS_NOSYMFOLLOW),
    ]
    static let propagation: [String: UInt] = [
        "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
        "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC, "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
    ]

    static let capabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]
    static let lastCap: Int = Int((readFile("/proc/sys/kernel/cap_last_cap") ?? "40").filter(\.isNumber)) ?? 40

    /// Capability names → bit mask; unknown or unsupported names are ignored with a warning, like runc.
    static func capMask(_ names: [String]?) -> UInt64 {
        var mask: UInt64 = 0
        for name in names ?? [] {
            let n = name.uppercased().hasPrefix("CAP_") ? name.uppercased() : "CAP_" + name.uppercased()
            if let i = capabilities.firstIndex(of: n), i <= lastCap { mask |= 1 << UInt64(i) } else {
                Log.warn("ignoring unknown or unavailable capability \"\(name)\"")
            }
        }
        return mask
    }

    static let rlimits = [
        "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
        "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
    ]
}

/// Parsed mount options: flags, propagation and the leftover data string.
struct MountOptions {
    var flags: UInt = 0
    var propagation: UInt = 0
    var data: [String] = []

    init(_ options: [String]) throws {
        for o in options {
            if let f = Linux.mountFlags[o] {
                flags = (flags | f.set) & ~f.clear
            } else if let p = Linux.propagation[o] {
                propagation = p
            } else if o == "idmap" || o == "ridmap" {
                throw RuncError("mount option \(o) is not supported by berth-runc")
            } else if o != "tmpcopyup" {
                data.append(o)
            }
        }
    }
}

/// Builds the C rootfs entries for the spec's mounts (cgroup mounts expanded into per-hierarchy binds).
func rootfsEntries(spec: Spec, bundle: String, cgroups: Cgroups) throws -> [brc_mount] {
    var entries: [brc_mount] = []
    func entry(kind: Int32, source: String?, target: String, fstype: String? = nil, data: String? = nil, flags: UInt = 0,
               propagation: UInt = 0, bind: Bool = false, remount: Bool = false, file: Bool = false) -> brc_mount {
        brc_mount(kind: kind, source: CMem.optStr(source), target: CMem.str(target), fstype: CMem.optStr(fstype),
                  data: CMem.optStr(data), flags: flags, propagation: propagation, is_bind: bind ? 1 : 0,
                  remount: remount ? 1 : 0, target_is_file: file ? 1 : 0)
    }
    for m in spec.mounts ?? [] {
        let opts = try MountOptions(m.options ?? [])
        let type = m.type ?? ""
        guard m.destination.hasPrefix("/") else { throw RuncError("mount destination \(m.destination) is not absolute") }
        if type == "cgroup" {
            let base = opts.flags & ~(Linux.MS_RDONLY | Linux.MS_BIND | Linux.MS_REC)
            entries.append(entry(kind: Int32(BRC_MOUNT), source: "tmpfs", target: m.destination, fstype: "tmpfs",
                                 data: "mode=755", flags: base))
            for h in Cgroups.hierarchies() where h.key != "unified" {
                guard let dir = cgroups.paths[h.key] else { continue }
                let name = lastPathComponent(h.mountpoint)
                entries.append(entry(kind: Int32(BRC_MOUNT), source: dir, target: m.destination + "/" + name,
                                     flags: Linux.MS_BIND | Linux.MS_REC | opts.flags, bind: true, remount: true))
                if h.controllers.count > 1 && name.contains(",") {
                    for c in h.controllers {
                        entries.append(entry(kind: Int32(BRC_SYMLINK), source: name, target: m.destination + "/" + c))
                    }
                }
            }
            // Like runc, the tmpfs itself stays writable; the hierarchies are read-only binds.
            continue
        }
        let isBind = type == "bind" || opts.flags & Linux.MS_BIND != 0
        if isBind {
            var source = m.source ?? ""
            if !source.hasPrefix("/") { source = bundle + "/" + source }
            var st = stat()
            guard stat(source, &st) == 0 else { throw RuncError.sys("mount source \(source)", errno) }
            let isDir = (st.st_mode & S_IFMT) == S_IFDIR
            let extra = opts.flags & ~(Linux.MS_BIND | Linux.MS_REC | Linux.MS_REMOUNT)
            entries.append(entry(kind: Int32(BRC_MOUNT), source: source, target: m.destination,
                                 flags: opts.flags | Linux.MS_BIND, propagation: opts.propagation, bind: true,
                                 remount: extra != 0, file: !isDir))
        } else {
            entries.append(entry(kind: Int32(BRC_MOUNT), source: m.source ?? type, target: m.destination, fstype: type,
                                 data: opts.data.joined(separator: ","), flags: opts.flags, propagation: opts.propagation))
        }
    }
    let devIsBind = (spec.mounts ?? []).contains { $0.destination == "/dev" && ($0.type == "bind" || ($0.options ?? []).contains { $0 == "bind" || $0 == "rbind" }) }
    if !devIsBind {
        var links: [(String, String)] = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                                         ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
                                         ("pts/ptmx", "/dev/ptmx")]
        if access("/proc/kcore", F_OK) == 0 { links.append(("/proc/kcore", "/dev/core")) }
        for (to, at) in links { entries.append(entry(kind: Int32(BRC_SYMLINK), source: to, target: at)) }
    }
    return entries
}

/// The last component of a path (FoundationEssentials has no NSString path API).
func lastPathComponent(_ s: String) -> String { s.split(separator: "/").last.map(String.init) ?? s }

/// Default devices plus linux.devices (skipped when /dev is bind-mounted from the host).
func deviceEntries(spec: Spec) -> [brc_device] {
    let devIsBind = (spec.mounts ?? []).contains { $0.destination == "/dev" && ($0.type == "bind" || ($0.options ?? []).contains { $0 == "bind" || $0 == "rbind" }) }
    if devIsBind { return [] }
    var devices: [Spec.Device] = [
        .init(type: "c", path: "/dev/null", major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0),
        .init(type: "c", path: "/dev/zero", major: 1, minor: 5, fileMode: 0o666, uid: 0, gid: 0),
        .init(type: "c", path: "/dev/full", major: 1, minor: 7, fileMode: 0o666, uid: 0, gid: 0),
        .init(type: "c", path: "/dev/tty", major: 5, minor: 0, fileMode: 0o666, uid: 0, gid: 0),
        .init(type: "c", path: "/dev/urandom", major: 1, minor: 9, fileMode: 0o666, uid: 0, gid: 0),
        .init(type: "c", path: "/dev/random", major: 1, minor: 8, fileMode: 0o666, uid: 0, gid: 0),
    ]
    for d in spec.linux?.devices ?? [] {
        devices.removeAll { $0.path == d.path }
        devices.append(d)
    }
    return devices.map { d in
        let typeBits: UInt32 = d.type == "b" ? UInt32(S_IFBLK) : d.type == "p" ? UInt32(S_IFIFO) : UInt32(S_IFCHR)
        return brc_device(path: CMem.str(d.path), host_path: CMem.str(d.path), mode: typeBits | (d.fileMode ?? 0o666),
                          major: UInt32(d.major ?? 0), minor: UInt32(d.minor ?? 0), uid: d.uid ?? 0, gid: d.gid ?? 0)
    }
}
