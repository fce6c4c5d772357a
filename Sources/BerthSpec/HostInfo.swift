import BerthCore

#if canImport(Glibc)
    import Glibc
#endif

/// Facts about the calling host that some options copy into a spec.
public struct HostInfo: Sendable {
    /// The caller's effective capabilities by name (privileged containers get exactly these).
    public var capabilities: [String]
    /// Every device node under /dev (privileged containers get them all).
    public var devices: [Device]
    public var hostname: String

    public init(capabilities: [String], devices: [Device], hostname: String) {
        (self.capabilities, self.devices, self.hostname) = (capabilities, devices, hostname)
    }

    /// Capability names by bit number (linux/capability.h up to CAP_CHECKPOINT_RESTORE).
    public static let knownCapabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]

    /// This process's view of the host, read when first needed.
    public static var current: HostInfo {
        HostInfo(capabilities: currentCapabilities(), devices: hostDevices(), hostname: currentHostname())
    }

    /// Names of the bits set in CapEff of /proc/self/status.
    static func currentCapabilities() -> [String] {
        guard let status = try? FileSystem.read("/proc/self/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
            let mask = UInt64(line.dropFirst("CapEff:".count).trimmingSpaces, radix: 16)
        else { return [] }
        return knownCapabilities.enumerated().filter { mask & (1 << UInt64($0.offset)) != 0 }.map(\.element)
    }

    static func currentHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, 255) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// containerd's `HostDevices`: block and character devices under /dev, skipping pts, shm, fd, mqueue and console.
    static func hostDevices(_ directory: String = "/dev") -> [Device] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        var devices: [Device] = []
        for name in names.sorted() {
            let path = directory + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                if ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"].contains(name) { continue }
                devices += hostDevices(path)
            case S_IFBLK, S_IFCHR:
                if name == "console" { continue }
                var d = Device()
                d.path = path
                d.type = st.st_mode & S_IFMT == S_IFBLK ? "b" : "c"
                let rdev = UInt64(st.st_rdev)
                d.major = Int64(((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~UInt64(0xfff)))
                d.minor = Int64((rdev & 0xff) | ((rdev >> 12) & ~UInt64(0xff)))
                d.fileMode = UInt32(st.st_mode & ~S_IFMT)
                (d.uid, d.gid) = (st.st_uid, st.st_gid)
                devices.append(d)
            default: continue
            }
        }
        return devices
    }
}

extension Substring {
    var trimmingSpaces: String { String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " }.reversed()) }
}
