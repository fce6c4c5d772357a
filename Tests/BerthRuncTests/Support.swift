import BerthCore
import Foundation
import Testing

/// The output of a finished command.
struct CommandResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion (SIGKILLed after `timeout` seconds); stdin is /dev/null unless `input` is given.
/// Uses posix_spawn and waitpid directly; output goes to temporary files, not pipes, because a detached
/// container inherits the runtime's stdio and would keep a pipe open long after the runtime exited.
@discardableResult
func execute(_ path: String, _ arguments: [String], timeout: Double = 60, input: String? = nil) throws -> CommandResult {
    let base = "/tmp/brt-out-\(UUID().uuidString)"
    defer { for s in [".in", ".out", ".err"] { unlink(base + s) } }
    try writeCloexec(base + ".in", input ?? "", mode: 0o600)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, input == nil ? "/dev/null" : base + ".in", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, base + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let pid = try spawn(path, arguments, &actions)
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        let w = waitpid(pid, &status, WNOHANG)
        if w == pid { break }
        if w < 0 && errno != EINTR { throw TestError("waitpid: \(errno)") }
        if Date() > deadline { kill(pid, SIGKILL) }
        usleep(2_000)
    }
    let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let o = FileManager.default.contents(atPath: base + ".out") ?? Data()
    let e = FileManager.default.contents(atPath: base + ".err") ?? Data()
    return CommandResult(status: code, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// Writes a file through an O_CLOEXEC descriptor. Files written by tests run concurrently with spawns of
/// runtimes; a descriptor open for writing that leaked into a long-lived runtime process would make a later
/// exec of that file fail with ETXTBSY (Foundation's writers and copyItem do not set O_CLOEXEC).
func writeCloexec(_ path: String, _ data: Data, mode: mode_t = 0o644) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw TestError("open \(path): \(errno)") }
    defer { close(fd) }
    let ok = data.withUnsafeBytes { raw -> Bool in
        var off = 0
        while off < raw.count {
            guard let base = raw.baseAddress else { return false }
            let w = write(fd, base + off, raw.count - off)
            if w <= 0 { return false }
            off += w
        }
        return true
    }
    guard ok else { throw TestError("write \(path): \(errno)") }
}

func writeCloexec(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
    try writeCloexec(path, Data(text.utf8), mode: mode)
}

/// posix_spawn with `actions`; children start with default signal handling and an empty mask, whatever the test
/// runner uses.
func spawn(_ path: String, _ arguments: [String], _ actions: inout posix_spawn_file_actions_t) throws -> pid_t {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    posix_spawnattr_setflags(&attr, PosixSpawn.defaultSignals(&attr))
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let r = posix_spawn(&pid, path, &actions, &attr, argv, environ)
    guard r == 0 else { throw TestError("spawn \(path): \(String(cString: strerror(r)))") }
    return pid
}

/// Starts a program with stdout/stderr in `outPath` and returns its pid (reap it with `waitExit`).
func spawnAsync(_ path: String, _ arguments: [String], outPath: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    return try spawn(path, arguments, &actions)
}

/// Waits (bounded, then SIGKILL) for a child started with `spawnAsync`; shell-style exit code.
func waitExit(_ pid: pid_t, timeout: Double = 30) -> Int32 {
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeout)
    while waitpid(pid, &status, WNOHANG) != pid {
        if Date() > deadline { kill(pid, SIGKILL) }
        usleep(2_000)
    }
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// berth-runc beside the test bundle (override with BERTH_RUNC_BIN).
let berthRuncPath: String = {
    if let p = ProcessInfo.processInfo.environment["BERTH_RUNC_BIN"] { return p }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: url.path + "/berth-runc") { return url.path + "/berth-runc" }
    }
    return FileManager.default.currentDirectoryPath + "/.build/debug/berth-runc"
}()

let runcPath = "/usr/sbin/runc"
let busybox = "/bin/busybox"

/// One of the two runtimes under comparison, each with its own --root.
struct Runtime: Sendable, CustomStringConvertible {
    var path: String
    var root: String
    var description: String { path.hasSuffix("berth-runc") ? "berth-runc" : "runc" }

    @discardableResult
    func callAsFunction(_ args: String..., input: String? = nil, timeout: Double = 60) throws -> CommandResult {
        try execute(path, ["--root", root] + args, timeout: timeout, input: input)
    }
    func call(_ args: [String], input: String? = nil) throws -> CommandResult {
        try execute(path, ["--root", root] + args, input: input)
    }

    /// `state` status, or nil when the container is unknown.
    func status(_ id: String) throws -> String? {
        let r = try self("state", id)
        guard r.status == 0, let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
            return nil
        }
        return obj["status"] as? String
    }

    /// Waits (bounded) until the container reports `status`.
    func wait(_ id: String, for status: String) throws -> String? {
        var last: String?
        for _ in 0..<1000 {
            last = try self.status(id)
            if last == status { break }
            usleep(10_000)
        }
        return last
    }
}

/// A temporary OCI bundle on a busybox-static rootfs, with one scratch --root per runtime.
/// `cleanup()` force-deletes every container id handed out and removes all directories and cgroups.
final class TestBundle: @unchecked Sendable {
    let dir: String
    var config: [String: Any]
    private(set) var ids: [String] = []
    let berth: Runtime
    let runc: Runtime
    var runtimes: [Runtime] { [runc, berth] }

    static let applets = ["sh", "true", "false", "id", "hostname", "cat", "ls", "sleep", "echo", "grep", "mount", "env",
                          "mkdir", "pwd", "ulimit", "readlink", "domainname", "touch", "sed", "head", "wc", "stat"]

    init(args: [String]) throws {
        dir = "/tmp/brt-\(UUID().uuidString.prefix(8).lowercased())"
        berth = Runtime(path: berthRuncPath, root: dir + "/root-berth")
        runc = Runtime(path: runcPath, root: dir + "/root-runc")
        let fm = FileManager.default
        for sub in ["rootfs/bin", "rootfs/proc", "rootfs/dev", "rootfs/sys", "rootfs/tmp", "rootfs/etc"] {
            try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        guard let bb = fm.contents(atPath: busybox) else { throw TestError("cannot read \(busybox)") }
        try writeCloexec(dir + "/rootfs/bin/busybox", bb, mode: 0o755)
        for a in Self.applets { try fm.createSymbolicLink(atPath: dir + "/rootfs/bin/" + a, withDestinationPath: "busybox") }
        try writeCloexec(dir + "/rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        let r = try execute(runcPath, ["spec", "--bundle", dir])
        guard r.status == 0, let data = fm.contents(atPath: dir + "/config.json"),
              let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw TestError("runc spec failed: \(r.stderr)") }
        config = obj
        process["terminal"] = false
        process["args"] = args
    }

    var process: [String: Any] {
        get { config["process"] as? [String: Any] ?? [:] }
        set { config["process"] = newValue }
    }
    var linux: [String: Any] {
        get { config["linux"] as? [String: Any] ?? [:] }
        set { config["linux"] = newValue }
    }

    func write() throws {
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted])
        try writeCloexec(dir + "/config.json", data)
    }

    /// A fresh container id (also used in an absolute cgroupsPath, so cleanup can find its cgroups).
    func newID(_ prefix: String = "c") -> String {
        let id = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        ids.append(id)
        return id
    }

    /// Runs the bundle in the foreground under `rt` and returns the result.
    func run(_ rt: Runtime, extra: [String] = []) throws -> CommandResult {
        let id = try prepare()
        return try rt.call(["run", "--bundle", dir] + extra + [id])
    }

    /// A new id; config.json written with cgroupsPath /brt/<id>.
    func prepare(_ prefix: String = "c") throws -> String {
        let id = newID(prefix)
        linux["cgroupsPath"] = "/brt/\(id)"
        try write()
        return id
    }

    /// Runs the bundle under both runtimes: (runc, berth-runc).
    func runBoth() throws -> (runc: CommandResult, berth: CommandResult) {
        (try run(runc), try run(berth))
    }

    func cleanup() {
        for rt in runtimes { for id in ids { _ = try? rt("delete", "--force", id) } }
        for id in ids {
            for base in (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
                for path in ["/sys/fs/cgroup/\(base)/brt/\(id)", "/sys/fs/cgroup/\(base)/\(id)"] { rmdir(path) }
            }
        }
        try? FileManager.default.removeItem(atPath: dir)
    }
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs `body` with a bundle that is always cleaned up.
func withBundle<T>(_ args: [String], _ body: (TestBundle) throws -> T) throws -> T {
    let b = try TestBundle(args: args)
    defer { b.cleanup() }
    return try body(b)
}
