import BerthTestSupport
import Foundation
import Glibc
import Testing

/// Debian's containerd 1.6 running containers with berth-shim as its runtime (`io.containerd.berth.v2` →
/// `containerd-shim-berth-v2` → berth-shim, found on containerd's PATH), driven by Debian's ctr.
@Suite("containerd 1.6 with berth-shim", .serialized,
       .enabled(if: peersAvailable && FileManager.default.isExecutableFile(atPath: "/usr/bin/containerd")))
struct ShimContainerdTests {
    /// A containerd with its own root, state and sockets under a temp dir; berth-shim on its PATH.
    final class Containerd: @unchecked Sendable {
        let dir: TempDir
        let socket: String
        let rootfs: String
        let pid: pid_t
        let fifoDir: String

        init() async throws {
            dir = try TempDir("bshimc")
            socket = dir.file("c.sock")
            rootfs = dir.file("rootfs")
            fifoDir = dir.file("fifo")
            try makeBusyboxRoot(rootfs)
            let bin = dir.file("bin")
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: bin + "/containerd-shim-berth-v2", withDestinationPath: shimBinary)
            let config = """
                version = 2
                root = "\(dir.file("root"))"
                state = "\(dir.file("state"))"
                disabled_plugins = ["io.containerd.grpc.v1.cri"]
                [grpc]
                  address = "\(socket)"
                [ttrpc]
                  address = "\(socket).ttrpc"
                """
            try config.write(toFile: dir.file("config.toml"), atomically: true, encoding: .utf8)
            let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, dir.file("containerd.log"), O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
            let argStrings: [String] = ["/usr/bin/containerd", "--config", dir.file("config.toml")]
            var envStrings: [String] = ["PATH=" + path]
            for (key, value) in ProcessInfo.processInfo.environment where key != "PATH" { envStrings.append("\(key)=\(value)") }
            let args: [UnsafeMutablePointer<CChar>?] = argStrings.map { strdup($0) } + [nil]
            let env: [UnsafeMutablePointer<CChar>?] = envStrings.map { strdup($0) } + [nil]
            defer {
                for pointer in args { free(pointer) }
                for pointer in env { free(pointer) }
            }
            var child: pid_t = 0
            guard posix_spawn(&child, "/usr/bin/containerd", &actions, nil, args, env) == 0 else {
                throw CocoaError(.executableLoad)
            }
            pid = child
            let up = await eventually { FileManager.default.fileExists(atPath: self.socket) }
            if !up { throw CocoaError(.fileNoSuchFile) }
        }

        func ctr(_ arguments: [String], stdin: String = "/dev/null") async throws -> Finished {
            try await runProgram("/usr/bin/ctr", ["--address", socket] + arguments, stdinPath: stdin, limit: 60)
        }

        /// `ctr run` flags for a busybox root dir, berth-shim runtime, fifos under the temp dir.
        var runFlags: [String] { ["--runtime", "io.containerd.berth.v2", "--fifo-dir", fifoDir, "--rootfs", rootfs] }

        var log: String { (try? String(contentsOfFile: dir.file("containerd.log"), encoding: .utf8)) ?? "" }

        /// Stops containerd (SIGTERM, then SIGKILL), kills berth-shims it left, removes the temp dir.
        func stop() {
            for line in readProcFile("/proc/mounts").split(separator: "\n") {
                let target = line.split(separator: " ").dropFirst().first.map(String.init) ?? ""
                if target.hasPrefix(dir.path) { umount2(target, Int32(MNT_DETACH)) }
            }
            kill(pid, SIGTERM)
            var status: Int32 = 0
            if !eventuallyBlocking(10, { waitpid(pid, &status, WNOHANG) != 0 }) {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
            }
            dir.cleanup()
        }
    }

    @Test("ctr run prints the container's output and passes its exit code")
    func runOutput() async throws {
        let containerd = try await Containerd()
        defer { containerd.stop() }
        let run = try await containerd.ctr(["run"] + containerd.runFlags + ["t1", "sh", "-c", "echo hi; exit 3"])
        #expect(run.text == "hi\n", "\(run.stderr)\n\(containerd.log)")
        #expect(run.status == 3)
        let rm = try await containerd.ctr(["containers", "rm", "t1"])
        #expect(rm.status == 0, "\(rm.stderr)")
    }

    @Test("ctr run -d, tasks ls/exec/ps/pause/resume/kill/rm through berth-shim")
    func detachedTask() async throws {
        let containerd = try await Containerd()
        defer { containerd.stop() }
        let run = try await containerd.ctr(
            ["run", "-d"] + containerd.runFlags + ["t2", "sh", "-c", "while true; do sleep 1; done"])
        #expect(run.status == 0, "\(run.stderr)\n\(containerd.log)")
        let listed = try await containerd.ctr(["tasks", "ls"])
        #expect(listed.text.contains("t2") && listed.text.contains("RUNNING"), "\(listed.text)")

        let exec = try await containerd.ctr(["tasks", "exec", "--exec-id", "e1", "t2", "sh", "-c", "echo from-exec; exit 5"])
        #expect(exec.text == "from-exec\n")
        #expect(exec.status == 5, "\(exec.stderr)")

        let ps = try await containerd.ctr(["tasks", "ps", "t2"])
        #expect(ps.status == 0 && ps.text.split(separator: "\n").count >= 2, "\(ps.text) \(ps.stderr)")

        #expect(try await containerd.ctr(["tasks", "pause", "t2"]).status == 0)
        #expect(try await containerd.ctr(["tasks", "ls"]).text.contains("PAUSED"))
        #expect(try await containerd.ctr(["tasks", "resume", "t2"]).status == 0)
        #expect(try await containerd.ctr(["tasks", "ls"]).text.contains("RUNNING"))

        let metrics = try await containerd.ctr(["tasks", "metrics", "t2"])
        #expect(metrics.status == 0 && metrics.text.contains("memory.usage_in_bytes"), "\(metrics.text) \(metrics.stderr)")

        #expect(try await Self.killAndWait(containerd, "t2"))
        let rm = try await containerd.ctr(["tasks", "rm", "t2"])
        #expect(rm.status == 0, "\(rm.stderr)")
        #expect(try await containerd.ctr(["containers", "rm", "t2"]).status == 0)
        #expect(!(try await containerd.ctr(["tasks", "ls"]).text.contains("t2")))
    }

    /// SIGKILLs task `id` and waits (up to 20 s) until `ctr tasks ls` shows it STOPPED.
    static func killAndWait(_ containerd: Containerd, _ id: String) async throws -> Bool {
        guard try await containerd.ctr(["tasks", "kill", "-s", "KILL", id]).status == 0 else { return false }
        for _ in 0..<200 {
            if try await containerd.ctr(["tasks", "ls"]).text.contains("STOPPED") { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// VmRSS in kB of the long-lived berth-shim serving container `id`.
    static func shimRSS(_ id: String) -> Int? {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(entry) != nil {
            guard let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let argv = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let first = argv.first, first.hasSuffix("berth-shim"), let i = argv.firstIndex(of: "-id"),
                i + 1 < argv.count, argv[i + 1] == id, !argv.contains("start"), !argv.contains("delete"),
                let status = try? String(contentsOfFile: "/proc/\(entry)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
            else { continue }
            return Int(line.split(separator: " ")[1])
        }
        return nil
    }

    @Test("a shim that gave back its memory after the start still serves its task")
    func trimmedShimServes() async throws {
        let containerd = try await Containerd()
        defer { containerd.stop() }
        let run = try await containerd.ctr(["run", "-d"] + containerd.runFlags + ["t4", "sleep", "600"])
        #expect(run.status == 0, "\(run.stderr)\n\(containerd.log)")
        let started = try #require(Self.shimRSS("t4"))
        // A second after the start the shim trims its heap and drops clean pages (code, libc, .rodata).
        var trimmed = started
        for _ in 0..<50 where trimmed >= started {
            try await Task.sleep(for: .milliseconds(100))
            trimmed = Self.shimRSS("t4") ?? started
        }
        #expect(trimmed < started, "VmRSS \(started) kB after the start, \(trimmed) kB later")
        let exec = try await containerd.ctr(["tasks", "exec", "--exec-id", "e1", "t4", "sh", "-c", "echo after-trim"])
        #expect(exec.text == "after-trim\n" && exec.status == 0, "\(exec.stderr)")
        #expect(try await containerd.ctr(["tasks", "ps", "t4"]).status == 0)
        #expect(try await Self.killAndWait(containerd, "t4"))
        #expect(try await containerd.ctr(["tasks", "rm", "t4"]).status == 0)
        #expect(try await containerd.ctr(["containers", "rm", "t4"]).status == 0)
    }

    @Test("ctr run -t under a pty: the container's stdio is a terminal, its exit code passes")
    func runWithTerminal() async throws {
        let containerd = try await Containerd()
        defer { containerd.stop() }
        // script(1) gives ctr a pty; ctr resizes the container's console only after Start, so the size is not
        // checked here (ShimTaskTests checks ResizePty).
        let command = "stty rows 33 cols 101; exec /usr/bin/ctr --address \(containerd.socket) run -t "
            + containerd.runFlags.joined(separator: " ") + " t3 sh -c 'tty; echo in-tty; exit 7'"
        let run = try await runProgram("/usr/bin/script", ["-qec", command, "/dev/null"])
        let text = run.text.replacingOccurrences(of: "\r", with: "")
        #expect(text.contains("/dev/pts/") && text.contains("in-tty\n"), "\(text.debugDescription) \(run.stderr)")
        #expect(run.status == 7)
        #expect(try await containerd.ctr(["containers", "rm", "t3"]).status == 0)
    }
}
