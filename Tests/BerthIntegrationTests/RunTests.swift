import BerthTestSupport
import Foundation
import Testing

/// The daemons `berth run` is tested against: Debian's containerd 1.6 (the reference), and berthd with Debian's
/// containerd-shim-runc-v2 + runc or with berth-shim + berth-runc.
enum RunDaemon: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case containerd, berthd, berthdWithBerthShim
    var testDescription: String { rawValue }
}

/// `berth run` and friends, driven against containerd 1.6 and berthd (the same API). Blocking work runs off the pool.
@Suite(.serialized, .enabled(if: TaskTestSupport.available)) struct RunTests {
    /// Runs `scenario` against a fresh daemon of `kind` with the busybox image imported; always cleans up.
    func on(_ kind: RunDaemon, _ scenario: @escaping @Sendable (RunTarget) async throws -> Void) async throws {
        switch kind {
        case .containerd:
            let containerd = try await TaskTestSupport.offPool { try ReferenceContainerd() }
            let outcome = await Self.attempt {
                let target = try await TaskTestSupport.offPool { try RunTarget(socket: containerd.socket) }
                let inner = await Self.attempt { try await scenario(target) }
                _ = try? await TaskTestSupport.offPool { target.cleanUp() }
                try inner.get()
            }
            _ = try? await TaskTestSupport.offPool { containerd.stop() }
            try outcome.get()
        case .berthd, .berthdWithBerthShim:
            let shim = kind == .berthd ? TaskTestSupport.shim : binDirectory + "/berth-shim"
            let daemon = try await TaskTestSupport.offPool { try Daemon(extra: TaskTestSupport.runtimeConfig(shim: shim)) }
            let namespace = Locked("")
            let outcome = await Self.attempt {
                var made = try await TaskTestSupport.offPool { try RunTarget(socket: daemon.socket) }
                made.berthShim = kind == .berthdWithBerthShim
                let target = made
                namespace.set(target.namespace)
                let inner = await Self.attempt { try await scenario(target) }
                _ = try? await TaskTestSupport.offPool { target.cleanUp() }
                try inner.get()
            }
            if case .failure = outcome { Issue.record("berthd log:\n\(daemon.logText.suffix(3000))") }
            _ = try? await TaskTestSupport.offPool {
                TaskTestSupport.cleanup(daemon, namespace: namespace.get())
                daemon.remove()
            }
            try outcome.get()
        }
    }

    /// The outcome of `body`, so clean-up can run (off the pool) before a failure is rethrown.
    static func attempt(_ body: () async throws -> Void) async -> Result<Void, any Error> {
        do {
            try await body()
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    @Test(arguments: RunDaemon.allCases) func runPrintsAndRemoves(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.runPrintsAndRemoves)
    }

    @Test(arguments: RunDaemon.allCases) func exitCodesPropagate(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.exitCodesPropagate)
    }

    @Test(arguments: RunDaemon.allCases) func detachedLifecycle(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.detachedLifecycle)
    }

    @Test(arguments: RunDaemon.allCases) func specFlagsTakeEffect(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.specFlagsTakeEffect)
    }

    @Test(arguments: RunDaemon.allCases) func seccompBlocksSyscalls(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.seccompBlocksSyscalls)
    }

    @Test(arguments: RunDaemon.allCases) func stdinAndTerminal(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.stdinAndTerminal)
    }

    @Test(arguments: RunDaemon.allCases) func pauseResumeStats(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.pauseResumeStats)
    }

    @Test(arguments: RunDaemon.allCases) func unpacksForAnotherSnapshotter(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.unpacksForAnotherSnapshotter)
    }

    @Test(arguments: RunDaemon.allCases) func signalsAreForwarded(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.signalsAreForwarded)
    }

    @Test(arguments: RunDaemon.allCases) func errorsAreClear(_ kind: RunDaemon) async throws {
        try await on(kind, RunScenarios.errorsAreClear)
    }
}

/// The scenarios, each against any daemon serving containerd's API.
enum RunScenarios {
    static func runPrintsAndRemoves(_ t: RunTarget) async throws {
        let run = try await t.berth(["run", "--rm", "busybox", "echo", "hello"])
        #expect(run.succeeded, "\(run.stderr)")
        #expect(run.stdout == "hello\n")
        #expect(try await t.ctr(["containers", "ls", "-q"]).stdout.isEmpty)
        #expect(try await t.ctr(["tasks", "ls", "-q"]).stdout.isEmpty)
        let snapshots = try await t.ctr(["snapshots", "ls"]).stdout
        #expect(snapshots.split(separator: "\n").filter { $0.contains("Active") }.isEmpty, "\(snapshots)")
        // The image's CMD and WorkingDir apply when no command is given; stderr is kept apart.
        let cwd = try await t.berth(["run", "--rm", "docker.io/library/busybox:latest", "sh", "-c", "pwd; echo oops >&2"])
        #expect(cwd.stdout == "/root\n")
        #expect(cwd.stderr == "oops\n")
        // Without --rm the container stays, stopped, and ctr can remove it.
        let kept = try await t.berth(["run", "--name", "kept", "busybox", "true"])
        #expect(kept.succeeded, "\(kept.stderr)")
        #expect(try await t.ctr(["containers", "ls", "-q"]).stdout == "kept\n")
        #expect(try await t.ctr(["containers", "rm", "kept"]).succeeded)
    }

    static func exitCodesPropagate(_ t: RunTarget) async throws {
        #expect(try await t.berth(["run", "--rm", "busybox", "sh", "-c", "exit 7"]).status == 7)
        #expect(try await t.berth(["run", "--rm", "busybox", "false"]).status == 1)
        // pid 1 ignores signals it has no handler for, even SIGKILL from inside; a child killed by one is 128 + 9.
        #expect(try await t.berth(["run", "--rm", "busybox", "sh", "-c", "sleep 5 & kill -9 $!; wait $!"]).status == 137)
        #expect(try await t.berth(["run", "--rm", "busybox", "sh", "-c", "kill -9 $$; echo alive"]).stdout == "alive\n")
        #expect(try await t.ctr(["containers", "ls", "-q"]).stdout.isEmpty)
    }

    static func detachedLifecycle(_ t: RunTarget) async throws {
        let started = try await t.berth(["run", "-d", "--name", "web", "busybox", "sleep", "300"])
        #expect(started.succeeded, "\(started.stderr)")
        #expect(started.stdout == "web\n")
        #expect(try await t.waitForTask("web", "RUNNING"))
        let ps = try await t.berth(["ps"])
        #expect(ps.stdout.contains("web") && ps.stdout.contains("RUNNING") && ps.stdout.contains("sleep 300"), "\(ps.stdout)")
        #expect(try await t.berth(["ps", "-q"]).stdout == "web\n")
        #expect(try await t.berth(["containers", "ls", "-q"]).stdout == "web\n")
        #expect(try await t.berth(["tasks", "ls"]).stdout.contains("RUNNING"))
        let info = try await t.berth(["containers", "info", "--spec", "web"])
        #expect(info.stdout.contains("\"SCMP_ACT_ERRNO\""), "default seccomp profile expected")

        let exec = try await t.berth(["exec", "web", "sh", "-c", "echo in-$(hostname) ; id -u"])
        #expect(exec.succeeded, "\(exec.stderr)")
        #expect(exec.stdout.hasPrefix("in-") && exec.stdout.hasSuffix("\n0\n"), "\(exec.stdout)")
        #expect(try await t.berth(["exec", "web", "sh", "-c", "exit 3"]).status == 3)
        let asNobody = try await t.berth(["exec", "--user", "65534:65534", "-e", "X=1", "web", "sh", "-c", "echo $X $(id -u)"])
        #expect(asNobody.stdout == "1 65534\n", "\(asNobody.stderr)")
        let piped = try await t.berth(["exec", "-i", "web", "wc", "-l"], stdin: "x\ny\n")
        #expect(piped.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "\(piped.stderr)")
        let berth = "\(binDirectory)/berth --address \(t.socket) --namespace \(t.namespace)"
        let tty = try await TaskTestSupport.offPool {
            try execute("/usr/bin/script", ["-qec", "stty cols 90 rows 30; \(berth) exec -t web sh -c 'tty; busybox stty size'", "/dev/null"])
        }
        #expect(tty.stdout.hasPrefix("/dev/pts/"), "\(tty.stdout)")
        // The exec's pty has this terminal's size from the start (consoleSize, or ResizePty before Start).
        #expect(tty.stdout.replacingOccurrences(of: "\r", with: "").hasSuffix("\n30 90\n"), "\(tty.stdout)")
        let pids = try await t.berth(["tasks", "ps", "web"])
        #expect(pids.stdout.split(separator: "\n").count >= 2, "\(pids.stdout)")

        // rm refuses a running task without -f.
        let refused = try await t.berth(["rm", "web"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("running"), "\(refused.stderr)")

        #expect(try await t.berth(["kill", "-s", "KILL", "web"]).succeeded)
        #expect(try await t.waitForTask("web", "STOPPED"))
        #expect(try await t.berth(["ps"]).stdout.contains("web") == false)
        #expect(try await t.berth(["ps", "--all"]).stdout.contains("STOPPED"))
        let removed = try await t.berth(["rm", "web"])
        #expect(removed.succeeded, "\(removed.stderr)")
        #expect(try await t.ctr(["containers", "ls", "-q"]).stdout.isEmpty)

        // rm -f kills a running one; ctr sees berth's containers and the other way round.
        #expect(try await t.berth(["run", "-d", "--name", "db", "busybox", "sleep", "300"]).succeeded)
        #expect(try await t.ctr(["tasks", "ls"]).stdout.contains("RUNNING"))
        #expect(try await t.berth(["rm", "-f", "db"]).succeeded)
        #expect(try await t.ctr(["containers", "ls", "-q"]).stdout.isEmpty)
        #expect(try await t.ctr(["snapshots", "ls"]).stdout.contains("db") == false)
    }

    static func specFlagsTakeEffect(_ t: RunTarget) async throws {
        let env = try await t.berth(["run", "--rm", "-e", "FOO=bar", "--env", "PATH=/bin", "busybox", "sh", "-c", "echo $FOO $PATH"])
        #expect(env.stdout == "bar /bin\n", "\(env.stderr)")
        let user = try await t.berth(["run", "--rm", "--user", "nobody", "busybox", "sh", "-c", "id -u; id -g; id -G"])
        #expect(user.stdout == "65534\n65534\n65534 50\n", "\(user.stderr)")
        let numeric = try await t.berth(["run", "--rm", "-u", "1234:5678", "busybox", "sh", "-c", "echo $(id -u):$(id -g)"])
        #expect(numeric.stdout == "1234:5678\n")
        let readOnly = try await t.berth(["run", "--rm", "--read-only", "busybox", "touch", "/x"])
        #expect(readOnly.status != 0)
        #expect(readOnly.stderr.contains("Read-only file system"), "\(readOnly.stderr)")
        #expect(try await t.berth(["run", "--rm", "busybox", "touch", "/x"]).succeeded)
        let host = try await t.berth(["run", "--rm", "--hostname", "boxy", "-w", "/tmp", "busybox", "sh", "-c", "hostname; pwd"])
        #expect(host.stdout == "boxy\n/tmp\n")
        let noNet = try await t.berth(["run", "--rm", "busybox", "ls", "/sys/class/net"])
        #expect(noNet.stdout == "lo\n", "\(noNet.stdout)")
        let hostNet = try await t.berth(["run", "--rm", "--net", "host", "busybox", "ls", "/sys/class/net"])
        #expect(hostNet.stdout.split(separator: "\n").count > 1, "\(hostNet.stdout)")

        let dir = "/tmp/berth-run-bind-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "from-host".write(toFile: dir + "/f", atomically: true, encoding: .utf8)
        let bind = try await t.berth([
            "run", "--rm", "--mount", "type=bind,src=\(dir),dst=/data,options=rbind:ro", "busybox", "sh", "-c",
            "cat /data/f; touch /data/g",
        ])
        #expect(bind.stdout == "from-host")
        #expect(bind.status != 0)

        // Capabilities: the default set lacks NET_ADMIN; --cap-add gives it, --cap-drop takes CHOWN away.
        func capEff(_ flags: [String]) async throws -> UInt64 {
            let out = try await t.berth(["run", "--rm"] + flags + ["busybox", "grep", "CapEff", "/proc/self/status"]).stdout
            return UInt64(out.split(separator: "\t").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "", radix: 16) ?? 0
        }
        let plain = try await capEff([])
        #expect(plain == 0x00000000a80425fb, "\(String(plain, radix: 16))")
        #expect(try await capEff(["--cap-add", "NET_ADMIN"]) == plain | (1 << 12))
        #expect(try await capEff(["--cap-drop", "CAP_CHOWN"]) == plain & ~1)
        #expect(try await capEff(["--privileged"]) & (1 << 21) != 0)  // CAP_SYS_ADMIN

        let limits = try await t.berth(["run", "-d", "--name", "lim", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "30", "busybox", "sleep", "60"])
        #expect(limits.succeeded, "\(limits.stderr)")
        let spec = try await t.ctr(["containers", "info", "lim"]).stdout
        #expect(spec.contains("\"limit\": 67108864") && spec.contains("\"quota\": 50000") && spec.contains("\"limit\": 30"), "\(spec)")
        #expect(try await t.berth(["rm", "-f", "lim"]).succeeded)
    }

    static func seccompBlocksSyscalls(_ t: RunTarget) async throws {
        let confined = try await t.berth(["run", "--rm", "busybox", "sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true"])
        #expect(confined.stdout.contains("Seccomp:\t2"), "\(confined.stdout)")
        #expect(confined.status != 0)
        #expect(confined.stderr.contains("Operation not permitted"), "\(confined.stderr)")
        let free = try await t.berth(["run", "--rm", "--no-seccomp", "busybox", "sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true"])
        #expect(free.stdout.contains("Seccomp:\t0"), "\(free.stdout)")
        #expect(free.succeeded, "\(free.stderr)")
        // clone3 answers ENOSYS so libcs fall back to clone; the default profile still allows plain fork/exec.
        #expect(try await t.berth(["run", "--rm", "busybox", "sh", "-c", "true | cat"]).succeeded)
    }

    static func stdinAndTerminal(_ t: RunTarget) async throws {
        let echo = try await t.berth(["run", "--rm", "-i", "busybox", "sh", "-c", "wc -l"], stdin: "a\nb\nc\n")
        #expect(echo.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3", "\(echo.stderr)")
        // Without -i the process gets no stdin (EOF at once).
        let none = try await t.berth(["run", "--rm", "busybox", "cat"], stdin: "ignored")
        #expect(none.succeeded && none.stdout.isEmpty)
        // With -t under a pseudo-terminal (script(1)), the process sees a tty and TERM.
        let command = "\(binDirectory)/berth --address \(t.socket) --namespace \(t.namespace) run --rm -t busybox sh -c 'tty; echo $TERM'"
        let tty = try await TaskTestSupport.offPool { try execute("/usr/bin/script", ["-qec", command, "/dev/null"]) }
        #expect(tty.stdout.contains("/dev/pts/") && tty.stdout.contains("xterm"), "\(tty.stdout) \(tty.stderr)")
        #expect(tty.succeeded)
        // The container's pty has this terminal's size from the start, also with -i and stdin at EOF at once.
        let berth = "\(binDirectory)/berth --address \(t.socket) --namespace \(t.namespace)"
        let sized = try await TaskTestSupport.offPool {
            try execute("/usr/bin/script", [
                "-qec", "stty cols 77 rows 22; \(berth) run --rm -t busybox busybox stty size; "
                    + "\(berth) run --rm -t -i busybox busybox stty size </dev/null", "/dev/null",
            ])
        }
        #expect(sized.stdout.replacingOccurrences(of: "\r", with: "") == "22 77\n22 77\n", "\(sized.stdout)")
    }

    static func pauseResumeStats(_ t: RunTarget) async throws {
        #expect(try await t.berth(["run", "-d", "--name", "p", "busybox", "sleep", "300"]).succeeded)
        #expect(try await t.berth(["pause", "p"]).succeeded)
        #expect(try await t.waitForTask("p", "PAUSED"))
        #expect(try await t.berth(["ps"]).stdout.contains("PAUSED"))
        #expect(try await t.berth(["resume", "p"]).succeeded)
        #expect(try await t.waitForTask("p", "RUNNING"))
        let stats = try await t.berth(["stats", "p"])
        #expect(stats.succeeded, "\(stats.stderr)")
        let row = stats.stdout.split(separator: "\n").last ?? ""
        #expect(row.hasPrefix("p ") && row.contains("KiB") || row.contains("MiB"), "\(stats.stdout)")
        let json = try await t.berth(["stats", "--format", "json", "p"])
        let list = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        let metrics = list?.first?["metrics"] as? [String: Any]
        #expect((metrics?["pids"] as? Int) == 1, "\(json.stdout)")
        #expect(try await t.berth(["tasks", "kill", "p"]).succeeded)  // SIGTERM: sleep as pid 1 ignores it
        #expect(try await t.berth(["rm", "-f", "p"]).succeeded)
    }

    static func unpacksForAnotherSnapshotter(_ t: RunTarget) async throws {
        // The import unpacked into overlayfs only; run unpacks into native first, as ctr does.
        #expect(try await t.ctr(["snapshots", "--snapshotter", "native", "ls"]).stdout.contains("Committed") == false)
        let first = try await t.berth(["run", "--rm", "--snapshotter", "native", "busybox", "echo", "ok"])
        #expect(first.stdout == "ok\n", "\(first.stderr)")
        let native = try await t.ctr(["snapshots", "--snapshotter", "native", "ls"]).stdout
        #expect(native.split(separator: "\n").filter { $0.contains("Committed") }.count == 1, "\(native)")
        #expect(native.contains("Active") == false, "\(native)")
        // The config blob now names the snapshot for GC, and a second run reuses it.
        #expect(try await t.ctr(["content", "ls"]).stdout.contains("containerd.io/gc.ref.snapshot.native=sha256:"))
        #expect(try await t.berth(["run", "--rm", "--snapshotter", "native", "busybox", "true"]).succeeded)
        #expect(try await t.ctr(["snapshots", "--snapshotter", "native", "ls"]).stdout == native)
    }

    static func signalsAreForwarded(_ t: RunTarget) async throws {
        // SIGTERM to an attached `berth run` reaches the container's process (pid 1 with a handler).
        let output = NSTemporaryDirectory() + "berth-sig-\(t.namespace).out"
        defer { unlink(output) }
        let process = try TestProcess(
            binDirectory + "/berth",
            [
                "--address", t.socket, "--namespace", t.namespace, "run", "--rm", "--name", "sig", "busybox", "sh", "-c",
                "trap 'echo got-term; exit 3' TERM; while true; do sleep 0.1; done",
            ], outputPath: output)
        let running = try await t.waitForTask("sig", "RUNNING")
        #expect(running)
        try await Task.sleep(for: .milliseconds(300))  // let the shell install its trap
        process.terminate()
        let finished = try await TaskTestSupport.offPool { () -> (Int32, String) in
            process.waitUntilExit()
            return (process.terminationStatus, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
        }
        #expect(finished.0 == 3)
        #expect(finished.1 == "got-term\n")
        #expect(try await t.ctr(["containers", "ls", "-q"]).stdout.isEmpty)
    }

    static func errorsAreClear(_ t: RunTarget) async throws {
        let missing = try await t.berth(["run", "--rm", "nosuchimage", "true"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("not found"), "\(missing.stderr)")
        let badUser = try await t.berth(["run", "--rm", "--user", "ghost", "busybox", "true"])
        #expect(badUser.status != 0)
        #expect(badUser.stderr.contains("ghost"), "\(badUser.stderr)")
        #expect(try await t.ctr(["containers", "ls", "-q"]).stdout.isEmpty)
        let badCommand = try await t.berth(["run", "--rm", "busybox", "/no/such/binary"])
        #expect(badCommand.status != 0)
        #expect(try await t.ctr(["containers", "ls", "-q"]).stdout.isEmpty)
        // An id in use fails at prepare and leaves no lease behind.
        #expect(try await t.berth(["run", "-d", "--name", "dup", "busybox", "sleep", "60"]).succeeded)
        let leases = try await t.ctr(["leases", "ls", "-q"]).stdout
        let dup = try await t.berth(["run", "--rm", "--name", "dup", "busybox", "true"])
        #expect(dup.status != 0)
        #expect(dup.stderr.contains("exists"), "\(dup.stderr)")
        #expect(try await t.ctr(["leases", "ls", "-q"]).stdout == leases)
        #expect(try await t.ctr(["tasks", "ls"]).stdout.contains("RUNNING"))
        #expect(try await t.berth(["rm", "-f", "dup"]).succeeded)
        #expect(try await t.berth(["run", "--rm", "-d", "busybox"]).status != 0)
        #expect(try await t.berth(["exec", "nope", "true"]).status != 0)
    }
}
