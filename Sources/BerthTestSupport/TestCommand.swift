import BerthCore
import Foundation
import Glibc

/// Runs a program to completion, killing it (SIGKILL) after `timeout` seconds: the one process runner of the tests.
/// `run` waits on a GCD thread, never on the cooperative pool; `runBlocking` is for code already off the pool.
public enum TestCommand {
    public struct Result: Sendable {
        public var status: Int32
        /// Standard output as bytes (binary output such as a tar stream).
        public var output: Data
        public var stderr: String
        public init(status: Int32, output: Data, stderr: String) {
            self.status = status
            self.output = output
            self.stderr = stderr
        }
        /// Standard output as UTF-8 text.
        public var stdout: String { String(decoding: output, as: UTF8.self) }
        public var succeeded: Bool { status == 0 }
    }

    public struct Failed: Error, CustomStringConvertible {
        public var command: String
        public var result: Result
        public var description: String { "\(command) exited \(result.status): \(result.stderr)\(result.stdout)" }
    }

    /// Runs `path arguments…` with `input` (if any) on its stdin, in `cwd`; the result carries the exit status
    /// whatever it is.
    public static func run(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
        cwd: String? = nil, timeout: Double = 120
    ) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Swift.Result {
                    try runBlocking(
                        path, arguments, environment: environment, input: input, cwd: cwd, timeout: timeout)
                })
            }
        }
    }

    /// Runs and throws `Failed` unless the program exits 0; returns its stdout.
    @discardableResult
    public static func check(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
        cwd: String? = nil, timeout: Double = 120
    ) async throws -> String {
        let result = try await run(path, arguments, environment: environment, input: input, cwd: cwd, timeout: timeout)
        guard result.succeeded else {
            throw Failed(command: ([path] + arguments).joined(separator: " "), result: result)
        }
        return result.stdout
    }

    /// `run` on the calling thread, which it blocks: only for threads outside the cooperative pool.
    ///
    /// posix_spawn with closefrom rather than Foundation's Process: Process lists /proc/self/fd and adds one close
    /// action per open descriptor on every launch, which is slow in a test process holding a thousand descriptors
    /// and crashed (SIGSEGV in its /proc/self/fd scan) while other threads spawned and closed descriptors. The
    /// program also starts with signals unblocked, which Process left as the calling thread had them.
    public static func runBlocking(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
        cwd: String? = nil, timeout: Double = 120
    ) throws -> Result {
        let executable = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let stdout = try makePipe(), stderr = try makePipe()
        let stdin = input == nil ? (read: open("/dev/null", O_RDONLY | O_CLOEXEC), write: Int32(-1)) : try makePipe()
        var parentEnds = [stdout.read, stderr.read, stdin.write]
        var childEnds = [stdin.read, stdout.write, stderr.write]
        defer { for fd in parentEnds + childEnds where fd >= 0 { close(fd) } }
        guard stdin.read >= 0 else { throw SpawnError(message: "open /dev/null: \(String(cString: strerror(errno)))") }
        let pid = try spawn(executable, arguments, env: childEnvironment(environment), cwd: cwd, stdio: childEnds)
        for fd in childEnds { close(fd) }
        childEnds = []

        let group = DispatchGroup()
        let outData = UncheckedBox(Data())
        let errData = UncheckedBox(Data())
        for (fd, sink) in [(stdout.read, outData), (stderr.read, errData)] {
            group.enter()
            DispatchQueue.global().async {
                sink.value = readAll(fd)
                group.leave()
            }
        }
        if let input {
            // A program that exits without reading all of its input must not kill the runner with SIGPIPE.
            signal(SIGPIPE, SIG_IGN)
            let fd = stdin.write
            parentEnds.removeAll { $0 == fd }
            DispatchQueue.global().async {
                input.withUnsafeBytes { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        let n = write(fd, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
                        if n < 0 && errno == EINTR { continue }
                        if n <= 0 { break }
                        offset += n
                    }
                }
                close(fd)
            }
        }
        let status = waitExit(pid, timeout: timeout)
        group.wait()
        return Result(status: status, output: outData.value, stderr: String(decoding: errData.value, as: UTF8.self))
    }

    struct SpawnError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// This process's environment with `extra` laid over it, as posix_spawn takes it.
    static func childEnvironment(_ extra: [String: String]? = nil) -> [String] {
        var env = ProcessInfo.processInfo.environment
        if let extra { env.merge(extra) { $1 } }
        return env.map { "\($0.key)=\($0.value)" }
    }

    /// /dev/null opened for reading and writing (close-on-exec), for a child's unused streams.
    static func openDevNull() throws -> Int32 {
        let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SpawnError(message: "open /dev/null: \(String(cString: strerror(errno)))") }
        return fd
    }

    /// A pipe whose ends are both close-on-exec (the child gets its end through dup2; every child this runner
    /// starts closes all else).
    static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard Glibc.pipe(&fds) == 0 else { throw SpawnError(message: "pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    /// Starts `path` in its own process group with `stdio` as descriptors 0, 1 and 2 and nothing else open.
    static func spawn(_ path: String, _ arguments: [String], env: [String], cwd: String?, stdio: [Int32]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, fd) in stdio.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, Int32(target)) }
        guard let closeFrom = PosixSpawn.addCloseFrom else {
            throw SpawnError(message: "posix_spawn_file_actions_addclosefrom_np is unavailable")
        }
        _ = closeFrom(&actions, 3)
        if let cwd {
            guard let chdir = PosixSpawn.addChdir else {
                throw SpawnError(message: "posix_spawn_file_actions_addchdir_np is unavailable")
            }
            _ = chdir(&actions, cwd)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, PosixSpawn.defaultSignals(&attributes) | Int16(POSIX_SPAWN_SETPGROUP))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw SpawnError(message: "start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Everything readable from `fd` until end of file.
    static func readAll(_ fd: Int32) -> Data {
        var out = Data()
        readChunks(fd) { out.append($0) }
        return out
    }

    /// Hands `body` what `fd` yields, chunk by chunk as it arrives, until end of file (or a read error).
    static func readChunks(_ fd: Int32, _ body: (Data) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            body(Data(buffer[0..<n]))
        }
    }

    /// The exit status (or the signal that ended it, as Foundation's Process reports), killing the program with
    /// SIGKILL once `timeout` seconds have passed.
    static func waitExit(_ pid: pid_t, timeout: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, Date() < deadline ? WNOHANG : 0)
            if r == pid { break }
            if r < 0 && errno != EINTR { return -1 }
            if r == 0 {
                if Date() >= deadline { kill(pid, SIGKILL) } else { usleep(2_000) }
            }
        }
        return exitCode(status)
    }

    /// A wait status as Foundation's Process reports it: the exit code, or the number of the signal that ended it.
    static func exitCode(_ waitStatus: Int32) -> Int32 {
        let signal = waitStatus & 0x7f
        return signal == 0 ? (waitStatus >> 8) & 0xff : signal
    }
}

/// A mutable value handed between GCD threads by code that orders the accesses itself.
final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
