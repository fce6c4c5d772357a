// A process' stdio: the paths the client gave (FIFOs, `file://` paths, or nothing) copied to and from pipes the
// runtime hands to the container, or to and from a pty master received over a console socket. Copies run on their
// own threads so a slow reader never blocks the task service; the exit of a process is published only after its
// output copies have drained.
#if canImport(Glibc)
import Glibc
#endif
import BerthTTRPC
import CBerthShim
import Synchronization

/// The stdio a client asked for.
struct StdioPaths: Sendable {
    var stdin: String
    var stdout: String
    var stderr: String
    var terminal: Bool
}

final class ProcessIO: Sendable {
    private struct State {
        /// Descriptors the runtime gives the container as 0, 1, 2 (-1: /dev/null); ours until released.
        var childFds: [Int32] = [-1, -1, -1]
        /// Where stdin copies go (pipe write end), -1 once closed.
        var stdinTarget: Int32 = -1
        /// The pty master in terminal mode.
        var console: Int32 = -1
        var stdinClosed = false
        var running = 0
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let paths: StdioPaths
    private let state = Mutex(State())

    private init(paths: StdioPaths) { self.paths = paths }

    /// Sets up pipes for a non-terminal process and starts copying; `uid`/`gid` own the container's ends.
    static func pipes(_ paths: StdioPaths, uid: UInt32, gid: UInt32) throws(TTRPCError) -> ProcessIO {
        let io = ProcessIO(paths: paths)
        var opened: [Int32] = []
        do {
            var child: [Int32] = [-1, -1, -1]
            var copies: [(from: Int32, to: Int32)] = []
            for (index, uri) in [paths.stdout, paths.stderr].enumerated() {
                guard let target = try openOutput(uri) else { continue }
                opened.append(target)
                let pipe = try makePipe()
                opened += [pipe.read, pipe.write]
                if uid != 0 || gid != 0 { _ = fchown(pipe.write, uid, gid) }
                child[index + 1] = pipe.write
                copies.append((pipe.read, target))
            }
            var stdinSource: String?
            if !paths.stdin.isEmpty {
                let pipe = try makePipe()
                opened += [pipe.read, pipe.write]
                if uid != 0 || gid != 0 { _ = fchown(pipe.read, uid, gid) }
                child[0] = pipe.read
                io.state.withLock { $0.stdinTarget = pipe.write }
                stdinSource = paths.stdin
            }
            io.state.withLock { $0.childFds = child }
            for copy in copies { io.startOutputCopy(from: copy.from, to: copy.to, closeSource: true) }
            if let stdinSource { io.startStdinCopy(stdinSource) }
            return io
        } catch {
            for fd in opened { Glibc.close(fd) }
            throw error
        }
    }

    /// A terminal process: nothing to hand the runtime (it makes the pty); call `attach(console:)` once the
    /// master arrives.
    static func terminal(_ paths: StdioPaths) -> ProcessIO { ProcessIO(paths: paths) }

    /// Copies between the pty master and the client's stdout/stdin.
    func attach(console: Int32) throws(TTRPCError) {
        // The runtime (Go's poller) may have made the shared file description non-blocking; the copies block.
        _ = berth_shim_set_blocking(console)
        let target = try Self.openOutput(paths.stdout)
        state.withLock { state in
            state.console = console
            state.stdinTarget = console
        }
        if let target { startOutputCopy(from: console, to: target, closeSource: false) }
        if !paths.stdin.isEmpty { startStdinCopy(paths.stdin) }
    }

    /// The descriptors for the runtime's stdio.
    var childFds: [Int32] { state.withLock { $0.childFds } }

    /// Closes our copies of the container's ends once the runtime has handed them on (so EOF can arrive).
    func releaseChildEnds() {
        let fds = state.withLock { state in
            defer { state.childFds = [-1, -1, -1] }
            return state.childFds
        }
        for fd in fds where fd >= 0 { Glibc.close(fd) }
    }

    /// Closes the container's stdin (CloseIO), or the pty's input side is left alone in terminal mode.
    func closeStdin() {
        state.withLock { state in
            state.stdinClosed = true
            if state.stdinTarget >= 0 && state.stdinTarget != state.console { Glibc.close(state.stdinTarget) }
            state.stdinTarget = -1
        }
    }

    /// Sets the pty window size.
    func resize(width: UInt32, height: UInt32) throws(TTRPCError) {
        let console = state.withLock { $0.console }
        guard console >= 0 else { throw TTRPCError(.notFound, "console not found") }
        let result = berth_shim_set_winsize(console, UInt16(clamping: height), UInt16(clamping: width))
        if result != 0 { throw sysError("resize pty", -result) }
    }

    /// Returns when every output copy has ended, or after `limit` (a daemonised child may hold the pipe).
    func drained(limit: Duration = .seconds(5)) async {
        let waiter = Task {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = state.withLock { state in
                    if state.running == 0 { return true }
                    state.drainWaiters.append(continuation)
                    return false
                }
                if done { continuation.resume() }
            }
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            waiter.cancel()
        }
        _ = await waiter.value
        timer.cancel()
    }

    /// Closes what is left (Delete).
    func close() {
        releaseChildEnds()
        closeStdin()
        let console = state.withLock { state in
            defer { state.console = -1 }
            return state.console
        }
        if console >= 0 { Glibc.close(console) }
    }

    private func startOutputCopy(from source: Int32, to target: Int32, closeSource: Bool) {
        state.withLock { $0.running += 1 }
        startThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 32 << 10)
            var targetOK = true
            while true {
                let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && errno == EAGAIN {
                    var poller = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
                    _ = poll(&poller, 1, 100)
                    continue
                }
                if n <= 0 { break }  // EOF, or EIO from a pty master whose slave side is gone
                // A target that fails (reader gone) is dropped; keep draining so the container never blocks.
                if targetOK { targetOK = writeAll(target, buffer[0..<n]) }
            }
            ShimLog.write("output copy from fd \(source) ended: errno \(errno)")
            if closeSource { Glibc.close(source) }
            Glibc.close(target)
            let waiters = state.withLock { state in
                state.running -= 1
                guard state.running == 0 else { return [CheckedContinuation<Void, Never>]() }
                defer { state.drainWaiters = [] }
                return state.drainWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    private func startStdinCopy(_ uri: String) {
        let path = uri.hasPrefix("file://") ? String(uri.dropFirst(7)) : uri
        startThread { [self] in
            // Blocks until the client opens the FIFO for writing, like containerd's fifo.OpenFifo.
            let source = open(path, O_RDONLY | O_CLOEXEC)
            guard source >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 32 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                let written = state.withLock { state -> Bool in
                    guard state.stdinTarget >= 0 else { return false }
                    return writeAll(state.stdinTarget, buffer[0..<n])
                }
                if !written { break }
            }
            Glibc.close(source)
            let isTerminal = state.withLock { $0.console >= 0 }
            if !isTerminal { closeStdin() }
        }
    }

    /// Opens a client output: nil for "", a FIFO read-write (never blocks, never EPIPE), a `file://` or plain
    /// file for appending.
    static func openOutput(_ uri: String) throws(TTRPCError) -> Int32? {
        if uri.isEmpty { return nil }
        if uri.hasPrefix("binary://") {
            throw TTRPCError(.unimplemented, "binary:// logging is not supported by berth-shim")
        }
        let isFile = uri.hasPrefix("file://")
        let path = isFile ? String(uri.dropFirst(7)) : uri
        if isFile { try makeDirectories(dirname(path)) }
        var info = stat()
        let isFIFO = stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFIFO
        let fd = isFIFO
            ? open(path, O_RDWR | O_CLOEXEC)
            : open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw sysError("open \(path)") }
        return fd
    }
}

/// A unix socket on which the runtime sends the pty master of a terminal process (runc's --console-socket).
final class ConsoleSocket: Sendable {
    let path: String
    private let fd: Int32
    private let received: Task<Int32, Never>
    private let taken = Mutex(false)

    init() throws(TTRPCError) {
        path = "/tmp/berth-shim-pty-\(getpid())-\(UInt32.random(in: 0..<UInt32.max)).sock"
        let fd = try unixListen(path)
        self.fd = fd
        received = Task {
            await onThread {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { return -errno }
                defer { Glibc.close(connection) }
                return berth_shim_recv_fd(connection)
            }
        }
    }

    /// The master, once the runtime sent it (call after the runtime command succeeded).
    func master() async throws(TTRPCError) -> Int32 {
        let fd = await received.value
        if fd < 0 { throw sysError("receive console", -fd) }
        taken.withLock { $0 = true }
        return fd
    }

    /// Stops waiting and removes the socket.
    func close() async {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        let leftover = await received.value
        // A master received but never asked for (a failed create) is ours to close.
        if leftover >= 0 && !taken.withLock({ $0 }) { Glibc.close(leftover) }
        Glibc.close(fd)
        unlink(path)
    }
}
