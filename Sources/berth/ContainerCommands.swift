import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import SwiftProtobuf

/// Listing helpers shared by `ps`, `containers ls` and `tasks ls`.
enum Listing {
    static func containers(_ c: BerthConnection, _ filters: [String] = []) async throws
        -> [Containerd_Services_Containers_V1_Container]
    {
        var request = Containerd_Services_Containers_V1_ListContainersRequest()
        request.filters = filters
        return try await ContainersAPI.Client(wrapping: c.client).list(request, metadata: c.metadata).containers
    }

    static func tasks(_ c: BerthConnection) async throws -> [Containerd_V1_Types_Process] {
        // containerd fills `id` with the container id and leaves `container_id` empty here.
        try await TasksAPI.Client(wrapping: c.client).list(
            Containerd_Services_Tasks_V1_ListTasksRequest(), metadata: c.metadata
        ).tasks.map { task in
            var task = task
            if task.containerID.isEmpty { task.containerID = task.id }
            return task
        }
    }

    static func status(_ s: Containerd_V1_Types_Status) -> String {
        switch s {
        case .created: "CREATED"
        case .running: "RUNNING"
        case .stopped: "STOPPED"
        case .paused: "PAUSED"
        case .pausing: "PAUSING"
        default: "UNKNOWN"
        }
    }

    /// The command line a container's spec runs.
    static func command(_ container: Containerd_Services_Containers_V1_Container) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: container.spec.value) as? [String: Any],
            let args = (object["process"] as? [String: Any])?["args"] as? [String]
        else { return "" }
        return args.joined(separator: " ")
    }
}

/// `berth ps`: containers with their task's status (running ones only unless `-a`).
struct PsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ps", abstract: "List containers and their tasks.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Show all containers, not only running ones.") var all = false
    @Flag(name: .shortAndLong, help: "Print only ids.") var quiet = false

    func run() async throws {
        let (containers, tasks) = try await global.connect { c in
            (try await Listing.containers(c), try await Listing.tasks(c))
        }
        let byID = Dictionary(tasks.map { ($0.containerID, $0) }) { a, _ in a }
        let shown = containers.filter { all || byID[$0.id]?.status == .running || byID[$0.id]?.status == .paused }
        if quiet { return shown.forEach { print($0.id) } }
        let rows = shown.map { container -> [String] in
            let task = byID[container.id]
            return [
                container.id, container.image, Listing.command(container),
                task.map { Listing.status($0.status) } ?? "NO TASK", task.map { String($0.pid) } ?? "-",
            ]
        }
        switch global.format {
        case .json:
            Output.json(rows.map { ["id": $0[0], "image": $0[1], "command": $0[2], "status": $0[3], "pid": $0[4]] })
        case .table: Output.table(["CONTAINER", "IMAGE", "COMMAND", "STATUS", "PID"], rows)
        }
    }
}

/// `berth kill`: signals a container's task (or one exec process).
struct KillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kill", abstract: "Signal a container's task.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Signal name or number.") var signal = "SIGTERM"
    @Flag(help: "Signal every process in the container.") var all = false
    @Option(help: "Signal this exec process instead of the task.") var execID = ""
    @Argument(help: "Container ids.") var ids: [String]

    func run() async throws {
        let number = try ContainerTask.signalNumber(signal)
        let (ids, all, execID) = (self.ids, self.all, self.execID)
        try await global.connect { c in
            for id in ids {
                var request = Containerd_Services_Tasks_V1_KillRequest()
                (request.containerID, request.execID, request.signal, request.all) = (id, execID, number, all)
                _ = try await TasksAPI.Client(wrapping: c.client).kill(request, metadata: c.metadata)
            }
        }
    }
}

/// `berth rm`: deletes containers with their (stopped) task and snapshot; `-f` kills a running task first.
struct RmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove containers, their tasks and snapshots.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Kill a running task first.") var force = false
    @Argument(help: "Container ids.") var ids: [String]

    func run() async throws {
        let (ids, force) = (self.ids, self.force)
        try await global.connect { c in
            for id in ids {
                try await ContainerCleanup.removeChecked(c, id: id, force: force)
                print(id)
            }
        }
    }
}

/// `berth pause` and `berth resume`: freeze and thaw a task's processes.
struct PauseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause a container's task.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container ids.") var ids: [String]

    func run() async throws {
        let ids = self.ids
        try await global.connect { c in
            for id in ids {
                var request = Containerd_Services_Tasks_V1_PauseTaskRequest()
                request.containerID = id
                _ = try await TasksAPI.Client(wrapping: c.client).pause(request, metadata: c.metadata)
            }
        }
    }
}

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused task.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container ids.") var ids: [String]

    func run() async throws {
        let ids = self.ids
        try await global.connect { c in
            for id in ids {
                var request = Containerd_Services_Tasks_V1_ResumeTaskRequest()
                request.containerID = id
                _ = try await TasksAPI.Client(wrapping: c.client).resume(request, metadata: c.metadata)
            }
        }
    }
}
