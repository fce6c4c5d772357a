import Foundation

/// Drives a terminal client (`ctr run -t`, `ctr task exec -t`) inside a pseudo-terminal made by python3's `pty`:
/// the terminal starts at `initial` (rows, cols); once the output shows `ready` the window becomes `resized`
/// (the kernel then sends SIGWINCH to the client). Until `resized` shows, the client gets SIGWINCH again each second:
/// ctr 1.6 sets the first size before it starts listening for SIGWINCH, so a resize in between is lost (CI saw
/// that once, under load). Ends when the client exits (its status is the driver's) or
/// after `limit` seconds (status 124, the client killed).
enum PtyDriver {
    static let python = "/usr/bin/python3"
    static let available = FileManager.default.isExecutableFile(atPath: python)

    static let script = #"""
        import os, pty, sys, fcntl, termios, struct, select, time, signal
        rows, cols, rows2, cols2, limit = map(int, sys.argv[1:6])
        argv = sys.argv[6:]
        pid, fd = pty.fork()
        if pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execv(argv[0], argv)
        out, resized, nudged, deadline = b"", False, 0.0, time.time() + limit
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if resized and b"resized" not in out and time.time() - nudged > 1:
                os.kill(pid, signal.SIGWINCH)
                nudged = time.time()
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
            if not resized and b"ready" in out:
                fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows2, cols2, 0, 0))
                resized, nudged = True, time.time()
        timed_out = time.time() >= deadline
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(out.decode("utf-8", "replace"))
        sys.exit(124 if timed_out else os.waitstatus_to_exitcode(status))
        """#

    /// The shell command a container runs under the driver: waits for the first size, says `ready`, waits for the
    /// second and says `resized`.
    static func waiter(initial: (Int, Int), resized: (Int, Int)) -> String {
        "until [ \"$(busybox stty size)\" = \"\(initial.0) \(initial.1)\" ]; do sleep 0.05; done; echo ready; "
            + "until [ \"$(busybox stty size)\" = \"\(resized.0) \(resized.1)\" ]; do sleep 0.05; done; echo resized"
    }

    /// Runs `command` under the driver (blocking: call off the pool).
    static func run(_ command: [String], initial: (Int, Int), resized: (Int, Int), limit: Int = 40) throws -> CommandResult {
        try execute(
            python, ["-c", script, "\(initial.0)", "\(initial.1)", "\(resized.0)", "\(resized.1)", "\(limit)"] + command,
            timeout: Double(limit + 20))
    }
}
