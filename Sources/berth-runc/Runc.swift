import CBerthRunc
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// berth-runc: Berth's OCI runtime with runc's command line (global flags, then a command and its flags).
@main
struct Runc {
    static let usage = """
        berth-runc [global options] command [command options] [arguments...]

        Commands: checkpoint(unsupported) create delete events exec features kill list pause ps resume run spec start state update
        Global options: --root value (default /run/berth-runc), --log value, --log-format text|json, --debug, --systemd-cgroup
        """

    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        var globals = Globals()
        do {
            let g = try ParsedFlags.parse(args, bools: ["debug", "systemd-cgroup", "rootless-unused", "version,v"],
                                          values: ["root", "log", "log-format", "criu", "rootless"])
            if let r = g.value("root") { globals.root = r }
            globals.logPath = g.value("log")
            globals.logFormat = g.value("log-format") ?? "text"
            globals.debug = g.has("debug")
            globals.systemdCgroup = g.has("systemd-cgroup")
            Log.path = globals.logPath
            Log.json = globals.logFormat == "json"
            Log.debugEnabled = globals.debug
            guard ["text", "json"].contains(globals.logFormat) else {
                throw RuncError("invalid log-format: \(globals.logFormat)")
            }
            if g.has("version") {
                printOut("berth-runc version 0.1.0\nspec: 1.2.0")
                return
            }
            guard let command = g.positional.first else {
                if g.has("help") { printOut(usage); return }
                throw RuncError("no command given\n" + usage)
            }
            if globals.systemdCgroup {
                throw RuncError("--systemd-cgroup is not supported by berth-runc (no systemd cgroup driver; use cgroupfs)")
            }
            let code = try run(command: command, Array(g.positional.dropFirst()), globals)
            exit(code)
        } catch let e as RuncError {
            Log.error(e.message)
            printErr("berth-runc: " + e.message)
            exit(e.code)
        } catch {
            Log.error("\(error)")
            printErr("berth-runc: \(error)")
            exit(1)
        }
    }

    /// Re-executes from a sealed memfd copy of this binary (CVE-2019-5736 class). Needed whenever a process of
    /// ours can be seen by container processes before it execs: always for `exec`, and for `create`/`run` when
    /// the container shares or joins a pid namespace. With a new pid namespace the init is alone in it until it
    /// execs the container program, so no container process can reach /proc/<pid>/exe of berth-runc.
    static func sealIfNeeded() {
        let argv = CommandLine.arguments.map { strdup($0) } + [nil]
        var env: [UnsafeMutablePointer<CChar>?] = []
        var e = environ
        while let p = e.pointee { env.append(p); e += 1 }
        env.append(nil)
        let r = brc_ensure_sealed_exe(argv, env)
        if r < 0 { Log.warn("could not re-exec from a sealed copy of berth-runc: \(String(cString: strerror(-r)))") }
    }

    static func needID(_ f: ParsedFlags, _ cmd: String) throws -> String {
        guard let id = f.positional.first else { throw RuncError("\"\(cmd)\" requires a container id") }
        return id
    }

    static func run(command: String, _ args: [String], _ globals: Globals) throws -> Int32 {
        let life = Lifecycle(globals: globals)
        switch command {
        case "create", "run":
            let f = try ParsedFlags.parse(args, bools: ["no-pivot", "no-new-keyring", "detach,d", "keep", "no-subreaper"],
                                          values: ["bundle,b", "pid-file", "console-socket", "preserve-fds", "notify-socket"])
            let id = try needID(f, command)
            var opts = Lifecycle.CreateOptions(
                bundle: f.value("bundle") ?? FileManager.default.currentDirectoryPath, pidFile: f.value("pid-file"),
                consoleSocket: f.value("console-socket"), noPivot: f.has("no-pivot"),
                preserveFds: Int(f.value("preserve-fds") ?? "0") ?? 0, detach: command == "create" || f.has("detach"),
                noNewKeyring: f.has("no-new-keyring"))
            // Foreground `run` without --console-socket: a terminal process gets its pty relayed to our stdio.
            var relay: [Int32] = [-1, -1]
            if command == "run" && !f.has("detach") && opts.consoleSocket == nil {
                let r = relay.withUnsafeMutableBufferPointer { brc_socketpair_stream($0.baseAddress) }
                if r < 0 { throw RuncError.sys("socketpair", -r) }
                opts.relayConsole = relay[1]
            }
            defer { for fd in relay where fd >= 0 { close(fd) } }
            let (record, spec) = try life.create(id: id, opts)
            if command == "create" { return 0 }
            var master: Int32 = -1
            if opts.relayConsole >= 0 {
                close(relay[1])
                relay[1] = -1
                if spec.process?.terminal == true {
                    master = brc_recv_fd(relay[0])
                    if master < 0 {
                        life.killAndWait(record)
                        life.destroy(record)
                        throw RuncError.sys("receive the container's pty", -master)
                    }
                }
            }
            defer { if master >= 0 { close(master) } }
            // From here on a signal to `run` goes to the container (installed before start: no window).
            if !f.has("detach") { brc_forward_signals(record.pid) }
            do { try life.start(id: id, record: record) } catch {
                life.killAndWait(record)
                life.destroy(record)
                throw error
            }
            if f.has("detach") { return 0 }
            var code: Int32
            if master >= 0 {
                let status = brc_relay_console(master, record.pid)
                code = status < 0 ? 255 : exitCode(status)
            } else {
                code = waitChild(record.pid)
            }
            if !f.has("keep") { life.destroy(record) }
            return code
        case "start":
            let f = try ParsedFlags.parse(args, bools: [], values: [])
            try life.start(id: try needID(f, command))
        case "state":
            let f = try ParsedFlags.parse(args, bools: [], values: [])
            let record = try ContainerRecord.load(root: globals.root, id: try needID(f, command))
            printOut(record.stateJSON(root: globals.root, indent: true))
        case "list", "ls":
            let f = try ParsedFlags.parse(args, bools: ["quiet,q"], values: ["format,f"])
            try list(globals, format: f.value("format") ?? "table", quiet: f.has("quiet"))
        case "kill":
            let f = try ParsedFlags.parse(args, bools: ["all,a"], values: [])
            let id = try needID(f, command)
            let sig = try parseSignal(f.positional.count > 1 ? f.positional[1] : "SIGTERM")
            let record = try ContainerRecord.load(root: globals.root, id: id)
            guard record.status(root: globals.root) != "stopped" else { throw RuncError("container not running") }
            if f.has("all") {
                for p in record.cgroups.pids() { kill(p, sig) }
            } else if kill(record.pid, sig) != 0 {
                throw RuncError.sys("kill container \(id)", errno)
            }
        case "delete", "rm":
            let f = try ParsedFlags.parse(args, bools: ["force,f"], values: [])
            try life.delete(id: try needID(f, command), force: f.has("force"))
        case "pause", "resume":
            let f = try ParsedFlags.parse(args, bools: [], values: [])
            let record = try ContainerRecord.load(root: globals.root, id: try needID(f, command))
            let status = record.status(root: globals.root)
            if command == "pause" {
                guard status == "running" || status == "created" else { throw RuncError("container not running") }
                try record.cgroups.freeze(true)
            } else {
                guard status == "paused" else { throw RuncError("container not paused") }
                try record.cgroups.freeze(false)
            }
        case "exec":
            sealIfNeeded()
            return try Exec(globals: globals).run(args)
        case "ps":
            try Info.ps(globals, args)
        case "update":
            try Info.update(globals, args)
        case "events":
            try Info.events(globals, args)
        case "spec":
            let f = try ParsedFlags.parse(args, bools: ["rootless"], values: ["bundle,b"])
            try Info.spec(bundle: f.value("bundle") ?? ".", rootless: f.has("rootless"))
        case "features":
            printOut(Info.features)
        case "checkpoint", "restore":
            throw RuncError("\(command) is not supported by berth-runc (no CRIU)")
        case "help":
            printOut(usage)
        default:
            throw RuncError("No help topic for '\(command)'")
        }
        return 0
    }

    static func list(_ globals: Globals, format: String, quiet: Bool) throws {
        let ids = ((try? FileManager.default.contentsOfDirectory(atPath: globals.root)) ?? []).sorted()
        let records = ids.compactMap { try? ContainerRecord.load(root: globals.root, id: $0) }
        if quiet { for r in records { printOut(r.id) }; return }
        switch format {
        case "json":
            if records.isEmpty { printOut("null"); return }
            printOut("[" + records.map { $0.stateJSON(root: globals.root, indent: false) }.joined(separator: ",") + "]")
        case "table":
            var rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
            for r in records {
                let status = r.status(root: globals.root)
                rows.append([r.id, status == "stopped" ? "0" : "\(r.pid)", status, r.bundle, r.created,
                             r.owner.isEmpty ? "root" : r.owner])
            }
            var widths = [Int](repeating: 12, count: 6)
            for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count + 3) } }
            for row in rows {
                var line = ""
                for (i, c) in row.enumerated() {
                    line += i == row.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count)
                }
                printOut(line)
            }
        default:
            throw RuncError("invalid format option")
        }
    }
}
