import Foundation
import Testing

@testable import berth_runc

/// cgroup v2. This host is hybrid (v1 controllers; the v2 `unified` mount offers only hugetlb), so the v2 writes
/// for memory/cpu/pids/io are checked against a temporary directory, and hugetlb for real on the unified mount.
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
}
