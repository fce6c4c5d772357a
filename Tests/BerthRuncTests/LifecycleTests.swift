import Foundation
import Testing

/// The command line and lifecycle states, each step compared with runc.
@Suite(.serialized)
struct LifecycleTests {
    @Test func createStartKillDeleteStates() throws {
        try withBundle(["sleep", "60"]) { b in
            for rt in b.runtimes {
                let id = try b.prepare()
                let pidFile = b.dir + "/\(id).pid"
                let c = try rt("create", "--bundle", b.dir, "--pid-file", pidFile, id)
                #expect(c.status == 0, "\(rt) create: \(c.stderr)")
                let state = try rt("state", id)
                let obj = try JSONSerialization.jsonObject(with: Data(state.stdout.utf8)) as? [String: Any] ?? [:]
                #expect(obj["status"] as? String == "created", "\(rt)")
                #expect(obj["id"] as? String == id)
                #expect(obj["bundle"] as? String == b.dir)
                #expect(obj["rootfs"] as? String == b.dir + "/rootfs")
                let pid = obj["pid"] as? Int ?? 0
                #expect(pid > 0)
                let pidText = (try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? ""
                #expect(pidText == "\(pid)", "\(rt) pid file")
                #expect(obj["created"] is String && obj["ociVersion"] is String)
                #expect(try rt("start", id).status == 0)
                #expect(try rt.status(id) == "running", "\(rt)")
                #expect(try rt("start", id).status != 0, "\(rt) started twice")
                let del = try rt("delete", id)
                #expect(del.status != 0, "\(rt) deleted a running container without --force")
                #expect(try rt("kill", id, "KILL").status == 0)
                #expect(try rt.wait(id, for: "stopped") == "stopped", "\(rt)")
                #expect(try rt("kill", id, "KILL").status != 0, "\(rt) signalled a stopped container")
                #expect(try rt("delete", id).status == 0)
                #expect(try rt.status(id) == nil)
                #expect(try rt("delete", id).status != 0, "\(rt) deleted a missing container")
                #expect(try rt("delete", "--force", id).status == 0, "\(rt) delete --force of a missing container")
            }
        }
    }

    /// berth-runc keeps the spec in config.json beside state.json; a record from before that (the spec inside
    /// state.json, no hooks or pid-namespace fields) still starts, execs, is killed, deleted with its poststop hook.
    @Test func recordWithTheSpecInsideStateStillWorks() throws {
        try withBundle(["sleep", "60"]) { b in
            let marker = b.dir + "/poststop-ran"
            b.config["hooks"] = ["poststop": [["path": "/bin/sh", "args": ["sh", "-c", "touch \(marker)"]]]]
            let rt = b.berth
            let id = try b.prepare()
            #expect(try rt("create", "--bundle", b.dir, id).status == 0)
            let directory = rt.root + "/" + id
            let stateData = try Data(contentsOf: URL(fileURLWithPath: directory + "/state.json"))
            var state = try JSONSerialization.jsonObject(with: stateData) as? [String: Any] ?? [:]
            #expect(state["hooks"] != nil && state["ownPidNamespace"] as? Bool == true, "\(state.keys)")
            let configData = try Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))
            state["config"] = try JSONSerialization.jsonObject(with: configData)
            state["hooks"] = nil
            state["ownPidNamespace"] = nil
            try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: directory + "/state.json"))
            try FileManager.default.removeItem(atPath: directory + "/config.json")

            #expect(try rt("start", id).status == 0)
            #expect(try rt.status(id) == "running")
            let exec = try rt("exec", id, "echo", "from-exec")
            #expect(exec.stdout == "from-exec\n", "\(exec.stderr)")
            #expect(try rt("delete", "--force", id).status == 0)
            #expect(try rt.status(id) == nil)
            #expect(FileManager.default.fileExists(atPath: marker), "poststop hook of the old record did not run")
        }
    }

    @Test func deleteCreatedAndForceDeleteRunning() throws {
        try withBundle(["sleep", "60"]) { b in
            for rt in b.runtimes {
                let a = try b.prepare()
                #expect(try rt("create", "--bundle", b.dir, a).status == 0)
                #expect(try rt("delete", a).status == 0, "\(rt) delete of a created container")
                let c = try b.prepare()
                #expect(try rt("run", "-d", "--bundle", b.dir, c).status == 0)
                #expect(try rt.status(c) == "running")
                #expect(try rt("delete", "--force", c).status == 0)
                #expect(try rt.status(c) == nil)
                #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/brt/\(c)"), "\(rt) left its cgroup")
            }
        }
    }

    @Test func killBySignalNameAndNumber() throws {
        // The shell is pid 1 of its namespace, so it only dies from SIGTERM because it traps it.
        // It says so by creating /tmp/ready once the trap is set.
        try withBundle(["sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 0.05; done"]) { b in
            b.config["root"] = ["path": "rootfs", "readonly": false]
            let ready = b.dir + "/rootfs/tmp/ready"
            for rt in b.runtimes {
                for sig in ["SIGTERM", "TERM", "15", "9", "KILL"] {
                    let id = try b.prepare()
                    unlink(ready)
                    #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                    for _ in 0..<1000 where !FileManager.default.fileExists(atPath: ready) { usleep(10_000) }
                    #expect(try rt("kill", id, sig).status == 0, "\(rt) kill \(sig)")
                    #expect(try rt.wait(id, for: "stopped") == "stopped", "\(rt) \(sig)")
                    _ = try rt("delete", "--force", id)
                }
                let id = try b.prepare()
                #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                #expect(try rt("kill", id, "NOSUCHSIG").status != 0)
                #expect(try rt("kill", "--all", id, "KILL").status == 0)
                #expect(try rt.wait(id, for: "stopped") == "stopped")
                _ = try rt("delete", "--force", id)
            }
        }
    }

    @Test func foregroundRunForwardsSignals() throws {
        try withBundle(["sh", "-c", "trap 'echo got; exit 5' TERM; touch /tmp/ready; while true; do sleep 0.05; done"]) { b in
            b.config["root"] = ["path": "rootfs", "readonly": false]
            let ready = b.dir + "/rootfs/tmp/ready"
            for rt in b.runtimes {
                unlink(ready)
                let id = try b.prepare()
                let out = b.dir + "/fg.out"
                let pid = try spawnAsync(rt.path, ["--root", rt.root, "run", "--bundle", b.dir, id], outPath: out)
                for _ in 0..<1000 where !FileManager.default.fileExists(atPath: ready) { usleep(10_000) }
                #expect(FileManager.default.fileExists(atPath: ready), "\(rt) container never became ready")
                kill(pid, SIGTERM)
                let code = waitExit(pid)
                let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
                #expect(code == 5, "\(rt): \(text)")
                #expect(text == "got\n", "\(rt)")
            }
        }
    }

    @Test func listTableAndJSON() throws {
        try withBundle(["sleep", "60"]) { b in
            for rt in b.runtimes {
                #expect(try rt("list", "--format", "json").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "null")
                let id = try b.prepare()
                #expect(try rt("create", "--bundle", b.dir, id).status == 0)
                let table = try rt("list").stdout.split(separator: "\n")
                #expect(table.first?.split(separator: " ") == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"])
                #expect(table.count == 2 && table[1].hasPrefix(id))
                let json = try rt("list", "--format", "json").stdout
                let arr = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] ?? []
                #expect(arr.count == 1 && arr[0]["id"] as? String == id && arr[0]["status"] as? String == "created")
                #expect(try rt("list", "-q").stdout == id + "\n")
                _ = try rt("delete", "--force", id)
            }
        }
    }

    @Test func pauseResume() throws {
        try withBundle(["sleep", "60"]) { b in
            for rt in b.runtimes {
                let id = try b.prepare()
                #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                #expect(try rt("resume", id).status != 0, "\(rt) resumed a running container")
                #expect(try rt("pause", id).status == 0)
                #expect(try rt.status(id) == "paused", "\(rt)")
                #expect(try rt("resume", id).status == 0)
                #expect(try rt.status(id) == "running", "\(rt)")
                #expect(try rt("delete", "--force", id).status == 0)
            }
        }
    }

    @Test func execPsAndEvents() throws {
        try withBundle(["sleep", "60"]) { b in
            var outputs: [String] = []
            for rt in b.runtimes {
                let id = try b.prepare()
                #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                let e = try rt("exec", "--env", "X=1", "--cwd", "/tmp", "--user", "1000:1000", "-g", "44", id,
                               "sh", "-c", "echo $X; pwd; id; hostname; grep ^CapEff /proc/self/status; cat /proc/1/cmdline")
                #expect(e.status == 0, "\(rt) exec: \(e.stderr)")
                outputs.append(e.stdout)
                #expect(try rt("exec", id, "sh", "-c", "exit 7").status == 7)
                let pidFile = b.dir + "/exec.pid"
                let d = try rt("exec", "-d", "--pid-file", pidFile, id, "sleep", "30")
                #expect(d.status == 0, "\(rt) exec -d: \(d.stderr)")
                let ps = try rt("ps", "--format", "json", id).stdout
                let pids = try JSONSerialization.jsonObject(with: Data(ps.utf8)) as? [Int] ?? []
                #expect(pids.count == 2, "\(rt) ps: \(ps)")
                let table = try rt("ps", id).stdout
                #expect(table.contains("sleep 30") && table.contains("PID"))
                let ev = try rt("events", "--stats", id).stdout
                let obj = try JSONSerialization.jsonObject(with: Data(ev.utf8)) as? [String: Any] ?? [:]
                #expect(obj["type"] as? String == "stats" && obj["id"] as? String == id)
                let data = obj["data"] as? [String: Any] ?? [:]
                let pidsStats = data["pids"] as? [String: Any] ?? [:]
                #expect(pidsStats["current"] as? Int == 2, "\(rt) events: \(ev)")
                #expect(try rt("delete", "--force", id).status == 0)
            }
            #expect(outputs.count == 2 && outputs[0] == outputs[1])
        }
    }

    @Test func execWithProcessFile() throws {
        try withBundle(["sleep", "60"]) { b in
            let process: [String: Any] = ["args": ["sh", "-c", "id; echo $Y; pwd"], "env": ["Y=2", "PATH=/bin"], "cwd": "/dev",
                                          "user": ["uid": 7, "gid": 8, "additionalGids": [9]]]
            let file = b.dir + "/process.json"
            try writeCloexec(file, JSONSerialization.data(withJSONObject: process))
            var outs: [String] = []
            for rt in b.runtimes {
                let id = try b.prepare()
                #expect(try rt("run", "-d", "--bundle", b.dir, id).status == 0)
                let r = try rt("exec", "--process", file, id)
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                outs.append(r.stdout)
                _ = try rt("delete", "--force", id)
            }
            #expect(outs[0] == outs[1])
            #expect(outs[1] == "uid=7 gid=8 groups=9\n2\n/dev\n")
        }
    }

    @Test func specFeaturesAndGlobalFlags() throws {
        let dir = "/tmp/brt-spec-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/a", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for rootless in [false, true] {
            let extra = rootless ? ["--rootless"] : []
            #expect(try execute(runcPath, ["spec", "--bundle", dir + "/a"] + extra).status == 0)
            #expect(try execute(berthRuncPath, ["spec", "--bundle", dir + "/b"] + extra).status == 0)
            #expect(try execute(berthRuncPath, ["spec", "--bundle", dir + "/b"]).status != 0, "overwrote config.json")
            func load(_ p: String) throws -> NSDictionary {
                let d = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: p))) as? [String: Any] ?? [:]
                var m = d
                m["ociVersion"] = nil
                return m as NSDictionary
            }
            #expect(try load(dir + "/a/config.json") == load(dir + "/b/config.json"), "rootless=\(rootless)")
            try FileManager.default.removeItem(atPath: dir + "/a/config.json")
            try FileManager.default.removeItem(atPath: dir + "/b/config.json")
        }
        let f = try execute(berthRuncPath, ["features"])
        let obj = try JSONSerialization.jsonObject(with: Data(f.stdout.utf8)) as? [String: Any] ?? [:]
        #expect((obj["hooks"] as? [String])?.count == 6)
        let sd = try execute(berthRuncPath, ["--systemd-cgroup", "--root", dir + "/r", "list"])
        #expect(sd.status == 1 && sd.stderr.contains("systemd"))
        let log = dir + "/log.json"
        let bad = try execute(berthRuncPath, ["--root", dir + "/r", "--log", log, "--log-format", "json", "state", "nope"])
        #expect(bad.status == 1)
        let line = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let entry = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
        #expect(entry["level"] as? String == "error" && (entry["msg"] as? String ?? "").contains("nope"))
    }
}
