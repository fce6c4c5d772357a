// containerd.task.v2.Task: the shim's task API over ttrpc, one actor owning the shim's containers.
#if canImport(Glibc)
import Glibc
#endif
import BerthShimAPI
import BerthTTRPC
import CBerthShim
import SwiftProtobuf

/// What the long-lived shim was started with.
struct ShimConfig: Sendable {
    var namespace: String
    var id: String
    var address: String
    var ttrpcAddress: String
    var bundle: String
}

actor TaskService {
    let config: ShimConfig
    let publisher: EventPublisher
    private var containers: [String: ShimContainer] = [:]
    private var creating: Set<String> = []
    /// Called once Shutdown finds no task left.
    private let onShutdown: @Sendable () -> Void

    init(config: ShimConfig, publisher: EventPublisher, onShutdown: @escaping @Sendable () -> Void) {
        self.config = config
        self.publisher = publisher
        self.onShutdown = onShutdown
    }

    private func container(_ id: String) throws(TTRPCError) -> ShimContainer {
        guard let container = containers[id] else { throw TTRPCError(.notFound, "container not created") }
        return container
    }

    // MARK: Create, Start, Delete

    func create(_ request: Containerd_Task_V2_CreateTaskRequest) async throws -> Containerd_Task_V2_CreateTaskResponse {
        guard !request.id.isEmpty else { throw TTRPCError(.invalidArgument, "id must not be empty") }
        guard containers[request.id] == nil, !creating.contains(request.id) else {
            throw TTRPCError(.alreadyExists, "container \(request.id): already exists")
        }
        if !request.checkpoint.isEmpty { throw TTRPCError(.unimplemented, "berth-shim: checkpoint/restore is not supported") }
        creating.insert(request.id)
        defer { creating.remove(request.id) }
        let bundle = request.bundle.isEmpty ? config.bundle : request.bundle
        var options = Containerd_Runc_V1_Options()
        if request.hasOptions && request.options.typeURL.hasSuffix("containerd.runc.v1.Options") {
            options = try Containerd_Runc_V1_Options(serializedBytes: [UInt8](request.options.value))
        }
        let runtime = try OCIRuntime.resolve(
            binaryName: options.binaryName, root: options.root, namespace: config.namespace, bundle: bundle,
            systemdCgroup: options.systemdCgroup)
        // runc creates its state root itself; other runtimes may not.
        try makeDirectories(runtime.root)
        RuntimeRecord.save(runtime, config: config, id: request.id)
        let paths = StdioPaths(
            stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal)
        let rootfs = bundle + "/rootfs"
        if !request.rootfs.isEmpty { try RootfsMounts.mount(request.rootfs, on: rootfs) }
        let io: ProcessIO
        var console: ConsoleSocket?
        do {
            if request.terminal {
                io = ProcessIO.terminal(paths)
                console = try ConsoleSocket()
            } else {
                io = try ProcessIO.pipes(paths, uid: options.ioUid, gid: options.ioGid)
            }
        } catch {
            if !request.rootfs.isEmpty { RootfsMounts.unmountAll(rootfs) }
            throw error
        }
        let pidFile = bundle + "/init.pid"
        var args = ["create", "--bundle", bundle, "--pid-file", pidFile]
        if let console { args += ["--console-socket", console.path] }
        if options.noPivotRoot { args.append("--no-pivot") }
        if options.noNewKeyring { args.append("--no-new-keyring") }
        args.append(request.id)
        let process = ShimProcess(containerID: request.id, execID: "", paths: paths)
        do {
            try await runtime.run(args, fds: io.childFds)
            if let console {
                try io.attach(console: try await console.master())
                await console.close()
            }
        } catch {
            io.close()
            await console?.close()
            if !request.rootfs.isEmpty { RootfsMounts.unmountAll(rootfs) }
            throw error
        }
        io.releaseChildEnds()
        let pid = Self.readPid(pidFile)
        process.state.withLock { state in
            state.pid = pid
            state.io = io
        }
        watch(process, pid: pid)
        OOMWatch.start(pid: pid) { [weak self] in
            Task { await self?.outOfMemory(process) }
        }
        containers[request.id] = ShimContainer(
            id: request.id, bundle: bundle, runtime: runtime, initProcess: process, rootfsMounted: !request.rootfs.isEmpty)
        var event = Containerd_Events_TaskCreate()
        event.containerID = request.id
        event.bundle = bundle
        event.rootfs = request.rootfs
        event.io.stdin = request.stdin
        event.io.stdout = request.stdout
        event.io.stderr = request.stderr
        event.io.terminal = request.terminal
        event.checkpoint = request.checkpoint
        event.pid = UInt32(bitPattern: pid)
        await publisher.publish("/tasks/create", event)
        var response = Containerd_Task_V2_CreateTaskResponse()
        response.pid = UInt32(bitPattern: pid)
        return response
    }

    static func readPid(_ path: String) -> Int32 {
        Int32(String(decoding: readFile(path) ?? [], as: UTF8.self).filter(\.isNumber)) ?? 0
    }

    /// Hands the process' exit to the reaper; on exit, output drains first, then the exit is recorded and published.
    private func watch(_ process: ShimProcess, pid: Int32) {
        guard pid > 0 else { return }
        Reaper.shared.claim(pid) { [weak self] exit in
            Task {
                await process.io?.drained()
                await self?.exited(process, exit)
            }
        }
    }

    private func exited(_ process: ShimProcess, _ exit: ExitRecord) async {
        let deferred = process.state.withLock { state -> Bool in
            if state.starting { state.pendingExit = exit }
            return state.starting || state.deleted
        }
        if deferred { return }
        guard process.setExited(status: exit.status, at: exit.time) else { return }
        var event = Containerd_Events_TaskExit()
        event.containerID = process.containerID
        event.id = process.eventID
        event.pid = UInt32(bitPattern: exit.pid)
        event.exitStatus = UInt32(bitPattern: exit.status)
        event.exitedAt = Google_Protobuf_Timestamp(seconds: exit.time.seconds, nanos: exit.time.nanos)
        await publisher.publish("/tasks/exit", event)
    }

    /// `/tasks/oom` for the container; one that comes before the start event went out waits for it.
    private func outOfMemory(_ process: ShimProcess) async {
        let early = process.state.withLock { state in
            if !state.startAnnounced { state.pendingOOM = true }
            return !state.startAnnounced
        }
        if early { return }
        var event = Containerd_Events_TaskOOM()
        event.containerID = process.containerID
        await publisher.publish("/tasks/oom", event)
    }

    func start(_ request: Containerd_Task_V2_StartRequest) async throws -> Containerd_Task_V2_StartResponse {
        let container = try container(request.id)
        let process = try container.process(request.execID)
        let ready = process.state.withLock { state -> Bool in
            guard state.status == .created, !state.starting else { return false }
            state.starting = true
            return true
        }
        guard ready else { throw TTRPCError(.failedPrecondition, "cannot start a process that is \(process.status)") }
        var failure: (any Error)?
        do {
            if request.execID.isEmpty {
                try await container.runtime.run(["start", request.id])
            } else {
                try await startExec(process, in: container)
            }
        } catch {
            failure = error
        }
        let pending = process.state.withLock { state -> ExitRecord? in
            state.starting = false
            if failure == nil && state.status == .created { state.status = .running }
            defer { state.pendingExit = nil }
            return state.pendingExit
        }
        if failure == nil {
            if request.execID.isEmpty {
                var event = Containerd_Events_TaskStart()
                event.containerID = request.id
                event.pid = UInt32(bitPattern: process.pid)
                await publisher.publish("/tasks/start", event)
            } else {
                var event = Containerd_Events_TaskExecStarted()
                event.containerID = request.id
                event.execID = request.execID
                event.pid = UInt32(bitPattern: process.pid)
                await publisher.publish("/tasks/exec-started", event)
            }
        }
        let oomPending = process.state.withLock { state in
            defer { state.pendingOOM = false }
            state.startAnnounced = true
            return state.pendingOOM
        }
        if oomPending { await outOfMemory(process) }
        if let pending { await exited(process, pending) }
        if let failure { throw failure }
        berth_shim_schedule_trims()
        var response = Containerd_Task_V2_StartResponse()
        response.pid = UInt32(bitPattern: process.pid)
        return response
    }

    private func startExec(_ process: ShimProcess, in container: ShimContainer) async throws {
        let base = container.bundle + "/.exec-" + process.execID
        try writeFile(base + ".json", process.spec, mode: 0o600)
        defer { unlink(base + ".json") }
        let io: ProcessIO
        var console: ConsoleSocket?
        if process.paths.terminal {
            io = ProcessIO.terminal(process.paths)
            console = try ConsoleSocket()
        } else {
            io = try ProcessIO.pipes(process.paths, uid: 0, gid: 0)
        }
        var args = ["exec", "--process", base + ".json", "--detach", "--pid-file", base + ".pid"]
        if let console { args += ["--console-socket", console.path] }
        args.append(container.id)
        do {
            try await container.runtime.run(args, fds: io.childFds)
            if let console {
                try io.attach(console: try await console.master())
                await console.close()
                // The size the exec asked for (consoleSize), then any ResizePty that came before Start.
                let size = process.state.withLock { $0.pendingSize } ?? JSONText.consoleSize(process.spec)
                if let size { try? io.resize(width: size.width, height: size.height) }
            }
        } catch {
            io.close()
            await console?.close()
            throw error
        }
        io.releaseChildEnds()
        let pid = Self.readPid(base + ".pid")
        unlink(base + ".pid")
        process.state.withLock { state in
            state.pid = pid
            state.io = io
        }
        watch(process, pid: pid)
    }

    func delete(_ request: Containerd_Task_V2_DeleteRequest) async throws -> Containerd_Task_V2_DeleteResponse {
        var container = try container(request.id)
        let process = try container.process(request.execID)
        let status = process.status
        guard status == .created || status == .stopped else {
            throw TTRPCError(.failedPrecondition, "cannot delete a \(status == .paused ? "paused" : "running") process")
        }
        if request.execID.isEmpty {
            do { try await container.runtime.run(["delete", "--force", request.id]) } catch {
                // Already gone from the runtime is fine; anything else is reported.
                let text = "\(error)"
                if !(text.contains("does not exist") || text.contains("not found")) { throw error }
            }
            if status == .created { process.setExited(status: 128 + SIGKILL, at: .now()) }
            process.state.withLock { $0.deleted = true }
            process.io?.close()
            for exec in container.execs.values { exec.io?.close() }
            if container.rootfsMounted { RootfsMounts.unmountAll(container.bundle + "/rootfs") }
            // The runtime record serves the `delete` command, which the daemon runs only for a shim that did not
            // delete its task itself.
            unlink(RuntimeRecord.path(address: config.address, namespace: config.namespace, id: request.id))
            containers.removeValue(forKey: request.id)
        } else {
            if status == .created { process.setExited(status: 0, at: .now()) }
            process.state.withLock { $0.deleted = true }
            process.io?.close()
            container.execs.removeValue(forKey: request.execID)
            containers[request.id] = container
        }
        let exit = process.exit
        var response = Containerd_Task_V2_DeleteResponse()
        response.pid = UInt32(bitPattern: process.pid)
        response.exitStatus = exit.status
        if let at = exit.at { response.exitedAt = at }
        if request.execID.isEmpty {
            var event = Containerd_Events_TaskDelete()
            event.containerID = request.id
            event.pid = response.pid
            event.exitStatus = response.exitStatus
            if let at = exit.at { event.exitedAt = at }
            await publisher.publish("/tasks/delete", event)
        }
        return response
    }

    // MARK: Exec, signals, state

    func exec(_ request: Containerd_Task_V2_ExecProcessRequest) async throws -> Google_Protobuf_Empty {
        var container = try container(request.id)
        guard !request.execID.isEmpty else { throw TTRPCError(.invalidArgument, "exec id must not be empty") }
        guard container.execs[request.execID] == nil else {
            throw TTRPCError(.alreadyExists, "id \(request.execID): already exists")
        }
        guard container.initProcess.status != .stopped else {
            throw TTRPCError(.failedPrecondition, "container \(request.id) is not running")
        }
        let paths = StdioPaths(
            stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal)
        container.execs[request.execID] = ShimProcess(
            containerID: request.id, execID: request.execID, paths: paths, spec: [UInt8](request.spec.value))
        containers[request.id] = container
        var event = Containerd_Events_TaskExecAdded()
        event.containerID = request.id
        event.execID = request.execID
        await publisher.publish("/tasks/exec-added", event)
        return Google_Protobuf_Empty()
    }

    func kill(_ request: Containerd_Task_V2_KillRequest) async throws -> Google_Protobuf_Empty {
        let container = try container(request.id)
        let process = try container.process(request.execID)
        guard process.status != .stopped else { throw TTRPCError(.notFound, "process already finished") }
        if request.execID.isEmpty {
            var args = ["kill"]
            if request.all { args.append("--all") }
            args += [request.id, String(request.signal)]
            do { try await container.runtime.run(args) } catch {
                if process.status == .stopped { throw TTRPCError(.notFound, "process already finished") }
                throw error
            }
        } else {
            let pid = process.pid
            guard pid > 0 else { throw TTRPCError(.failedPrecondition, "process \(request.execID) has not started") }
            if Glibc.kill(pid, Int32(request.signal)) != 0 {
                if errno == ESRCH { throw TTRPCError(.notFound, "process already finished") }
                throw sysError("kill \(pid)")
            }
        }
        return Google_Protobuf_Empty()
    }

    func state(_ request: Containerd_Task_V2_StateRequest) throws -> Containerd_Task_V2_StateResponse {
        let container = try container(request.id)
        return try container.process(request.execID).stateResponse(bundle: container.bundle)
    }

    func wait(_ request: Containerd_Task_V2_WaitRequest) async throws -> Containerd_Task_V2_WaitResponse {
        let process = try container(request.id).process(request.execID)
        await process.waitExit()
        let exit = process.exit
        var response = Containerd_Task_V2_WaitResponse()
        response.exitStatus = exit.status
        if let at = exit.at { response.exitedAt = at }
        return response
    }

    func pids(_ request: Containerd_Task_V2_PidsRequest) async throws -> Containerd_Task_V2_PidsResponse {
        let container = try container(request.id)
        let output = try await container.runtime.output(["ps", "--format", "json", request.id])
        var execByPid: [Int32: String] = [:]
        for (execID, process) in container.execs where process.pid > 0 { execByPid[process.pid] = execID }
        var response = Containerd_Task_V2_PidsResponse()
        for pid in JSONText.integers(output) {
            var info = Containerd_V1_Types_ProcessInfo()
            info.pid = UInt32(bitPattern: pid)
            if let execID = execByPid[pid] {
                var details = Containerd_Runc_V1_ProcessDetails()
                details.execID = execID
                info.info.typeURL = Containerd_Runc_V1_ProcessDetails.protoMessageName
                info.info.value = try details.serializedBytes()
            }
            response.processes.append(info)
        }
        return response
    }

    func pause(_ request: Containerd_Task_V2_PauseRequest) async throws -> Google_Protobuf_Empty {
        let container = try container(request.id)
        guard container.initProcess.status == .running else {
            throw TTRPCError(.failedPrecondition, "cannot pause a process that is \(container.initProcess.status)")
        }
        try await container.runtime.run(["pause", request.id])
        container.initProcess.state.withLock { if $0.status == .running { $0.status = .paused } }
        var event = Containerd_Events_TaskPaused()
        event.containerID = request.id
        await publisher.publish("/tasks/paused", event)
        return Google_Protobuf_Empty()
    }

    func resume(_ request: Containerd_Task_V2_ResumeRequest) async throws -> Google_Protobuf_Empty {
        let container = try container(request.id)
        guard container.initProcess.status == .paused else {
            throw TTRPCError(.failedPrecondition, "cannot resume a process that is \(container.initProcess.status)")
        }
        try await container.runtime.run(["resume", request.id])
        container.initProcess.state.withLock { if $0.status == .paused { $0.status = .running } }
        var event = Containerd_Events_TaskResumed()
        event.containerID = request.id
        await publisher.publish("/tasks/resumed", event)
        return Google_Protobuf_Empty()
    }

    func resizePty(_ request: Containerd_Task_V2_ResizePtyRequest) throws -> Google_Protobuf_Empty {
        let process = try container(request.id).process(request.execID)
        guard let io = process.io else {
            // Not started yet: the size applies once its pty exists (containerd's shim accepts this too).
            let kept = process.state.withLock { state -> Bool in
                guard state.status == .created else { return false }
                state.pendingSize = (request.width, request.height)
                return true
            }
            if kept { return Google_Protobuf_Empty() }
            throw TTRPCError(.notFound, "console not found")
        }
        try io.resize(width: request.width, height: request.height)
        return Google_Protobuf_Empty()
    }

    func closeIO(_ request: Containerd_Task_V2_CloseIORequest) throws -> Google_Protobuf_Empty {
        let process = try container(request.id).process(request.execID)
        if request.stdin { process.io?.closeStdin() }
        return Google_Protobuf_Empty()
    }

    func update(_ request: Containerd_Task_V2_UpdateTaskRequest) async throws -> Google_Protobuf_Empty {
        let container = try container(request.id)
        _ = try await container.runtime.output(["update", "--resources", "-", request.id], input: [UInt8](request.resources.value))
        return Google_Protobuf_Empty()
    }

    func stats(_ request: Containerd_Task_V2_StatsRequest) throws -> Containerd_Task_V2_StatsResponse {
        let container = try container(request.id)
        var response = Containerd_Task_V2_StatsResponse()
        response.stats = try CgroupStats.metrics(pid: container.initProcess.pid)
        return response
    }

    func connect(_ request: Containerd_Task_V2_ConnectRequest) -> Containerd_Task_V2_ConnectResponse {
        var response = Containerd_Task_V2_ConnectResponse()
        response.shimPid = UInt32(bitPattern: getpid())
        response.taskPid = UInt32(bitPattern: containers[request.id]?.initProcess.pid ?? 0)
        response.version = "berth-shim 1"
        return response
    }

    func shutdown(_ request: Containerd_Task_V2_ShutdownRequest) -> Google_Protobuf_Empty {
        if containers.isEmpty && creating.isEmpty { onShutdown() }
        return Google_Protobuf_Empty()
    }

    /// Registers every method on `server`.
    nonisolated func register(on server: TTRPCServer) {
        let name = "containerd.task.v2.Task"
        server.register(service: name, method: "State") { (r: Containerd_Task_V2_StateRequest, _) in try await self.state(r) }
        server.register(service: name, method: "Create") { (r: Containerd_Task_V2_CreateTaskRequest, _) in try await self.create(r) }
        server.register(service: name, method: "Start") { (r: Containerd_Task_V2_StartRequest, _) in try await self.start(r) }
        server.register(service: name, method: "Delete") { (r: Containerd_Task_V2_DeleteRequest, _) in try await self.delete(r) }
        server.register(service: name, method: "Pids") { (r: Containerd_Task_V2_PidsRequest, _) in try await self.pids(r) }
        server.register(service: name, method: "Pause") { (r: Containerd_Task_V2_PauseRequest, _) in try await self.pause(r) }
        server.register(service: name, method: "Resume") { (r: Containerd_Task_V2_ResumeRequest, _) in try await self.resume(r) }
        server.register(service: name, method: "Checkpoint") {
            (_: Containerd_Task_V2_CheckpointTaskRequest, _) async throws -> Google_Protobuf_Empty in
            throw TTRPCError(.unimplemented, "berth-shim: checkpoint is not implemented")
        }
        server.register(service: name, method: "Kill") { (r: Containerd_Task_V2_KillRequest, _) in try await self.kill(r) }
        server.register(service: name, method: "Exec") { (r: Containerd_Task_V2_ExecProcessRequest, _) in try await self.exec(r) }
        server.register(service: name, method: "ResizePty") { (r: Containerd_Task_V2_ResizePtyRequest, _) in try await self.resizePty(r) }
        server.register(service: name, method: "CloseIO") { (r: Containerd_Task_V2_CloseIORequest, _) in try await self.closeIO(r) }
        server.register(service: name, method: "Update") { (r: Containerd_Task_V2_UpdateTaskRequest, _) in try await self.update(r) }
        server.register(service: name, method: "Wait") { (r: Containerd_Task_V2_WaitRequest, _) in try await self.wait(r) }
        server.register(service: name, method: "Stats") { (r: Containerd_Task_V2_StatsRequest, _) in try await self.stats(r) }
        server.register(service: name, method: "Connect") { (r: Containerd_Task_V2_ConnectRequest, _) in await self.connect(r) }
        server.register(service: name, method: "Shutdown") { (r: Containerd_Task_V2_ShutdownRequest, _) in await self.shutdown(r) }
    }
}
