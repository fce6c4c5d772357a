import Foundation
import Testing

/// cgroup v1 limits on this hybrid host, read from inside the container, compared with runc.
@Suite(.serialized)
struct CgroupTests {
    static let readLimits = """
        cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes memory/memory.swappiness \
        cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpuset/cpuset.cpus pids/pids.max blkio/blkio.weight; \
        cat devices/devices.list | sort; cat /proc/self/cgroup | grep -E ':(memory|pids):'
        """

    @Test func resourcesAreAppliedLikeRunc() throws {
        try withBundle(["sh", "-c", Self.readLimits]) { b in
            var linux = b.linux
            linux["resources"] = [
                "memory": ["limit": 64 << 20, "reservation": 32 << 20, "swappiness": 10],
                "cpu": ["shares": 512, "quota": 20000, "period": 100000, "cpus": "0"],
                "pids": ["limit": 42],
                "blockIO": ["weight": 300],
                "devices": [["allow": false, "access": "rwm"], ["allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"]],
            ]
            b.linux = linux
            let r = try b.run(b.runc)
            let o = try b.run(b.berth)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.status == 0, "\(o.stderr)")
            // The cgroup lines name the container id, which differs between the two runs.
            func strip(_ s: String, _ id: String) -> String { s.replacingOccurrences(of: id, with: "ID") }
            #expect(strip(o.stdout, b.ids[1]) == strip(r.stdout, b.ids[0]))
            #expect(o.stdout.hasPrefix("67108864\n33554432\n10\n512\n20000\n100000\n0\n42\n"))
        }
    }

    @Test func pidsLimitIsEnforced() throws {
        // The limit leaves room for the runtime's own init (runc's has Go threads) before it execs the shell.
        try withBundle(["sh", "-c", "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done 2>&1; echo done"]) { b in
            var linux = b.linux
            linux["resources"] = ["pids": ["limit": 20]]
            b.linux = linux
            let (r, o) = try b.runBoth()
            #expect(r.stdout.contains("can't fork"), "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
        }
    }

    @Test func updateChangesLimitsOfRunningContainer() throws {
        try withBundle(["sleep", "60"]) { b in
            let res = b.dir + "/res.json"
            try writeCloexec(res, #"{"memory": {"limit": 100663296}, "pids": {"limit": 77}, "cpu": {"shares": 256}}"#)
            var seen: [String] = []
            for rt in b.runtimes {
                let id = try b.prepare()
                #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                let u = try rt("update", "--resources", res, id)
                #expect(u.status == 0, "\(rt) update: \(u.stderr)")
                let u2 = try rt("update", "--pids-limit", "55", id)
                #expect(u2.status == 0, "\(rt) update flags: \(u2.stderr)")
                let r = try rt("exec", id, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                               "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/cpu/cpu.shares")
                seen.append(r.stdout)
                #expect(try rt("delete", "--force", id).status == 0)
                #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/brt/\(id)"))
            }
            #expect(seen[0] == "100663296\n55\n256\n")
            #expect(seen[1] == seen[0])
        }
    }

    @Test func relativeCgroupsPathIsUnderOwnCgroup() throws {
        try withBundle(["cat", "/proc/self/cgroup"]) { b in
            var outs: [String] = []
            for rt in b.runtimes {
                let id = b.newID("rel")
                var linux = b.linux
                linux["cgroupsPath"] = "brt-rel/\(id)"
                b.linux = linux
                try b.write()
                let r = try rt("run", "--bundle", b.dir, id)
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                outs.append(r.stdout.replacingOccurrences(of: id, with: "ID"))
                for line in ((try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? "").split(separator: "\n") {
                    let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                    guard parts.count == 3 else { continue }
                    let name = parts[1].isEmpty ? "unified" : parts[1].replacingOccurrences(of: "name=", with: "")
                    rmdir("/sys/fs/cgroup/\(name)\(parts[2])/brt-rel".replacingOccurrences(of: "//", with: "/"))
                }
            }
            #expect(outs[0] == outs[1])
        }
    }

    /// A cpuset parent that berth-runc creates hands cpus/mems to its children itself (`clone_children`), so the
    /// next container's cgroup starts with them and needs no write; the container sees the parent's cpus.
    @Test func newCpusetParentClonesItsMasksToChildren() throws {
        try withBundle(["cat", "/sys/fs/cgroup/cpuset/cpuset.cpus", "/sys/fs/cgroup/cpuset/cpuset.mems"]) { b in
            let parent = b.newID("cc")
            defer { for name in Self.hierarchies() { rmdir("/sys/fs/cgroup/\(name)/\(parent)") } }
            var outputs: [String] = []
            for _ in 0..<2 {
                let r = try Self.run(b) { "/\(parent)/\($0)" }
                #expect(r.status == 0, "\(r.stderr)")
                outputs.append(r.stdout)
            }
            #expect(Self.cpuset(parent + "/cgroup.clone_children") == "1")
            #expect(!Self.cpuset(parent + "/cpuset.cpus").isEmpty)
            let masks = Self.cpuset(parent + "/cpuset.cpus") + "\n" + Self.cpuset(parent + "/cpuset.mems") + "\n"
            #expect(outputs == [masks, masks])
        }
    }

    /// Two levels another berth-runc has just created and not filled in yet (empty cpus and mems, no
    /// `clone_children`): the container still starts, the levels get the nearest filled ancestor's masks, top down.
    @Test func emptyCpusetAncestorsAreFilledBeforeJoining() throws {
        try withBundle(["cat", "/sys/fs/cgroup/cpuset/cpuset.cpus"]) { b in
            let parent = b.newID("race")
            defer {
                for name in Self.hierarchies() {
                    rmdir("/sys/fs/cgroup/\(name)/\(parent)/mid")
                    rmdir("/sys/fs/cgroup/\(name)/\(parent)")
                }
            }
            #expect(mkdir("/sys/fs/cgroup/cpuset/" + parent, 0o755) == 0)
            #expect(mkdir("/sys/fs/cgroup/cpuset/" + parent + "/mid", 0o755) == 0)
            #expect(Self.cpuset(parent + "/mid/cpuset.cpus").isEmpty, "the kernel left a new cpuset cgroup empty")
            let r = try Self.run(b) { "/\(parent)/mid/\($0)" }
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == Self.cpuset("cpuset.cpus") + "\n")
            for level in [parent, parent + "/mid"] {
                #expect(Self.cpuset(level + "/cpuset.cpus") == Self.cpuset("cpuset.cpus"), "\(level)")
                #expect(Self.cpuset(level + "/cpuset.mems") == Self.cpuset("cpuset.mems"), "\(level)")
            }
        }
    }

    /// Runs the bundle as a new container whose cgroupsPath `path` makes from its id.
    static func run(_ b: TestBundle, cgroupsPath path: (String) -> String) throws -> CommandResult {
        let id = b.newID("cpuset")
        var linux = b.linux
        linux["cgroupsPath"] = path(id)
        b.linux = linux
        try b.write()
        return try b.berth("run", "--bundle", b.dir, id)
    }

    /// A file of the cpuset hierarchy (relative to its root), trimmed; empty when unreadable.
    static func cpuset(_ file: String) -> String {
        ((try? String(contentsOfFile: "/sys/fs/cgroup/cpuset/" + file, encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func hierarchies() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []).filter { !$0.contains(",") }
    }
}
