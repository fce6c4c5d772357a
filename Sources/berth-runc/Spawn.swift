import CBerthRunc
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Fills the process part of a plan (identity, caps, rlimits, scheduling, seccomp, terminal) from an OCI process
/// and the container's linux.seccomp and linux.personality.
func fillProcess(_ plan: inout brc_plan, _ process: Spec.Process, seccomp: Spec.Seccomp?,
                 personality: Spec.Personality?) throws {
    guard let args = process.args, !args.isEmpty else { throw RuncError("args must not be empty") }
    var env = process.env ?? []
    if !env.contains(where: { $0.hasPrefix("HOME=") }) { env.append("HOME=/") }
    plan.argv = CMem.strings(args)
    plan.envp = CMem.strings(env)
    guard process.cwd.hasPrefix("/") else { throw RuncError("cwd must be an absolute path") }
    plan.cwd = CMem.str(process.cwd)
    plan.uid = process.user.uid
    plan.gid = process.user.gid
    let groups = process.user.additionalGids ?? []
    plan.groups = CMem.array(groups)
    plan.ngroups = Int32(groups.count)
    plan.umask = Int32(process.user.umask ?? 0o022)
    var rlimits: [brc_rlimit] = []
    for r in process.rlimits ?? [] {
        guard let i = Linux.rlimits.firstIndex(of: r.type) else { throw RuncError("unknown rlimit type \(r.type)") }
        rlimits.append(brc_rlimit(resource: Int32(i), soft: r.soft, hard: r.hard))
    }
    plan.rlimits = CMem.array(rlimits)
    plan.nrlimits = Int32(rlimits.count)
    if let caps = process.capabilities {
        plan.set_caps = 1
        plan.cap_bounding = Linux.capMask(caps.bounding)
        plan.cap_effective = Linux.capMask(caps.effective)
        plan.cap_permitted = Linux.capMask(caps.permitted)
        plan.cap_inheritable = Linux.capMask(caps.inheritable)
        plan.cap_ambient = Linux.capMask(caps.ambient)
    }
    plan.no_new_privs = process.noNewPrivileges == true ? 1 : 0
    if let adj = process.oomScoreAdj {
        plan.set_oom_score_adj = 1
        plan.oom_score_adj = Int32(adj)
    }
    if let label = process.apparmorProfile, !label.isEmpty {
        Log.warn("apparmor profile \(label) ignored: AppArmor is not enabled on this host")
    }
    if let label = process.selinuxLabel, !label.isEmpty {
        Log.warn("selinux label \(label) ignored: SELinux is not enabled on this host")
    }
    if let seccomp {
        let (bpf, flags, notify) = try SeccompCompiler.compile(seccomp)
        plan.seccomp_notify = notify ? 1 : 0
        plan.seccomp_filter = UnsafeRawPointer(CMem.array(bpf))
        plan.seccomp_len = Int32(bpf.count / 8)
        plan.seccomp_flags = flags
    }
    plan.terminal = process.terminal == true ? 1 : 0
    if let size = process.consoleSize {
        plan.console_rows = UInt16(clamping: size.height)
        plan.console_cols = UInt16(clamping: size.width)
    }
    try fillScheduling(&plan, process, personality: personality)
}

/// personality(2), ioprio_set(2) and sched_setattr(2) values, checked here so a bad config fails before clone.
func fillScheduling(_ plan: inout brc_plan, _ process: Spec.Process, personality: Spec.Personality?) throws {
    if let p = personality {
        switch p.domain {
        case "LINUX": plan.personality = 0x0000
        case "LINUX32": plan.personality = 0x0008  // PER_LINUX32
        default: throw RuncError("personality domain \(p.domain) is not supported (LINUX or LINUX32)")
        }
        if !(p.flags ?? []).isEmpty { throw RuncError("personality flags are not supported: \(p.flags ?? [])") }
    }
    if let io = process.ioPriority {
        let classes = ["IOPRIO_CLASS_RT": Int32(1), "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3]
        guard let c = classes[io.class] else { throw RuncError("invalid io priority class: \(io.class)") }
        guard (0...7).contains(io.priority) else { throw RuncError("invalid io priority \(io.priority): must be 0-7") }
        plan.ioprio = c << 13 | Int32(io.priority)
    }
    if let s = process.scheduler {
        let policies = ["SCHED_OTHER": UInt32(0), "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_IDLE": 5,
                        "SCHED_DEADLINE": 6]
        guard let policy = policies[s.policy] else { throw RuncError("invalid scheduler policy: \(s.policy)") }
        let flagBits: [String: UInt64] = ["SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
                                          "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
                                          "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
                                          "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40]
        var flags: UInt64 = 0
        for f in s.flags ?? [] {
            guard let bit = flagBits[f] else { throw RuncError("invalid scheduler flag: \(f)") }
            flags |= bit
        }
        let nice = s.nice ?? 0
        guard (-20...19).contains(nice) else { throw RuncError("invalid scheduler nice \(nice): must be -20 to 19") }
        let priority = s.priority ?? 0
        let realtime = policy == 1 || policy == 2
        guard realtime ? (1...99).contains(priority) : priority == 0 else {
            throw RuncError("invalid scheduler priority \(priority) for \(s.policy)")
        }
        if policy == 6 && (s.runtime ?? 0) == 0 { throw RuncError("SCHED_DEADLINE needs a runtime") }
        plan.set_sched = 1
        plan.sched_policy = policy
        plan.sched_nice = nice
        plan.sched_priority = UInt32(priority)
        plan.sched_flags = flags
        plan.sched_runtime = s.runtime ?? 0
        plan.sched_deadline = s.deadline ?? 0
        plan.sched_period = s.period ?? 0
    }
}

/// A blank plan (all fds -1).
func emptyPlan() -> brc_plan {
    var p = brc_plan()
    p.console_fd = -1
    p.cgroup2_fd = -1
    p.fifo_fd = -1
    p.sync_fd = -1
    p.umask = -1
    p.personality = -1
    p.ioprio = -1
    p.stdio_fds = (-1, -1, -1)
    return p
}

/// Runs stage 1/stage 2 and the parent side of the sync protocol. Returns the container process pid once
/// it reported ready (it then waits on exec.fifo or execs).
struct Spawner {
    var uidMappings: [Spec.IDMapping] = []
    var gidMappings: [Spec.IDMapping] = []
    var cgroups: Cgroups?
    /// Called when the init asks for prestart/createRuntime hooks (pid known); returns the state JSON the init
    /// hands to its own createContainer/startContainer hooks.
    var onHooks: ((Int32) throws -> String)?
    /// Called with the seccomp listener fd of a filter with SCMP_ACT_NOTIFY rules (the caller closes it).
    var onSeccompListener: ((Int32, Int32) throws -> Void)?

    func spawn(_ plan: inout brc_plan) throws -> Int32 {
        var fds: [Int32] = [-1, -1]
        let r = fds.withUnsafeMutableBufferPointer { brc_socketpair_seqpacket($0.baseAddress) }
        if r < 0 { throw RuncError.sys("socketpair", -r) }
        let parentFd = fds[0]
        defer { close(parentFd) }
        plan.sync_fd = fds[1]
        // The process joins its cgroups itself (no cgroup.procs write here, see brc_plan).
        let handles = try cgroups?.joinHandles() ?? (tasks: [], v2: -1)
        plan.cgroup_tasks_fds = CMem.array(handles.tasks)
        plan.ncgroup_tasks = Int32(handles.tasks.count)
        plan.cgroup2_fd = handles.v2
        let needGo = !uidMappings.isEmpty || !gidMappings.isEmpty
        let direct = plan.njoin == 0 && plan.timens_offsets == nil
        plan.no_go = direct && !needGo ? 1 : 0
        var pid: Int32
        var v2Pending = false
        if direct {
            var pending: Int32 = 0
            pid = withUnsafePointer(to: &plan) { brc_spawn_direct($0, &pending) }
            close(fds[1])
            for fd in handles.tasks { close(fd) }
            if handles.v2 >= 0 { close(handles.v2) }
            if pid < 0 { throw RuncError.sys("clone", -pid) }
            v2Pending = pending != 0
        } else {
            let stage1 = withUnsafePointer(to: &plan) { brc_spawn($0) }
            close(fds[1])
            for fd in handles.tasks { close(fd) }
            if handles.v2 >= 0 { close(handles.v2) }
            if stage1 < 0 { throw RuncError.sys("fork", -stage1) }
            var msg = brc_msg()
            var status: Int32 = 0
            let got = brc_recv_msg(parentFd, &msg)
            _ = waitpid(stage1, &status, 0)
            guard got == 0 else { throw RuncError("container init exited before reporting its pid") }
            if msg.type == Int32(BRC_MSG_ERROR) { throw RuncError(Self.text(msg)) }
            guard msg.type == Int32(BRC_MSG_PID) else { throw RuncError("unexpected message from container init") }
            pid = msg.value
            v2Pending = Self.text(msg) == "cgroup2"
        }
        do {
            if plan.no_go == 0 || v2Pending {
                try setUp(pid: pid, v2Pending: v2Pending)
                _ = brc_send_msg(parentFd, Int32(BRC_MSG_GO), 0, "")
            }
            while true {
                var m = brc_msg()
                var passed: Int32 = -1
                if brc_recv_msg_fd(parentFd, &m, &passed) != 0 {
                    var st: Int32 = 0
                    _ = waitpid(pid, &st, WNOHANG)
                    throw RuncError("container init exited unexpectedly")
                }
                switch m.type {
                case Int32(BRC_MSG_READY): return pid
                case Int32(BRC_MSG_ERROR): throw RuncError(Self.text(m))
                case Int32(BRC_MSG_HOOKS):
                    let state = try onHooks?(pid) ?? ""
                    // The state goes as a memfd: annotations make it any size.
                    let memfd = try Self.memfd(with: state)
                    defer { close(memfd) }
                    _ = brc_send_msg_fd(parentFd, Int32(BRC_MSG_HOOKS_DONE), 0, "", memfd)
                case Int32(BRC_MSG_SECCOMP):
                    guard passed >= 0 else { throw RuncError("seccomp: no listener fd from container init") }
                    defer { close(passed) }
                    try onSeccompListener?(pid, passed)
                    _ = brc_send_msg(parentFd, Int32(BRC_MSG_SECCOMP_DONE), 0, "")
                default: throw RuncError("unexpected message from container init")
                }
            }
        } catch {
            kill(pid, SIGKILL)
            var st: Int32 = 0
            _ = waitpid(pid, &st, 0)
            throw error
        }
    }

    private func setUp(pid: Int32, v2Pending: Bool) throws {
        if !uidMappings.isEmpty || !gidMappings.isEmpty {
            // Unprivileged: the kernel accepts a gid_map only after setgroups(2) is denied in the namespace.
            if geteuid() != 0 {
                let e = writeFile("/proc/\(pid)/setgroups", "deny")
                if e != 0 { throw RuncError.sys("write setgroups", e) }
            }
            for (file, maps) in [("uid_map", uidMappings), ("gid_map", gidMappings)] {
                let text = maps.map { "\($0.containerID) \($0.hostID) \($0.size)" }.joined(separator: "\n") + "\n"
                let e = writeFile("/proc/\(pid)/\(file)", text)
                if e != 0 { throw RuncError.sys("write \(file)", e) }
            }
        }
        if v2Pending { try cgroups?.add(pid: pid, onlyUnified: true) }
    }

    private static func memfd(with text: String) throws -> Int32 {
        let fd = brc_memfd("berth-runc-state")
        if fd < 0 { throw RuncError.sys("memfd_create", -fd) }
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let w = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return -1 }
                return write(fd, base + off, raw.count - off)
            }
            if w <= 0 { close(fd); throw RuncError.sys("write hook state", errno) }
            off += w
        }
        return fd
    }

    private static func text(_ m: brc_msg) -> String {
        // The text array is too large to import as a tuple: it follows the two Int32 fields.
        withUnsafeBytes(of: m) { raw in
            let bytes = raw.dropFirst(2 * MemoryLayout<Int32>.size).prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}

/// Exit status like a shell: code, or 128 + signal.
func exitCode(_ status: Int32) -> Int32 {
    let sig = status & 0x7f
    if sig == 0 { return (status >> 8) & 0xff }
    return 128 + sig
}

/// Waits for a child of this process and returns its shell-style exit code.
func waitChild(_ pid: Int32) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        if errno != EINTR { return 255 }
    }
    return exitCode(status)
}

/// Opens the console socket given with --console-socket.
func connectConsole(_ path: String?) throws -> Int32 {
    guard let path else { return -1 }
    let fd = brc_connect_unix(path)
    if fd < 0 { throw RuncError.sys("connect to console socket \(path)", -fd) }
    return fd
}

/// C copies of hooks the container process runs itself.
func cHooks(_ hooks: [Spec.Hook]?) -> (UnsafePointer<brc_hook>?, Int32) {
    let list = (hooks ?? []).map { h in
        brc_hook(path: CMem.str(h.path), argv: CMem.strings(h.args ?? [h.path]), envp: CMem.strings(h.env ?? []),
                 timeout: Int32(h.timeout ?? 0))
    }
    return (CMem.array(list), Int32(list.count))
}
