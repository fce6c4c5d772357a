import CBerthRunc
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// spec, features, ps, update, events.
enum Info {
    /// Writes runc's default config.json (or the rootless variant) into the bundle.
    static func spec(bundle: String, rootless: Bool) throws {
        let path = bundle + "/config.json"
        if access(path, F_OK) == 0 { throw RuncError("File \(path) exists. Remove it first") }
        let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        var spec = Spec()
        spec.process = Spec.Process(
            terminal: true, consoleSize: nil, user: Spec.User(), args: ["sh"],
            env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"], cwd: "/",
            capabilities: Spec.Capabilities(bounding: caps, effective: caps, inheritable: nil, permitted: caps, ambient: caps),
            rlimits: [Spec.Rlimit(type: "RLIMIT_NOFILE", hard: 1024, soft: 1024)], noNewPrivileges: true)
        spec.root = Spec.Root(path: "rootfs", readonly: true)
        spec.hostname = "runc"
        func m(_ d: String, _ t: String, _ s: String, _ o: [String]?) -> Spec.Mount {
            Spec.Mount(destination: d, type: t, source: s, options: o)
        }
        spec.mounts = [
            m("/proc", "proc", "proc", nil),
            m("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            m("/dev/pts", "devpts", "devpts",
              ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] + (rootless ? [] : ["gid=5"])),
            m("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            m("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
            rootless ? m("/sys", "none", "/sys", ["rbind", "nosuid", "noexec", "nodev", "ro"])
                : m("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
            m("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ]
        var linux = Spec.Linux()
        var namespaces = ["pid", "network", "ipc", "uts", "mount"].map { Spec.Namespace(type: $0) }
        if rootless {
            namespaces.removeAll { $0.type == "network" }
            namespaces.append(Spec.Namespace(type: "user"))
            linux.uidMappings = [Spec.IDMapping(containerID: 0, hostID: getuid(), size: 1)]
            linux.gidMappings = [Spec.IDMapping(containerID: 0, hostID: getgid(), size: 1)]
        } else {
            linux.resources = Resources(devices: [Resources.DeviceRule(allow: false, access: "rwm")])
        }
        linux.namespaces = namespaces
        linux.maskedPaths = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                             "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
        linux.readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        spec.linux = linux
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted]
        try writeAtomically(path, try encoder.encode(spec), mode: 0o666 & ~currentUmask())
    }

    static func currentUmask() -> mode_t {
        let m = umask(0)
        umask(m)
        return m
    }

    static let features = """
        {
            "ociVersionMin": "1.0.0",
            "ociVersionMax": "1.2.0",
            "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
            "mountOptions": [\((Linux.mountFlags.keys.sorted() + Linux.propagation.keys.sorted() + ["tmpcopyup"]).map { "\"\($0)\"" }.joined(separator: ", "))],
            "linux": {
                "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
                "capabilities": [\(Linux.capabilities.map { "\"\($0)\"" }.joined(separator: ", "))],
                "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
                "seccomp": {
                    "enabled": true,
                    "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                    "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                    "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                    "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                    "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
                },
                "apparmor": {"enabled": false},
                "selinux": {"enabled": false}
            },
            "annotations": {"io.github.berth.runtime": "berth-runc"}
        }
        """

    /// `ps [--format table|json] ID [ps options]`.
    static func ps(_ globals: Globals, _ args: [String]) throws {
        let f = try ParsedFlags.parse(args, bools: [], values: ["format,f"])
        guard let id = f.positional.first else { throw RuncError("\"ps\" requires a container id") }
        let record = try ContainerRecord.load(root: globals.root, id: id)
        let pids = record.status(root: globals.root) == "stopped" ? [] : record.cgroups.pids()
        let format = f.value("format") ?? "table"
        if format == "json" {
            printOut("[" + pids.map(String.init).joined(separator: ",") + "]")
            return
        }
        guard format == "table" else { throw RuncError("invalid format option") }
        let psArgs = f.positional.count > 1 ? Array(f.positional.dropFirst()) : ["-ef"]
        let cmd = "ps " + psArgs.map { "'" + $0.replacing("'", with: "'\\''") + "'" }.joined(separator: " ")
        guard let pipe = popen(cmd, "r") else { throw RuncError.sys("ps", errno) }
        var output = ""
        var buf = [CChar](repeating: 0, count: 4096)
        while fgets(&buf, 4096, pipe) != nil {
            output += buf.withUnsafeBufferPointer { p in p.baseAddress.map { String(cString: $0) } ?? "" }
        }
        pclose(pipe)
        let lines = output.split(separator: "\n")
        guard let header = lines.first else { return }
        let cols = header.split(separator: " ")
        guard let pidCol = cols.firstIndex(of: "PID") else { throw RuncError("couldn't find PID field in ps output") }
        printOut(String(header))
        let wanted = Set(pids)
        for line in lines.dropFirst() {
            let fields = line.split(separator: " ")
            if pidCol < fields.count, let p = Int32(fields[pidCol]), wanted.contains(p) { printOut(String(line)) }
        }
    }

    /// `update [--resources FILE | flags] ID`: changes cgroup limits of a container and records them.
    static func update(_ globals: Globals, _ args: [String]) throws {
        let f = try ParsedFlags.parse(
            args, bools: [],
            values: ["resources,r", "memory", "memory-swap", "memory-reservation", "kernel-memory", "cpu-shares",
                     "cpu-quota", "cpu-period", "cpu-rt-runtime", "cpu-rt-period", "cpuset-cpus", "cpuset-mems",
                     "pids-limit", "blkio-weight", "l3-cache-schema", "mem-bw-schema"])
        guard let id = f.positional.first else { throw RuncError("\"update\" requires a container id") }
        var record = try ContainerRecord.load(root: globals.root, id: id)
        var r: Resources
        if let file = f.value("resources") {
            let data = file == "-" ? FileHandleLike.readStdin() : FileManager.default.contents(atPath: file)
            guard let data else { throw RuncError("cannot read resources file \(file)") }
            do { r = try JSONDecoder().decode(Resources.self, from: data) } catch {
                throw RuncError("resources file \(file): \(error)")
            }
        } else {
            r = Resources()
            func i64(_ n: String) throws -> Int64? {
                guard let v = f.value(n) else { return nil }
                guard let x = Int64(v) else { throw RuncError("invalid value for --\(n): \(v)") }
                return x
            }
            if f.value("memory") != nil || f.value("memory-swap") != nil || f.value("memory-reservation") != nil {
                r.memory = Resources.Memory(limit: try i64("memory"), reservation: try i64("memory-reservation"),
                                            swap: try i64("memory-swap"))
            }
            if ["cpu-shares", "cpu-quota", "cpu-period", "cpuset-cpus", "cpuset-mems"].contains(where: { f.value($0) != nil }) {
                r.cpu = Resources.CPU(shares: try i64("cpu-shares").map { UInt64($0) }, quota: try i64("cpu-quota"),
                                      period: try i64("cpu-period").map { UInt64($0) }, cpus: f.value("cpuset-cpus"),
                                      mems: f.value("cpuset-mems"))
            }
            if let p = try i64("pids-limit") { r.pids = Resources.Pids(limit: p) }
            if let w = try i64("blkio-weight") { r.blockIO = Resources.BlockIO(weight: UInt16(clamping: w)) }
        }
        guard record.status(root: globals.root) != "stopped" else { throw RuncError("container not running") }
        var spec = try record.spec(root: globals.root)
        try record.cgroups.apply(r, devices: spec.linux?.devices ?? [], initial: false)
        var current = spec.linux?.resources ?? Resources()
        if r.memory != nil { current.memory = r.memory }
        if r.cpu != nil { current.cpu = r.cpu }
        if r.pids != nil { current.pids = r.pids }
        if r.blockIO != nil { current.blockIO = r.blockIO }
        if spec.linux == nil { spec.linux = Spec.Linux() }
        spec.linux?.resources = current
        try record.save(spec: spec, root: globals.root)
    }

    /// `events [--stats] [--interval D] ID`: one stats event (--stats), or a stream as runc's plain `events`: a stats
    /// event every interval and an "oom" event whenever the kernel reports an OOM in the container's memory cgroup
    /// (cgroup v1: an eventfd registered on memory.oom_control; v2: memory.events' oom_kill count). Ends when the
    /// container stops.
    static func events(_ globals: Globals, _ args: [String]) throws {
        let f = try ParsedFlags.parse(args, bools: ["stats"], values: ["interval"])
        guard let id = f.positional.first else { throw RuncError("\"events\" requires a container id") }
        let interval = try parseDuration(f.value("interval") ?? "5s")
        let record = try ContainerRecord.load(root: globals.root, id: id)
        guard record.status(root: globals.root) != "stopped" else { throw RuncError("container with id \(id) is not running") }
        if f.has("stats") { printOut(stats(record)); return }
        let oom = OOMWatch(record.cgroups)
        defer { oom.close() }
        var next = monotonicSeconds() + interval
        while true {
            let wait = max(0, next - monotonicSeconds())
            if oom.wait(seconds: wait) {
                printOut("{\"type\":\"oom\",\"id\":\(jsonString(id))}")
                continue
            }
            guard record.status(root: globals.root) != "stopped" else { return }
            printOut(stats(record))
            next += interval
        }
    }

    /// A Go-style duration ("5s", "500ms", "1m", "2"): seconds.
    static func parseDuration(_ text: String) throws -> Double {
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000001), ("ns", 1e-9), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            if let v = Double(text.dropLast(suffix.count)), v > 0 { return v * scale }
        }
        if let v = Double(text), v > 0 { return v }
        throw RuncError("invalid value \"\(text)\" for flag -interval: parse error")
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// One stats event, in runc's JSON shape: from the v1 cpuacct/memory/pids files, or, where cpuacct is not on a v1
    /// hierarchy (a pure v2 host), from the v2 cpu.stat, memory.* and pids.* files as runc's fs2 manager reads them.
    static func stats(_ r: ContainerRecord) -> String {
        let cg = r.cgroups
        var usage = (total: UInt64(0), percpu: [UInt64](), kernel: UInt64(0), user: UInt64(0))
        var mem = (limit: UInt64(0), usage: UInt64(0), max: UInt64(0), failcnt: UInt64(0))
        var pids = (current: UInt64(0), limit: UInt64(0))
        func keyed(_ text: String?) -> [Substring: UInt64] {
            var m: [Substring: UInt64] = [:]
            for line in (text ?? "").split(separator: "\n") {
                let p = line.split(separator: " ")
                if p.count == 2, let v = UInt64(p[1]) { m[p[0]] = v }
            }
            return m
        }
        if cg.path("cpuacct") == nil, let dir = cg.paths["unified"] {
            func file(_ name: String) -> String? { readFile(dir + "/" + name)?.trimmed }
            func num(_ name: String, max: UInt64) -> UInt64 { file(name).map { $0 == "max" ? max : UInt64($0) ?? 0 } ?? 0 }
            let cpu = keyed(file("cpu.stat"))
            usage.total = (cpu["usage_usec"] ?? 0) * 1000
            usage.user = (cpu["user_usec"] ?? 0) * 1000
            usage.kernel = (cpu["system_usec"] ?? 0) * 1000
            mem.usage = num("memory.current", max: 0)
            mem.limit = num("memory.max", max: UInt64.max)
            mem.max = num("memory.peak", max: 0)
            mem.failcnt = keyed(file("memory.events"))["max"] ?? 0
            pids.current = num("pids.current", max: 0)
            pids.limit = num("pids.max", max: 0)
        } else {
            func num(_ c: String, _ file: String) -> UInt64 { UInt64(cg.read(c, file) ?? "") ?? 0 }
            usage.total = num("cpuacct", "cpuacct.usage")
            usage.percpu = (cg.read("cpuacct", "cpuacct.usage_percpu") ?? "").split(separator: " ").compactMap { UInt64($0) }
            let ticks = keyed(cg.read("cpuacct", "cpuacct.stat"))
            usage.user = (ticks["user"] ?? 0) * 10_000_000  // USER_HZ ticks to nanoseconds
            usage.kernel = (ticks["system"] ?? 0) * 10_000_000
            mem = (num("memory", "memory.limit_in_bytes"), num("memory", "memory.usage_in_bytes"),
                   num("memory", "memory.max_usage_in_bytes"), num("memory", "memory.failcnt"))
            pids = (num("pids", "pids.current"), cg.read("pids", "pids.max").flatMap { UInt64($0) } ?? 0)
        }
        let cpu = "{\"usage\":{\"total\":\(usage.total),\"percpu\":[\(usage.percpu.map(String.init).joined(separator: ","))],\"kernel\":\(usage.kernel),\"user\":\(usage.user)},\"throttling\":{}}"
        let memory = "{\"usage\":{\"limit\":\(mem.limit),\"usage\":\(mem.usage),\"max\":\(mem.max),\"failcnt\":\(mem.failcnt)}}"
        let pidsJSON = "{\"current\":\(pids.current),\"limit\":\(pids.limit)}"
        return "{\"type\":\"stats\",\"id\":\(jsonString(r.id)),\"data\":{\"cpu\":\(cpu),\"memory\":\(memory),\"pids\":\(pidsJSON),\"blkio\":{},\"hugetlb\":{}}}"
    }
}

/// OOM notifications of one container's memory cgroup: on v1 an eventfd registered through
/// cgroup.event_control on memory.oom_control (as runc does); on v2 the oom_kill count of memory.events, polled.
final class OOMWatch {
    private var efd: Int32 = -1
    private var controlFd: Int32 = -1
    private var eventsFile: String?
    private var lastKills: UInt64 = 0

    init(_ cg: Cgroups) {
        guard let dir = cg.path("memory") ?? cg.paths["unified"] else { return }
        if access(dir + "/memory.oom_control", F_OK) == 0 {
            let e = brc_eventfd()
            let c = open(dir + "/memory.oom_control", O_RDONLY | O_CLOEXEC)
            if e >= 0, c >= 0, writeFile(dir + "/cgroup.event_control", "\(e) \(c)") == 0 {
                efd = e
                controlFd = c
                return
            }
            if e >= 0 { Glibc.close(e) }
            if c >= 0 { Glibc.close(c) }
        } else if access(dir + "/memory.events", F_OK) == 0 {
            eventsFile = dir + "/memory.events"
            lastKills = Self.kills(dir + "/memory.events")
        }
    }

    private static func kills(_ file: String) -> UInt64 {
        for line in (readFile(file) ?? "").split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return UInt64(line.dropFirst(9)) ?? 0
        }
        return 0
    }

    /// Waits up to `seconds`; true if an OOM happened meanwhile.
    func wait(seconds: Double) -> Bool {
        if efd >= 0 {
            var pfd = pollfd(fd: efd, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, Int32(seconds * 1000))
            guard r > 0 else { return false }
            var count: UInt64 = 0
            return read(efd, &count, 8) == 8
        }
        usleep(UInt32(min(seconds, 4000) * 1_000_000))
        if let eventsFile {
            let now = Self.kills(eventsFile)
            defer { lastKills = now }
            return now > lastKills
        }
        return false
    }

    func close() {
        if efd >= 0 { Glibc.close(efd) }
        if controlFd >= 0 { Glibc.close(controlFd) }
    }
}
