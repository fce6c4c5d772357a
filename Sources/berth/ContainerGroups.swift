import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import SwiftProtobuf

/// `berth containers ls|info|rm` (ctr's `containers`).
struct Containers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "containers", abstract: "Manage containers.", subcommands: [List.self, Info.self, RmCommand.self],
        aliases: ["container", "c"])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List containers.", aliases: ["list"])
        @OptionGroup var global: GlobalOptions
        @Flag(name: .shortAndLong, help: "Print only ids.") var quiet = false
        @Argument(help: "Filters, e.g. image==docker.io/library/busybox:latest.") var filters: [String] = []

        func run() async throws {
            let filters = self.filters
            let containers = try await global.connect { c in try await Listing.containers(c, filters) }
            if quiet { return containers.forEach { print($0.id) } }
            switch global.format {
            case .json:
                Output.json(containers.map {
                    ["id": $0.id, "image": $0.image, "runtime": $0.runtime.name, "labels": $0.labels] as [String: Any]
                })
            case .table:
                Output.table(["CONTAINER", "IMAGE", "RUNTIME"], containers.map {
                    [$0.id, $0.image.isEmpty ? "-" : $0.image, $0.runtime.name]
                })
            }
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a container's record and spec as JSON.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print only the OCI spec.") var spec = false
        @Argument(help: "Container id.") var id: String

        func run() async throws {
            let id = self.id
            let container = try await global.connect { c in
                var request = Containerd_Services_Containers_V1_GetContainerRequest()
                request.id = id
                return try await ContainersAPI.Client(wrapping: c.client).get(request, metadata: c.metadata).container
            }
            let specObject = (try? JSONSerialization.jsonObject(with: container.spec.value)) ?? [:]
            if spec { return Output.json(specObject) }
            Output.json([
                "ID": container.id, "Labels": container.labels, "Image": container.image,
                "Runtime": ["Name": container.runtime.name], "SnapshotKey": container.snapshotKey,
                "Snapshotter": container.snapshotter, "CreatedAt": container.createdAt.date.formatted(.iso8601),
                "UpdatedAt": container.updatedAt.date.formatted(.iso8601), "Spec": specObject,
            ] as [String: Any])
        }
    }
}

/// `berth tasks ls|ps|kill` (ctr's `tasks`).
struct Tasks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks", abstract: "Manage tasks.", subcommands: [List.self, Pids.self, KillCommand.self],
        aliases: ["task", "t"])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List tasks.", aliases: ["list"])
        @OptionGroup var global: GlobalOptions
        @Flag(name: .shortAndLong, help: "Print only ids.") var quiet = false

        func run() async throws {
            let tasks = try await global.connect { c in try await Listing.tasks(c) }
            if quiet { return tasks.forEach { print($0.containerID) } }
            switch global.format {
            case .json:
                Output.json(tasks.map {
                    ["id": $0.containerID, "pid": $0.pid, "status": Listing.status($0.status)] as [String: Any]
                })
            case .table:
                Output.table(["TASK", "PID", "STATUS"], tasks.map { [$0.containerID, String($0.pid), Listing.status($0.status)] })
            }
        }
    }

    struct Pids: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ps", abstract: "List a task's processes.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Container id.") var id: String

        func run() async throws {
            let id = self.id
            let processes = try await global.connect { c in
                var request = Containerd_Services_Tasks_V1_ListPidsRequest()
                request.containerID = id
                return try await TasksAPI.Client(wrapping: c.client).listPids(request, metadata: c.metadata).processes
            }
            switch global.format {
            case .json: Output.json(processes.map { ["pid": $0.pid] })
            case .table: Output.table(["PID", "INFO"], processes.map { [String($0.pid), $0.hasInfo ? $0.info.typeURL : "-"] })
            }
        }
    }
}

/// `berth stats`: one sample of each task's cgroup metrics (CPU, memory, pids).
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show tasks' resource usage.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container ids (all tasks when absent).") var ids: [String] = []

    func run() async throws {
        let filters = ids.map { "id==\($0)" }
        let metrics = try await global.connect { c in
            var request = Containerd_Services_Tasks_V1_MetricsRequest()
            request.filters = filters
            return try await TasksAPI.Client(wrapping: c.client).metrics(request, metadata: c.metadata).metrics
        }
        let rows = metrics.map { m -> [String: UInt64] in CgroupMetrics.decode(m.data) }
        switch global.format {
        case .json:
            Output.json(zip(metrics, rows).map { m, r in ["id": m.id, "type": m.data.typeURL, "metrics": r] as [String: Any] })
        case .table:
            Output.table(["ID", "CPU TIME", "MEMORY", "MEMORY LIMIT", "PIDS"], zip(metrics, rows).map { m, r in
                [
                    m.id, r["cpu_ns"].map { String(format: "%.3fs", Double($0) / 1e9) } ?? "-",
                    r["memory"].map { Output.bytes(Int64(clamping: $0)) } ?? "-",
                    r["memory_limit"].map { $0 >= UInt64(Int64.max) / 2 ? "none" : Output.bytes(Int64(clamping: $0)) } ?? "-",
                    r["pids"].map(String.init) ?? "-",
                ]
            })
        }
    }
}

/// Reads the few numbers `stats` shows from containerd's cgroups v1 or v2 `Metrics` messages, straight from the
/// protobuf wire format (their .proto files are not part of containerd's API).
enum CgroupMetrics {
    static func decode(_ any: Google_Protobuf_Any) -> [String: UInt64] {
        let top = fields(any.value)
        var out: [String: UInt64] = [:]
        if any.typeURL.hasSuffix("cgroups.v2.Metrics") {
            if let pids = top[1]?.first?.bytes { out["pids"] = fields(pids)[1]?.first?.varint }
            if let cpu = top[2]?.first?.bytes { out["cpu_ns"] = fields(cpu)[1]?.first?.varint.map { $0 * 1000 } }
            if let memory = top[4]?.first?.bytes {
                let m = fields(memory)
                out["memory"] = m[32]?.first?.varint
                out["memory_limit"] = m[33]?.first?.varint
            }
        } else {
            if let pids = top[2]?.first?.bytes { out["pids"] = fields(pids)[1]?.first?.varint }
            if let cpu = top[3]?.first?.bytes, let usage = fields(cpu)[1]?.first?.bytes {
                out["cpu_ns"] = fields(usage)[1]?.first?.varint
            }
            if let memory = top[4]?.first?.bytes, let usage = fields(memory)[33]?.first?.bytes {
                let u = fields(usage)
                out["memory"] = u[2]?.first?.varint
                out["memory_limit"] = u[1]?.first?.varint
            }
        }
        return out
    }

    enum Value {
        case varint(UInt64), bytes(Data)
        var varint: UInt64? { if case .varint(let v) = self { v } else { nil } }
        var bytes: Data? { if case .bytes(let b) = self { b } else { nil } }
    }

    /// Field number → values; unknown wire types end the walk.
    static func fields(_ data: Data) -> [Int: [Value]] {
        let bytes = [UInt8](data)
        var i = 0
        var out: [Int: [Value]] = [:]
        func varint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count, shift < 64 {
                let b = bytes[i]
                i += 1
                result |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return result }
                shift += 7
            }
            return nil
        }
        while i < bytes.count, let key = varint() {
            let field = Int(key >> 3)
            switch key & 7 {
            case 0:
                guard let v = varint() else { return out }
                out[field, default: []].append(.varint(v))
            case 2:
                guard let n = varint(), i + Int(n) <= bytes.count else { return out }
                out[field, default: []].append(.bytes(Data(bytes[i..<(i + Int(n))])))
                i += Int(n)
            case 1: i += 8
            case 5: i += 4
            default: return out
            }
        }
        return out
    }
}
