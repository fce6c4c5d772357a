import Foundation
import Testing

/// The same bundle under runc and berth-runc: what the container observes must match.
@Suite(.serialized)
struct ProcessTests {
    @Test func exitCodesMatchRunc() throws {
        for (script, expected) in [("exit 0", Int32(0)), ("exit 3", 3), ("kill -9 $$", 137), ("kill -15 $$", 143)] {
            try withBundle(["sh", "-c", script]) { b in
                // Without a pid namespace the shell is not an init, so it can die from its own signal.
                var linux = b.linux
                linux["namespaces"] = (linux["namespaces"] as? [[String: Any]] ?? []).filter { ($0["type"] as? String) != "pid" }
                b.linux = linux
                let (r, o) = try b.runBoth()
                #expect(r.status == expected, "runc: \(script) \(r.stderr)")
                #expect(o.status == expected, "berth-runc: \(script) \(o.stderr)")
            }
        }
    }

    @Test func missingExecutableFailsLikeRunc() throws {
        try withBundle(["/bin/does-not-exist"]) { b in
            let (r, o) = try b.runBoth()
            #expect(r.status != 0)
            #expect(o.status != 0)
            #expect(o.stderr.contains("does-not-exist"))
            for rt in b.runtimes { #expect(try rt("list", "-q").stdout.isEmpty, "\(rt) left a container") }
        }
    }

    @Test func hostnameAndDomainname() throws {
        try withBundle(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"]) { b in
            b.config["hostname"] = "berth-box"
            b.config["domainname"] = "example.test"
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.status == 0, "\(o.stderr)")
            // runc 1.1.5 predates `domainname` support (runc 1.2) and leaves it unset: compare the hostname only.
            #expect(r.stdout == "berth-box\n(none)\n")
            #expect(o.stdout == "berth-box\nexample.test\n")
        }
    }

    @Test func userGroupsAndAdditionalGids() throws {
        try withBundle(["sh", "-c", "id; grep -E '^(Uid|Gid|Groups)' /proc/self/status"]) { b in
            b.process["user"] = ["uid": 1000, "gid": 1001, "additionalGids": [10, 20, 1001]]
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
            #expect(o.stdout.contains("groups=10,20,1001") || o.stdout.contains("Groups:\t10 20 1001"))
        }
    }

    @Test func capabilitiesMatch() throws {
        try withBundle(["sh", "-c", "grep ^Cap /proc/self/status; grep NoNewPrivs /proc/self/status"]) { b in
            let caps = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_KILL"]
            b.process["capabilities"] = ["bounding": caps, "effective": ["CAP_CHOWN", "CAP_KILL"],
                                         "permitted": caps, "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]]
            b.process["noNewPrivileges"] = false
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
        }
    }

    @Test func defaultSpecCapabilitiesForNonRootUser() throws {
        try withBundle(["sh", "-c", "grep ^Cap /proc/self/status; id"]) { b in
            b.process["user"] = ["uid": 500, "gid": 500]
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
        }
    }

    @Test func envCwdUmaskAndRlimits() throws {
        try withBundle(["sh", "-c", "pwd; env | grep -E '^(FOO|PATH)='; umask; ulimit -n; ulimit -Hn"]) { b in
            b.process["env"] = ["PATH=/bin", "FOO=bar baz"]
            b.process["cwd"] = "/tmp"
            b.process["rlimits"] = [["type": "RLIMIT_NOFILE", "hard": 2048, "soft": 512]]
            var user = b.process["user"] as? [String: Any] ?? [:]
            user["umask"] = 0o027
            b.process["user"] = user
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
            #expect(o.stdout.contains("512\n2048"))
        }
    }

    @Test func oomScoreAdj() throws {
        try withBundle(["cat", "/proc/self/oom_score_adj"]) { b in
            b.process["oomScoreAdj"] = 123
            let (r, o) = try b.runBoth()
            #expect(r.stdout == "123\n", "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
        }
    }

    /// process.scheduler, process.ioPriority and linux.personality (OCI 1.2), read back from /proc and ionice.
    /// Debian's runc 1.1.5 predates all three (runc 1.2 added them) and ignores them: it only has to run the bundle.
    @Test func schedulerIOPriorityAndPersonality() throws {
        let script = """
            read -r l < /proc/self/stat; set -- $l; echo "nice=${19} policy=${41}"
            ionice -p $$; read -r p < /proc/self/personality; echo "personality=$p"
            """
        try withBundle(["sh", "-c", script]) { b in
            try FileManager.default.createSymbolicLink(atPath: b.dir + "/rootfs/bin/ionice", withDestinationPath: "busybox")
            b.process["scheduler"] = ["policy": "SCHED_BATCH", "nice": 7]
            b.process["ioPriority"] = ["class": "IOPRIO_CLASS_BE", "priority": 6]
            var linux = b.linux
            linux["personality"] = ["domain": "LINUX32"]
            b.linux = linux
            let (r, o) = try b.runBoth()
            #expect(o.status == 0, "\(o.stderr)")
            #expect(o.stdout == "nice=7 policy=3\nbest-effort: prio 6\npersonality=00000008\n", "\(o.stdout)")
            #expect(r.status == 0, "runc: \(r.stderr)")
            for (key, value) in [("scheduler", ["policy": "SCHED_FIFO", "priority": 0] as [String: Any]),
                                 ("ioPriority", ["class": "IOPRIO_CLASS_XX", "priority": 1])] {
                var p = b.process
                p["scheduler"] = nil
                p["ioPriority"] = nil
                p[key] = value
                b.process = p
                let bad = try b.run(b.berth)
                #expect(bad.status != 0 && bad.stderr.contains("invalid"), "\(key): \(bad.stderr)")
            }
        }
    }

    /// Spec fields berth-runc cannot honour are refused by name, not dropped.
    @Test func unsupportedSpecFieldsAreRefused() throws {
        try withBundle(["true"]) { b in
            let base = b.linux
            for (field, value) in [("intelRdt", ["closID": "x"]), ("netDevices", ["eth9": [:] as [String: Any]])] as [(String, Any)] {
                var linux = base
                linux[field] = value
                b.linux = linux
                let r = try b.run(b.berth)
                #expect(r.status != 0 && r.stderr.contains("linux.\(field) is not supported"), "\(field): \(r.stderr)")
            }
            var linux = base
            var res = linux["resources"] as? [String: Any] ?? [:]
            res["rdma"] = ["mlx5_0": ["hcaHandles": 3]]
            linux["resources"] = res
            b.linux = linux
            let r = try b.run(b.berth)
            #expect(r.status != 0 && r.stderr.contains("linux.resources.rdma is not supported"), "\(r.stderr)")
            b.linux = base
            #expect(try b.run(b.berth).status == 0)
        }
    }

    @Test func seccompDeniesLikeRunc() throws {
        try withBundle(["sh", "-c", "mkdir /tmp/x && echo made; touch /tmp/f && echo touched; true"]) { b in
            var linux = b.linux
            linux["seccomp"] = [
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [
                    ["names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1],
                    // openat with O_CREAT (0100) in flags is refused with EACCES (13).
                    ["names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                     "args": [["index": 2, "value": 64, "valueTwo": 64, "op": "SCMP_CMP_MASKED_EQ"]]],
                ],
            ]
            b.linux = linux
            b.config["root"] = ["path": "rootfs", "readonly": false]
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
            #expect(o.stderr.contains("Operation not permitted"))
            #expect(o.stderr.contains("Permission denied"))
            #expect(!o.stdout.contains("made"))
        }
    }

    @Test func seccompWithoutNoNewPrivileges() throws {
        try withBundle(["sh", "-c", "mkdir /tmp/y; echo $?"]) { b in
            b.process["noNewPrivileges"] = false
            var linux = b.linux
            linux["seccomp"] = ["defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [["names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"]]]
            b.linux = linux
            b.config["root"] = ["path": "rootfs", "readonly": false]
            let (r, o) = try b.runBoth()
            #expect(r.stdout == "1\n", "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
        }
    }

    @Test func hooksRunInOrderWithState() throws {
        try withBundle(["true"]) { b in
            b.config["root"] = ["path": "rootfs", "readonly": false]
            let log = b.dir + "/rootfs/hooks.log"
            // Runtime-namespace hooks (and createContainer, which runs before pivot_root) use a host script;
            // startContainer runs after pivot_root, so its script and log path are inside the rootfs.
            let body = "read state\necho \"$1 $(echo \"$state\" | grep -o '\"status\":\"[a-z]*\"')\" >> "
            try writeCloexec(b.dir + "/hook.sh", ("#!/bin/sh\n" + body + log + "\n"))
            try writeCloexec(b.dir + "/rootfs/chook.sh", ("#!/bin/sh\n" + body + "/hooks.log\n"))
            chmod(b.dir + "/hook.sh", 0o755)
            chmod(b.dir + "/rootfs/chook.sh", 0o755)
            func hook(_ name: String, _ path: String) -> [[String: Any]] {
                [["path": path, "args": ["hook.sh", name], "timeout": 10]]
            }
            let host = b.dir + "/hook.sh"
            b.config["hooks"] = ["prestart": hook("prestart", host), "createRuntime": hook("createRuntime", host),
                                 "createContainer": hook("createContainer", host),
                                 "startContainer": hook("startContainer", "/chook.sh"),
                                 "poststart": hook("poststart", host), "poststop": hook("poststop", host)]
            var orders: [[String]] = []
            for rt in [b.runc, b.berth] {
                unlink(log)
                let id = try b.prepare()
                let c = try rt("create", "--bundle", b.dir, id)
                #expect(c.status == 0, "\(rt): \(c.stderr)")
                #expect(try rt("start", id).status == 0)
                _ = try rt.wait(id, for: "stopped")
                #expect(try rt("delete", id).status == 0)
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                orders.append(text.split(separator: "\n").map { String($0.split(separator: " ")[0]) })
                if rt.description == "berth-runc" { #expect(text.contains("poststop \"status\":\"stopped\"")) }
            }
            // startContainer (in the container) and poststart (in `start`) run concurrently in runc too:
            // compare the order of the others and that startContainer ran between create and poststop.
            for order in orders {
                #expect(order.filter { $0 != "startContainer" }
                    == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"], "\(order)")
                let s = order.firstIndex(of: "startContainer") ?? -1
                #expect(s > (order.firstIndex(of: "createContainer") ?? 99) && s < (order.firstIndex(of: "poststop") ?? -1))
            }
        }
    }

    @Test func failingStartContainerHookStopsTheProgram() throws {
        try withBundle(["sh", "-c", "echo ran > /ran"]) { b in
            b.config["root"] = ["path": "rootfs", "readonly": false]
            b.config["hooks"] = ["startContainer": [["path": "/bin/false"]]]
            for rt in b.runtimes {
                unlink(b.dir + "/rootfs/ran")
                let id = try b.prepare()
                #expect(try rt("create", "--bundle", b.dir, id).status == 0)
                _ = try rt("start", id)
                _ = try rt.wait(id, for: "stopped")
                #expect(!FileManager.default.fileExists(atPath: b.dir + "/rootfs/ran"), "\(rt) ran the program")
                _ = try rt("delete", "--force", id)
            }
        }
    }

    @Test func failingHookFailsCreate() throws {
        try withBundle(["true"]) { b in
            b.config["hooks"] = ["prestart": [["path": "/bin/false"]]]
            for rt in b.runtimes {
                let id = try b.prepare()
                let r = try rt("create", "--bundle", b.dir, id)
                #expect(r.status != 0, "\(rt) accepted a failing prestart hook")
                #expect(try rt.status(id) == nil, "\(rt) kept the container")
            }
        }
    }
}
