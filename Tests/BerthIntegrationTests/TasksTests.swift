import BerthCore
import Foundation
import Testing

/// Debian's `ctr` runs containers through berthd: Containers and Tasks services, runtime v2 with Debian's
/// containerd-shim-runc-v2 and runc, events from the shims.
@Suite(.serialized, .enabled(if: TaskTestSupport.available)) struct TasksTests {
    typealias S = TaskTestSupport

    /// A daemon with the Go shim configured, a busybox rootfs and a namespace of its own; always cleaned up.
    func withSetup(shim: String, _ body: @escaping @Sendable (Daemon, String, String) async throws -> Void) async throws {
        let namespace = "tasks-\(UInt32.random(in: 0..<1_000_000))"
        let daemon = try await S.offPool { try Daemon(extra: S.runtimeConfig(shim: shim)) }
        defer {
            S.cleanup(daemon, namespace: namespace)
            daemon.remove()
        }
        let rootfs = try S.makeRootfs(in: daemon.directory)
        do { try await body(daemon, namespace, rootfs) } catch {
            Issue.record("daemon log:\n\(daemon.logText.suffix(4000))")
            throw error
        }
    }

    @Test(arguments: S.shims) func runRmPrintsOutputAndPropagatesExitCodes(shim: String) async throws {
        try await withSetup(shim: shim) { d, ns, rootfs in
            let hello = try await S.ctr(d, ns, ["run", "--rm", "--rootfs", rootfs, "t1", "/bin/echo", "hello"])
            #expect(hello.succeeded, "\(hello.stderr)")
            #expect(hello.stdout == "hello\n")
            let seven = try await S.ctr(d, ns, ["run", "--rm", "--rootfs", rootfs, "t1", "/bin/sh", "-c", "exit 7"])
            #expect(seven.status == 7, "\(seven.stderr)")
            // --rm removed both, so the id is free again and nothing is listed.
            let containers = try await S.ctr(d, ns, ["containers", "ls", "-q"])
            #expect(containers.stdout.isEmpty)
            let clean = try await S.eventually { S.shimPids(d).isEmpty }
            #expect(clean, "shims left: \(S.shimPids(d))")
            let bundles = d.directory + "/state/io.containerd.runtime.v2.task/\(ns)"
            let noBundles = try await S.eventually { ((try? FileManager.default.contentsOfDirectory(atPath: bundles)) ?? []).isEmpty }
            #expect(noBundles)
            if shim.hasSuffix("berth-shim") {
                // berth-shim's socket and runtime record (named as ShimPaths names them) went with it.
                let hash = S.sha256Hex("\(d.socket)/\(ns)/t1")
                let directory = (d.socket as NSString).deletingLastPathComponent + "/s"
                let files = [directory, "/run/berth/s"].flatMap { ["\($0)/\(hash)", "\($0)/\(hash).runtime"] }
                let gone = try await S.eventually { files.allSatisfy { !FileManager.default.fileExists(atPath: $0) } }
                #expect(gone, "left: \(files.filter { FileManager.default.fileExists(atPath: $0) })")
            }
        }
    }

    @Test(arguments: S.shims) func detachedTaskLifecycle(shim: String) async throws {
        try await withSetup(shim: shim) { d, ns, rootfs in
            let run = try await S.ctr(d, ns, ["run", "-d", "--rootfs", rootfs, "sleeper", "/bin/sleep", "1000"])
            #expect(run.succeeded, "\(run.stderr)")
            var tasks = try await S.offPool { try S.tasks(d, namespace: ns) }
            #expect(tasks["sleeper"]?.status == "RUNNING", "\(tasks)")
            let pid = tasks["sleeper"]?.pid ?? "?"
            // containerd's runc shim gets the bundle's `work` link (its checkpoint directory); berth-shim needs none.
            let bundle = d.directory + "/state/io.containerd.runtime.v2.task/\(ns)/sleeper"
            let work = d.directory + "/root/io.containerd.runtime.v2.task/\(ns)/sleeper"
            #expect(FileManager.default.fileExists(atPath: bundle + "/config.json"))
            #expect(FileManager.default.fileExists(atPath: bundle + "/work") == !shim.hasSuffix("berth-shim"))
            #expect(FileManager.default.fileExists(atPath: work) == !shim.hasSuffix("berth-shim"))

            let ps = try await S.ctr(d, ns, ["tasks", "ps", "sleeper"])
            #expect(ps.stdout.contains(pid), "\(ps.stdout)")

            let exec = try await S.ctr(d, ns, ["tasks", "exec", "--exec-id", "e1", "sleeper", "/bin/sh", "-c", "echo from-exec; exit 3"])
            #expect(exec.stdout == "from-exec\n", "\(exec.stderr)")
            #expect(exec.status == 3)

            #expect(try await S.ctr(d, ns, ["tasks", "pause", "sleeper"]).succeeded)
            tasks = try await S.offPool { try S.tasks(d, namespace: ns) }
            #expect(tasks["sleeper"]?.status == "PAUSED")
            #expect(try await S.ctr(d, ns, ["tasks", "resume", "sleeper"]).succeeded)
            tasks = try await S.offPool { try S.tasks(d, namespace: ns) }
            #expect(tasks["sleeper"]?.status == "RUNNING")

            let metrics = try await S.ctr(d, ns, ["tasks", "metrics", "sleeper"])
            #expect(metrics.succeeded, "\(metrics.stderr)")
            #expect(metrics.stdout.contains("pids.current") || metrics.stdout.contains("memory"), "\(metrics.stdout)")

            // A running task cannot be removed.
            let busy = try await S.ctr(d, ns, ["tasks", "rm", "sleeper"])
            #expect(!busy.succeeded)

            let info = try await S.ctr(d, ns, ["containers", "info", "sleeper"])
            #expect(info.stdout.contains("\"Name\": \"io.containerd.runc.v2\""), "\(info.stdout)")
            #expect(info.stdout.contains("\"/bin/sleep\""), "\(info.stdout)")
            let ls = try await S.ctr(d, ns, ["containers", "ls"])
            #expect(ls.stdout.contains("sleeper"))

            #expect(try await S.ctr(d, ns, ["tasks", "kill", "-s", "KILL", "sleeper"]).succeeded)
            let stopped = try await S.eventually { try S.tasks(d, namespace: ns)["sleeper"]?.status == "STOPPED" }
            #expect(stopped)
            let rm = try await S.ctr(d, ns, ["tasks", "rm", "sleeper"])
            #expect(rm.succeeded, "\(rm.stderr)")
            #expect(try await S.ctr(d, ns, ["containers", "rm", "sleeper"]).succeeded)
            #expect(try await S.offPool { try S.tasks(d, namespace: ns) }.isEmpty)
            let clean = try await S.eventually { S.shimPids(d).isEmpty }
            #expect(clean)
        }
    }

    @Test(arguments: S.shims) func errorsAreContainerds(shim: String) async throws {
        try await withSetup(shim: shim) { d, ns, rootfs in
            let noTask = try await S.ctr(d, ns, ["tasks", "start", "nothing"])
            #expect(!noTask.succeeded)
            #expect(noTask.stderr.contains("not found"), "\(noTask.stderr)")
            #expect(try await S.ctr(d, ns, ["containers", "create", "--rootfs", rootfs, "c1", "/bin/true"]).succeeded)
            let twice = try await S.ctr(d, ns, ["containers", "create", "--rootfs", rootfs, "c1", "/bin/true"])
            #expect(twice.stderr.contains("already exists"), "\(twice.stderr)")
            // No task yet: tasks of the container are NotFound.
            let kill = try await S.ctr(d, ns, ["tasks", "kill", "c1"])
            #expect(kill.stderr.contains("not found"), "\(kill.stderr)")
            // A failing create leaves nothing behind (a missing binary is runc's error, passed through).
            let broken = try await S.ctr(d, ns, ["run", "--rm", "--rootfs", rootfs, "c2", "/no/such/binary"])
            #expect(!broken.succeeded)
            #expect(broken.stderr.contains("no such file") || broken.stderr.contains("not found"), "\(broken.stderr)")
            let clean = try await S.eventually { S.shimPids(d).isEmpty }
            #expect(clean)
            #expect(try await S.ctr(d, ns, ["containers", "rm", "c1"]).succeeded)
        }
    }

    @Test(arguments: S.shims) func eventsShowTheTaskLifecycle(shim: String) async throws {
        try await withSetup(shim: shim) { d, ns, rootfs in
            let events = try await subscribe(d)
            defer { events.stop() }
            let run = try await S.ctr(d, ns, ["run", "--rm", "--rootfs", rootfs, "ev", "/bin/sh", "-c", "exit 4"])
            #expect(run.status == 4)
            let topics = ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete", "/containers/delete"]
            let all = try await S.eventually(10) { topics.allSatisfy { events.text.contains($0) } }
            #expect(all, "\(events.text)")
            let text = events.text
            let order = topics.compactMap { text.range(of: $0)?.lowerBound }
            #expect(order == order.sorted(), "\(text)")
            #expect(text.contains("\"container_id\":\"ev\""))
            #expect(text.contains("\"exit_status\":4"), "\(text)")
        }
    }

    @Test(arguments: S.shims) func runAnImportedImage(shim: String) async throws {
        try await withSetup(shim: shim) { d, ns, _ in
            let archive = try await S.offPool { try S.busyboxArchive(in: d.directory) }
            let imported = try await S.ctr(d, ns, ["images", "import", archive], timeout: 60)
            #expect(imported.succeeded, "\(imported.stderr)")
            let image = "docker.io/library/busybox:latest"
            let hello = try await S.ctr(d, ns, ["run", "--rm", image, "i1", "echo", "hello"])
            #expect(hello.succeeded, "\(hello.stderr)")
            #expect(hello.stdout == "hello\n")

            let run = try await S.ctr(d, ns, ["run", "-d", image, "i2", "sleep", "1000"])
            #expect(run.succeeded, "\(run.stderr)")
            let directory = d.directory
            let mounts: @Sendable () -> Int = {
                ((try? FileSystem.read("/proc/mounts")) ?? "").split(separator: "\n")
                    .filter { $0.contains(directory) }.count
            }
            #expect(mounts() == 1, "the rootfs overlay is mounted in the bundle")
            let snapshots = try await S.ctr(d, ns, ["snapshots", "ls"])
            #expect(snapshots.stdout.contains("i2"), "\(snapshots.stdout)")
            _ = try await S.ctr(d, ns, ["tasks", "kill", "-s", "KILL", "i2"])
            let stopped = try await S.eventually { try S.tasks(d, namespace: ns)["i2"]?.status == "STOPPED" }
            #expect(stopped)
            #expect(try await S.ctr(d, ns, ["tasks", "rm", "i2"]).succeeded)
            #expect(try await S.ctr(d, ns, ["containers", "rm", "i2"]).succeeded)
            let unmounted = try await S.eventually { mounts() == 0 }
            #expect(unmounted)
            let after = try await S.ctr(d, ns, ["snapshots", "ls"])
            #expect(!after.stdout.contains("i2"), "\(after.stdout)")
        }
    }

    /// `ctr events` against `d`, returned once the subscription is live (an event got through).
    func subscribe(_ d: Daemon) async throws -> Capture {
        let events = try Capture(ctrPath, ["--address", d.socket, "events"])
        var n = 0
        while !events.text.contains("/namespaces/create") && n < 50 {
            n += 1
            _ = try await S.ctr(d, nil, ["namespaces", "create", "probe\(n)"])
            try await Task.sleep(for: .milliseconds(100))
        }
        return events
    }

    @Test(arguments: S.shims) func outOfMemoryIsAnEventAndExit137(shim: String) async throws {
        try await withSetup(shim: shim) { d, ns, rootfs in
            try FileManager.default.createSymbolicLink(atPath: rootfs + "/bin/dd", withDestinationPath: "busybox")
            let events = try await subscribe(d)
            defer { events.stop() }
            // dd's 128 MiB buffer, filled from /dev/zero, cannot fit in a 32 MiB memory cgroup. It starts after a
            // pause: containerd's shim watches a task's cgroup for OOM only once `runc start` has returned, so an
            // OOM in the first milliseconds is never reported by it (CI saw that once).
            let run = try await S.ctr(d, ns, [
                "run", "--rm", "--memory-limit", "33554432", "--rootfs", rootfs, "oom1",
                "/bin/sh", "-c", "sleep 1; exec /bin/dd if=/dev/zero of=/dev/null bs=128M count=1",
            ])
            #expect(run.status == 137, "\(run.stdout) \(run.stderr)")
            let seen = try await S.eventually(10) { events.text.contains("/containers/delete") }
            #expect(seen, "\(events.text)")
            let text = events.text
            #expect(text.contains("/tasks/oom {\"container_id\":\"oom1\"}"), "\(text)")
            #expect(text.contains("\"exit_status\":137"), "\(text)")
            // containerd's shim sends OOM notices on their own path, so only the delete is surely later.
            let order = ["/tasks/create", "/tasks/oom", "/tasks/delete"].compactMap { text.range(of: $0)?.lowerBound }
            #expect(order.count == 3 && order == order.sorted(), "\(text)")
            if shim.hasSuffix("berth-shim") {
                // berth-shim holds an early notice until the start event went out.
                let start = text.range(of: "/tasks/start")?.lowerBound, oom = text.range(of: "/tasks/oom")?.lowerBound
                #expect(start.flatMap { start in oom.map { start < $0 } } == true, "\(text)")
            }
            // A task that stays within its limit reports no OOM, also when its cgroup is removed.
            let fits = try await S.ctr(d, ns, ["run", "--rm", "--memory-limit", "33554432", "--rootfs", rootfs, "fits", "/bin/true"])
            #expect(fits.succeeded, "\(fits.stderr)")
            let fitsGone = try await S.eventually(10) { events.text.components(separatedBy: "/containers/delete").count == 3 }
            #expect(fitsGone, "\(events.text)")
            #expect(events.text.components(separatedBy: "/tasks/oom").count == 2, "\(events.text)")
        }
    }

    @Test(.enabled(if: PtyDriver.available), arguments: S.shims) func terminalResizeReachesTheContainer(shim: String) async throws {
        try await withSetup(shim: shim) { d, ns, rootfs in
            try FileManager.default.createSymbolicLink(atPath: rootfs + "/bin/stty", withDestinationPath: "busybox")
            let ctr = [ctrPath, "--address", d.socket, "--namespace", ns]
            // ctr run -t: the container's pty takes the terminal's size, then follows a resize (ResizePty).
            let waiter = PtyDriver.waiter(initial: (20, 70), resized: (33, 99))
            let run = try await S.offPool {
                try PtyDriver.run(ctr + ["run", "-t", "--rm", "--rootfs", rootfs, "tty1", "/bin/sh", "-c", waiter],
                                  initial: (20, 70), resized: (33, 99))
            }
            #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
            #expect(run.stdout.contains("ready") && run.stdout.contains("resized"), "\(run.stdout)")

            // ctr task exec -t: the same for an exec's pty.
            #expect(try await S.ctr(d, ns, ["run", "-d", "--rootfs", rootfs, "host", "/bin/sleep", "1000"]).succeeded)
            let execWaiter = PtyDriver.waiter(initial: (25, 81), resized: (40, 120))
            let exec = try await S.offPool {
                try PtyDriver.run(ctr + ["task", "exec", "-t", "--exec-id", "x1", "host", "/bin/sh", "-c", execWaiter],
                                  initial: (25, 81), resized: (40, 120))
            }
            #expect(exec.status == 0, "\(exec.stdout) \(exec.stderr)")
            #expect(exec.stdout.contains("ready") && exec.stdout.contains("resized"), "\(exec.stdout)")
            _ = try await S.ctr(d, ns, ["tasks", "kill", "-s", "KILL", "host"])
            let stopped = try await S.eventually { try S.tasks(d, namespace: ns)["host"]?.status == "STOPPED" }
            #expect(stopped)
            #expect(try await S.ctr(d, ns, ["tasks", "rm", "host"]).succeeded)
            #expect(try await S.ctr(d, ns, ["containers", "rm", "host"]).succeeded)
        }
    }

    /// berthd starts berth-shim without its `start` command: the shim detaches itself (not berthd's child, leader
    /// of its own session, `-detach` on its command line). Tasks that name a shim group still go through `start`,
    /// which finds the group's shim, so two of them share one process.
    @Test func berthShimStartsDetachedAndGroupsShareAShim() async throws {
        try await withSetup(shim: binDirectory + "/berth-shim") { d, ns, rootfs in
            #expect(try await S.ctr(d, ns, ["run", "-d", "--rootfs", rootfs, "solo", "/bin/sleep", "1000"]).succeeded)
            let solo = S.shimPids(d)
            #expect(solo.count == 1, "\(solo)")
            for pid in solo {
                let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                let parent = status.split(separator: "\n").first { $0.hasPrefix("PPid:") }?.split(separator: "\t").last
                #expect(parent.flatMap { Int32($0) } != d.process.processIdentifier, "\(status)")
                #expect(getsid(pid) == pid)
                let cmdline = String(decoding: FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data(), as: UTF8.self)
                #expect(cmdline.contains("-detach") && !cmdline.contains("start"), "\(cmdline)")
            }
            for id in ["g1", "g2"] {
                let run = try await S.ctr(d, ns, ["run", "-d", "--annotation", "io.containerd.runc.v2.group=grp", "--rootfs", rootfs, id, "/bin/sleep", "1000"])
                #expect(run.succeeded, "\(run.stderr)")
            }
            let all = S.shimPids(d)
            #expect(all.count == 2, "one shim for solo, one for the group: \(all)")
            let tasks = try await S.offPool { try S.tasks(d, namespace: ns) }
            #expect(["solo", "g1", "g2"].allSatisfy { tasks[$0]?.status == "RUNNING" }, "\(tasks)")
            for id in ["solo", "g1", "g2"] {
                _ = try await S.ctr(d, ns, ["tasks", "kill", "-s", "KILL", id])
                let stopped = try await S.eventually { try S.tasks(d, namespace: ns)[id]?.status == "STOPPED" }
                #expect(stopped, "\(id)")
                #expect(try await S.ctr(d, ns, ["tasks", "rm", id]).succeeded)
                #expect(try await S.ctr(d, ns, ["containers", "rm", id]).succeeded)
            }
            let clean = try await S.eventually { S.shimPids(d).isEmpty }
            #expect(clean, "shims left: \(S.shimPids(d))")
        }
    }
}
