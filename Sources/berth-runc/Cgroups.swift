import CBerthRunc
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// cgroup v1 (and the hybrid layout: v1 controllers plus a v2 `unified` mount) for one container.
/// `paths` maps a hierarchy key (its controller list, e.g. "memory", "cpu,cpuacct", "name=systemd", or "unified")
/// to the container's directory in it.
struct Cgroups: Codable, Sendable {
    var paths: [String: String]

    /// One mounted cgroup hierarchy.
    struct Hierarchy { var key: String; var controllers: [String]; var mountpoint: String; var root: String }

    /// Hierarchies from /proc/self/mountinfo, read once per process: the file lists every mount on the host
    /// (each running container's rootfs among them), and a create used to read and split all of it four times.
    static let mounted: [Hierarchy] = parse(mountinfo: readFile("/proc/self/mountinfo") ?? "")

    static func hierarchies() -> [Hierarchy] { mounted }

    /// The cgroup and cgroup2 lines of `mountinfo`; other lines are skipped on a byte search, unsplit.
    static func parse(mountinfo info: String) -> [Hierarchy] {
        var result: [Hierarchy] = []
        for bytes in info.utf8.split(separator: UInt8(ascii: "\n")) where contains(bytes, " - cgroup".utf8) {
            let line = Substring(bytes)
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = parts.firstIndex(of: "-"), dash + 3 < parts.count, parts.count > 4 else { continue }
            let fstype = parts[dash + 1]
            let mountpoint = String(parts[4])
            let root = String(parts[3])
            if fstype == "cgroup2" {
                result.append(Hierarchy(key: "unified", controllers: [], mountpoint: mountpoint, root: root))
            } else if fstype == "cgroup" {
                let opts = parts[dash + 3].split(separator: ",").map(String.init)
                let controllers = opts.filter { !["rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec"].contains($0)
                    && !$0.hasPrefix("release_agent") && $0 != "clone_children" && $0 != "noprefix" && $0 != "xattr" }
                result.append(Hierarchy(key: controllers.joined(separator: ","), controllers: controllers,
                                        mountpoint: mountpoint, root: root))
            }
        }
        return result
    }

    /// Whether `needle` occurs in `haystack`.
    static func contains(_ haystack: Substring.UTF8View, _ needle: String.UTF8View) -> Bool {
        guard let first = needle.first else { return true }
        var start = haystack.startIndex
        while let hit = haystack[start...].firstIndex(of: first) {
            if haystack[hit...].starts(with: needle) { return true }
            start = haystack.index(after: hit)
        }
        return false
    }

    /// The calling process's cgroup in each hierarchy, from /proc/self/cgroup.
    static func ownPaths() -> [String: String] {
        var own: [String: String] = [:]
        for line in (readFile("/proc/self/cgroup") ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            own[parts[1].isEmpty ? "unified" : String(parts[1])] = String(parts[2])
        }
        return own
    }

    /// Directories for `cgroupsPath` (absolute: from each hierarchy's root; relative: under our own cgroup).
    static func resolve(cgroupsPath: String?, id: String) -> Cgroups {
        let inner = (cgroupsPath?.isEmpty ?? true) ? id : (cgroupsPath ?? id)
        let own = ownPaths()
        var paths: [String: String] = [:]
        for h in hierarchies() {
            var base = "/"
            if !inner.hasPrefix("/") {
                base = own[h.key] ?? "/"
                if h.root != "/", base.hasPrefix(h.root) { base = String(base.dropFirst(h.root.count)) }
            }
            paths[h.key] = normalize(h.mountpoint + "/" + base + "/" + inner)
        }
        return Cgroups(paths: paths)
    }

    static func normalize(_ p: String) -> String {
        "/" + p.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }

    func path(_ controller: String) -> String? {
        if let p = paths[controller] { return p }
        return paths.first { $0.key.split(separator: ",").contains(Substring(controller)) }?.value
    }

    /// Creates every directory (cpuset: copies cpus/mems from the parent when the kernel did not, as it requires).
    func create() throws {
        for (key, dir) in paths.sorted(by: { $0.key < $1.key }) {
            try mkdirs(dir, cpuset: key.split(separator: ",").contains("cpuset"))
        }
    }

    /// Creates `dir` and any missing parents; usually only the leaf is new, so it is tried first.
    private func mkdirs(_ dir: String, cpuset: Bool) throws {
        let parent = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
        if mkdir(dir, 0o755) != 0 {
            let e = errno
            guard e != EEXIST else {
                if cpuset { Self.fillCpuset(dir) }
                return
            }
            guard e == ENOENT, !parent.isEmpty else { throw RuncError.sys("mkdir \(dir)", e) }
            try mkdirs(parent, cpuset: cpuset)
            // A parent made here hands its cpus/mems to every new child itself (v1 `clone_children`), so a
            // container's cgroup needs no cpuset write: each one rebuilt the scheduler domains.
            if cpuset { _ = writeFile(parent + "/cgroup.clone_children", "1") }
            if mkdir(dir, 0o755) != 0, errno != EEXIST { throw RuncError.sys("mkdir \(dir)", errno) }
        }
        if cpuset { Self.fillCpuset(dir) }
    }

    /// Gives `dir`, and each ancestor whose cpus or mems are empty, those of the nearest ancestor that has them,
    /// top down (as runc's cpuset copy does): the kernel refuses a task in a cpuset cgroup with empty cpus or mems
    /// (ENOSPC), and a parent another berth-runc just created may not be filled in yet (20 containers started at
    /// once failed that way). Usually `dir` already has both, and this only reads them.
    static func fillCpuset(_ dir: String) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            var empty: [String] = []
            var level = dir
            var inherited: String?
            while let value = readFile(level + "/" + file)?.trimmed {
                if !value.isEmpty {
                    inherited = value
                    break
                }
                empty.append(level)
                guard let slash = level.lastIndex(of: "/"), slash > level.startIndex else { break }
                level = String(level[..<slash])
            }
            guard let inherited else { continue }
            for level in empty.reversed() { _ = writeFile(level + "/" + file, inherited) }
        }
    }

    /// Puts `pid` into every hierarchy (or only the v2 one) through cgroup.procs: the slow way (the first such
    /// write in a while waits an RCU grace period), used only where the process cannot join by itself.
    func add(pid: Int32, onlyUnified: Bool = false) throws {
        for (key, dir) in paths where !onlyUnified || key == "unified" {
            let e = writeFile(dir + "/cgroup.procs", "\(pid)")
            if e != 0 { throw RuncError.sys("add \(pid) to \(dir)", e) }
        }
    }

    /// What a new process needs to join its cgroups by itself (see brc_plan): the v1 `tasks` files opened for
    /// writing, and the v2 directory for clone3(CLONE_INTO_CGROUP) (-1 if there is no v2 hierarchy).
    func joinHandles() throws -> (tasks: [Int32], v2: Int32) {
        var tasks: [Int32] = []
        var v2: Int32 = -1
        do {
            for (key, dir) in paths.sorted(by: { $0.key < $1.key }) {
                if key == "unified" {
                    v2 = brc_open_fifo_path(dir)  // O_PATH
                    if v2 < 0 { throw RuncError.sys("open \(dir)", -v2) }
                } else {
                    let fd = open(dir + "/tasks", O_WRONLY | O_CLOEXEC)
                    if fd < 0 { throw RuncError.sys("open \(dir)/tasks", errno) }
                    tasks.append(fd)
                }
            }
        } catch {
            for fd in tasks { close(fd) }
            if v2 >= 0 { close(v2) }
            throw error
        }
        return (tasks, v2)
    }

    private func set(_ controller: String, _ file: String, _ value: String) throws {
        guard let dir = path(controller) else {
            throw RuncError("cgroup controller \(controller) is not mounted (needed for \(file))")
        }
        let e = writeFile(dir + "/" + file, value)
        if e != 0 { throw RuncError.sys("write \(value) to \(dir)/\(file)", e) }
    }

    /// Writes the limits of `r` (create and `update`).
    func apply(_ r: Resources, devices: [Spec.Device] = [], initial: Bool) throws {
        let wanted = [("memory", r.memory != nil), ("pids", r.pids != nil), ("hugetlb", !(r.hugepageLimits ?? []).isEmpty)]
        for (c, want) in wanted where want && path(c) == nil && v2Dir(for: c) == nil {
            throw RuncError("cgroup controller \(c) is not mounted (on neither cgroup v1 nor v2)")
        }
        if let m = r.memory, path("memory") != nil {
            if let limit = m.limit {
                if let swap = m.swap, path("memory").map({ access($0 + "/memory.memsw.limit_in_bytes", F_OK) == 0 }) ?? false {
                    // Raise memsw first when growing, limit first when shrinking.
                    if (try? set("memory", "memory.limit_in_bytes", "\(limit)")) != nil {
                        try set("memory", "memory.memsw.limit_in_bytes", "\(swap)")
                    } else {
                        try set("memory", "memory.memsw.limit_in_bytes", "\(swap)")
                        try set("memory", "memory.limit_in_bytes", "\(limit)")
                    }
                } else {
                    try set("memory", "memory.limit_in_bytes", "\(limit)")
                }
            }
            if let v = m.reservation { try set("memory", "memory.soft_limit_in_bytes", "\(v)") }
            if let v = m.swappiness, v <= 100 { try set("memory", "memory.swappiness", "\(v)") }
            if m.disableOOMKiller == true { try set("memory", "memory.oom_control", "1") }
        }
        if let c = r.cpu, path("cpu") != nil {
            if let v = c.shares, v != 0 { try set("cpu", "cpu.shares", "\(v)") }
            if let v = c.period, v != 0 { try set("cpu", "cpu.cfs_period_us", "\(v)") }
            if let v = c.quota, v != 0 { try set("cpu", "cpu.cfs_quota_us", "\(v)") }
            if let v = c.realtimePeriod, v != 0 { try set("cpu", "cpu.rt_period_us", "\(v)") }
            if let v = c.realtimeRuntime, v != 0 { try set("cpu", "cpu.rt_runtime_us", "\(v)") }
        }
        if let c = r.cpu, path("cpuset") != nil {
            if let v = c.cpus, !v.isEmpty { try set("cpuset", "cpuset.cpus", v) }
            if let v = c.mems, !v.isEmpty { try set("cpuset", "cpuset.mems", v) }
        }
        if let p = r.pids, path("pids") != nil { try set("pids", "pids.max", p.limit <= 0 ? "max" : "\(p.limit)") }
        if let b = r.blockIO, path("blkio") != nil {
            // Like runc: BFQ's files when present, else CFQ's; without either scheduler, weights are skipped.
            let dir = path("blkio") ?? ""
            let bfq = access(dir + "/blkio.bfq.weight", F_OK) == 0
            let weightFile = bfq ? "blkio.bfq.weight" : "blkio.weight"
            let hasWeight = access(dir + "/" + weightFile, F_OK) == 0
            if !hasWeight && (b.weight != nil || b.weightDevice != nil) {
                Log.warn("blkio weights ignored: no blkio.weight or blkio.bfq.weight on this host")
            }
            if hasWeight {
                if let v = b.weight { try set("blkio", weightFile, "\(v)") }
                if let v = b.leafWeight, !bfq { try set("blkio", "blkio.leaf_weight", "\(v)") }
                for d in b.weightDevice ?? [] {
                    if let w = d.weight { try set("blkio", weightFile + "_device", "\(d.major):\(d.minor) \(w)") }
                    if let w = d.leafWeight, !bfq { try set("blkio", "blkio.leaf_weight_device", "\(d.major):\(d.minor) \(w)") }
                }
            }
            let throttles: [(String, [Resources.ThrottleDevice]?)] = [
                ("blkio.throttle.read_bps_device", b.throttleReadBpsDevice),
                ("blkio.throttle.write_bps_device", b.throttleWriteBpsDevice),
                ("blkio.throttle.read_iops_device", b.throttleReadIOPSDevice),
                ("blkio.throttle.write_iops_device", b.throttleWriteIOPSDevice),
            ]
            for (file, list) in throttles { for d in list ?? [] { try set("blkio", file, "\(d.major):\(d.minor) \(d.rate)") } }
        }
        for h in r.hugepageLimits ?? [] where path("hugetlb") != nil {
            try set("hugetlb", "hugetlb.\(h.pageSize).limit_in_bytes", "\(h.limit)")
        }
        // Controllers found only on the unified hierarchy (a pure v2 host, or hugetlb here).
        try applyV2(r)
        if let n = r.network {
            if let c = n.classID, path("net_cls") != nil { try set("net_cls", "net_cls.classid", "\(c)") }
            for p in n.priorities ?? [] where path("net_prio") != nil {
                try set("net_prio", "net_prio.ifpriomap", "\(p.name) \(p.priority)")
            }
        }
        if initial || r.devices != nil {
            // The default allow list (runc 1.1's; /dev/console is not in it) follows the container's own rules.
            let rules = DeviceFilter.containerRules(r.devices ?? [], extra: devices)
            let filter = try DeviceFilter(rules: rules)  // also refuses what v1 would silently ignore
            if path("devices") != nil {
                for rule in rules {
                    try set("devices", rule.allow ? "devices.allow" : "devices.deny", DeviceFilter.v1Text(rule))
                }
            } else if let dir = paths["unified"] {
                try filter.attach(cgroup: dir)
            }
        }
    }

    /// Every pid in the container's cgroup (from the first hierarchy that has it).
    func pids() -> [Int32] {
        for key in ["pids", "freezer", "memory", "devices", "cpu", "unified"] {
            if let dir = path(key), let text = readFile(dir + "/cgroup.procs") {
                return text.split(separator: "\n").compactMap { Int32($0) }
            }
        }
        return []
    }

    func freezerState() -> String? {
        if let dir = path("freezer") { return readFile(dir + "/freezer.state")?.trimmed }
        // v2: cgroup.events says "frozen 1" once every task is frozen.
        guard let dir = v2Dir(for: "freezer"), path("cpu") == nil, let events = readFile(dir + "/cgroup.events") else { return nil }
        return events.contains("frozen 1") ? "FROZEN" : "THAWED"
    }

    /// Freezes or thaws the container, waiting until the kernel reports the new state.
    func freeze(_ on: Bool) throws {
        let want = on ? "FROZEN" : "THAWED"
        for _ in 0..<2000 {
            if path("freezer") == nil, let dir = v2Dir(for: "freezer") {
                let e = writeFile(dir + "/cgroup.freeze", on ? "1" : "0")
                if e != 0 { throw RuncError.sys("write \(dir)/cgroup.freeze", e) }
            } else {
                try set("freezer", "freezer.state", want)
            }
            if freezerState() == want { return }
            usleep(1000)
        }
        throw RuncError("freezer did not reach \(want)")
    }

    /// Removes every directory (retrying while the kernel finishes reaping tasks).
    func destroy() {
        for (_, dir) in paths {
            for _ in 0..<500 {
                if rmdir(dir) == 0 || errno == ENOENT { break }
                usleep(2000)
            }
        }
    }

    func read(_ controller: String, _ file: String) -> String? {
        guard let dir = path(controller) else { return nil }
        return readFile(dir + "/" + file)?.trimmed
    }
}
