// berth-shim's command line, as containerd runs a shim v2 binary:
//   berth-shim -namespace NS -address DAEMON_SOCK -publish-binary BIN -id ID [-bundle DIR] [-debug] start|delete
// `start` creates the shim socket, re-executes itself as the long-lived shim (new session, the listening socket
// as fd 3), writes `address` in the bundle (the working directory) and prints the address. `delete` cleans up
// after a dead shim and prints a DeleteResponse. Without an action the process is the long-lived shim; with
// `-detach` it first leaves its parent (fork, the parent exits 0, the child starts a new session): berthd starts
// berth-shim that way, having made the socket and `address` itself, which saves `start`'s second process.
#if canImport(Glibc)
import Glibc
#endif
import BerthShimAPI
import BerthTTRPC
import SwiftProtobuf

struct ShimFlags: Sendable {
    var namespace = ""
    var id = ""
    var address = ""
    var publishBinary = "containerd"
    var bundle = ""
    var socket = ""
    var debug = false
    var detach = false
    var action = ""

    /// Go flag syntax: `-name value`, `--name value`, `-name=value`; flags end at the first positional argument.
    static func parse(_ args: [String]) throws(TTRPCError) -> ShimFlags {
        var flags = ShimFlags()
        var index = 0
        while index < args.count {
            let arg = args[index]
            guard arg.hasPrefix("-"), arg != "-", arg != "--" else {
                if arg == "--" { index += 1 }
                break
            }
            var name = String(arg.drop(while: { $0 == "-" }))
            var value: String?
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            if name == "debug" || name == "v" || name == "detach" {
                if name == "debug" { flags.debug = value != "false" }
                if name == "detach" { flags.detach = value != "false" }
                index += 1
                continue
            }
            if value == nil {
                index += 1
                guard index < args.count else { throw TTRPCError(.invalidArgument, "flag needs an argument: -\(name)") }
                value = args[index]
            }
            let text = value ?? ""
            switch name {
            case "namespace": flags.namespace = text
            case "id": flags.id = text
            case "address": flags.address = text
            case "publish-binary": flags.publishBinary = text
            case "bundle": flags.bundle = text
            case "socket": flags.socket = text
            default: throw TTRPCError(.invalidArgument, "flag provided but not defined: -\(name)")
            }
            index += 1
        }
        if index < args.count { flags.action = args[index] }
        return flags
    }
}

/// The runtime a container was created with, kept next to the shim sockets for the `delete` command (the bundle
/// holds only what the runtime needs).
enum RuntimeRecord {
    static func path(address: String, namespace: String, id: String) -> String {
        ShimPaths.socket(address: address, namespace: namespace, group: id) + ".runtime"
    }

    static func save(_ runtime: OCIRuntime, config: ShimConfig, id: String) {
        let path = path(address: config.address, namespace: config.namespace, id: id)
        try? makeDirectories(dirname(path))
        try? writeFile(path, Array("\(runtime.binary)\n\(runtime.root)\n\(runtime.systemdCgroup)\n".utf8), mode: 0o600)
    }

    static func load(address: String, namespace: String, id: String, bundle: String) -> OCIRuntime? {
        guard let bytes = readFile(path(address: address, namespace: namespace, id: id)) else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
        guard lines.count >= 2 else { return nil }
        return OCIRuntime(binary: lines[0], root: lines[1], bundle: bundle, systemdCgroup: lines.count > 2 && lines[2] == "true")
    }
}

enum ShimCommands {
    /// `start`: prints the address of a (possibly already running) shim for this container's group.
    static func start(_ flags: ShimFlags) throws(TTRPCError) {
        let bundle = flags.bundle.isEmpty ? currentDirectory() : flags.bundle
        var group = flags.id
        if let spec = readFile(bundle + "/config.json") {
            let text = String(decoding: spec, as: UTF8.self)
            for label in ShimPaths.groupAnnotations {
                if let value = JSONText.stringValue(text, key: label), !value.isEmpty {
                    group = value
                    break
                }
            }
        }
        let path = ShimPaths.socket(address: flags.address, namespace: flags.namespace, group: group)
        let address = "unix://" + path
        try makeDirectories(dirname(path))
        var listener: Int32
        do { listener = try unixListen(path) } catch {
            guard fileExists(path) else { throw error }
            if unixCanConnect(path) {
                // A shim already serves this group: reuse it.
                try writeFile(bundle + "/address", Array(address.utf8))
                writeAll(1, Array(address.utf8))
                return
            }
            unlink(path)
            listener = try unixListen(path)
        }
        defer { close(listener) }
        do {
            try writeFile(bundle + "/address", Array(address.utf8))
            var args = [selfExecutable(), "-namespace", flags.namespace, "-id", flags.id, "-address", flags.address,
                        "-publish-binary", flags.publishBinary]
            if flags.debug { args.append("-debug") }
            _ = try spawn(args, fds: [-1, -1, -1, listener], cwd: bundle, newSession: true)
        } catch {
            unlink(path)
            throw error
        }
        // containerd writes the runtime options on stdin; read them so it never sees EPIPE.
        if isatty(0) == 0 { _ = readAll(0) }
        writeAll(1, Array(address.utf8))
    }

    /// `delete`: force-deletes the container in its runtime, unmounts the rootfs and prints a DeleteResponse.
    static func delete(_ flags: ShimFlags) throws(TTRPCError) {
        let bundle = flags.bundle.isEmpty ? currentDirectory() : flags.bundle
        let runtime = RuntimeRecord.load(address: flags.address, namespace: flags.namespace, id: flags.id, bundle: bundle)
            ?? (try? OCIRuntime.resolve(binaryName: "", root: "", namespace: flags.namespace, bundle: bundle, systemdCgroup: false))
        if let runtime {
            let args = [runtime.binary, "--root", runtime.root, "--log", runtime.logPath, "--log-format", "json"]
                + (runtime.systemdCgroup ? ["--systemd-cgroup"] : []) + ["delete", "--force", flags.id]
            if let pid = try? spawn(args, cwd: bundle) {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            }
        }
        RootfsMounts.unmountAll(bundle + "/rootfs")
        unlink(RuntimeRecord.path(address: flags.address, namespace: flags.namespace, id: flags.id))
        var response = Containerd_Task_V2_DeleteResponse()
        response.pid = UInt32(bitPattern: TaskService.readPid(bundle + "/init.pid"))
        response.exitStatus = 128 + UInt32(SIGKILL)
        let now = WallTime.now()
        response.exitedAt = Google_Protobuf_Timestamp(seconds: now.seconds, nanos: now.nanos)
        let bytes: [UInt8] = (try? response.serializedBytes()) ?? []
        writeAll(1, bytes)
    }
}
