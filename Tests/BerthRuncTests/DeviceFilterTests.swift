import Foundation
import Testing

@testable import berth_runc

/// Device rules on cgroup v2 (an eBPF program) against the kernel's own v1 devices controller on this host: the
/// same rules, the same accesses, the same answers. Accesses go to a character device node of a major no driver
/// has, so an access the cgroup allows fails later with ENXIO and one it denies fails with EPERM.
@Suite(.serialized)
struct DeviceFilterTests {
    typealias Rule = Resources.DeviceRule

    /// A character major with no driver here (240-254 are for local use), nil if all are taken.
    static let freeMajor: Int64? = {
        let text = (try? String(contentsOfFile: "/proc/devices", encoding: .utf8)) ?? ""
        let chars = text.components(separatedBy: "Block devices:")[0]
        let used = Set(chars.split(separator: "\n").compactMap { Int64($0.split(separator: " ").first ?? "") })
        return (240...254).map(Int64.init).first { !used.contains($0) }
    }()

    static let rulesets: [[Rule]] = [
        // deny by default; a read-only hole; a wildcard hole and an exact deny of what it does not hold (a no-op).
        [Rule(allow: false, access: "rwm"), Rule(allow: true, type: "c", major: 1, minor: 1, access: "r"),
         Rule(allow: true, type: "c", major: 2, minor: nil, access: "rw"), Rule(allow: false, type: "c", major: 2, minor: 2, access: "m"),
         Rule(allow: true, type: "c", major: nil, minor: nil, access: "m")],
        // allow by default; deny writes to one device, everything on another, mknod of block devices.
        [Rule(allow: true, access: "rwm"), Rule(allow: false, type: "c", major: 1, minor: 1, access: "w"),
         Rule(allow: false, type: "c", major: 1, minor: 2, access: "rwm"), Rule(allow: false, type: "b", major: nil, minor: nil, access: "m")],
        // an allowed entry widened, then partly taken back.
        [Rule(allow: false, access: "rwm"), Rule(allow: true, type: "c", major: 1, minor: 1, access: "r"),
         Rule(allow: true, type: "c", major: 1, minor: 1, access: "wm"), Rule(allow: false, type: "c", major: 1, minor: 1, access: "r")],
    ]

    @Test func emulationMatchesTheV1ControllersList() throws {
        // devices.list shows the entries of a deny-by-default cgroup: compare ours with the kernel's.
        for rules in Self.rulesets where !rules[0].allow {
            let cg = "/sys/fs/cgroup/devices/brt-devlist-\(UUID().uuidString.prefix(8))"
            guard mkdir(cg, 0o755) == 0 else { return }  // no v1 devices hierarchy: nothing to compare with
            defer { rmdir(cg) }
            for r in rules { try writeCloexec(cg + (r.allow ? "/devices.allow" : "/devices.deny"), DeviceFilter.v1Text(r)) }
            let kernel = try String(contentsOfFile: cg + "/devices.list", encoding: .utf8).split(separator: "\n").map(String.init)
            let f = try DeviceFilter(rules: rules)
            let ours = f.entries.map { DeviceFilter.v1Text($0.rule(allow: true)) }
            #expect(ours.sorted() == kernel.sorted(), "rules \(rules.map(DeviceFilter.v1Text))")
        }
    }

    @Test func narrowingAWildcardIsRefusedAsRuncDoes() throws {
        let wild = [Rule(allow: false, access: "rwm"), Rule(allow: true, type: "c", major: 1, minor: nil, access: "rw")]
        // Overlapping access: v1 would ignore the deny, so it is an error.
        #expect(throws: RuncError.self) { try DeviceFilter(rules: wild + [Rule(allow: false, type: "c", major: 1, minor: 1, access: "w")]) }
        // Disjoint access, or an exact match: fine.
        #expect(try DeviceFilter(rules: wild + [Rule(allow: false, type: "c", major: 1, minor: 1, access: "m")]).entries.count == 1)
        #expect(try DeviceFilter(rules: wild + [Rule(allow: false, type: "c", major: 1, minor: nil, access: "w")]).entries
                == [DeviceFilter.Entry(type: "c", major: 1, minor: nil, access: DeviceFilter.read)])
        // The same in allow-by-default mode.
        let deny = [Rule(allow: true, access: "rwm"), Rule(allow: false, type: "b", major: nil, minor: nil, access: "m")]
        #expect(throws: RuncError.self) { try DeviceFilter(rules: deny + [Rule(allow: true, type: "b", major: 8, minor: 0, access: "m")]) }
    }

    @Test func badRulesAreErrors() {
        #expect(throws: RuncError.self) { try DeviceFilter(rules: [Rule(allow: true, type: "x", access: "r")]) }
        #expect(throws: RuncError.self) { try DeviceFilter(rules: [Rule(allow: true, type: "c", major: 1, minor: 3, access: "rr")]) }
        #expect(throws: RuncError.self) { try DeviceFilter(rules: [Rule(allow: true, type: "c", major: 1, minor: 3, access: "q")]) }
    }

    /// Opens or creates `node` from a shell placed in the cgroup directory `cg` first; "ok", "EPERM" or "ENXIO".
    func probe(cg: String, _ op: String, _ node: String) throws -> String {
        let action: String
        switch op {
        case "r": action = "exec 3<\"$2\""
        case "w": action = "exec 3>\"$2\""
        default: action = "mknod \"$2\" \(op == "mb" ? "b" : "c") \(major(node)) \(minor(node))"
        }
        let script = "echo $$ > \"$1/cgroup.procs\" || exit 9; \(action)"
        let target = op.hasPrefix("m") ? node + ".new" : node
        defer { unlink(node + ".new") }
        let r = try execute("/bin/sh", ["-c", script, "sh", cg, target])
        if r.status == 9 { throw TestError("could not join \(cg): \(r.stderr)") }
        if r.status == 0 { return "ok" }
        if r.stderr.contains("not permitted") { return "EPERM" }
        if r.stderr.contains("No such device") { return "ENXIO" }
        throw TestError("\(op) \(node): \(r.stderr)")
    }

    /// Numbers from a node's name, n-MAJOR-MINOR.
    private func major(_ node: String) -> Int64 { Int64(node.split(separator: "/").last?.split(separator: "-")[1] ?? "") ?? -1 }
    private func minor(_ node: String) -> Int64 { Int64(node.split(separator: "/").last?.split(separator: "-")[2] ?? "") ?? -1 }

    @Test func bpfProgramAnswersAsTheV1Controller() throws {
        guard let base = Self.freeMajor, FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified/cgroup.procs"),
              FileManager.default.fileExists(atPath: "/sys/fs/cgroup/devices/devices.allow")
        else { return }  // needs both a v1 devices hierarchy (the reference) and the v2 one
        let tag = UUID().uuidString.prefix(8)
        let dir = "/tmp/brt-devnodes-\(tag)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Rules name majors 1 and 2: map them onto free majors so no real driver answers.
        let majors: [Int64: Int64] = [1: base, 2: base + 1]
        var nodes: [String] = []
        for (m, minor) in [(base, 1), (base, 2), (base, 3), (base + 1, 1), (base + 1, 2)] {
            let node = "\(dir)/n-\(m)-\(minor)"
            guard mknod(node, S_IFCHR | 0o666, dev_t(m << 8 | Int64(minor))  /* glibc makedev for major < 4096, minor < 256 */) == 0 else { throw TestError("mknod \(node)") }
            nodes.append(node)
        }
        for (i, rules) in Self.rulesets.enumerated() {
            let mapped = rules.map { r in
                var r = r
                r.major = r.major.map { majors[$0] ?? $0 }
                return r
            }
            let v1 = "/sys/fs/cgroup/devices/brt-dev1-\(tag)-\(i)"
            let v2 = "/sys/fs/cgroup/unified/brt-dev2-\(tag)-\(i)"
            #expect(mkdir(v1, 0o755) == 0 && mkdir(v2, 0o755) == 0)
            defer { rmdir(v1); rmdir(v2) }
            for r in mapped { try writeCloexec(v1 + (r.allow ? "/devices.allow" : "/devices.deny"), DeviceFilter.v1Text(r)) }
            let filter = try DeviceFilter(rules: mapped)
            try filter.attach(cgroup: v2)
            for node in nodes {
                for op in ["r", "w", "mc", "mb"] {
                    let kernel = try probe(cg: v1, op, node)
                    let bpf = try probe(cg: v2, op, node)
                    #expect(bpf == kernel, "ruleset \(i): \(op) \(node): v1 \(kernel), bpf \(bpf)")
                    let bit = op == "r" ? DeviceFilter.read : op == "w" ? DeviceFilter.write : DeviceFilter.mknod
                    let model = filter.allows(type: op == "mb" ? "b" : "c", major: UInt32(major(node)),
                                              minor: UInt32(minor(node)), access: bit)
                    #expect((kernel != "EPERM") == model, "ruleset \(i): \(op) \(node): model \(model), v1 \(kernel)")
                }
            }
            // An update replaces the program: allow everything, and the denied accesses go through.
            try DeviceFilter(rules: [Rule(allow: true, access: "rwm")]).attach(cgroup: v2)
            for node in nodes { #expect(try probe(cg: v2, "w", node) == "ENXIO") }
        }
    }
}
