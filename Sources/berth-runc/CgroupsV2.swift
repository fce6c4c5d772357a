import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// cgroup v2: the controllers that are not on a v1 hierarchy but on the unified one (all of them on a pure v2
/// host; on this hybrid host only hugetlb). Limits are written with runc's v1→v2 conversions; controllers are
/// enabled in cgroup.subtree_control from the mount root down to the container's parent first.
/// Device rules on v2 are an eBPF program (DeviceFilter).
extension Cgroups {
    /// v2 names of the controllers (v1 "blkio" is v2 "io").
    static let v2Names: [String: String] = ["memory": "memory", "cpu": "cpu", "cpuset": "cpuset", "pids": "pids",
                                            "blkio": "io", "hugetlb": "hugetlb", "freezer": "freezer"]

    /// The container's v2 directory if `controller` (a v1 name) lives on the unified hierarchy only.
    func v2Dir(for controller: String) -> String? {
        guard path(controller) == nil, let dir = paths["unified"] else { return nil }
        if controller == "freezer" { return dir }  // cgroup.freeze is core, not a controller
        guard let name = Self.v2Names[controller] else { return nil }
        return Self.unifiedControllers().contains(name) ? dir : nil
    }

    /// Controllers the cgroup2 mount offers (its root's cgroup.controllers).
    static func unifiedControllers() -> Set<String> {
        guard let h = hierarchies().first(where: { $0.key == "unified" }) else { return [] }
        let text = readFile(h.mountpoint + "/cgroup.controllers") ?? ""
        return Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    /// The v2 files and values for `r` (runc's conversions), for the controllers in `controllers` (v1 names).
    static func v2Files(_ r: Resources, controllers: Set<String>) throws -> [(String, String)] {
        var files: [(String, String)] = []
        func limit(_ v: Int64) -> String { v < 0 ? "max" : "\(v)" }
        if let m = r.memory, controllers.contains("memory") {
            if let l = m.limit, l != 0 { files.append(("memory.max", limit(l))) }
            if let v = m.reservation, v != 0 { files.append(("memory.low", limit(v))) }
            let mem = m.limit ?? 0
            let swap = m.swap ?? 0
            if mem == -1 && swap == 0 {
                files.append(("memory.swap.max", "max"))
            } else if swap == -1 {
                files.append(("memory.swap.max", "max"))
            } else if swap != 0 {
                guard mem > 0 else { throw RuncError("unable to set swap limit without memory limit") }
                guard swap >= mem else { throw RuncError("memory+swap limit should be >= memory limit") }
                files.append(("memory.swap.max", "\(swap - mem)"))
            }
        }
        if let c = r.cpu {
            if controllers.contains("cpu") {
                if let s = c.shares, s != 0 { files.append(("cpu.weight", "\(1 + ((max(s, 2) - 2) * 9999) / 262_142)")) }
                let quota = c.quota ?? 0
                let period = c.period ?? 0
                if quota != 0 || period != 0 {
                    files.append(("cpu.max", "\(quota > 0 ? "\(quota)" : "max") \(period != 0 ? period : 100_000)"))
                }
                if let idle = c.idle { files.append(("cpu.idle", "\(idle)")) }
            }
            if controllers.contains("cpuset") {
                if let v = c.cpus, !v.isEmpty { files.append(("cpuset.cpus", v)) }
                if let v = c.mems, !v.isEmpty { files.append(("cpuset.mems", v)) }
            }
        }
        if let p = r.pids, controllers.contains("pids") { files.append(("pids.max", p.limit <= 0 ? "max" : "\(p.limit)")) }
        if let b = r.blockIO, controllers.contains("blkio") {
            if let w = b.weight, w != 0 { files.append(("io.weight", "default \(1 + (Int(max(w, 10)) - 10) * 9999 / 990)")) }
            for d in b.weightDevice ?? [] {
                if let w = d.weight { files.append(("io.weight", "\(d.major):\(d.minor) \(1 + (Int(max(w, 10)) - 10) * 9999 / 990)")) }
            }
            let throttles: [(String, [Resources.ThrottleDevice]?)] = [
                ("rbps", b.throttleReadBpsDevice), ("wbps", b.throttleWriteBpsDevice),
                ("riops", b.throttleReadIOPSDevice), ("wiops", b.throttleWriteIOPSDevice),
            ]
            for (key, list) in throttles {
                for d in list ?? [] { files.append(("io.max", "\(d.major):\(d.minor) \(key)=\(d.rate)")) }
            }
        }
        if controllers.contains("hugetlb") {
            for h in r.hugepageLimits ?? [] { files.append(("hugetlb.\(h.pageSize).max", "\(h.limit)")) }
        }
        for (key, value) in (r.unified ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard !key.contains("/"), key != "." && key != ".." else { throw RuncError("unified resource \(key): invalid name") }
            files.append((key, value))
        }
        return files
    }

    /// Writes `files` into `dir` (the container's v2 cgroup).
    static func writeV2(_ files: [(String, String)], dir: String) throws {
        for (file, value) in files {
            let e = writeFile(dir + "/" + file, value)
            if e != 0 { throw RuncError.sys("write \(value) to \(dir)/\(file)", e) }
        }
    }

    /// Applies the parts of `r` whose controllers are on the unified hierarchy only; returns those controllers.
    @discardableResult
    func applyV2(_ r: Resources) throws -> Set<String> {
        guard let dir = paths["unified"] else { return [] }
        let v2 = Set(["memory", "cpu", "cpuset", "pids", "blkio", "hugetlb"].filter { v2Dir(for: $0) != nil })
        let files = try Self.v2Files(r, controllers: v2)
        var needed = Set(files.map { String($0.0.prefix { $0 != "." }) }).intersection(Set(Self.v2Names.values))
        if r.unified != nil { needed.formUnion(Set((r.unified ?? [:]).keys.map { String($0.prefix { $0 != "." }) })) }
        needed = needed.intersection(Self.unifiedControllers())
        try enableV2(needed.sorted(), dir: dir)
        try Self.writeV2(files, dir: dir)
        return v2
    }

    /// Enables `controllers` in cgroup.subtree_control of every ancestor of `dir` below the cgroup2 mount.
    func enableV2(_ controllers: [String], dir: String) throws {
        guard !controllers.isEmpty, let h = Self.hierarchies().first(where: { $0.key == "unified" }) else { return }
        let mount = Self.normalize(h.mountpoint)
        guard dir.hasPrefix(mount) else { return }
        var current = mount
        let parts = dir.dropFirst(mount.count).split(separator: "/")
        for comp in [""] + parts.dropLast().map(String.init) {
            if !comp.isEmpty { current += "/" + comp }
            let enabled = Set((readFile(current + "/cgroup.subtree_control") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" })
                .map(String.init))
            for c in controllers where !enabled.contains(c) {
                let e = writeFile(current + "/cgroup.subtree_control", "+" + c)
                if e != 0 { throw RuncError.sys("enable the \(c) controller in \(current)/cgroup.subtree_control", e) }
            }
        }
    }
}
