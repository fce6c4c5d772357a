import BerthAPI
import BerthCore
import Foundation
import SwiftProtobuf

/// The task calls that go straight to the shim's task service.
extension ShimManager {
    public func start(_ id: String, execID: String) async throws(BerthError) -> UInt32 {
        var request = Containerd_Task_V2_StartRequest()
        request.id = id
        request.execID = execID
        let response: Containerd_Task_V2_StartResponse = try await task(id).call("Start", request)
        return response.pid
    }

    public func deleteProcess(_ id: String, execID: String) async throws(BerthError) -> TaskExit {
        let shim = try await task(id)
        _ = try await shim.state(execID: execID, timeout: timeouts.state)
        return try await shim.delete(execID: execID)
    }

    public func state(_ id: String, execID: String) async throws(BerthError) -> ProcessState {
        try await task(id).state(execID: execID, timeout: timeouts.state)
    }

    public func list() async throws(BerthError) -> [ProcessState] {
        let namespace = try RequestContext.requireNamespace()
        for (key, restore) in restoring where key.hasPrefix(namespace + "/") { await restore.value }
        var states: [ProcessState] = []
        for (_, shim) in tasks.filter({ $0.value.namespace == namespace }).sorted(by: { $0.key < $1.key }) {
            do {
                states.append(try await shim.state(execID: "", timeout: timeouts.state))
            } catch where error.code == .notFound {
                // Raced with a delete.
            } catch {
                logger.warning("task state", metadata: ["id": "\(shim.id)", "error": "\(error)"])
                states.append(ProcessState(containerID: shim.id, id: shim.id))
            }
        }
        return states
    }

    public func kill(_ id: String, execID: String, signal: UInt32, all: Bool) async throws(BerthError) {
        var request = Containerd_Task_V2_KillRequest()
        request.id = id
        request.execID = execID
        request.signal = signal
        request.all = all
        let _: Google_Protobuf_Empty = try await task(id).call("Kill", request)
    }

    public func exec(_ id: String, execID: String, spec: TypedValue?, io: TaskIO) async throws(BerthError) {
        do { try Identifiers.validate(execID) } catch { throw .invalidArgument("invalid exec id \(execID): \(error.message)") }
        var request = Containerd_Task_V2_ExecProcessRequest()
        request.id = id
        request.execID = execID
        request.stdin = io.stdin
        request.stdout = io.stdout
        request.stderr = io.stderr
        request.terminal = io.terminal
        if let spec { request.spec = ShimTask.any(spec) }
        let _: Google_Protobuf_Empty = try await task(id).call("Exec", request)
    }

    public func resizePty(_ id: String, execID: String, width: UInt32, height: UInt32) async throws(BerthError) {
        var request = Containerd_Task_V2_ResizePtyRequest()
        request.id = id
        request.execID = execID
        request.width = width
        request.height = height
        let _: Google_Protobuf_Empty = try await task(id).call("ResizePty", request)
    }

    public func closeIO(_ id: String, execID: String) async throws(BerthError) {
        var request = Containerd_Task_V2_CloseIORequest()
        request.id = id
        request.execID = execID
        request.stdin = true
        let _: Google_Protobuf_Empty = try await task(id).call("CloseIO", request)
    }

    public func pause(_ id: String) async throws(BerthError) {
        var request = Containerd_Task_V2_PauseRequest()
        request.id = id
        let _: Google_Protobuf_Empty = try await task(id).call("Pause", request)
    }

    public func resume(_ id: String) async throws(BerthError) {
        var request = Containerd_Task_V2_ResumeRequest()
        request.id = id
        let _: Google_Protobuf_Empty = try await task(id).call("Resume", request)
    }

    public func pids(_ id: String) async throws(BerthError) -> [(pid: UInt32, info: TypedValue?)] {
        var request = Containerd_Task_V2_PidsRequest()
        request.id = id
        let response: Containerd_Task_V2_PidsResponse = try await task(id).call("Pids", request)
        return response.processes.map { ($0.pid, $0.hasInfo ? ShimTask.typed($0.info) : nil) }
    }

    public func update(_ id: String, resources: TypedValue?, annotations: [String: String]) async throws(BerthError) {
        var request = Containerd_Task_V2_UpdateTaskRequest()
        request.id = id
        if let resources { request.resources = ShimTask.any(resources) }
        request.annotations = annotations
        let _: Google_Protobuf_Empty = try await task(id).call("Update", request)
    }

    public func stats(_ id: String) async throws(BerthError) -> TypedValue? {
        var request = Containerd_Task_V2_StatsRequest()
        request.id = id
        let response: Containerd_Task_V2_StatsResponse = try await task(id).call("Stats", request)
        return response.hasStats ? ShimTask.typed(response.stats) : nil
    }

    public func wait(_ id: String, execID: String) async throws(BerthError) -> TaskExit {
        var request = Containerd_Task_V2_WaitRequest()
        request.id = id
        request.execID = execID
        let response: Containerd_Task_V2_WaitResponse = try await task(id).call("Wait", request)
        return TaskExit(pid: 0, status: response.exitStatus, exitedAt: response.hasExitedAt ? response.exitedAt.date : Date())
    }
}
