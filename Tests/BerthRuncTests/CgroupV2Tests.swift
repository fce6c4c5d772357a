import Foundation
import Testing

@testable import berth_runc

/// cgroup v2. This host is hybrid (v1 controllers; the v2 `unified` mount offers only hugetlb), so the v2 writes
/// for memory/cpu/pids/io are checked against a temporary directory, and hugetlb for real on the unified mount.
/// Device filters and stats run for real, beside runc, in a mount namespace that looks like a pure v2 host.
@Suite(.serialized)
struct CgroupV2Tests {
    static let files = ["memory.max", "memory.low", "memory.swap.max", "cpu.weight", "cpu.max", "cpu.idle", "cpuset.cpus",
                        "cpuset.mems", "pids.max", "io.weight", "io.max", "hugetlb.2MB.max", "memory.oom.group"]

    func resources() throws -> Resources {
        let json = """
            {"memory": {"limit": 268435456, "reservation": 134217728, "swap": 536870912},
             "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
             "pids": {"limit": 64},
             "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
             "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
             "unified": {"memory.oom.group": "1"}}
            """
        return try JSONDecoder().decode(Resources.self, from: Data(json.utf8))
    }

    @Test func v2FilesAreRuncsConversions() throws {
        let all: Set<String> = ["memory", "cpu", "cpuset", "pids", "blkio", "hugetlb"]
        let files = try Cgroups.v2Files(try resources(), controllers: all)
        let map = Dictionary(files.map { ($0.0, $0.1) }, uniquingKeysWith: { $1 })
        #expect(map["memory.max"] == "268435456")
        #expect(map["memory.low"] == "134217728")
        #expect(map["memory.swap.max"] == "268435456")  // v1 memsw 512 MiB = memory 256 MiB + swap 256 MiB
        #expect(map["cpu.weight"] == "39")  // runc: 1 + ((1024 - 2) * 9999) / 262142
        #expect(map["cpu.max"] == "50000 100000")
        #expect(map["cpuset.cpus"] == "0" && map["cpuset.mems"] == "0")
        #expect(map["pids.max"] == "64")
        #expect(map["io.weight"] == "default 4950")  // runc: 1 + (500 - 10) * 9999 / 990
        #expect(map["io.max"] == "8:0 rbps=1048576")
        #expect(map["hugetlb.2MB.max"] == "4194304")
        #expect(map["memory.oom.group"] == "1")
    }

    @Test func v2EdgeCases() throws {
        func one(_ json: String) throws -> [String: String] {
            let r = try JSONDecoder().decode(Resources.self, from: Data(json.utf8))
            let files = try Cgroups.v2Files(r, controllers: ["memory", "cpu", "pids"])
            return Dictionary(files.map { ($0.0, $0.1) }, uniquingKeysWith: { $1 })
        }
        #expect(try one(#"{"memory": {"limit": -1}}"#) == ["memory.max": "max", "memory.swap.max": "max"])
        #expect(try one(#"{"memory": {"limit": 1000, "swap": -1}}"#)["memory.swap.max"] == "max")
        #expect(try one(#"{"cpu": {"quota": -1}}"#)["cpu.max"] == "max 100000")
        #expect(try one(#"{"pids": {"limit": 0}}"#)["pids.max"] == "max")
        #expect(throws: RuncError.self) { try one(#"{"memory": {"limit": 2000, "swap": 1000}}"#) }
        #expect(throws: RuncError.self) { try one(#"{"memory": {"swap": 1000}}"#) }
        #expect(throws: RuncError.self) { try one(#"{"unified": {"../x": "1"}}"#) }
    }

    @Test func v2WritesGoIntoTheCgroupDirectory() throws {
        let dir = "/tmp/brt-v2-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in Self.files { try writeCloexec(dir + "/" + f, "") }
        let all: Set<String> = ["memory", "cpu", "cpuset", "pids", "blkio", "hugetlb"]
        try Cgroups.writeV2(try Cgroups.v2Files(try resources(), controllers: all), dir: dir)
        func read(_ f: String) -> String { (try? String(contentsOfFile: dir + "/" + f, encoding: .utf8)) ?? "" }
        #expect(read("memory.max") == "268435456")
        #expect(read("pids.max") == "64")
        #expect(read("cpu.max") == "50000 100000")
        #expect(read("hugetlb.2MB.max") == "4194304")
        // A file the kernel does not offer is an error, as with runc.
        #expect(throws: RuncError.self) { try Cgroups.writeV2([("nonexistent.max", "1")], dir: dir) }
    }

    @Test func hugetlbLimitOnTheUnifiedHierarchy() throws {
        guard Cgroups.unifiedControllers().contains("hugetlb"),
              FileManager.default.fileExists(atPath: "/sys/kernel/mm/hugepages/hugepages-2048kB")
        else { return }  // nothing to test on a host without v2 hugetlb
        try withBundle(["sleep", "60"]) { b in
            var linux = b.linux
            var res = linux["resources"] as? [String: Any] ?? [:]
            res["hugepageLimits"] = [["pageSize": "2MB", "limit": 4_194_304]]
            linux["resources"] = res
            b.linux = linux
            let id = try b.prepare("huge")
            let o = try b.berth("create", "--bundle", b.dir, id)
            #expect(o.status == 0, "\(o.stderr)")
            let file = "/sys/fs/cgroup/unified/brt/\(id)/hugetlb.2MB.max"
            #expect((try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                    == "4194304")
            _ = try b.berth("delete", "--force", id)
            // runc 1.1.5's v1 manager has no hugetlb hierarchy here and refuses the limit.
            let rid = try b.prepare("huge")
            let r = try b.runc("create", "--bundle", b.dir, rid)
            #expect(r.status != 0 && r.stderr.contains("hugetlb"), "\(r.stderr)")
        }
    }

    /// Runs `script` ("$1" runtime, "$2" its --root, "$3" bundle, "$4" id) in a mount namespace whose
    /// /sys/fs/cgroup is a cgroup2 mount alone: what a pure v2 host looks like to both runtimes (runc detects it
    /// by statfs, berth-runc by mountinfo). The unified hierarchy here offers only hugetlb; cpu.stat and device
    /// filters need no controller.
    func inPureV2(_ rt: Runtime, _ b: TestBundle, id: String, _ script: String) throws -> CommandResult {
        try execute("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c",
                                         "umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && " + script,
                                         "sh", rt.path, rt.root, b.dir, id])
    }

    @Test func deviceRulesOnAPureV2Host() throws {
        guard let m = DeviceFilterTests.freeMajor else { return }
        let script = """
            rm -f /tmp/a /tmp/b /tmp/c /tmp/d
            mknod /tmp/a c \(m) 1 && mknod /tmp/b c \(m) 2 && mknod /tmp/c c \(m + 1) 1 || exit 3
            for f in a b c; do for op in r w; do
              if [ $op = r ]; then (exec 3</tmp/$f) 2>/tmp/err; else (exec 3>/tmp/$f) 2>/tmp/err; fi \
                && echo "$op $f ok" || echo "$op $f $(sed 's/.*: //' /tmp/err)"
            done; done
            mknod /tmp/d b \(m) 1 2>/tmp/err && echo "mb ok" || echo "mb $(sed 's/.*: //' /tmp/err)"
            """
        try withBundle(["sh", "-c", script]) { b in
            for applet in ["mknod", "rm"] {
                try FileManager.default.createSymbolicLink(atPath: b.dir + "/rootfs/bin/" + applet, withDestinationPath: "busybox")
            }
            var p = b.process
            p["capabilities"] = ["bounding": ["CAP_MKNOD"], "effective": ["CAP_MKNOD"], "permitted": ["CAP_MKNOD"]]
            b.process = p
            b.config["root"] = ["path": "rootfs", "readonly": false]
            let rules: [[String: Any]] = [["allow": false, "access": "rwm"],
                                          ["allow": true, "type": "c", "major": m, "minor": 1, "access": "r"],
                                          ["allow": true, "type": "c", "major": m + 1, "access": "rw"],
                                          ["allow": false, "type": "c", "major": m + 1, "minor": 1, "access": "m"]]
            func run(_ rt: Runtime, _ rules: [[String: Any]]) throws -> CommandResult {
                var linux = b.linux
                var res = linux["resources"] as? [String: Any] ?? [:]
                res["devices"] = rules
                linux["resources"] = res
                b.linux = linux
                let id = try b.prepare("dev2")
                return try inPureV2(rt, b, id: id, "exec \"$1\" --root \"$2\" run --bundle \"$3\" \"$4\"")
            }
            var outputs: [String] = []
            for rt in b.runtimes {
                let r = try run(rt, rules)
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                outputs.append(r.stdout)
                // A deny that would narrow the wildcard (v1 ignores it) is refused.
                let bad = try run(rt, rules + [["allow": false, "type": "c", "major": m + 1, "minor": 1, "access": "w"]])
                #expect(bad.status != 0 && bad.stderr.contains("cannot punch hole in existing wildcard rule"), "\(rt): \(bad.stderr)")
            }
            let enxio = "No such device or address", eperm = "Operation not permitted"
            let want = ["r a \(enxio)", "w a \(eperm)", "r b \(eperm)", "w b \(eperm)", "r c \(enxio)", "w c \(enxio)", "mb ok"]
            #expect(outputs[0].split(separator: "\n").map(String.init) == want, "runc: \(outputs[0])")
            #expect(outputs[1] == outputs[0], "berth-runc: \(outputs[1])")
        }
    }

    /// events --stats from cpu.stat, and pause/resume through cgroup.freeze.
    @Test func statsAndFreezerOnAPureV2Host() throws {
        try withBundle(["sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 30"]) { b in
            for rt in b.runtimes {
                let id = try b.prepare("st2")
                let r = try inPureV2(rt, b, id: id, """
                    "$1" --root "$2" create --bundle "$3" "$4" >/dev/null && "$1" --root "$2" start "$4" && sleep 1 &&
                    "$1" --root "$2" events --stats "$4" && "$1" --root "$2" pause "$4" &&
                    "$1" --root "$2" state "$4" | grep -q '"paused"' && grep -q 'frozen 1' "/sys/fs/cgroup/brt/$4/cgroup.events" &&
                    "$1" --root "$2" resume "$4" && "$1" --root "$2" state "$4" | grep -q '"running"'
                    s=$?; "$1" --root "$2" delete --force "$4"; exit $s
                    """)
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
                let data = obj?["data"] as? [String: Any]
                let usage = (data?["cpu"] as? [String: Any])?["usage"] as? [String: Any]
                let total = (usage?["total"] as? NSNumber)?.uint64Value ?? 0
                let user = (usage?["user"] as? NSNumber)?.uint64Value ?? 0
                #expect(obj?["type"] as? String == "stats", "\(rt): \(r.stdout)")
                #expect(total > 10_000_000 && user > 0, "\(rt): cpu usage \(total) ns, user \(user): \(r.stdout)")
            }
        }
    }
}

/// The mountinfo parse behind every cgroup path: only cgroup and cgroup2 lines count, whatever else is mounted.
struct MountinfoTests {
    @Test func onlyCgroupMountsAreHierarchies() {
        let info = """
            22 27 0:21 / /proc rw,relatime - proc proc rw
            30 29 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
            31 29 0:27 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
            34 29 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu,cpuacct
            35 29 0:31 /sub /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
            90 27 0:50 / /run/c/cgroup-like/rootfs rw,relatime - overlay overlay rw,lowerdir=/cgroup,upperdir=/u
            """
        let found = Cgroups.parse(mountinfo: info)
        #expect(found.map(\.key) == ["unified", "name=systemd", "cpu,cpuacct", "memory"])
        #expect(found.map(\.mountpoint) == [
            "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory",
        ])
        #expect(found[3].root == "/sub")
        #expect(found[2].controllers == ["cpu", "cpuacct"])
        #expect(Cgroups.parse(mountinfo: "").isEmpty)
    }
}
