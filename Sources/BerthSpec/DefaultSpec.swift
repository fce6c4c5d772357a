/// The spec containerd 1.6's `oci.GenerateSpec` starts from on Linux (oci/spec.go, oci/mounts.go), plus the device
/// cgroup rules `oci.WithDefaultUnixDevices` adds, which `ctr run` always applies.
public enum DefaultSpec {
    public static let defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The capabilities a container process keeps by default (bounding, effective and permitted).
    public static let capabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]

    public static let maskedPaths = [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
    ]

    public static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

    public static var mounts: [Mount] {
        [
            Mount(destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"]),
            Mount(destination: "/dev", type: "tmpfs", source: "tmpfs",
                  options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            Mount(destination: "/dev/pts", type: "devpts", source: "devpts",
                  options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            Mount(destination: "/dev/shm", type: "tmpfs", source: "shm",
                  options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            Mount(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
            Mount(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
            Mount(destination: "/run", type: "tmpfs", source: "tmpfs",
                  options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        ]
    }

    /// Character devices every container may use: null, random, full, tty, zero, urandom, console, pts, ptmx.
    public static var deviceRules: [DeviceCgroup] {
        [(1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (136, nil), (5, 2)].map { major, minor in
            DeviceCgroup(allow: true, type: "c", major: major, minor: minor, access: "rwm")
        }
    }

    /// containerd's default spec for container `id` in `namespace`, with the default device rules.
    public static func make(id: String, namespace: String) -> Spec {
        var spec = Spec()
        spec.root = Root()
        spec.root?.path = "rootfs"
        var process = Process()
        process.cwd = "/"
        process.noNewPrivileges = true
        var caps = Capabilities()
        (caps.bounding, caps.permitted, caps.effective) = (capabilities, capabilities, capabilities)
        process.capabilities = caps
        process.rlimits = [Rlimit(type: "RLIMIT_NOFILE", hard: 1024, soft: 1024)]
        spec.process = process
        var linux = Linux()
        linux.maskedPaths = maskedPaths
        linux.readonlyPaths = readonlyPaths
        linux.cgroupsPath = "/\(namespace)/\(id)"
        var resources = Resources()
        resources.devices = [DeviceCgroup(allow: false, access: "rwm")] + deviceRules
        linux.resources = resources
        linux.namespaces = ["pid", "ipc", "uts", "mount", "network"].map { Namespace($0) }
        spec.linux = linux
        spec.mounts = mounts
        return spec
    }
}
