import BerthAPI
import BerthCore
import BerthGRPC
import BerthSpec
import Foundation
import GRPCCore
import SwiftProtobuf

/// Creating, attaching to and cleaning up a container's task or exec process, shared by `run` and `exec`.
enum ContainerTask {
    /// Creates the container's task and runs it to completion (or just starts it when detached).
    static func run(
        _ c: BerthConnection, id: String, rootfs: [Containerd_Types_Mount], terminal: Bool, stdin: Bool, detach: Bool,
        fifoDir: String, cleanup: Bool
    ) async throws -> UInt32 {
        let tasks = TasksAPI.Client(wrapping: c.client)
        let io = detach ? nil : try TaskIO(root: fifoDir, id: id, stdin: stdin, terminal: terminal)
        defer { io?.remove() }
        var create = Containerd_Services_Tasks_V1_CreateTaskRequest()
        create.containerID = id
        create.rootfs = rootfs
        create.terminal = terminal
        if let io { (create.stdin, create.stdout, create.stderr) = (io.stdin, io.stdout, io.stderr) }
        io?.start(onStdinClosed: { closeStdin(c, id: id, execID: "") })
        do {
            _ = try await tasks.create(create, metadata: c.metadata)
        } catch {
            io?.cancel()
            throw error
        }
        if detach {
            io?.markStarted()
            var start = Containerd_Services_Tasks_V1_StartRequest()
            start.containerID = id
            _ = try await tasks.start(start, metadata: c.metadata)
            return 0
        }
        let status = try await attach(c, id: id, execID: "", terminal: terminal, io: io)
        var delete = Containerd_Services_Tasks_V1_DeleteTaskRequest()
        delete.containerID = id
        _ = try await tasks.delete(delete, metadata: c.metadata)
        if cleanup { await ContainerCleanup.remove(c, id: id, force: false) }
        return status
    }

    /// Waits (registered before Start, as ctr does), starts, forwards signals or terminal size, and returns the exit
    /// status once all output has arrived.
    static func attach(_ c: BerthConnection, id: String, execID: String, terminal: Bool, io: TaskIO?) async throws
        -> UInt32
    {
        let tasks = TasksAPI.Client(wrapping: c.client)
        return try await withThrowingTaskGroup(of: UInt32.self) { group in
            var wait = Containerd_Services_Tasks_V1_WaitRequest()
            (wait.containerID, wait.execID) = (id, execID)
            let waitRequest = wait
            group.addTask { try await tasks.wait(waitRequest, metadata: c.metadata).exitStatus }
            var start = Containerd_Services_Tasks_V1_StartRequest()
            (start.containerID, start.execID) = (id, execID)
            let saved = terminal ? Terminal.makeRaw() : nil
            defer { Terminal.restore(saved) }
            if terminal, let size = Terminal.size() {
                var resize = Containerd_Services_Tasks_V1_ResizePtyRequest()
                (resize.containerID, resize.execID, resize.width, resize.height) = (id, execID, size.width, size.height)
                _ = try? await tasks.resizePty(resize, metadata: c.metadata)
            }
            do {
                _ = try await tasks.start(start, metadata: c.metadata)
            } catch {
                group.cancelAll()
                throw error
            }
            io?.markStarted()
            let sources = terminal
                ? [watch(SIGWINCH) { resize(c, id: id, execID: execID) }]
                : [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2].map { signal in
                    watch(signal) { kill(c, id: id, execID: execID, signal: UInt32(signal)) }
                }
            defer { sources.forEach { $0.cancel() } }
            guard let status = try await group.next() else { throw BerthError.internalError("wait ended without status") }
            await io?.waitForOutput()
            return status
        }
    }

    /// Calls `body` on each delivery of `signal` (which no longer has its default action).
    static func watch(_ signalNumber: Int32, _ body: @escaping @Sendable () -> Void) -> any DispatchSourceSignal {
        signal(signalNumber, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
        source.setEventHandler(handler: body)
        source.resume()
        return source
    }

    static func resize(_ c: BerthConnection, id: String, execID: String) {
        guard let size = Terminal.size() else { return }
        Task {
            var request = Containerd_Services_Tasks_V1_ResizePtyRequest()
            (request.containerID, request.execID, request.width, request.height) = (id, execID, size.width, size.height)
            _ = try? await TasksAPI.Client(wrapping: c.client).resizePty(request, metadata: c.metadata)
        }
    }

    static func kill(_ c: BerthConnection, id: String, execID: String, signal: UInt32) {
        Task {
            var request = Containerd_Services_Tasks_V1_KillRequest()
            (request.containerID, request.execID, request.signal) = (id, execID, signal)
            _ = try? await TasksAPI.Client(wrapping: c.client).kill(request, metadata: c.metadata)
        }
    }

    static func closeStdin(_ c: BerthConnection, id: String, execID: String) {
        Task {
            var request = Containerd_Services_Tasks_V1_CloseIORequest()
            (request.containerID, request.execID, request.stdin) = (id, execID, true)
            _ = try? await TasksAPI.Client(wrapping: c.client).closeIO(request, metadata: c.metadata)
        }
    }

    /// Signal numbers by name, with or without the SIG prefix, or as a number.
    static func signalNumber(_ text: String) throws -> UInt32 {
        if let n = UInt32(text) { return n }
        let names: [String: Int32] = [
            "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "ILL": SIGILL, "TRAP": SIGTRAP, "ABRT": SIGABRT,
            "BUS": SIGBUS, "FPE": SIGFPE, "KILL": SIGKILL, "USR1": SIGUSR1, "SEGV": SIGSEGV, "USR2": SIGUSR2,
            "PIPE": SIGPIPE, "ALRM": SIGALRM, "TERM": SIGTERM, "CHLD": SIGCHLD, "CONT": SIGCONT, "STOP": SIGSTOP,
            "TSTP": SIGTSTP, "TTIN": SIGTTIN, "TTOU": SIGTTOU, "URG": SIGURG, "WINCH": SIGWINCH,
        ]
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name = String(name.dropFirst(3)) }
        guard let n = names[name] else { throw BerthError.invalidArgument("unknown signal \(text)") }
        return UInt32(n)
    }
}

/// Removing a container as ctr does: its task (killed first when forced), the container, then its snapshot.
enum ContainerCleanup {
    /// Best effort; used after a run and by `rm`.
    static func remove(_ c: BerthConnection, id: String, force: Bool) async {
        _ = try? await removeChecked(c, id: id, force: force)
    }

    static func removeChecked(_ c: BerthConnection, id: String, force: Bool) async throws {
        let tasks = TasksAPI.Client(wrapping: c.client)
        var get = Containerd_Services_Tasks_V1_GetRequest()
        get.containerID = id
        if let task = try? await tasks.get(get, metadata: c.metadata).process {
            if task.status == .running || task.status == .paused || task.status == .pausing {
                guard force else {
                    throw BerthError.failedPrecondition("container \(id) is running: stop it or use --force")
                }
                var wait = Containerd_Services_Tasks_V1_WaitRequest()
                wait.containerID = id
                let waitRequest = wait
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { _ = try await tasks.wait(waitRequest, metadata: c.metadata) }
                    var kill = Containerd_Services_Tasks_V1_KillRequest()
                    (kill.containerID, kill.signal, kill.all) = (id, UInt32(SIGKILL), true)
                    if task.status != .running {
                        var resume = Containerd_Services_Tasks_V1_ResumeTaskRequest()
                        resume.containerID = id
                        _ = try? await tasks.resume(resume, metadata: c.metadata)
                    }
                    _ = try await tasks.kill(kill, metadata: c.metadata)
                    try await group.next()
                }
            }
            var delete = Containerd_Services_Tasks_V1_DeleteTaskRequest()
            delete.containerID = id
            _ = try await tasks.delete(delete, metadata: c.metadata)
        }
        let containers = ContainersAPI.Client(wrapping: c.client)
        var getContainer = Containerd_Services_Containers_V1_GetContainerRequest()
        getContainer.id = id
        let container = try await containers.get(getContainer, metadata: c.metadata).container
        var delete = Containerd_Services_Containers_V1_DeleteContainerRequest()
        delete.id = id
        _ = try await containers.delete(delete, metadata: c.metadata)
        if !container.snapshotKey.isEmpty && !container.snapshotter.isEmpty {
            var remove = Containerd_Services_Snapshots_V1_RemoveSnapshotRequest()
            (remove.snapshotter, remove.key) = (container.snapshotter, container.snapshotKey)
            _ = try? await SnapshotsAPI.Client(wrapping: c.client).remove(remove, metadata: c.metadata)
        }
    }
}
