import Foundation
import Glibc

/// A program a test keeps running (a daemon, an event subscription), started like TestCommand's (posix_spawn,
/// closefrom, own process group) rather than with Foundation's Process (see TestCommand.runBlocking). Its stdout,
/// and its stderr too when `mergeStderr`, reach `onOutput` as they arrive, from a reader thread of its own. The
/// members a test uses have Process's names.
public final class TestProcess: @unchecked Sendable {
    public let processIdentifier: pid_t
    private let lock = NSLock()
    private var exited = false
    private var status: Int32 = 0

    public init(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, mergeStderr: Bool = true,
        onOutput: @escaping @Sendable (Data) -> Void
    ) throws {
        let null = try TestCommand.openDevNull()
        defer { close(null) }
        let output = try TestCommand.makePipe()
        defer { close(output.write) }
        do {
            processIdentifier = try TestCommand.spawn(
                path, arguments, env: TestCommand.childEnvironment(environment), cwd: nil,
                stdio: [null, output.write, mergeStderr ? output.write : null])
        } catch {
            close(output.read)
            throw error
        }
        let reader = Thread {
            TestCommand.readChunks(output.read, onOutput)
            close(output.read)
        }
        reader.start()
    }

    /// Starts a program whose output is only read afterwards, if at all: its stdout and stderr go to `outputPath`
    /// (created, or emptied first), or to /dev/null when it is nil. No reader thread.
    public init(_ path: String, _ arguments: [String], outputPath: String?) throws {
        let null = try TestCommand.openDevNull()
        defer { close(null) }
        var output = null
        if let outputPath {
            output = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
            guard output >= 0 else {
                throw TestCommand.SpawnError(message: "open \(outputPath): \(String(cString: strerror(errno)))")
            }
        }
        defer { if output != null { close(output) } }
        processIdentifier = try TestCommand.spawn(
            path, arguments, env: TestCommand.childEnvironment(), cwd: nil, stdio: [null, output, output])
    }

    /// Whether the program still runs (it is reaped, and its status kept, once it has exited).
    public var isRunning: Bool { !reap(blocking: false) }

    public func terminate() { kill(processIdentifier, SIGTERM) }

    public func waitUntilExit() { _ = reap(blocking: true) }

    /// The exit status, or the signal that ended it (as Process reports); 0 while it runs.
    public var terminationStatus: Int32 {
        lock.lock()
        defer { lock.unlock() }
        return status
    }

    /// Reaps the program if it has exited (waiting for that when `blocking`); says whether it has.
    private func reap(blocking: Bool) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if exited { return true }
        var raw: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(processIdentifier, &raw, blocking ? 0 : WNOHANG) } while r < 0 && errno == EINTR
        if r == processIdentifier {
            status = TestCommand.exitCode(raw)
            exited = true
        } else if r < 0 {
            exited = true  // not our child any more (already reaped): nothing left to wait for
        }
        return exited
    }
}
