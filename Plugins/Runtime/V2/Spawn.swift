#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation
import Synchronization

/// Runs short-lived helper programs (a shim's `start` and `delete`) with posix_spawn: never fork, never run Swift
/// in a child. Standard streams are memory files (memfd), not pipes: a shim's `start` leaves a long-lived shim
/// behind that inherits whatever descriptors it got, so a pipe would never reach EOF; and unlike files on disk
/// they cost no inode (on a busy ext4 each creation is 100 µs or more). The wait runs on its own thread, so the
/// concurrency pool is never blocked.
enum Spawn {
    struct Result: Sendable {
        var status: Int32
        var stdout: [UInt8]
        var stderr: [UInt8]
    }

    typealias MemfdCreate = @convention(c) (UnsafePointer<CChar>, UInt32) -> Int32
    /// glibc's `memfd_create` (2.27+, not imported by Swift's Glibc module).
    static let memfdCreate: MemfdCreate? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "memfd_create") else { return nil }
        return unsafeBitCast(symbol, to: MemfdCreate.self)
    }()

    /// Runs `path` with `arguments` in `cwd`, `stdin` bytes as its standard input, and `environment` added to
    /// berthd's; killed (SIGKILL) when `timeout` passes. A `listener` becomes the child's fd 3.
    static func run(
        _ path: String, _ arguments: [String], cwd: String?, environment: [String: String] = [:],
        stdin: [UInt8] = [], listener: Int32? = nil, timeout: Duration
    ) async throws(BerthError) -> Result {
        var streams: [Int32] = []
        defer { for fd in streams { Glibc.close(fd) } }
        for name in ["spawn-stdin", "spawn-stdout", "spawn-stderr"] { streams.append(try memoryFile(name)) }
        guard FileSystem.writeAll(streams[0], stdin), lseek(streams[0], 0, SEEK_SET) == 0 else {
            throw .internalError("writing a helper's standard input: \(FileSystem.errnoMessage())")
        }
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let pid = try spawn(
            path, arguments, cwd: cwd, env: env.map { "\($0.key)=\($0.value)" }, streams: streams, listener: listener)
        let status = await waitExit(pid, timeout: timeout)
        return Result(status: status, stdout: contents(streams[1]), stderr: contents(streams[2]))
    }

    /// A new, empty memory file (close-on-exec; `spawn` dups it into the child).
    static func memoryFile(_ name: String) throws(BerthError) -> Int32 {
        guard let memfdCreate else { throw .internalError("memfd_create is unavailable") }
        let fd = memfdCreate(name, 1)  // MFD_CLOEXEC
        guard fd >= 0 else { throw .internalError("memfd_create: \(FileSystem.errnoMessage())") }
        return fd
    }

    /// Everything written to the memory file `fd`, from its start.
    static func contents(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(out.count)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return out }
            out += buffer[0..<n]
        }
    }

    /// Starts `path` with `streams` (stdin, stdout, stderr) as its fds 0, 1 and 2.
    static func spawn(
        _ path: String, _ arguments: [String], cwd: String?, env: [String], streams: [Int32], listener: Int32? = nil
    ) throws(BerthError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, fd) in streams.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, Int32(target)) }
        if let listener { posix_spawn_file_actions_adddup2(&actions, listener, 3) }
        // The child gets only its streams (and the listener), never berthd's sockets and pipes: a shim would keep
        // them open for its whole life.
        _ = PosixSpawn.addCloseFrom?(&actions, listener == nil ? 3 : 4)
        if let cwd {
            guard let addChdir = PosixSpawn.addChdir else {
                throw .internalError("posix_spawn_file_actions_addchdir_np is unavailable")
            }
            _ = addChdir(&actions, cwd)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, PosixSpawn.defaultSignals(&attributes))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw .failedPrecondition("start \(path): \(FileSystem.errnoMessage(rc))") }
        return pid
    }

    /// Waits for `pid` on a dedicated thread, woken by the exit itself (no polling); kills it (SIGKILL) when
    /// `timeout` passes. Returns the exit code (128+signal), -1 if it could not be waited for.
    static func waitExit(_ pid: pid_t, timeout: Duration) async -> Int32 {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let exited = ExitFlag()
        // The child stays a zombie until `exited` is set (waitid WNOWAIT), so the timer never kills a reused pid.
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { exited.killUnlessExited(pid) }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            let thread = Thread {
                var info = siginfo_t()
                var r: Int32
                repeat { r = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) } while r < 0 && errno == EINTR
                exited.set()
                var status: Int32 = 0
                var reaped: pid_t
                repeat { reaped = waitpid(pid, &status, 0) } while reaped < 0 && errno == EINTR
                guard reaped == pid else {
                    continuation.resume(returning: -1)
                    return
                }
                let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                continuation.resume(returning: code)
            }
            thread.start()
        }
    }

    /// Whether a spawned child has exited (it is then a zombie until reaped), guarding the timeout's kill.
    final class ExitFlag: Sendable {
        private let done = Mutex(false)
        func set() { done.withLock { $0 = true } }
        func killUnlessExited(_ pid: pid_t) { done.withLock { if !$0 { kill(pid, SIGKILL) } } }
    }
}
