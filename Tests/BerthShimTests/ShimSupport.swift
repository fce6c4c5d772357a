import BerthAPI
import BerthTestSupport
import BerthTTRPC
import Foundation
import Glibc
import SwiftProtobuf
import Testing

/// Where `swift build` put berth-shim and berth-runc: beside the test bundle (override with BERTH_BIN_DIR).
let binDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["BERTH_BIN_DIR"] { return dir }
    var url = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "")
    for _ in 0..<4 {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.path + "/berth-shim") { return url.path }
    }
    return url.path
}()
let shimBinary = binDirectory + "/berth-shim"
let busybox = FileManager.default.fileExists(atPath: "/bin/busybox") ? "/bin/busybox" : "/usr/bin/busybox"
/// The real peers these tests need, and root.
let peersAvailable = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runc")
    && FileManager.default.isExecutableFile(atPath: busybox)

/// A fresh temporary directory (short path: shim sockets live under it).
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ prefix: String = "bshim") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.flatMap { mkdtemp($0) }.map { String(cString: $0) }
        }
        guard let made else { throw TTRPCError(.internal, "mkdtemp failed: \(errno)") }
        path = made
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// A finished program: exit status, stdout, stderr.
struct Finished {
    var status: Int32
    var stdout: Data
    var stderr: String
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a program to completion with posix_spawn + waitpid on a separate thread (never on the concurrency pool):
/// stdout and stderr go to files, stdin is /dev/null or `stdinPath`. Killed after `limit` seconds. Not
/// Foundation's Process: a shim's `start` leaves the long-lived shim holding inherited descriptors.
func runProgram(
    _ path: String, _ arguments: [String], cwd: String? = nil, environment: [String: String] = [:],
    stdinPath: String = "/dev/null", limit: Double = 60
) async throws -> Finished {
    let out = "/tmp/bshim-run-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
    defer {
        unlink(out + ".out")
        unlink(out + ".err")
    }
    let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
    let status: Int32 = try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, out + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_addopen(&actions, 2, out + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            // posix_spawn_file_actions_addchdir_np is GNU-only (not imported): change directory through sh.
            var program = path
            var argv = [path] + arguments
            if let cwd {
                program = "/bin/sh"
                argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", cwd] + argv
            }
            let cArgs = argv.map { strdup($0) } + [nil]
            let cEnv = env.map { strdup($0) } + [nil]
            defer {
                for pointer in cArgs { free(pointer) }
                for pointer in cEnv { free(pointer) }
            }
            var pid: pid_t = 0
            let result = posix_spawn(&pid, program, &actions, nil, cArgs, cEnv)
            guard result == 0 else {
                continuation.resume(throwing: TTRPCError(.internal, "posix_spawn \(path): \(result)"))
                return
            }
            let deadline = Date().addingTimeInterval(limit)
            var status: Int32 = 0
            while waitpid(pid, &status, WNOHANG) == 0 {
                if Date() > deadline { kill(pid, SIGKILL) }
                usleep(2_000)
            }
            continuation.resume(returning: status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
        }
    }
    let stdout = FileManager.default.contents(atPath: out + ".out") ?? Data()
    let stderr = (try? String(contentsOfFile: out + ".err", encoding: .utf8)) ?? ""
    return Finished(status: status, stdout: stdout, stderr: stderr)
}

/// A directory holding busybox-static and its applet links: a container root filesystem.
func makeBusyboxRoot(_ path: String) throws {
    let fm = FileManager.default
    for dir in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
        try fm.createDirectory(atPath: "\(path)/\(dir)", withIntermediateDirectories: true)
    }
    // Written through a close-on-exec descriptor: a process spawned meanwhile by a parallel test must not
    // inherit a writable descriptor to it (exec would then fail with ETXTBSY).
    let binary = try Data(contentsOf: URL(fileURLWithPath: busybox))
    let fd = open(path + "/bin/busybox", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
    guard fd >= 0 else { throw TTRPCError(.internal, "create busybox copy: \(errno)") }
    defer { close(fd) }
    let written = binary.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == binary.count else { throw TTRPCError(.internal, "write busybox copy: \(errno)") }
    for applet in ["sh", "echo", "true", "cat", "sleep", "stty", "ls", "id", "tty"] {
        try fm.createSymbolicLink(atPath: "\(path)/bin/\(applet)", withDestinationPath: "busybox")
    }
}

/// Reads a FIFO to EOF on its own thread, from before the writer appears.
final class FIFOReader: @unchecked Sendable {
    let data = Box(Data())
    let done = Box(false)

    init(_ path: String) throws {
        guard mkfifo(path, 0o600) == 0 else { throw TTRPCError(.internal, "mkfifo \(path): \(errno)") }
        // Non-blocking open never waits for a writer; reads then block once the flag is cleared.
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw TTRPCError(.internal, "open \(path): \(errno)") }
        let data = data, done = done
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var sawWriter = false
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n > 0 {
                    sawWriter = true
                    data.update { $0.append(contentsOf: buffer[0..<n]) }
                } else if n == 0 && sawWriter {
                    break
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    break
                } else {
                    // No writer yet (EOF before any data) or nothing to read: poll.
                    if n == 0 && done.get { break }
                    usleep(5_000)
                }
            }
            close(fd)
            done.update { $0 = true }
        }
    }

    var text: String { String(decoding: data.get, as: UTF8.self) }
    func stop() { done.update { $0 = true } }
}
