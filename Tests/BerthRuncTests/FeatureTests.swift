import CBerthRunc
import Foundation
import Testing

/// Session keyring, time namespace, exec --user, events, large hook state, checkpoint, seccomp notify and the
/// foreground terminal relay: each beside runc 1.1.5 where runc can do the same.
@Suite(.serialized)
struct FeatureTests {
    /// /proc/keys readable in the container (runc's default spec masks it).
    func unmaskKeys(_ b: TestBundle) {
        var linux = b.linux
        linux["maskedPaths"] = (linux["maskedPaths"] as? [String] ?? []).filter { $0 != "/proc/keys" }
        b.linux = linux
    }

    /// The /proc/keys line of the keyring named `name`, with the serial and usage columns dropped.
    func keyringLine(_ out: String, _ name: String) -> String? {
        out.split(separator: "\n").first { $0.contains(" \(name):") }.map { line in
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).joined(separator: " ")
        }
    }

    @Test func newSessionKeyringLikeRunc() throws {
        try withBundle(["cat", "/proc/keys"]) { b in
            unmaskKeys(b)
            var lines: [String?] = []
            for rt in b.runtimes {
                let id = try b.prepare("k")
                let r = try rt.call(["run", "--bundle", b.dir, id])
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                lines.append(keyringLine(r.stdout, "_ses.\(id)"))
            }
            // runc: "perm 3f1b0000 0 0 keyring _ses.<id>: empty" (possessor all, user view/read/search).
            #expect(lines[0] != nil, "runc shows no _ses.<id> keyring")
            #expect(lines[1] != nil, "berth-runc shows no _ses.<id> keyring")
            #expect(lines[0].map { $0.replacing(/_ses\.k-[0-9a-f]+/, with: "") }
                    == lines[1].map { $0.replacing(/_ses\.k-[0-9a-f]+/, with: "") })
        }
    }

    @Test func noNewKeyringKeepsTheCallersKeyring() throws {
        try withBundle(["cat", "/proc/keys"]) { b in
            unmaskKeys(b)
            for rt in b.runtimes {
                let id = try b.prepare("k")
                let r = try rt.call(["run", "--no-new-keyring", "--bundle", b.dir, id])
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                #expect(keyringLine(r.stdout, "_ses.\(id)") == nil, "\(rt): \(r.stdout)")
            }
        }
    }

    @Test func newTimeNamespaceWithOffsets() throws {
        try withBundle(["sh", "-c", "cat /proc/uptime; readlink /proc/self/ns/time"]) { b in
            var linux = b.linux
            linux["namespaces"] = (linux["namespaces"] as? [[String: Any]] ?? []) + [["type": "time"]]
            linux["timeOffsets"] = ["boottime": ["secs": 864_000, "nanosecs": 0], "monotonic": ["secs": 1000]]
            b.linux = linux
            let (r, o) = try b.runBoth()
            // runc 1.1.5 has no time namespace support (added in runc 1.2): it refuses the namespace.
            #expect(r.status != 0)
            #expect(r.stderr.contains("time"), "\(r.stderr)")
            #expect(o.status == 0, "\(o.stderr)")
            let uptime = Double(o.stdout.split(separator: " ").first ?? "") ?? 0
            #expect(uptime >= 864_000, "\(o.stdout)")
            let hostNS = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/time")) ?? ""
            #expect(o.stdout.contains("time:[") && !o.stdout.contains(hostNS), "\(o.stdout)")
        }
    }

    @Test func execUserByNameAndNumber() throws {
        try withBundle(["sleep", "60"]) { b in
            try writeCloexec(b.dir + "/rootfs/etc/passwd",
                             "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n")
            try writeCloexec(b.dir + "/rootfs/etc/group",
                             "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\nstaff:x:50:bob,alice\n")
            let script = "id; echo HOME=$HOME"
            var numeric: [[String]] = []
            for rt in b.runtimes {
                let id = try b.prepare("u")
                #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                var outs: [String] = []
                for user in ["1000", "1000:50", "0:10"] {
                    let r = try rt("exec", "--user", user, id, "sh", "-c", script)
                    #expect(r.status == 0, "\(rt) --user \(user): \(r.stderr)")
                    outs.append(r.stdout)
                }
                numeric.append(outs)
                let named = try rt("exec", "--user", "alice", id, "sh", "-c", script)
                let namedGroup = try rt("exec", "--user", "alice:staff", id, "sh", "-c", script)
                let unknown = try rt("exec", "--user", "mallory", id, "true")
                if rt.description == "runc" {
                    // runc 1.1.5's exec parses --user as numbers only.
                    #expect(named.status != 0 && named.stderr.contains("uid"), "\(named.stderr)")
                } else {
                    #expect(named.stdout == "uid=1000(alice) gid=1000(alice) groups=10(wheel),50(staff)\nHOME=/home/alice\n",
                            "\(named.stdout) \(named.stderr)")
                    #expect(namedGroup.stdout == "uid=1000(alice) gid=50(staff)\nHOME=/home/alice\n", "\(namedGroup.stderr)")
                    #expect(unknown.status != 0 && unknown.stderr.contains("unable to find user mallory"))
                }
                _ = try rt("delete", "--force", id)
            }
            #expect(numeric[0] == numeric[1])
            #expect(numeric[1].first == "uid=1000(alice) gid=0(root)\nHOME=/home/alice\n")
        }
    }

    /// Starts `events` for `id` with its output in a file, waits until `done` holds for the lines, kills it.
    func watchEvents(_ rt: Runtime, _ id: String, dir: String, _ done: ([[String: Any]]) -> Bool) throws -> [[String: Any]] {
        let out = dir + "/events-\(id).out"
        let pid = try spawnAsync(rt.path, ["--root", rt.root, "events", "--interval", "1s", id], outPath: out)
        defer { kill(pid, SIGKILL); _ = waitExit(pid) }
        var events: [[String: Any]] = []
        for _ in 0..<300 {
            usleep(50_000)
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            events = text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            if done(events) { break }
        }
        return events
    }

    @Test func plainEventsStreamsStats() throws {
        try withBundle(["sleep", "60"]) { b in
            for rt in b.runtimes {
                let id = try b.prepare("ev")
                #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                let events = try watchEvents(rt, id, dir: b.dir) { $0.count >= 3 }
                #expect(events.count >= 3, "\(rt): \(events)")
                for e in events.prefix(3) {
                    #expect(e["type"] as? String == "stats" && e["id"] as? String == id, "\(rt): \(e)")
                    let data = e["data"] as? [String: Any]
                    #expect(data?["memory"] != nil && data?["pids"] != nil, "\(rt): \(e)")
                }
                _ = try rt("delete", "--force", id)
            }
        }
    }

    @Test func eventsReportOOM() throws {
        // The shell waits for `events` to be attached, then doubles a string until the 8 MiB limit kills it.
        try withBundle(["sh", "-c", "sleep 2; x=0123456789abcdef; while true; do x=$x$x; done"]) { b in
            var linux = b.linux
            linux["resources"] = ["memory": ["limit": 8 << 20]]
            b.linux = linux
            for rt in b.runtimes {
                let id = try b.prepare("oom")
                #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                let events = try watchEvents(rt, id, dir: b.dir) { $0.contains { $0["type"] as? String == "oom" } }
                #expect(events.contains { $0["type"] as? String == "oom" && $0["id"] as? String == id }, "\(rt): \(events)")
                _ = try rt("delete", "--force", id)
            }
        }
    }

    @Test func hookStateIsNotTruncated() throws {
        try withBundle(["true"]) { b in
            let big = String(repeating: "x", count: 20_000) + "END"
            b.config["annotations"] = ["org.test.big": big]
            for rt in b.runtimes {
                let out = b.dir + "/hooks-\(rt.description)"
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                func hook(_ kind: String) -> [[String: Any]] {
                    [["path": "/bin/sh", "args": ["sh", "-c", "cat > \(out)/\(kind)"]]]
                }
                b.config["hooks"] = ["prestart": hook("prestart"), "createContainer": hook("createContainer"),
                                     "poststop": hook("poststop")]
                let r = try b.run(rt)
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                for kind in ["prestart", "createContainer", "poststop"] {
                    let text = (try? String(contentsOfFile: "\(out)/\(kind)", encoding: .utf8)) ?? ""
                    let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                    let annotations = obj?["annotations"] as? [String: String]
                    #expect(annotations?["org.test.big"] == big, "\(rt) \(kind): \(text.count) bytes")
                }
            }
        }
    }

    @Test func checkpointAndRestoreAreRefused() throws {
        try withBundle(["sleep", "60"]) { b in
            let id = try b.prepare("cp")
            #expect(try b.berth("run", "-d", "--bundle", b.dir, id).status == 0)
            let c = try b.berth("checkpoint", id)
            let r = try b.berth("restore", id)
            // runc exits 1 when checkpointing fails (here its criu dump fails too); berth-runc has no CRIU at all.
            #expect(c.status == 1 && c.stderr.contains("checkpoint is not supported"), "\(c.stderr)")
            #expect(r.status == 1 && r.stderr.contains("restore is not supported"), "\(r.stderr)")
            #expect(try b.berth.status(id) == "running")
        }
    }

    @Test func seccompNotifySendsListenerFd() throws {
        try withBundle(["echo", "ok"]) { b in
            let sock = b.dir + "/agent.sock"
            let listener = try TerminalTests().listen(at: sock)
            defer { close(listener) }
            var linux = b.linux
            linux["seccomp"] = ["defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock, "listenerMetadata": "meta-1",
                                "syscalls": [["names": ["sethostname"], "action": "SCMP_ACT_NOTIFY"]]]
            b.linux = linux
            for rt in b.runtimes {
                let r = try b.run(rt)
                #expect(r.status == 0 && r.stdout == "ok\n", "\(rt): \(r.stderr)")
                var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 5000) > 0 else { Issue.record("\(rt) never connected to the agent"); continue }
                let conn = accept(listener, nil, nil)
                defer { close(conn) }
                var buf = [CChar](repeating: 0, count: 65536)
                var fd: Int32 = -1
                let n = brc_recv_text_fd(conn, &buf, buf.count, &fd)
                #expect(n > 0 && fd >= 0, "\(rt): no listener fd")
                let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                #expect(obj?["fds"] as? [String] == ["seccompFd"], "\(rt): \(text)")
                #expect(obj?["metadata"] as? String == "meta-1", "\(rt): \(text)")
                #expect((obj?["state"] as? [String: Any])?["id"] != nil, "\(rt): \(text)")
                if fd >= 0 {
                    let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? ""
                    #expect(link == "anon_inode:seccomp notify", "\(rt): \(link)")
                    close(fd)
                }
            }
        }
    }

    @Test func foregroundTerminalIsRelayed() throws {
        try withBundle(["sh", "-c", "tty; [ -t 0 ] && echo interactive; echo END"]) { b in
            b.process["terminal"] = true
            // runc relays only when its own stdin is a terminal: give both one through script(1).
            var outs: [String] = []
            for rt in b.runtimes {
                let id = try b.prepare("tty")
                let cmd = "\(rt.path) --root \(rt.root) run --bundle \(b.dir) \(id)"
                let r = try execute("/usr/bin/script", ["-qec", cmd, "/dev/null"])
                #expect(r.status == 0, "\(rt): \(r.stdout) \(r.stderr)")
                // script(1) may echo its own stdin's end ("^@", "^D") into the transcript: not the container's output.
                outs.append(r.stdout.replacing("^D\u{8}\u{8}", with: "").replacing("^@", with: "").replacing("\u{0}", with: ""))
            }
            #expect(outs[1].contains("/dev/pts/0\r\ninteractive\r\nEND\r\n"), "\(outs[1].debugDescription)")
            #expect(outs[0] == outs[1], "\(outs[0].debugDescription) vs \(outs[1].debugDescription)")
        }
    }
}

/// Rootless: both runtimes started by an unprivileged user (created here if missing) with runc's
/// `spec --rootless` (user namespace mapping only that user, no network namespace, /sys bind-mounted, no cgroups).
@Suite(.serialized)
struct RootlessTests {
    static let user = "berthrl"

    func ensureUser() throws -> (uid: UInt32, gid: UInt32) {
        if getpwnam(Self.user) == nil {
            let r = try execute("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", Self.user])
            guard r.status == 0 else { throw TestError("useradd: \(r.stderr)") }
        }
        guard let pw = getpwnam(Self.user) else { throw TestError("no user \(Self.user)") }
        return (pw.pointee.pw_uid, pw.pointee.pw_gid)
    }

    func asUser(_ args: [String]) throws -> CommandResult {
        try execute("/usr/sbin/runuser", ["-u", Self.user, "--"] + args)
    }

    @Test func rootlessRunAndExecLikeRunc() throws {
        let (uid, gid) = try ensureUser()
        let dir = "/tmp/brt-rl-\(UUID().uuidString.prefix(8).lowercased())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for sub in ["bundle/rootfs/bin", "bundle/rootfs/proc", "bundle/rootfs/dev", "bundle/rootfs/sys", "bundle/rootfs/tmp"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        guard let bb = FileManager.default.contents(atPath: busybox) else { throw TestError("no busybox") }
        try writeCloexec(dir + "/bundle/rootfs/bin/busybox", bb, mode: 0o755)
        for a in ["sh", "id", "cat", "hostname", "sleep", "head"] {
            try FileManager.default.createSymbolicLink(atPath: dir + "/bundle/rootfs/bin/" + a, withDestinationPath: "busybox")
        }
        #expect(chown(dir, uid, gid) == 0 && chown(dir + "/bundle", uid, gid) == 0)
        // The user may not be able to reach the build directory (a checkout under a 0700 directory): run a copy.
        let berth = dir + "/berth-runc"
        guard let binary = FileManager.default.contents(atPath: berthRuncPath) else { throw TestError("no berth-runc") }
        try writeCloexec(berth, binary, mode: 0o755)
        let spec = try asUser([runcPath, "spec", "--rootless", "--bundle", dir + "/bundle"])
        #expect(spec.status == 0, "\(spec.stderr)")
        let configPath = dir + "/bundle/config.json"
        guard let data = FileManager.default.contents(atPath: configPath),
              var config = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              var process = config["process"] as? [String: Any]
        else { throw TestError("no rootless config.json") }
        process["terminal"] = false
        process["args"] = ["sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map; hostname; head -1 /proc/self/cgroup"]
        config["process"] = process
        try writeCloexec(configPath, try JSONSerialization.data(withJSONObject: config))
        var outs: [String] = []
        for (name, bin) in [("runc", runcPath), ("berth", berth)] {
            let root = dir + "/root-" + name
            let r = try asUser([bin, "--root", root, "run", "--bundle", dir + "/bundle", "rl"])
            #expect(r.status == 0, "\(name): \(r.stderr)")
            outs.append(r.stdout)
        }
        #expect(outs[1].hasPrefix("uid=0 gid=0 groups=0\n         0        \(uid)          1\n"), "\(outs[1])")
        #expect(outs[0] == outs[1])
        // The lifecycle as that user: detached run, exec, state, kill, delete.
        process["args"] = ["sleep", "60"]
        config["process"] = process
        try writeCloexec(configPath, try JSONSerialization.data(withJSONObject: config))
        for (name, bin) in [("runc", runcPath), ("berth", berth)] {
            let root = dir + "/root-" + name
            defer { _ = try? asUser([bin, "--root", root, "delete", "--force", "rl2"]) }
            let d = try asUser([bin, "--root", root, "run", "-d", "--bundle", dir + "/bundle", "rl2"])
            #expect(d.status == 0, "\(name): \(d.stderr)")
            let e = try asUser([bin, "--root", root, "exec", "rl2", "id", "-u"])
            #expect(e.status == 0 && e.stdout == "0\n", "\(name): \(e.stderr)")
            #expect(try asUser([bin, "--root", root, "state", "rl2"]).stdout.contains("\"running\""), "\(name)")
            #expect(try asUser([bin, "--root", root, "kill", "rl2", "KILL"]).status == 0, "\(name)")
            var stopped = false
            for _ in 0..<200 where !stopped {
                stopped = try asUser([bin, "--root", root, "state", "rl2"]).stdout.contains("\"stopped\"")
                if !stopped { usleep(10_000) }
            }
            #expect(stopped, "\(name)")
            #expect(try asUser([bin, "--root", root, "delete", "rl2"]).status == 0, "\(name)")
        }
    }
}
