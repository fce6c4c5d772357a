import Foundation

/// containerd's task status (`containerd.v1.types.Status`); raw values are the proto numbers.
public enum TaskStatus: Int, Sendable, Equatable {
    case unknown = 0, created, running, stopped, paused, pausing
}

/// What a task (or one of its exec processes) is doing now.
public struct ProcessState: Sendable, Equatable {
    public var containerID: String
    public var id: String
    public var pid: UInt32
    public var status: TaskStatus
    public var stdin: String
    public var stdout: String
    public var stderr: String
    public var terminal: Bool
    public var exitStatus: UInt32
    public var exitedAt: Date?

    public init(
        containerID: String, id: String, pid: UInt32 = 0, status: TaskStatus = .unknown, stdin: String = "",
        stdout: String = "", stderr: String = "", terminal: Bool = false, exitStatus: UInt32 = 0, exitedAt: Date? = nil
    ) {
        self.containerID = containerID
        self.id = id
        self.pid = pid
        self.status = status
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.terminal = terminal
        self.exitStatus = exitStatus
        self.exitedAt = exitedAt
    }
}

/// How a process ended.
public struct TaskExit: Sendable, Equatable {
    public var pid: UInt32
    public var status: UInt32
    public var exitedAt: Date

    public init(pid: UInt32, status: UInt32, exitedAt: Date) {
        self.pid = pid
        self.status = status
        self.exitedAt = exitedAt
    }
}

/// Standard streams of a process: paths (FIFOs, `file://`, `binary://`) the shim opens.
public struct TaskIO: Sendable, Equatable {
    public var stdin: String
    public var stdout: String
    public var stderr: String
    public var terminal: Bool

    public init(stdin: String = "", stdout: String = "", stderr: String = "", terminal: Bool = false) {
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.terminal = terminal
    }
}

/// What creating a task needs (containerd's `runtime.CreateOpts`).
public struct TaskCreateOptions: Sendable, Equatable {
    public var id: String
    /// The OCI spec as stored in the container (its `value` is the config.json bytes).
    public var spec: TypedValue
    public var rootfs: [Mount]
    public var io: TaskIO
    /// Runtime name (`io.containerd.runc.v2`) or an absolute shim path (`runtime_path`).
    public var runtime: String
    public var runtimeOptions: TypedValue?
    public var taskOptions: TypedValue?

    public init(
        id: String, spec: TypedValue, rootfs: [Mount] = [], io: TaskIO = TaskIO(), runtime: String,
        runtimeOptions: TypedValue? = nil, taskOptions: TypedValue? = nil
    ) {
        self.id = id
        self.spec = spec
        self.rootfs = rootfs
        self.io = io
        self.runtime = runtime
        self.runtimeOptions = runtimeOptions
        self.taskOptions = taskOptions
    }
}

/// The task runtime (`io.containerd.runtime.v2.task`): tasks live in shims that outlive the daemon. Every call
/// is in the namespace of `RequestContext`; `execID` empty means the task's init process. Errors as containerd's:
/// NotFound for an unknown task or process, AlreadyExists, FailedPrecondition for a wrong state.
public protocol TaskManager: Sendable {
    /// Starts a shim and creates the task in it; returns the init pid.
    func create(_ options: TaskCreateOptions) async throws(BerthError) -> UInt32
    func exists(_ id: String) async -> Bool
    func start(_ id: String, execID: String) async throws(BerthError) -> UInt32
    /// Deletes the task, shuts its shim down and cleans up its bundle.
    func delete(_ id: String) async throws(BerthError) -> TaskExit
    func deleteProcess(_ id: String, execID: String) async throws(BerthError) -> TaskExit
    func state(_ id: String, execID: String) async throws(BerthError) -> ProcessState
    /// Every task of the namespace.
    func list() async throws(BerthError) -> [ProcessState]
    func kill(_ id: String, execID: String, signal: UInt32, all: Bool) async throws(BerthError)
    func exec(_ id: String, execID: String, spec: TypedValue?, io: TaskIO) async throws(BerthError)
    func resizePty(_ id: String, execID: String, width: UInt32, height: UInt32) async throws(BerthError)
    func closeIO(_ id: String, execID: String) async throws(BerthError)
    func pause(_ id: String) async throws(BerthError)
    func resume(_ id: String) async throws(BerthError)
    /// Pids of the task's processes, with optional runtime-specific info.
    func pids(_ id: String) async throws(BerthError) -> [(pid: UInt32, info: TypedValue?)]
    func update(_ id: String, resources: TypedValue?, annotations: [String: String]) async throws(BerthError)
    /// The shim's stats (cgroup metrics) as an `Any`.
    func stats(_ id: String) async throws(BerthError) -> TypedValue?
    /// Waits for the process to exit (accepted for a created, not yet started task).
    func wait(_ id: String, execID: String) async throws(BerthError) -> TaskExit
}
