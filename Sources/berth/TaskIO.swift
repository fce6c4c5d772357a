import BerthCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A task process's stdio FIFOs (like ctr's cio FIFO set): created in a directory of their own, handed to the daemon
/// by path, and copied to and from this process's stdio on dedicated threads (blocking opens and reads never run
/// on Swift's cooperative pool).
final class TaskIO: @unchecked Sendable {
    let directory: String
    let stdin: String
    let stdout: String
    let stderr: String
    let terminal: Bool
    private let done = DispatchGroup()
    private let lock = NSLock()
    private var pendingOpens: Set<String> = []
    /// CloseIO must not reach the daemon before Start: it runs once both stdin hit EOF and the process started.
    private var stdinClosed = false
    private var processStarted = false
    private var onStdinClosed: (@Sendable () -> Void)?
    /// The stdin FIFO's write end after EOF, kept open until the process started: the shim takes the FIFO's EOF as
    /// the end of stdin, and with a terminal that hangs up the pty before the container ran.
    private var heldStdin: Int32 = -1

    /// Makes the FIFOs: stdin only when asked for, stderr only without a terminal (the pty merges it into stdout).
    init(root: String, id: String, stdin: Bool, terminal: Bool) throws(BerthError) {
        try FileSystem.makeDirectories(root, mode: 0o700)
        directory = root + "/" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        try FileSystem.makeDirectories(directory, mode: 0o700)
        self.stdin = stdin ? "\(directory)/\(id)-stdin" : ""
        stdout = "\(directory)/\(id)-stdout"
        stderr = terminal ? "" : "\(directory)/\(id)-stderr"
        self.terminal = terminal
        for path in [self.stdin, stdout, stderr] where !path.isEmpty {
            guard mkfifo(path, 0o700) == 0 else {
                throw .internalError("mkfifo \(path): \(FileSystem.errnoMessage())")
            }
        }
    }

    /// Starts copying: stdout and stderr FIFOs to fds 1 and 2, fd 0 to the stdin FIFO (`onStdinClosed` runs after
    /// this process's stdin reaches EOF and the FIFO is closed).
    func start(onStdinClosed: @escaping @Sendable () -> Void = {}) {
        signal(SIGPIPE, SIG_IGN)
        lock.withLock { self.onStdinClosed = onStdinClosed }
        for (path, fd) in [(stdout, Int32(1)), (stderr, Int32(2))] where !path.isEmpty {
            done.enter()
            spawn { [self] in
                defer { done.leave() }
                guard let source = openBlocking(path, O_RDONLY) else { return }
                defer { close(source) }
                copy(from: source, to: fd)
            }
        }
        if !stdin.isEmpty {
            spawn { [self] in
                guard let sink = openBlocking(stdin, O_WRONLY) else { return }
                copy(from: 0, to: sink)
                let callback = lock.withLock { () -> (@Sendable () -> Void)? in
                    stdinClosed = true
                    if processStarted { return self.onStdinClosed }
                    heldStdin = sink
                    return nil
                }
                if let callback {
                    close(sink)
                    callback()
                }
            }
        }
    }

    /// Called once the process started; a stdin EOF seen earlier is passed on now.
    func markStarted() {
        let (callback, held) = lock.withLock { () -> ((@Sendable () -> Void)?, Int32) in
            processStarted = true
            defer { heldStdin = -1 }
            return (stdinClosed ? onStdinClosed : nil, heldStdin)
        }
        if held >= 0 { close(held) }
        callback?()
    }

    /// Waits until the daemon closed stdout and stderr (all output arrived), at most `timeout` seconds.
    func waitForOutput(timeout: Double = 10) async {
        let group = done
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                _ = group.wait(timeout: .now() + timeout)
                continuation.resume()
            }
        }
    }

    /// Unblocks copy threads still waiting for the daemon to open a FIFO (the task was never created).
    func cancel() {
        let (pending, held) = lock.withLock { () -> (Set<String>, Int32) in
            defer { heldStdin = -1 }
            return (pendingOpens, heldStdin)
        }
        if held >= 0 { close(held) }
        for path in pending {
            // Opening the other end completes the waiting open; the copy then sees EOF at once.
            let fd = open(path, (path == stdin ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 { close(fd) }
        }
    }

    /// Removes the FIFOs and their directory.
    func remove() {
        for path in [stdin, stdout, stderr] where !path.isEmpty { unlink(path) }
        rmdir(directory)
    }

    private func spawn(_ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.start()
    }

    private func openBlocking(_ path: String, _ mode: Int32) -> Int32? {
        lock.withLock { _ = pendingOpens.insert(path) }
        defer { lock.withLock { _ = pendingOpens.remove(path) } }
        while true {
            let fd = open(path, mode | O_CLOEXEC)
            if fd >= 0 { return fd }
            if errno != EINTR { return nil }
        }
    }

    private func copy(from source: Int32, to sink: Int32) {
        var buffer = [UInt8](repeating: 0, count: 32768)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            guard FileSystem.writeAll(sink, Array(buffer[0..<n])) else { return }
        }
    }
}

/// Raw mode for this process's terminal while a container's pty is attached, and its size.
enum Terminal {
    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Puts fd 0 in raw mode; returns the previous settings to restore.
    static func makeRaw() -> termios? {
        guard isTerminal(0) else { return nil }
        var original = termios()
        guard tcgetattr(0, &original) == 0 else { return nil }
        var raw = original
        cfmakeraw(&raw)
        tcsetattr(0, TCSANOW, &raw)
        return original
    }

    static func restore(_ settings: termios?) {
        guard var settings else { return }
        tcsetattr(0, TCSANOW, &settings)
    }

    /// Columns and rows of the terminal on fd 0 or 1, if any.
    static func size() -> (width: UInt32, height: UInt32)? {
        var ws = winsize()
        for fd: Int32 in [0, 1] where ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col > 0 {
            return (UInt32(ws.ws_col), UInt32(ws.ws_row))
        }
        return nil
    }
}
