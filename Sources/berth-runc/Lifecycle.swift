import CBerthRunc
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// create / start / run / delete: the container lifecycle with runc's exec.fifo semantics.
struct Lifecycle {
    var globals: Globals

    struct CreateOptions {
        var bundle: String
        var pidFile: String?
        var consoleSocket: String?
        var noPivot = false
        var preserveFds = 0
        var detach = true
        var noNewKeyring = false
        /// Foreground `run` of a terminal process without --console-socket: the connected end of a socketpair
        /// that receives the pty master, which `run` relays to its own stdio (as runc does).
        var relayConsole: Int32 = -1
    }

    /// Creates the container and leaves its process blocked on exec.fifo. Returns the record and the spec (decoded
    /// once here; the record keeps only what start and delete need of it).
    func create(id: String, _ o: CreateOptions) throws -> (record: ContainerRecord, spec: Spec) {
        try ContainerRecord.validate(id: id)
        let bundle = o.bundle.hasPrefix("/") ? o.bundle : FileManager.default.currentDirectoryPath + "/" + o.bundle
        guard let data = FileManager.default.contents(atPath: bundle + "/config.json") else {
            throw RuncError("JSON specification file config.json not found in \(bundle)")
        }
        let spec: Spec
        do { spec = try JSONDecoder().decode(Spec.self, from: data) } catch {
            throw RuncError("config.json: \(error)")
        }
        guard let process = spec.process else { throw RuncError("process property must not be empty") }
        let newPidNS = (spec.linux?.namespaces ?? []).contains { $0.type == "pid" && ($0.path ?? "").isEmpty }
        if !newPidNS { Runc.sealIfNeeded() }
        guard let rootPath = spec.root?.path else { throw RuncError("root must be specified") }
        let rootfs = rootPath.hasPrefix("/") ? rootPath : bundle + "/" + rootPath
        var st = stat()
        guard stat(rootfs, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw RuncError("rootfs (\(rootfs)) does not exist")
        }
        if process.terminal == true && o.consoleSocket == nil && o.relayConsole < 0 {
            throw RuncError("cannot allocate tty if berth-runc will detach without setting console socket")
        }
        if process.terminal != true && o.consoleSocket != nil {
            throw RuncError("cannot use console socket if berth-runc will not detach or allocate tty")
        }
        if let label = spec.linux?.mountLabel, !label.isEmpty {
            Log.warn("mountLabel \(label) ignored: SELinux is not enabled on this host")
        }
        let unsupported = [("linux.intelRdt", spec.linux?.intelRdt != nil), ("linux.netDevices", spec.linux?.netDevices != nil),
                           ("linux.resources.rdma", spec.linux?.resources?.rdma != nil)]
        if let (field, _) = unsupported.first(where: { $0.1 }) { throw RuncError("\(field) is not supported by berth-runc") }
        if mkdir(globals.root, 0o700) != 0 && errno != EEXIST { throw RuncError.sys("mkdir \(globals.root)", errno) }
        let dir = ContainerRecord.directory(root: globals.root, id: id)
        if mkdir(dir, 0o711) != 0 {
            if errno == EEXIST { throw RuncError("container with id exists: \(id)") }
            throw RuncError.sys("mkdir \(dir)", errno)
        }
        var cgroups: Cgroups?
        do {
            var cg = Cgroups.resolve(cgroupsPath: spec.linux?.cgroupsPath, id: id)
            cgroups = cg
            if geteuid() != 0 {
                // Rootless (as runc): without write access to the hierarchies the container runs without cgroups,
                // unless limits were asked for.
                do { try cg.create() } catch {
                    cg.destroy()
                    let r = spec.linux?.resources
                    if r?.memory != nil || r?.cpu != nil || r?.pids != nil || r?.blockIO != nil
                        || !(r?.hugepageLimits ?? []).isEmpty || r?.unified != nil
                    {
                        throw RuncError("rootless container: cannot set cgroup limits without write access to the cgroups (\(error))")
                    }
                    cg = Cgroups(paths: [:])
                    cgroups = cg
                }
            }
            let record = try createIn(dir: dir, id: id, spec: spec, config: data, process: process, bundle: bundle,
                                      rootfs: rootfs, cgroups: cg, o)
            return (record, spec)
        } catch {
            cgroups?.destroy()
            removeTree(dir)
            throw error
        }
    }

    private func createIn(dir: String, id: String, spec: Spec, config: Data, process: Spec.Process, bundle: String,
                          rootfs: String, cgroups: Cgroups, _ o: CreateOptions) throws -> ContainerRecord
    {
        let fifo = dir + "/exec.fifo"
        let oldMask = umask(0)
        let made = mkfifo(fifo, 0o622)
        umask(oldMask)
        if made != 0 { throw RuncError.sys("mkfifo \(fifo)", errno) }

        var plan = emptyPlan()
        plan.is_init = 1
        var joins: [(Int32, Bool)] = []
        var newUser = false
        for ns in spec.linux?.namespaces ?? [] {
            let flag = brc_clone_newflag(ns.type)
            if flag == 0 { throw RuncError("unknown namespace type \(ns.type)") }
            if let path = ns.path, !path.isEmpty {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                if fd < 0 { throw RuncError.sys("open namespace \(path)", errno) }
                joins.append((fd, ns.type == "user"))
                if ns.type == "user" { plan.userns = 1 }
            } else if ns.type == "cgroup" {
                plan.unshare_cgroupns = 1
            } else if ns.type == "time" {
                plan.timens_offsets = CMem.str(Self.timensOffsets(spec.linux?.timeOffsets))
            } else {
                plan.clone_flags |= flag
                if ns.type == "user" { newUser = true; plan.userns = 1 }
            }
        }
        guard plan.clone_flags & brc_clone_newflag("mount") != 0 else {
            throw RuncError("berth-runc needs a new mount namespace (linux.namespaces must contain \"mount\")")
        }
        joins.sort { $0.1 && !$1.1 }
        let joinFds = joins.map(\.0)
        plan.join_fds = CMem.array(joinFds)
        plan.njoin = Int32(joinFds.count)

        let mounts = try rootfsEntries(spec: spec, bundle: bundle, cgroups: cgroups)
        plan.mounts = CMem.array(mounts)
        plan.nmounts = Int32(mounts.count)
        let devices = deviceEntries(spec: spec)
        plan.devices = CMem.array(devices)
        plan.ndevices = Int32(devices.count)
        plan.bind_devices = plan.userns
        plan.rootfs = CMem.str(rootfs)
        if let prop = spec.linux?.rootfsPropagation, !prop.isEmpty {
            guard let p = Linux.propagation[prop] else { throw RuncError("invalid rootfsPropagation \(prop)") }
            plan.root_propagation = p | Linux.MS_REC
        }
        plan.no_pivot = o.noPivot ? 1 : 0
        plan.readonly_root = spec.root?.readonly == true ? 1 : 0
        let masked = spec.linux?.maskedPaths ?? []
        plan.masked = UnsafePointer(CMem.strings(masked))
        plan.nmasked = Int32(masked.count)
        let readonly = spec.linux?.readonlyPaths ?? []
        plan.readonly = UnsafePointer(CMem.strings(readonly))
        plan.nreadonly = Int32(readonly.count)
        let hasUTS = (spec.linux?.namespaces ?? []).contains { $0.type == "uts" }
        if let h = spec.hostname, !h.isEmpty {
            guard hasUTS else { throw RuncError("unable to set hostname without a private UTS namespace") }
            plan.hostname = CMem.str(h)
        }
        if let d = spec.domainname, !d.isEmpty {
            guard hasUTS else { throw RuncError("unable to set domainname without a private UTS namespace") }
            plan.domainname = CMem.str(d)
        }
        let sysctl = (spec.linux?.sysctl ?? [:]).sorted { $0.key < $1.key }
        plan.sysctl_paths = UnsafePointer(CMem.strings(sysctl.map { "/proc/sys/" + $0.key.replacing(".", with: "/") }))
        plan.sysctl_values = UnsafePointer(CMem.strings(sysctl.map(\.value)))
        plan.nsysctl = Int32(sysctl.count)
        try fillProcess(&plan, process, seccomp: spec.linux?.seccomp, personality: spec.linux?.personality)
        if o.relayConsole >= 0 {
            plan.console_fd = process.terminal == true ? fcntl(o.relayConsole, F_DUPFD_CLOEXEC, 0) : -1
        } else {
            plan.console_fd = try connectConsole(o.consoleSocket)
        }
        if !o.noNewKeyring { plan.session_keyring = CMem.str("_ses." + id) }
        plan.preserve_fds = Int32(o.preserveFds)
        let fifoFd = brc_open_fifo_path(fifo)
        if fifoFd < 0 { throw RuncError.sys("open \(fifo)", -fifoFd) }
        plan.fifo_fd = fifoFd

        let hooks = spec.hooks
        let created = rfc3339(Date())
        var record = ContainerRecord(id: id, pid: 0, pidStartTime: 0, bundle: bundle, rootfs: rootfs, created: created,
                                     annotations: spec.annotations, cgroups: cgroups)
        record.summarize(spec)
        let wantHooks = !(hooks?.prestart ?? []).isEmpty || !(hooks?.createRuntime ?? []).isEmpty
            || !(hooks?.createContainer ?? []).isEmpty || !(hooks?.startContainer ?? []).isEmpty
        plan.run_hooks = wantHooks ? 1 : 0
        // createContainer (before pivot_root) and startContainer (after start) run inside the container.
        (plan.create_hooks, plan.ncreate_hooks) = cHooks(hooks?.createContainer)
        (plan.start_hooks, plan.nstart_hooks) = cHooks(hooks?.startContainer)
        var spawner = Spawner(cgroups: cgroups)
        if newUser {
            spawner.uidMappings = spec.linux?.uidMappings ?? []
            spawner.gidMappings = spec.linux?.gidMappings ?? []
        }
        let recordForHooks = record
        spawner.onSeccompListener = { pid, fd in
            var r = recordForHooks
            r.pid = pid
            try SeccompCompiler.sendListener(fd, spec.linux?.seccomp, state: r)
        }
        spawner.onHooks = { pid in
            var r = recordForHooks
            r.pid = pid
            let state = r.hookState(status: "creating")
            try Hooks.run(hooks?.prestart, kind: "prestart", state: state)
            try Hooks.run(hooks?.createRuntime, kind: "createRuntime", state: state)
            return state
        }
        try cgroups.create()
        try cgroups.apply(spec.linux?.resources ?? Resources(), devices: spec.linux?.devices ?? [], initial: true)
        let pid = try spawner.spawn(&plan)
        close(fifoFd)
        for fd in joinFds { close(fd) }
        if plan.console_fd >= 0 { close(plan.console_fd) }
        record.pid = pid
        record.noNewKeyring = o.noNewKeyring ? true : nil
        record.pidStartTime = ContainerRecord.startTime(pid: pid) ?? 0
        for ns in spec.linux?.namespaces ?? [] {
            let name = ["network": "net", "mount": "mnt"][ns.type] ?? ns.type
            record.namespaces[ns.type] = ns.path ?? "/proc/\(pid)/ns/\(name)"
        }
        do {
            try writeAtomically(ContainerRecord.specPath(root: globals.root, id: id), config)
            try record.save(root: globals.root)
            if let pidFile = o.pidFile { try writeAtomically(pidFile, Data("\(pid)".utf8), mode: 0o644) }
        } catch {
            kill(pid, SIGKILL)
            throw error
        }
        return record
    }

    /// The text of /proc/self/timens_offsets for linux.timeOffsets (zero offsets when none are given).
    static func timensOffsets(_ offsets: [String: Spec.TimeOffset]?) -> String {
        var text = ""
        for clock in ["monotonic", "boottime"] {
            let o = offsets?[clock]
            text += "\(clock) \(o?.secs ?? 0) \(o?.nanosecs ?? 0)\n"
        }
        return text
    }

    /// Lets a created container exec its program (reads exec.fifo), then runs poststart hooks.
    func start(id: String, record known: ContainerRecord? = nil) throws {
        let record = try known ?? ContainerRecord.load(root: globals.root, id: id)
        switch record.status(root: globals.root) {
        case "created": break
        case "stopped": throw RuncError("cannot start a container that has stopped")
        default: throw RuncError("cannot start an already running container")
        }
        let fifo = ContainerRecord.directory(root: globals.root, id: id) + "/exec.fifo"
        let fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 { throw RuncError.sys("open exec fifo", errno) }
        defer { close(fd) }
        var byte: UInt8 = 0
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, 100)
            if r > 0 {
                let n = read(fd, &byte, 1)
                if n == 1 { break }
                if n < 0 && errno == EAGAIN { continue }
                if n == 0 && !ContainerRecord.alive(pid: record.pid, startTime: record.pidStartTime) {
                    throw RuncError("cannot start a container that has stopped")
                }
                usleep(1000)
                continue
            }
            if !ContainerRecord.alive(pid: record.pid, startTime: record.pidStartTime) {
                throw RuncError("cannot start a container that has stopped")
            }
        }
        unlink(fifo)
        do {
            try Hooks.run(record.hooks?.poststart, kind: "poststart", state: record.hookState(status: "running"))
        } catch {
            Log.warn("\(error)")
        }
    }

    /// Removes the container: kills a live process (only with --force unless created), cgroups, poststop, state.
    func delete(id: String, force: Bool) throws {
        let record: ContainerRecord
        do { record = try ContainerRecord.load(root: globals.root, id: id) } catch {
            if force {
                removeTree(ContainerRecord.directory(root: globals.root, id: id))
                return
            }
            throw error
        }
        let status = record.status(root: globals.root)
        switch status {
        case "stopped": break
        case "created": killAndWait(record)
        default:
            guard force else { throw RuncError("cannot delete container \(id) that is not stopped: \(status)") }
            if status == "paused" { try? record.cgroups.freeze(false) }
            killAndWait(record)
        }
        destroy(record)
    }

    func killAndWait(_ record: ContainerRecord) {
        let sharedPid = record.ownPidNamespace != true
        if sharedPid {
            for p in record.cgroups.pids() { kill(p, SIGKILL) }
        }
        kill(record.pid, SIGKILL)
        for _ in 0..<5000 {
            if !ContainerRecord.alive(pid: record.pid, startTime: record.pidStartTime) { break }
            var st: Int32 = 0
            _ = waitpid(record.pid, &st, WNOHANG)
            usleep(1000)
        }
    }

    /// Cgroups, poststop hooks, state directory.
    func destroy(_ record: ContainerRecord) {
        record.cgroups.destroy()
        do {
            try Hooks.run(record.hooks?.poststop, kind: "poststop", state: record.hookState(status: "stopped"))
        } catch {
            Log.warn("\(error)")
        }
        removeTree(ContainerRecord.directory(root: globals.root, id: record.id))
    }
}

/// rm -rf for a state directory (flat: files only plus the directory).
func removeTree(_ dir: String) {
    try? FileManager.default.removeItem(atPath: dir)
}

/// Signal by name (KILL, SIGKILL) or number.
func parseSignal(_ s: String) throws -> Int32 {
    if let n = Int32(s), n > 0, n < 65 { return n }
    let name = s.uppercased().hasPrefix("SIG") ? String(s.uppercased().dropFirst(3)) : s.uppercased()
    let table: [String: Int32] = [
        "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
        "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18,
        "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27,
        "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
    ]
    if let n = table[name] { return n }
    if name.hasPrefix("RTMIN+"), let k = Int32(name.dropFirst(6)) { return 34 + k }
    throw RuncError("unknown signal \"\(s)\"")
}
