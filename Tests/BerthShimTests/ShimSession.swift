import BerthAPI
import BerthTestSupport
import BerthTTRPC
import Foundation
import Glibc
import SwiftProtobuf
import Testing

/// berth-shim started the way containerd 1.6 starts a shim (`start` in the bundle, TTRPC_ADDRESS set), an events
/// server standing in for the daemon, and a ttrpc client on the shim's socket.
final class ShimSession: @unchecked Sendable {
    let dir: TempDir
    let namespace = "bshim-test"
    let id: String
    let bundle: String
    /// A busybox tree bind-mounted (read-only) onto <bundle>/rootfs by the shim.
    let image: String
    /// The runtime binary the Create options name ("" = berth-runc, the default).
    let runtimeName: String
    let runtimeRoot: String
    let daemonAddress: String
    let events = Box<[(topic: String, event: Google_Protobuf_Any, header: String?)]>([])
    let eventServer = TTRPCServer()
    var shimAddress = ""
    var shimPid: Int32 = 0
    var client: TTRPCClient?

    init(runtime: String) throws {
        dir = try TempDir()
        id = "c\(UInt32.random(in: 0..<1_000_000))"
        bundle = dir.file("bundle")
        image = dir.file("image")
        runtimeName = runtime
        runtimeRoot = dir.file("rt")
        daemonAddress = dir.file("d.sock")
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        // The shim logs to <bundle>/log (containerd makes it a FIFO; a plain file keeps the lines for failures).
        FileManager.default.createFile(atPath: bundle + "/log", contents: nil)
        try makeBusyboxRoot(image)
        eventServer.register(service: "containerd.services.events.ttrpc.v1.Events", method: "Forward") {
            [events] (request: Containerd_Services_Events_Ttrpc_V1_ForwardRequest, context: TTRPCContext)
                -> Google_Protobuf_Empty in
            events.update { $0.append((request.envelope.topic, request.envelope.event, context.namespace)) }
            return Google_Protobuf_Empty()
        }
        try eventServer.listen(path: dir.file("e.sock"))
    }

    /// Writes config.json (from `runc spec`): `args`, no terminal unless asked, read-only rootfs.
    func writeSpec(args: [String], terminal: Bool = false) async throws {
        try? FileManager.default.removeItem(atPath: bundle + "/config.json")
        let result = try await runProgram("/usr/sbin/runc", ["spec"], cwd: bundle)
        guard result.status == 0 else { throw TTRPCError(.internal, "runc spec: \(result.stderr)") }
        let path = bundle + "/config.json"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard var spec = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            var process = spec["process"] as? [String: Any]
        else { throw TTRPCError(.internal, "unreadable config.json") }
        process["terminal"] = terminal
        process["args"] = args
        spec["process"] = process
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path))
    }

    var shimArguments: [String] {
        ["-namespace", namespace, "-address", daemonAddress, "-publish-binary", "/usr/bin/containerd", "-id", id]
    }

    /// `berth-shim … start`; returns the printed address. The first start also connects the client.
    @discardableResult
    func start() async throws -> String {
        let result = try await runProgram(
            shimBinary, shimArguments + ["start"], cwd: bundle, environment: ["TTRPC_ADDRESS": dir.file("e.sock")])
        guard result.status == 0 else { throw TTRPCError(.internal, "shim start failed: \(result.stderr)") }
        let address = result.text
        if client == nil {
            shimAddress = address
            client = try TTRPCClient(path: address)
            var connect = Containerd_Task_V2_ConnectRequest()
            connect.id = id
            shimPid = Int32(try await call("Connect", connect, Containerd_Task_V2_ConnectResponse.self).shimPid)
        }
        return address
    }

    func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String, _ request: Request, _ response: Response.Type
    ) async throws(TTRPCError) -> Response {
        guard let client else { throw TTRPCError.closed }
        return try await client.call(
            service: "containerd.task.v2.Task", method: method, request: request, responseType: response,
            metadata: [ttrpcNamespaceHeader: namespace], timeout: .seconds(60))
    }

    /// The TTRPCError a call fails with, or nil.
    func failure<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String, _ request: Request, _ response: Response.Type
    ) async -> TTRPCError? {
        do {
            _ = try await call(method, request, response)
            return nil
        } catch { return error }
    }

    /// The Create request: the image bind-mounted read-only as rootfs, runtime options naming binary and root.
    func createRequest(stdin: String = "", stdout: String = "", stderr: String = "", terminal: Bool = false)
        throws -> Containerd_Task_V2_CreateTaskRequest
    {
        var request = Containerd_Task_V2_CreateTaskRequest()
        request.id = id
        request.bundle = bundle
        request.stdin = stdin
        request.stdout = stdout
        request.stderr = stderr
        request.terminal = terminal
        var mount = Containerd_Types_Mount()
        mount.type = "bind"
        mount.source = image
        mount.options = ["rbind", "ro"]
        request.rootfs = [mount]
        var options = Containerd_Runc_V1_Options()
        options.binaryName = runtimeName
        options.root = runtimeRoot
        request.options.typeURL = "containerd.runc.v1.Options"
        request.options.value = try options.serializedData()
        return request
    }

    func state(_ execID: String = "") async throws -> Containerd_Task_V2_StateResponse {
        var request = Containerd_Task_V2_StateRequest()
        request.id = id
        request.execID = execID
        return try await call("State", request, Containerd_Task_V2_StateResponse.self)
    }

    func wait(_ execID: String = "") async throws -> Containerd_Task_V2_WaitResponse {
        var request = Containerd_Task_V2_WaitRequest()
        request.id = id
        request.execID = execID
        return try await call("Wait", request, Containerd_Task_V2_WaitResponse.self)
    }

    /// What the shim logged.
    var shimLog: String { (try? String(contentsOfFile: bundle + "/log", encoding: .utf8)) ?? "" }

    /// Topics received so far.
    var topics: [String] { events.get.map(\.topic) }

    /// True when <bundle>/rootfs is a mount point.
    var rootfsMounted: Bool {
        let table = readProcFile("/proc/self/mountinfo")
        return table.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first == Substring(bundle + "/rootfs") }
    }

    var shimAlive: Bool { shimPid > 0 && kill(shimPid, 0) == 0 && !isZombie(shimPid) }

    /// Shutdown as containerd sends it; the shim may exit before it answers.
    func shutdown() async throws {
        var request = Containerd_Task_V2_ShutdownRequest()
        request.id = id
        if let error = await failure("Shutdown", request, Google_Protobuf_Empty.self), !error.isConnectionClosed {
            throw error
        }
    }

    /// Kills what is left (failure paths only), deletes runtime state, unmounts, removes files.
    func cleanup() {
        client?.close()
        if shimAlive && !eventuallyBlocking(5, { !shimAlive }) { kill(shimPid, SIGKILL) }
        let runtime = runtimeName.isEmpty ? binDirectory + "/berth-runc" : "/usr/sbin/runc"
        let pid = posixSpawnQuiet(runtime, ["--root", runtimeRoot + "/" + namespace, "delete", "--force", id])
        if pid > 0 { var status: Int32 = 0; waitpid(pid, &status, 0) }
        while umount2(bundle + "/rootfs", Int32(MNT_DETACH)) == 0 {}
        if shimAddress.hasPrefix("unix://") { unlink(String(shimAddress.dropFirst(7))) }
        eventServer.close()
        dir.cleanup()
    }
}

/// The whole of a /proc file. Foundation's String(contentsOfFile:) stops after 4 KiB there, and mountinfo grows past
/// that while other tests hold mounts.
func readProcFile(_ path: String) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// True when /proc says the process is a zombie (exited, not yet reaped by its parent).
func isZombie(_ pid: Int32) -> Bool {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = status.lastIndex(of: ")")
    else { return true }
    return status[status.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
}

/// posix_spawn with stdio on /dev/null; returns the pid (or -1).
func posixSpawnQuiet(_ path: String, _ arguments: [String]) -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd: Int32 in 0...2 { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0) }
    let cArgs = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in cArgs { free(pointer) } }
    var pid: pid_t = 0
    return posix_spawn(&pid, path, &actions, nil, cArgs, environ) == 0 ? pid : -1
}
