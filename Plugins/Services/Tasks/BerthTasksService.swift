import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "tasks", requires: [.type(.runtime), .type(.metadata), .type(.event)],
    summary: "containerd.services.tasks.v1.Tasks: tasks of containers, run by the runtime's shims."
) { ic in
    SingleService(TasksService(
        containers: try ic.single(.metadata, as: (any ContainersProvider).self).containers,
        runtime: try ic.instance(.runtime, id: "task", as: (any TaskManager).self)))
}

typealias TasksAPI = Containerd_Services_Tasks_V1_Tasks

/// The Tasks service (containerd's services/tasks/local.go): looks up the container, then asks the runtime. Task
/// events come from the shims through the runtime, so this service publishes none itself.
struct TasksService: TasksAPI.SimpleServiceProtocol {
    let containers: any ContainerStore
    let runtime: any TaskManager

    static func typed(_ any: Google_Protobuf_Any) -> TypedValue { TypedValue(typeURL: any.typeURL, value: [UInt8](any.value)) }

    static func any(_ typed: TypedValue) -> Google_Protobuf_Any {
        var out = Google_Protobuf_Any()
        out.typeURL = typed.typeURL
        out.value = Data(typed.value)
        return out
    }

    static func process(_ state: ProcessState) -> Containerd_V1_Types_Process {
        var out = Containerd_V1_Types_Process()
        out.id = state.id
        out.pid = state.pid
        out.status = Containerd_V1_Types_Status(rawValue: state.status.rawValue) ?? .unknown
        out.stdin = state.stdin
        out.stdout = state.stdout
        out.stderr = state.stderr
        out.terminal = state.terminal
        out.exitStatus = state.exitStatus
        if let exitedAt = state.exitedAt { out.exitedAt = Convert.timestamp(exitedAt) }
        return out
    }

    /// The container's task: NotFound "task <id> not found" when the container has none.
    func requireTask(_ id: String) async throws(BerthError) {
        _ = try await containers.get(id)
        guard await runtime.exists(id) else { throw .notFound("task \(id) not found") }
    }

    func create(request: Containerd_Services_Tasks_V1_CreateTaskRequest, context: ServerContext) async throws
        -> Containerd_Services_Tasks_V1_CreateTaskResponse
    {
        let container = try await containers.get(request.containerID)
        guard let spec = container.spec else { throw BerthError.invalidArgument("container.Spec must be set") }
        if await runtime.exists(request.containerID) {
            throw BerthError.alreadyExists("task \(request.containerID): already exists")
        }
        let options = TaskCreateOptions(
            id: request.containerID, spec: spec,
            rootfs: request.rootfs.map { Mount(type: $0.type, source: $0.source, target: $0.target, options: $0.options) },
            io: TaskIO(stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal),
            runtime: request.runtimePath.isEmpty ? container.runtimeName : request.runtimePath,
            runtimeOptions: container.runtimeOptions, taskOptions: request.hasOptions ? Self.typed(request.options) : nil)
        var response = Containerd_Services_Tasks_V1_CreateTaskResponse()
        response.containerID = request.containerID
        response.pid = try await runtime.create(options)
        return response
    }

    func start(request: Containerd_Services_Tasks_V1_StartRequest, context: ServerContext) async throws
        -> Containerd_Services_Tasks_V1_StartResponse
    {
        try await requireTask(request.containerID)
        var response = Containerd_Services_Tasks_V1_StartResponse()
        response.pid = try await runtime.start(request.containerID, execID: request.execID)
        return response
    }

    static func deleted(_ id: String, _ exit: TaskExit) -> Containerd_Services_Tasks_V1_DeleteResponse {
        var response = Containerd_Services_Tasks_V1_DeleteResponse()
        response.id = id
        response.pid = exit.pid
        response.exitStatus = exit.status
        response.exitedAt = Convert.timestamp(exit.exitedAt)
        return response
    }

    func delete(request: Containerd_Services_Tasks_V1_DeleteTaskRequest, context: ServerContext) async throws
        -> Containerd_Services_Tasks_V1_DeleteResponse
    {
        try await requireTask(request.containerID)
        var response = Self.deleted("", try await runtime.delete(request.containerID))
        response.id = ""
        return response
    }

    func deleteProcess(request: Containerd_Services_Tasks_V1_DeleteProcessRequest, context: ServerContext)
        async throws -> Containerd_Services_Tasks_V1_DeleteResponse
    {
        try await requireTask(request.containerID)
        return Self.deleted(request.execID, try await runtime.deleteProcess(request.containerID, execID: request.execID))
    }

    func get(request: Containerd_Services_Tasks_V1_GetRequest, context: ServerContext) async throws
        -> Containerd_Services_Tasks_V1_GetResponse
    {
        try await requireTask(request.containerID)
        var response = Containerd_Services_Tasks_V1_GetResponse()
        response.process = Self.process(try await runtime.state(request.containerID, execID: request.execID))
        return response
    }

    func list(request: Containerd_Services_Tasks_V1_ListTasksRequest, context: ServerContext) async throws
        -> Containerd_Services_Tasks_V1_ListTasksResponse
    {
        var response = Containerd_Services_Tasks_V1_ListTasksResponse()
        response.tasks = try await runtime.list().map(Self.process)
        return response
    }

    func kill(request: Containerd_Services_Tasks_V1_KillRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await requireTask(request.containerID)
        try await runtime.kill(request.containerID, execID: request.execID, signal: request.signal, all: request.all)
        return Google_Protobuf_Empty()
    }

    func exec(request: Containerd_Services_Tasks_V1_ExecProcessRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        if request.execID.isEmpty { throw BerthError.invalidArgument("exec id cannot be empty") }
        try await requireTask(request.containerID)
        try await runtime.exec(
            request.containerID, execID: request.execID, spec: request.hasSpec ? Self.typed(request.spec) : nil,
            io: TaskIO(stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal))
        return Google_Protobuf_Empty()
    }

    func resizePty(request: Containerd_Services_Tasks_V1_ResizePtyRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await requireTask(request.containerID)
        try await runtime.resizePty(
            request.containerID, execID: request.execID, width: request.width, height: request.height)
        return Google_Protobuf_Empty()
    }

    func closeIO(request: Containerd_Services_Tasks_V1_CloseIORequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await requireTask(request.containerID)
        if request.stdin { try await runtime.closeIO(request.containerID, execID: request.execID) }
        return Google_Protobuf_Empty()
    }

    func pause(request: Containerd_Services_Tasks_V1_PauseTaskRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await requireTask(request.containerID)
        try await runtime.pause(request.containerID)
        return Google_Protobuf_Empty()
    }

    func resume(request: Containerd_Services_Tasks_V1_ResumeTaskRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await requireTask(request.containerID)
        try await runtime.resume(request.containerID)
        return Google_Protobuf_Empty()
    }

    func listPids(request: Containerd_Services_Tasks_V1_ListPidsRequest, context: ServerContext) async throws
        -> Containerd_Services_Tasks_V1_ListPidsResponse
    {
        try await requireTask(request.containerID)
        var response = Containerd_Services_Tasks_V1_ListPidsResponse()
        response.processes = try await runtime.pids(request.containerID).map { entry in
            var info = Containerd_V1_Types_ProcessInfo()
            info.pid = entry.pid
            if let details = entry.info { info.info = Self.any(details) }
            return info
        }
        return response
    }

    func checkpoint(request: Containerd_Services_Tasks_V1_CheckpointTaskRequest, context: ServerContext)
        async throws -> Containerd_Services_Tasks_V1_CheckpointTaskResponse
    {
        throw BerthError.notImplemented("checkpoint is not supported by berthd")
    }

    func update(request: Containerd_Services_Tasks_V1_UpdateTaskRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await requireTask(request.containerID)
        try await runtime.update(
            request.containerID, resources: request.hasResources ? Self.typed(request.resources) : nil,
            annotations: request.annotations)
        return Google_Protobuf_Empty()
    }

    func metrics(request: Containerd_Services_Tasks_V1_MetricsRequest, context: ServerContext) async throws
        -> Containerd_Services_Tasks_V1_MetricsResponse
    {
        let filter = try Filter.parse(request.filters)
        let namespace = try RequestContext.requireNamespace()
        var response = Containerd_Services_Tasks_V1_MetricsResponse()
        let tasks = try await runtime.list()
        for task in tasks where filter.matches(FieldMapAdaptor(fields: ["id": task.id, "namespace": namespace])) {
            if let metric = await metric(task.id) { response.metrics.append(metric) }
        }
        return response
    }

    /// One task's stats as a Metric; nil when the task went away meanwhile or has no stats.
    func metric(_ id: String) async -> Containerd_Types_Metric? {
        let collected = Date()
        guard let stats = try? await runtime.stats(id) else { return nil }
        var metric = Containerd_Types_Metric()
        metric.timestamp = Convert.timestamp(collected)
        metric.id = id
        metric.data = Self.any(stats)
        return metric
    }

    func wait(request: Containerd_Services_Tasks_V1_WaitRequest, context: ServerContext) async throws
        -> Containerd_Services_Tasks_V1_WaitResponse
    {
        try await requireTask(request.containerID)
        let exit = try await runtime.wait(request.containerID, execID: request.execID)
        var response = Containerd_Services_Tasks_V1_WaitResponse()
        response.exitStatus = exit.status
        response.exitedAt = Convert.timestamp(exit.exitedAt)
        return response
    }
}
