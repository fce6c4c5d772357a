// One process of a task: the init process (exec id "") or an exec. Its state machine (created, running, paused,
// stopped) and exit waiters live behind a lock, so the reaper's thread and the task service can both reach it.
#if canImport(Glibc)
import Glibc
#endif
import BerthShimAPI
import BerthTTRPC
import SwiftProtobuf
import Synchronization

final class ShimProcess: Sendable {
    struct State {
        var pid: Int32 = 0
        var status: Containerd_V1_Types_Status = .created
        var exitStatus: UInt32 = 0
        var exitedAt: WallTime?
        var io: ProcessIO?
        /// Set while Start runs: an exit seen meanwhile waits, so the start event goes out before the exit event.
        var starting = false
        var pendingExit: ExitRecord?
        /// Deleted processes ignore a late exit.
        var deleted = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// A window size asked for before the pty existed (ResizePty before Start), applied once it does.
        var pendingSize: (width: UInt32, height: UInt32)?
        /// Set once the start event went out; an OOM seen before waits for it (`pendingOOM`).
        var startAnnounced = false
        var pendingOOM = false
    }

    let containerID: String
    /// The exec id, "" for the init process.
    let execID: String
    let paths: StdioPaths
    /// An exec's OCI process spec (JSON), empty for init.
    let spec: [UInt8]
    let state = Mutex(State())

    init(containerID: String, execID: String, paths: StdioPaths, spec: [UInt8] = []) {
        self.containerID = containerID
        self.execID = execID
        self.paths = paths
        self.spec = spec
    }

    /// The id events carry: the container id for init, else the exec id.
    var eventID: String { execID.isEmpty ? containerID : execID }
    var pid: Int32 { state.withLock { $0.pid } }
    var status: Containerd_V1_Types_Status { state.withLock { $0.status } }
    var io: ProcessIO? { state.withLock { $0.io } }

    /// Records the exit and wakes every waiter; false if it was already recorded.
    @discardableResult
    func setExited(status: Int32, at time: WallTime) -> Bool {
        let waiters: [CheckedContinuation<Void, Never>]? = state.withLock { state in
            guard state.exitedAt == nil else { return nil }
            state.status = .stopped
            state.exitStatus = UInt32(bitPattern: status)
            state.exitedAt = time
            defer { state.waiters = [] }
            return state.waiters
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume() }
        return true
    }

    /// Returns once the process has exited.
    func waitExit() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state in
                if state.exitedAt != nil { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Exit status and time, as Wait, Delete and State report them.
    var exit: (status: UInt32, at: Google_Protobuf_Timestamp?) {
        state.withLock { state in
            (state.exitStatus, state.exitedAt.map { Google_Protobuf_Timestamp(seconds: $0.seconds, nanos: $0.nanos) })
        }
    }

    func stateResponse(bundle: String) -> Containerd_Task_V2_StateResponse {
        var response = Containerd_Task_V2_StateResponse()
        response.id = eventID
        response.execID = execID
        response.bundle = bundle
        response.stdin = paths.stdin
        response.stdout = paths.stdout
        response.stderr = paths.stderr
        response.terminal = paths.terminal
        state.withLock { state in
            response.pid = UInt32(bitPattern: state.pid)
            response.status = state.status
            response.exitStatus = state.exitStatus
            if let at = state.exitedAt { response.exitedAt = Google_Protobuf_Timestamp(seconds: at.seconds, nanos: at.nanos) }
        }
        return response
    }
}

/// A task: its bundle, runtime, init process and execs.
struct ShimContainer: Sendable {
    let id: String
    let bundle: String
    let runtime: OCIRuntime
    let initProcess: ShimProcess
    var execs: [String: ShimProcess] = [:]
    var rootfsMounted: Bool

    func process(_ execID: String) throws(TTRPCError) -> ShimProcess {
        if execID.isEmpty { return initProcess }
        guard let process = execs[execID] else { throw TTRPCError(.notFound, "process \(execID) does not exist") }
        return process
    }
}
