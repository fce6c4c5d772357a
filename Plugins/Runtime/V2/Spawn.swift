#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation
import Synchronization

/// Runs short-lived helper programs (a shim's `start` and `delete`) with posix_spawn: never fork, never run Swift
/// in a child. Output goes to files, not pipes: a shim's `start` leaves a long-lived shim behind that inherits
/// whatever descriptors it got, so a pipe would never reach EOF. The wait runs on its own thread, so the
/// concurrency pool is never blocked.
enum Spawn {
    struct Result: Sendable {
        var status: Int32
        var stdout: [UInt8]
        var stderr: [UInt8]
    }

    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    /// glibc's `posix_spawn_file_actions_addchdir_np` (a GNU extension Swift's Glibc module does not import).
    static let addChdir: AddChdir? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "posix_spawn_file_actions_addchdir_np")
        else { return nil }
        return unsafeBitCast(symbol, to: AddChdir.self)
    }()

    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+): the child gets only its three standard streams,
    /// never berthd's sockets and pipes (a shim would keep them open for its whole life).
    static let addCloseFrom: AddCloseFrom? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    /// Runs `path` with `arguments` in `cwd`, `stdin` bytes as its standard input, and `environment` added to
    /// berthd's; killed (SIGKILL) when `timeout` passes. A `listener` becomes the child's fd 3.
    static func run(
        _ path: String, _ arguments: [String], cwd: String?, environment: [String: String] = [:],
        stdin: [UInt8] = [], listener: Int32? = nil, timeout: Duration, scratch: String
    ) async throws(BerthError) -> Result {
        let base = "\(scratch)/.spawn-\(getpid())-\(UInt64.random(in: 0..<UInt64.max))"
        let inPath = base + ".in", outPath = base + ".out", errPath = base + ".err"
        defer {
            unlink(inPath)
            unlink(outPath)
            unlink(errPath)
        }
        try FileSystem.write(inPath, stdin, mode: 0o600)
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let pid = try spawn(
            path, arguments, cwd: cwd, env: env.map { "\($0.key)=\($0.value)" }, stdin: inPath, stdout: outPath,
            stderr: errPath, listener: listener)
        let status = await waitExit(pid, timeout: timeout)
        let out = (FileManager.default.contents(atPath: outPath)).map { [UInt8]($0) } ?? []
        let err = (FileManager.default.contents(atPath: errPath)).map { [UInt8]($0) } ?? []
        return Result(status: status, stdout: out, stderr: err)
    }

    static func spawn(
        _ path: String, _ arguments: [String], cwd: String?, env: [String], stdin: String, stdout: String,
        stderr: String, listener: Int32? = nil
    ) throws(BerthError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        if let listener { posix_spawn_file_actions_adddup2(&actions, listener, 3) }
        _ = addCloseFrom?(&actions, listener == nil ? 3 : 4)
        if let cwd {
            guard let addChdir else { throw .internalError("posix_spawn_file_actions_addchdir_np is unavailable") }
            _ = addChdir(&actions, cwd)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Default signal dispositions and an empty mask in the child, whatever berthd blocked.
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
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
