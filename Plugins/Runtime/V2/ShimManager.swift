#if canImport(Glibc)
    import Glibc
#endif
import BerthAPI
import BerthCore
import BerthTTRPC
import Foundation
import Logging
import SwiftProtobuf

/// The task runtime: one shim per task, started with containerd's command line, reached over ttrpc, and found
/// again after a daemon restart through the `address` file in its bundle. Tasks are keyed `<namespace>/<id>`.
public actor ShimManager: TaskManager, Closable {
    struct Timeouts: Sendable {
        var load: Duration
        var cleanup: Duration
        var shutdown: Duration
        var state: Duration
    }

    /// Whether `io.containerd.runc.v2` defaults to berth-shim (next to berthd) rather than containerd's lookup.
    static let defaultToBerthShim = true

    nonisolated let root: String
    nonisolated let state: String
    nonisolated let properties: DaemonProperties
    nonisolated let config: RuntimeConfig
    nonisolated let exchange: any EventExchange
    nonisolated let logger: Logger
    nonisolated let timeouts: Timeouts
    nonisolated let eventServer = TTRPCServer()
    nonisolated let logs = LogDrain()
    /// berthd's executable, passed as `-publish-binary` and used to find shims beside it.
    nonisolated let executable: String

    var tasks: [String: ShimTask] = [:]
    /// Bundles being reconnected after a restart; lookups of those keys wait for them.
    var restoring: [String: Task<Void, Never>] = [:]
    /// Shim `delete` runs and bundle removals still in progress after a task delete.
    var cleanups: [String: Task<Void, Never>] = [:]
    /// Keys with a create in progress.
    var reserved: Set<String> = []
    /// `<ns>/<id>/<pid>` of exits the daemon published itself after a restart (a shim's late copy is dropped).
    var publishedExits: Set<String> = []

    init(
        root: String, state: String, properties: DaemonProperties, config: RuntimeConfig, exchange: any EventExchange,
        logger: Logger, timeouts: Timeouts
    ) {
        self.root = root
        self.state = state
        self.properties = properties
        self.config = config
        self.exchange = exchange
        self.logger = logger
        self.timeouts = timeouts
        executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static func key(_ namespace: String, _ id: String) -> String { "\(namespace)/\(id)" }

    /// The task `id` of the request's namespace (after its restore, if one is running).
    func task(_ id: String) async throws(BerthError) -> ShimTask {
        let key = Self.key(try RequestContext.requireNamespace(), id)
        if let restore = restoring[key] { await restore.value }
        guard let task = tasks[key] else { throw .notFound("task \(id) not found") }
        return task
    }

    public func exists(_ id: String) async -> Bool { (try? await task(id)) != nil }

    // MARK: shim binaries

    /// The shim binary for a runtime name (see `RuntimeConfig`).
    nonisolated func shimBinary(for runtime: String) throws(BerthError) -> String {
        if runtime.isEmpty { throw .invalidArgument("no runtime name") }
        if runtime.hasPrefix("/") {
            guard FileSystem.exists(runtime) else { throw .notFound("invalid custom binary path: \(runtime)") }
            return runtime
        }
        if let shim = config.runtimes[runtime]?.shim, !shim.isEmpty { return shim }
        let beside = (executable as NSString).deletingLastPathComponent
        if Self.defaultToBerthShim, runtime == "io.containerd.runc.v2", FileSystem.exists(beside + "/berth-shim") {
            return beside + "/berth-shim"
        }
        let parts = runtime.split(separator: ".")
        guard parts.count >= 2 else {
            throw .invalidArgument(
                "invalid runtime name \(runtime), correct runtime name should be either format like `io.containerd.runc.v1` or a full path to the binary")
        }
        let name = "containerd-shim-\(parts[parts.count - 2])-\(parts[parts.count - 1])"
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for directory in [beside] + path.split(separator: ":").map(String.init) where access("\(directory)/\(name)", X_OK) == 0 {
            return "\(directory)/\(name)"
        }
        throw .notFound("runtime \"\(runtime)\" binary not installed \"\(name)\"")
    }

    /// containerd's shim command line: `-namespace NS -address A -publish-binary B` then `args`, in the bundle.
    nonisolated func runShim(
        _ binary: String, bundle: Bundle, args: [String], stdin: [UInt8] = [], listener: Int32? = nil, timeout: Duration
    ) async throws(BerthError) -> Spawn.Result {
        let arguments = ["-namespace", bundle.namespace, "-address", properties.grpcAddress, "-publish-binary", executable]
            + args
        let environment = [
            "GOMAXPROCS": "2", "TTRPC_ADDRESS": properties.ttrpcAddress, "GRPC_ADDRESS": properties.grpcAddress,
            "NAMESPACE": bundle.namespace, "MAX_SHIM_VERSION": "2",
        ]
        return try await Spawn.run(
            binary, arguments, cwd: FileSystem.exists(bundle.path) ? bundle.path : nil, environment: environment,
            stdin: stdin, listener: listener, timeout: timeout)
    }

    static func isBerthShim(_ binary: String) -> Bool { (binary as NSString).lastPathComponent == "berth-shim" }

    /// Starts a shim for `bundle` and connects to it.
    func startShim(_ binary: String, bundle: Bundle, options: TypedValue?, spec: [UInt8]) async throws(BerthError)
        -> ShimTask
    {
        // A spec that names a shim group goes through `start`, which finds the group's shim (any mention of the
        // annotation is enough: that path is always correct).
        if Self.isBerthShim(binary) {
            let text = String(decoding: spec, as: UTF8.self)
            if !ShimPaths.groupAnnotations.contains(where: text.contains) {
                return try await startDetached(binary, bundle: bundle)
            }
        }
        var args = ["-id", bundle.id]
        if logger.logLevel <= .debug { args.append("-debug") }
        args.append("start")
        let stdin: [UInt8] = options.flatMap { try? ShimTask.any($0).serializedBytes() } ?? []
        let result = try await runShim(binary, bundle: bundle, args: args, stdin: stdin, timeout: .seconds(30))
        let output = String(decoding: result.stdout, as: UTF8.self)
        guard result.status == 0 else {
            let text = (String(decoding: result.stderr, as: UTF8.self) + output).trimmingCharacters(in: .whitespacesAndNewlines)
            throw BerthError(.unknown, "failed to start shim: start failed: \(text): exit status \(result.status)")
        }
        bundle.write("shim-binary-path", binary)
        return try connect(bundle: bundle, binary: binary, address: output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// berth-shim without its `start` command: berthd makes the socket (where `start` would) and `address`, and runs
    /// the long-lived shim with `-detach` and the socket as fd 3; that process forks and its parent exits. One
    /// process start less per task than `start`, which runs a second shim process.
    func startDetached(_ binary: String, bundle: Bundle) async throws(BerthError) -> ShimTask {
        let path = ShimPaths.socket(address: properties.grpcAddress, namespace: bundle.namespace, group: bundle.id)
        let address = "unix://" + path
        try FileSystem.makeDirectories((path as NSString).deletingLastPathComponent, mode: 0o711)
        let listener: Int32
        do { listener = try TTRPCSocket.listen(path: path) } catch {
            throw .internalError("shim socket \(path): \(error.message)")
        }
        defer { Glibc.close(listener) }
        var args = ["-id", bundle.id, "-detach"]
        if logger.logLevel <= .debug { args.append("-debug") }
        do throws(BerthError) {
            try FileSystem.write(bundle.path + "/address", Array(address.utf8), mode: 0o600)
            let result = try await runShim(binary, bundle: bundle, args: args, listener: listener, timeout: .seconds(30))
            guard result.status == 0 else {
                let text = String(decoding: result.stderr + result.stdout, as: UTF8.self)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                throw BerthError(.unknown, "failed to start shim: \(text): exit status \(result.status)")
            }
        } catch {
            unlink(path)
            unlink(bundle.path + "/address")
            throw error
        }
        bundle.write("shim-binary-path", binary)
        return try connect(bundle: bundle, binary: binary, address: address)
    }

    /// A ttrpc connection to the shim at `address`; when it ends unasked, the shim is treated as dead.
    func connect(bundle: Bundle, binary: String, address: String) throws(BerthError) -> ShimTask {
        let token = UInt64.random(in: 0..<UInt64.max)
        let key = Self.key(bundle.namespace, bundle.id)
        let client: TTRPCClient
        do {
            client = try TTRPCClient(path: address) { [weak self] in
                Task { await self?.shimClosed(key: key, token: token) }
            }
        } catch {
            throw .unavailable("connect to shim \(address): \(error.message)")
        }
        return ShimTask(bundle: bundle, binary: binary, client: client, token: token, logger: logger)
    }

    // MARK: create and delete

    public func create(_ options: TaskCreateOptions) async throws(BerthError) -> UInt32 {
        let namespace = try RequestContext.requireNamespace()
        do { try Identifiers.validate(options.id) } catch { throw .invalidArgument("invalid task id \(options.id): \(error.message)") }
        let key = Self.key(namespace, options.id)
        if let cleanup = cleanups[key] { await cleanup.value }
        if let restore = restoring[key] { await restore.value }
        guard tasks[key] == nil, !reserved.contains(key) else { throw .alreadyExists("task \(options.id): already exists") }
        reserved.insert(key)
        defer { reserved.remove(key) }

        let binary = try shimBinary(for: options.runtime)
        let bundle = Bundle(root: root, state: state, namespace: namespace, id: options.id)
        try bundle.create(spec: options.spec.value, work: !Self.isBerthShim(binary))
        logs.attach(bundle)
        let shim: ShimTask
        do {
            shim = try await startShim(
                binary, bundle: bundle, options: options.taskOptions ?? options.runtimeOptions, spec: options.spec.value)
        } catch {
            logs.detach(bundle)
            bundle.delete()
            throw error
        }
        var request = Containerd_Task_V2_CreateTaskRequest()
        request.id = options.id
        request.bundle = bundle.path
        request.stdin = options.io.stdin
        request.stdout = options.io.stdout
        request.stderr = options.io.stderr
        request.terminal = options.io.terminal
        if let taskOptions = options.taskOptions ?? options.runtimeOptions { request.options = ShimTask.any(taskOptions) }
        request.rootfs = options.rootfs.map { m in
            var out = Containerd_Types_Mount()
            out.type = m.type
            out.source = m.source
            out.target = m.target
            out.options = m.options
            return out
        }
        do {
            let response: Containerd_Task_V2_CreateTaskResponse = try await shim.call("Create", request)
            tasks[key] = shim
            return response.pid
        } catch {
            _ = try? await shim.delete(execID: "")
            await shim.shutdown(timeout: timeouts.shutdown)
            shim.release()
            await removeShim(shim)
            throw BerthError(error.code, "failed to create shim task: \(error.message)")
        }
    }

    public func delete(_ id: String) async throws(BerthError) -> TaskExit {
        let shim = try await task(id)
        let key = Self.key(shim.namespace, id)
        let exit: TaskExit
        do {
            exit = try await shim.delete(execID: "")
        } catch where error.code == .notFound {
            // The shim is gone or no longer knows the task: stop it if it still runs, clean up, then report it as
            // containerd does.
            tasks.removeValue(forKey: key)
            await shutDownAndRemove(shim)
            throw error
        }
        tasks.removeValue(forKey: key)
        shim.released.withLock { $0 = true }
        let shutDown = await shim.shutdown(timeout: timeouts.shutdown)
        shim.release()
        shim.bundle.unmountRootfs()
        // The bundle's removal (and, if the shim did not answer Shutdown, its `delete`) finish after the answer; a
        // new task with this id waits. A shim that deleted its task and shut down has cleaned up after itself
        // (runtime state, rootfs, its socket), so its `delete` is not run, as containerd 1.6 does not.
        let socket = shim.bundle.shimAddress.flatMap { $0.hasPrefix("unix://") ? String($0.dropFirst(7)) : nil }
        cleanups[key] = Task { [self] in
            if shutDown {
                // The shim removes its socket as it exits; a new task of this id starts once it has (at most 5 s,
                // the shim's bound on flushing its events).
                for _ in 0..<1000 where socket.map(FileSystem.exists) ?? false {
                    try? await Task.sleep(for: .milliseconds(5))
                }
                logs.detach(shim.bundle)
                shim.bundle.delete()
            } else {
                await removeShim(shim)
            }
            finishCleanup(key)
        }
        return exit
    }

    func finishCleanup(_ key: String) { cleanups.removeValue(forKey: key) }

    /// Asks a shim without a task to exit (a dead one does not answer), then removes it as `removeShim` does.
    func shutDownAndRemove(_ shim: ShimTask) async {
        _ = await shim.shutdown(timeout: timeouts.shutdown)
        shim.release()
        await removeShim(shim)
    }

    /// Runs the shim's `delete` (its own clean-up: runtime state, socket) and removes the bundle. Returns what
    /// `delete` reported about the task's exit, if it could.
    @discardableResult
    func removeShim(_ shim: ShimTask) async -> TaskExit? { await removeShim(binary: shim.binary, bundle: shim.bundle) }

    @discardableResult
    func removeShim(binary: String, bundle: Bundle) async -> TaskExit? {
        var exit: TaskExit?
        do {
            let result = try await runShim(
                binary, bundle: bundle, args: ["-id", bundle.id, "-bundle", bundle.path, "delete"],
                timeout: timeouts.cleanup)
            if result.status == 0, let response = try? Containerd_Task_V2_DeleteResponse(serializedBytes: result.stdout) {
                exit = TaskExit(
                    pid: response.pid, status: response.exitStatus,
                    exitedAt: response.hasExitedAt ? response.exitedAt.date : Date())
            } else if result.status != 0 {
                logger.warning("failed to clean up shim", metadata: [
                    "id": "\(bundle.id)", "error": "\(String(decoding: result.stderr, as: UTF8.self))",
                ])
            }
        } catch {
            logger.warning("failed to run shim delete", metadata: ["id": "\(bundle.id)", "error": "\(error)"])
        }
        logs.detach(bundle)
        bundle.delete()
        return exit
    }

    /// A shim connection ended without the daemon asking: containerd's `cleanupAfterDeadShim` (run the shim's
    /// `delete`, publish `/tasks/exit` and `/tasks/delete`, forget the task).
    func shimClosed(key: String, token: UInt64) async {
        guard let shim = tasks[key], shim.token == token, !shim.released.withLock({ $0 }) else { return }
        tasks.removeValue(forKey: key)
        logger.warning("cleaning up after shim disconnected", metadata: ["id": "\(shim.id)", "namespace": "\(shim.namespace)"])
        let exit = await removeShim(shim) ?? TaskExit(pid: 0, status: 255, exitedAt: Date())
        await publishExit(namespace: shim.namespace, id: shim.id, exit: exit, delete: true)
    }

    /// Publishes `/tasks/exit` (and `/tasks/delete`) for the task's init process on the shim's behalf.
    func publishExit(namespace: String, id: String, exit: TaskExit, delete: Bool) async {
        publishedExits.insert("\(namespace)/\(id)/\(exit.pid)")
        var event = Containerd_Events_TaskExit()
        event.containerID = id
        event.id = id
        event.pid = exit.pid
        event.exitStatus = exit.status
        event.exitedAt = Google_Protobuf_Timestamp(date: exit.exitedAt)
        if let e = Self.event("/tasks/exit", namespace: namespace, event) { try? await exchange.publish(e) }
        guard delete else { return }
        var deleted = Containerd_Events_TaskDelete()
        deleted.containerID = id
        deleted.pid = exit.pid
        deleted.exitStatus = exit.status
        deleted.exitedAt = Google_Protobuf_Timestamp(date: exit.exitedAt)
        if let e = Self.event("/tasks/delete", namespace: namespace, deleted) { try? await exchange.publish(e) }
    }

    /// At daemon shutdown the shims keep running (they outlive the daemon); only the connections close.
    public func close() async throws {
        for shim in tasks.values { shim.release() }
        for restore in restoring.values { restore.cancel() }
        for cleanup in cleanups.values { await cleanup.value }
        eventServer.close()
    }
}
