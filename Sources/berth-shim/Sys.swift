// Small Glibc helpers for berth-shim: files, processes, threads, time, paths. No Foundation.
#if canImport(Glibc)
import Glibc
#endif
import BerthTTRPC
import BerthThreads
import CBerthShim
import Synchronization

/// The text of an errno value.
func errnoText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}

/// A ttrpc error from a failed system call; ENOENT maps to NotFound, EEXIST to AlreadyExists, else Unknown.
func sysError(_ what: String, _ code: Int32 = errno) -> TTRPCError {
    let status: TTRPCError.Code
    switch code {
    case ENOENT: status = .notFound
    case EEXIST: status = .alreadyExists
    case EINVAL: status = .invalidArgument
    case EPERM, EACCES: status = .permissionDenied
    default: status = .unknown
    }
    return TTRPCError(status, "\(what): \(errnoText(code))")
}

/// Reads a whole file, nil when it cannot be opened.
func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return readAll(fd)
}

/// Reads a descriptor to EOF (or error).
func readAll(_ fd: Int32) -> [UInt8] {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 << 10)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return result }
        result.append(contentsOf: buffer[0..<n])
    }
}

/// Writes all of `bytes` to `fd`; false on error.
@discardableResult
func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>) -> Bool {
    let array = Array(bytes)
    return array.withUnsafeBytes { raw in
        guard let base = raw.baseAddress else { return true }
        var offset = 0
        while offset < raw.count {
            let n = write(fd, base + offset, raw.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}

/// Creates or truncates `path` with `bytes`.
func writeFile(_ path: String, _ bytes: some Collection<UInt8>, mode: mode_t = 0o644) throws(TTRPCError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw sysError("open \(path)") }
    defer { close(fd) }
    guard writeAll(fd, bytes) else { throw sysError("write \(path)") }
}

/// mkdir -p.
func makeDirectories(_ path: String, mode: mode_t = 0o711) throws(TTRPCError) {
    var current = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        current += "/" + part
        if mkdir(current, mode) != 0 && errno != EEXIST { throw sysError("mkdir \(current)") }
    }
}

/// The directory part of a path ("/a/b" → "/a").
func dirname(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// The current working directory.
func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buffer, buffer.count) != nil else { return "." }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// This process' executable (/proc/self/exe).
func selfExecutable() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return CommandLine.arguments.first ?? "berth-shim" }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// An environment variable.
func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

/// `name` as an executable: an absolute path as is, else next to this executable, else on PATH.
func findExecutable(_ name: String) -> String? {
    if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
    let beside = dirname(selfExecutable()) + "/" + name
    if access(beside, X_OK) == 0 { return beside }
    for dir in (environment("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// Wall-clock time now, as seconds and nanoseconds.
struct WallTime: Sendable, Equatable {
    var seconds: Int64
    var nanos: Int32

    static func now() -> WallTime {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return WallTime(seconds: Int64(spec.tv_sec), nanos: Int32(spec.tv_nsec))
    }
}

/// Spawns `argv[0]` with `argv`, the environment `env` (nil: ours), child descriptors `fds` (index = child fd,
/// -1 = /dev/null), optional cwd and a new session. Returns the pid.
func spawn(
    _ argv: [String], env: [String]? = nil, fds: [Int32] = [-1, -1, -1], cwd: String? = nil, newSession: Bool = false
) throws(TTRPCError) -> pid_t {
    guard let path = argv.first else { throw TTRPCError(.invalidArgument, "spawn: empty command") }
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { for pointer in cArgs { free(pointer) } }
    var cEnv: [UnsafeMutablePointer<CChar>?] = []
    if let env {
        cEnv = env.map { strdup($0) } + [nil]
    } else {
        var pointer = environ
        while let entry = pointer.pointee {
            cEnv.append(strdup(entry))
            pointer += 1
        }
        cEnv.append(nil)
    }
    defer { for pointer in cEnv { free(pointer) } }
    let pid = cArgs.withUnsafeBufferPointer { args in
        cEnv.withUnsafeBufferPointer { envp in
            fds.withUnsafeBufferPointer { fdp in
                berth_shim_spawn(path, args.baseAddress, envp.baseAddress, fdp.baseAddress, Int32(fds.count), cwd,
                                 newSession ? 1 : 0)
            }
        }
    }
    guard pid > 0 else { throw sysError("exec \(path)", -pid) }
    return pid
}

/// A pipe whose ends are close-on-exec (the child gets them through spawn's dup2).
func makePipe() throws(TTRPCError) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    let result = fds.withUnsafeMutableBufferPointer { berth_shim_pipe($0.baseAddress) }
    guard result == 0 else { throw sysError("pipe", -result) }
    return (fds[0], fds[1])
}

/// Starts a detached thread (for blocking reads and copies, away from the concurrency pool).
func startThread(_ body: @escaping @Sendable () -> Void) {
    do {
        try PosixThread.start(detached: true, stackSize: 256 << 10, body)
    } catch {
        // No thread: run inline rather than lose the work.
        body()
    }
}

/// Runs `body` on a new thread and awaits its result, so blocking calls never hold a concurrency-pool thread.
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        startThread { continuation.resume(returning: body()) }
    }
}

/// Appends diagnostic lines to the shim log (containerd's `log` FIFO in the bundle) and, when debugging, stderr.
enum ShimLog {
    static let fd = Mutex<Int32>(-1)

    static func open(_ path: String) {
        let opened = Glibc.open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        fd.withLock { $0 = opened }
    }

    static func write(_ message: String) {
        let now = WallTime.now()
        let line = "time=\(now.seconds).\(now.nanos / 1_000_000) pid=\(getpid()) msg=\"\(message)\"\n"
        fd.withLock { fd in if fd >= 0 { writeAll(fd, Array(line.utf8)) } }
        if environment("BERTH_SHIM_STDERR_LOG") != nil { writeAll(2, Array(line.utf8)) }
    }
}

/// Runs `body` with a sockaddr_un for `path` (a filesystem path; abstract names are refused).
func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) throws(TTRPCError) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard !bytes.isEmpty, bytes[0] != 0, bytes.count < capacity else {
        throw TTRPCError(.invalidArgument, "invalid unix socket path \(path) (empty, abstract or over \(capacity - 1) bytes)")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// A listening unix socket at `path` (close-on-exec); fails with EADDRINUSE when the file exists.
func unixListen(_ path: String, mode: mode_t = 0o600) throws(TTRPCError) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw sysError("socket") }
    let bound = try withUnixAddress(path) { bind(fd, $0, $1) }
    guard bound == 0 else {
        let code = errno
        close(fd)
        throw sysError("bind \(path)", code)
    }
    chmod(path, mode)
    guard listen(fd, 128) == 0 else {
        let code = errno
        close(fd)
        throw sysError("listen \(path)", code)
    }
    return fd
}

/// True when something accepts connections on the unix socket `path`.
func unixCanConnect(_ path: String) -> Bool {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return (try? withUnixAddress(path) { connect(fd, $0, $1) }) == 0
}
