import Foundation
import Testing

/// Regression tests for the container-escape classes named in the issue.
@Suite(.serialized)
struct SecurityTests {
    /// CVE-2024-21626 class: no fd of the runtime reaches the container, and cwd cannot name a host path.
    @Test func noHostFdLeaksIntoContainer() throws {
        try withBundle(["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"]) { b in
            for rt in b.runtimes {
                let id = try b.prepare()
                // Open extra descriptors (a host directory and a file) in the process that starts the runtime.
                let script = "exec 7</sys/fs/cgroup 8</etc/hostname 9>/dev/null; exec \(rt.path) --root \(rt.root) run --bundle \(b.dir) \(id)"
                let r = try execute("/bin/sh", ["-c", script])
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                // Only stdio and the descriptor ls uses to read the directory.
                #expect(r.stdout == "0 1 2 3 ", "\(rt) leaked: \(r.stdout)")
            }
        }
    }

    @Test func cwdIsResolvedInsideTheContainer() throws {
        try withBundle(["sh", "-c", "pwd; ls /proc/self/cwd/ | head -3"]) { b in
            b.process["cwd"] = "/../../../../tmp"
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
            #expect(o.stdout.hasPrefix("/tmp\n"))
        }
    }

    /// CVE-2021-30465 class: a mount target that is a symlink pointing out of the rootfs stays inside it.
    @Test func mountTargetSymlinkCannotEscapeRootfs() throws {
        try withBundle(["sh", "-c", "ls /escape; mount | grep -E '/(escape|outside)'"]) { b in
            let outside = b.dir + "/outside"
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
            // /escape -> ../../outside and an absolute variant; both must resolve inside the rootfs.
            try FileManager.default.createSymbolicLink(atPath: b.dir + "/rootfs/escape", withDestinationPath: "../../../../../../\(outside)")
            try FileManager.default.createSymbolicLink(atPath: b.dir + "/rootfs/abs", withDestinationPath: outside + "2")
            let src = b.dir + "/src"
            try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
            try writeCloexec(src + "/marker", "marker\n")
            var mounts = b.config["mounts"] as? [[String: Any]] ?? []
            mounts.append(["destination": "/escape", "type": "bind", "source": src, "options": ["rbind", "ro"]])
            mounts.append(["destination": "/abs/sub", "type": "tmpfs", "source": "tmpfs"])
            b.config["mounts"] = mounts
            b.config["root"] = ["path": "rootfs", "readonly": false]
            var outputs: [String] = []
            for rt in b.runtimes {
                let r = try b.run(rt)
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                #expect(r.stdout.hasPrefix("marker\n"), "\(rt)")
                outputs.append(r.stdout)
                let leaked = (try? FileManager.default.contentsOfDirectory(atPath: outside)) ?? []
                #expect(leaked.isEmpty, "\(rt) created \(leaked) outside the rootfs")
                #expect(!FileManager.default.fileExists(atPath: outside + "2"), "\(rt) created a host directory")
                // readToEnd reads to EOF; contents(atPath:) would stop at 4 KiB of a /proc file.
                let mountinfo = String(decoding: (try? FileHandle(forReadingAtPath: "/proc/self/mountinfo")?.readToEnd()) ?? Data(), as: UTF8.self)
                #expect(!mountinfo.contains(outside), "\(rt) mounted outside the rootfs")
            }
            #expect(outputs.count == 2 && outputs[0] == outputs[1])
        }
    }

    /// Lets the container reach the runtime's /proc/<pid>/exe: the host pid namespace, nothing masked, and the
    /// capabilities an attacker would need to write through it.
    static func allowReachingTheRuntime(_ b: TestBundle) {
        var linux = b.linux
        linux["namespaces"] = (linux["namespaces"] as? [[String: Any]] ?? []).filter { ($0["type"] as? String) != "pid" }
        linux["maskedPaths"] = []
        b.linux = linux
        let all = ["CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_SYS_ADMIN", "CAP_FOWNER", "CAP_KILL"]
        b.process["capabilities"] = ["bounding": all, "effective": all, "permitted": all]
    }

    /// CVE-2019-5736 class: berth-runc runs from a sealed memfd copy, and a container process that reaches
    /// the runtime's /proc/<pid>/exe (shared pid namespace, all capabilities) cannot write the binary.
    @Test func runtimeBinaryIsNotWritableFromContainer() throws {
        try withBundle(["sh", "-c", "echo pwned >> /proc/$PPID/exe && echo wrote; readlink /proc/$PPID/exe"]) { b in
            Self.allowReachingTheRuntime(b)
            let before = try Data(contentsOf: URL(fileURLWithPath: berthRuncPath))
            let o = try b.run(b.berth)
            #expect(!o.stdout.contains("wrote"), "berth-runc binary was writable: \(o.stdout)")
            #expect(o.stdout.contains("memfd:berth-runc"), "not running from a sealed memfd: \(o.stdout) \(o.stderr)")
            let after = try Data(contentsOf: URL(fileURLWithPath: berthRuncPath))
            #expect(before == after)
        }
    }

    /// The same attack against a binary on a read-only mount: no memfd copy is made there (EROFS protects it).
    @Test func runtimeOnReadOnlyMountIsNotCopiedNorWritable() throws {
        try withBundle(["sh", "-c", "echo pwned >> /proc/$PPID/exe && echo wrote; readlink /proc/$PPID/exe"]) { b in
            Self.allowReachingTheRuntime(b)
            let ro = b.dir + "/ro-berth-runc"
            try writeCloexec(ro, "", mode: 0o755)
            #expect(try execute("/bin/mount", ["--bind", berthRuncPath, ro]).status == 0)
            defer { _ = try? execute("/bin/umount", [ro]) }
            #expect(try execute("/bin/mount", ["-o", "remount,bind,ro", ro]).status == 0)
            let before = try Data(contentsOf: URL(fileURLWithPath: berthRuncPath))
            let roRuntime = Runtime(path: ro, root: b.berth.root)
            let o = try b.run(roRuntime)
            #expect(o.status == 0, "\(o.stderr)")
            #expect(!o.stdout.contains("wrote"), "berth-runc binary was writable: \(o.stdout)")
            #expect(o.stdout.contains(ro) && !o.stdout.contains("memfd:"), "\(o.stdout)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: berthRuncPath)) == before)
        }
    }

    /// CVE-2023-25173 class: additionalGids become the supplementary groups, with no inherited host groups.
    @Test func supplementaryGroupsAreSet() throws {
        try withBundle(["sh", "-c", "grep ^Groups /proc/self/status"]) { b in
            b.process["user"] = ["uid": 1234, "gid": 1234, "additionalGids": [4321, 5]]
            let (r, o) = try b.runBoth()
            #expect(r.stdout == "Groups:\t5 4321 \n" || r.stdout == "Groups:\t4321 5 \n", "\(r.stdout)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
            b.process["user"] = ["uid": 1234, "gid": 1234]
            let (r2, o2) = try b.runBoth()
            #expect(r2.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "Groups:")
            #expect(o2.stdout == r2.stdout)
        }
    }
}
