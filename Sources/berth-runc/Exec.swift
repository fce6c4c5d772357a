import CBerthRunc
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// `exec`: runs a new process inside a running container (setns into its namespaces, joins its cgroups).
struct Exec {
    var globals: Globals

    func run(_ args: [String]) throws -> Int32 {
        let f = try ParsedFlags.parse(
            args, bools: ["tty,t", "detach,d", "no-new-privs", "ignore-paused"],
            values: ["console-socket", "cwd", "env,e", "user,u", "additional-gids,g", "process,p", "pid-file",
                     "process-label", "apparmor", "cap,c", "preserve-fds", "cgroup"])
        guard let id = f.positional.first else { throw RuncError("\"exec\" requires a container id") }
        let record = try ContainerRecord.load(root: globals.root, id: id)
        let spec = try record.spec(root: globals.root)
        let status = record.status(root: globals.root)
        if status == "stopped" { throw RuncError("cannot exec in a stopped container") }
        if status == "paused" && !f.has("ignore-paused") { throw RuncError("cannot exec in a paused container") }
        let process = try buildProcess(f, record: record, spec: spec, command: Array(f.positional.dropFirst()))
        // A foreground terminal process without --console-socket gets its pty relayed to our stdio (as runc).
        var relay: [Int32] = [-1, -1]
        if process.terminal == true && f.value("console-socket") == nil {
            if f.has("detach") { throw RuncError("cannot allocate tty if berth-runc will detach without setting console socket") }
            let r = relay.withUnsafeMutableBufferPointer { brc_socketpair_stream($0.baseAddress) }
            if r < 0 { throw RuncError.sys("socketpair", -r) }
        }
        defer { for fd in relay where fd >= 0 { close(fd) } }

        var plan = emptyPlan()
        plan.is_init = 0
        var joins: [Int32] = []
        // User namespace first, then the others; mount last so the paths above still resolve.
        let order = ["user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount"]
        for type in order {
            guard let path = record.namespaces[type] else { continue }
            if type == "user" { plan.userns = 1 }
            let name = ["network": "net", "mount": "mnt"][type] ?? type
            if sameNamespace(path, "/proc/self/ns/\(name)") { continue }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw RuncError.sys("open namespace \(path)", errno) }
            joins.append(fd)
        }
        plan.join_fds = CMem.array(joins)
        plan.njoin = Int32(joins.count)
        try fillProcess(&plan, process, seccomp: spec.linux?.seccomp, personality: spec.linux?.personality)
        plan.console_fd = relay[1] >= 0 ? relay[1] : try connectConsole(f.value("console-socket"))
        plan.preserve_fds = Int32(f.value("preserve-fds") ?? "0") ?? 0
        if record.noNewKeyring != true { plan.session_keyring = CMem.str("_ses." + id) }
        var spawner = Spawner(cgroups: record.cgroups)
        spawner.onSeccompListener = { pid, fd in
            var r = record
            r.pid = pid
            try SeccompCompiler.sendListener(fd, spec.linux?.seccomp, state: r)
        }
        let pid = try spawner.spawn(&plan)
        for fd in joins { close(fd) }
        if relay[1] >= 0 { close(relay[1]); relay[1] = -1 }
        if let pidFile = f.value("pid-file") { try writeAtomically(pidFile, Data("\(pid)".utf8), mode: 0o644) }
        if f.has("detach") { return 0 }
        brc_forward_signals(pid)
        if relay[0] >= 0 {
            let master = brc_recv_fd(relay[0])
            if master < 0 { kill(pid, SIGKILL); _ = waitChild(pid); throw RuncError.sys("receive the pty", -master) }
            defer { close(master) }
            let status = brc_relay_console(master, pid)
            return status < 0 ? 255 : exitCode(status)
        }
        return waitChild(pid)
    }

    private func sameNamespace(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev
    }

    /// The process from --process, or the container's process with the command line and flags applied.
    private func buildProcess(_ f: ParsedFlags, record: ContainerRecord, spec: Spec, command: [String]) throws
        -> Spec.Process
    {
        var p: Spec.Process
        if let path = f.value("process") {
            let data = path == "-" ? FileHandleLike.readStdin() : FileManager.default.contents(atPath: path)
            guard let data else { throw RuncError("cannot read process file \(path)") }
            do { p = try JSONDecoder().decode(Spec.Process.self, from: data) } catch {
                throw RuncError("process file \(path): \(error)")
            }
        } else {
            guard !command.isEmpty else { throw RuncError("exec: no command given") }
            p = spec.process ?? Spec.Process()
            p.args = command
            p.terminal = f.has("tty")
            p.env = (p.env ?? []) + f.all("env")
            if let cwd = f.value("cwd") { p.cwd = cwd }
            if let user = f.value("user") {
                let u = try ExecUser.resolve(user, defaultGid: p.user.gid, root: "/proc/\(record.pid)/root")
                p.user.uid = u.uid
                p.user.gid = u.gid
                let gids = u.sgids + (p.user.additionalGids ?? [])
                p.user.additionalGids = gids.isEmpty ? nil : gids
                if !(p.env ?? []).contains(where: { $0.hasPrefix("HOME=") }) { p.env = (p.env ?? []) + ["HOME=" + u.home] }
            }
            let gids = f.all("additional-gids").compactMap { UInt32($0) }
            if !gids.isEmpty { p.user.additionalGids = (p.user.additionalGids ?? []) + gids }
            if f.has("no-new-privs") { p.noNewPrivileges = true }
            let extra = f.all("cap")
            if !extra.isEmpty {
                var caps = p.capabilities ?? Spec.Capabilities()
                caps.bounding = (caps.bounding ?? []) + extra
                caps.effective = (caps.effective ?? []) + extra
                caps.permitted = (caps.permitted ?? []) + extra
                p.capabilities = caps
            }
        }
        return p
    }
}

/// Reading all of stdin without Foundation's FileHandle.
enum FileHandleLike {
    static func readStdin() -> Data? {
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, 65536) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        return data
    }
}
