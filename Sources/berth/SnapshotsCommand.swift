import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import SwiftProtobuf

typealias SnapshotsAPI = Containerd_Services_Snapshots_V1_Snapshots

/// `--snapshotter`, shared by every snapshots subcommand. Absent, the daemon's default applies: the `default`
/// export of `io.containerd.grpc.v1.snapshots` (config `[plugins."io.containerd.grpc.v1.snapshots"] default`).
struct SnapshotterOption: ParsableArguments {
    @Option(help: "Snapshotter (default: the daemon's configured default, else overlayfs).")
    var snapshotter: String?

    func resolve(_ c: BerthConnection) async throws -> String {
        if let snapshotter, !snapshotter.isEmpty { return snapshotter }
        var request = Containerd_Services_Introspection_V1_PluginsRequest()
        request.filters = ["type==io.containerd.grpc.v1,id==snapshots"]
        let plugins = try await Containerd_Services_Introspection_V1_Introspection.Client(wrapping: c.client)
            .plugins(request, metadata: c.metadata).plugins
        return plugins.first?.exports["default"].flatMap { $0.isEmpty ? nil : $0 } ?? "overlayfs"
    }
}

/// `berth snapshots …`, with ctr's subcommands and output.
struct Snapshots: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshots", abstract: "Manage snapshots.",
        subcommands: [
            List.self, Tree.self, Prepare.self, View.self, Mounts.self, Commit.self, Remove.self, Usage.self,
            Info.self, Label.self,
        ], aliases: ["snapshot"])

    /// ctr's `printMounts`: one `mount` command line per mount.
    static func printMounts(_ target: String, _ mounts: [Containerd_Types_Mount]) {
        for m in mounts {
            print("mount -t \(m.type) \(m.source) \(target) -o \(m.options.joined(separator: ","))")
        }
    }

    static func kind(_ kind: Containerd_Services_Snapshots_V1_Kind) -> String {
        switch kind {
        case .view: "View"
        case .active: "Active"
        case .committed: "Committed"
        default: "Unknown"
        }
    }

    static func list(_ c: BerthConnection, _ snapshotter: String, _ filters: [String] = []) async throws
        -> [Containerd_Services_Snapshots_V1_Info]
    {
        var request = Containerd_Services_Snapshots_V1_ListSnapshotsRequest()
        request.snapshotter = snapshotter
        request.filters = filters
        return try await SnapshotsAPI.Client(wrapping: c.client).list(request, metadata: c.metadata) { response in
            var all: [Containerd_Services_Snapshots_V1_Info] = []
            for try await batch in response.messages { all += batch.info }
            return all
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List snapshots.", aliases: ["list"])
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Argument(help: "Filters.") var filters: [String] = []

        func run() async throws {
            let (option, filters) = (self.option, self.filters)
            let infos = try await global.connect { c in try await Snapshots.list(c, try await option.resolve(c), filters) }
            switch global.format {
            case .json:
                Output.json(infos.map { ["key": $0.name, "parent": $0.parent, "kind": Snapshots.kind($0.kind), "labels": $0.labels] as [String: Any] })
            case .table:
                Output.table(["KEY", "PARENT", "KIND"], infos.map { [$0.name, $0.parent, Snapshots.kind($0.kind)] })
            }
        }
    }

    struct Tree: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the snapshots as a tree of parents.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption

        func run() async throws {
            let option = self.option
            let infos = try await global.connect { c in try await Snapshots.list(c, try await option.resolve(c)) }
            let names = Set(infos.map(\.name))
            var children: [String: [String]] = [:]
            for info in infos { children[info.parent, default: []].append(info.name) }
            func show(_ name: String, _ level: Int) {
                let prefix = String(repeating: "  ", count: level) + (level > 0 ? "\\_" : "")
                print("\(prefix) \(name)")
                for child in children[name] ?? [] { show(child, level + 1) }
            }
            // Roots: no parent, or a parent this listing does not contain.
            for info in infos where info.parent.isEmpty || !names.contains(info.parent) { show(info.name, 0) }
        }
    }

    struct Prepare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prepare an active snapshot (optionally on a parent).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Option(help: "Mount target to print mounts for.") var target: String?
        @Flag(help: "Print the mount commands.") var mounts = false
        @Argument(help: "Key.") var key: String
        @Argument(help: "Parent (a committed snapshot).") var parent: String = ""

        func run() async throws {
            let (option, key, parent) = (self.option, self.key, self.parent)
            let result = try await global.connect { c in
                var request = Containerd_Services_Snapshots_V1_PrepareSnapshotRequest()
                request.snapshotter = try await option.resolve(c)
                request.key = key
                request.parent = parent
                request.labels = [GCLabels.root: Date().formatted(.iso8601)]
                return try await SnapshotsAPI.Client(wrapping: c.client).prepare(request, metadata: c.metadata).mounts
            }
            if mounts || target != nil { Snapshots.printMounts(target ?? key, result) }
        }
    }

    struct View: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a read-only view of a committed snapshot.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Option(help: "Mount target to print mounts for.") var target: String?
        @Flag(help: "Print the mount commands.") var mounts = false
        @Argument(help: "Key.") var key: String
        @Argument(help: "Parent (a committed snapshot).") var parent: String = ""

        func run() async throws {
            let (option, key, parent) = (self.option, self.key, self.parent)
            let result = try await global.connect { c in
                var request = Containerd_Services_Snapshots_V1_ViewSnapshotRequest()
                request.snapshotter = try await option.resolve(c)
                request.key = key
                request.parent = parent
                request.labels = [GCLabels.root: Date().formatted(.iso8601)]
                return try await SnapshotsAPI.Client(wrapping: c.client).view(request, metadata: c.metadata).mounts
            }
            if mounts || target != nil { Snapshots.printMounts(target ?? key, result) }
        }
    }

    struct Mounts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the mount commands for a snapshot.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Argument(help: "Mount target.") var target: String
        @Argument(help: "Key.") var key: String

        func run() async throws {
            let (option, key) = (self.option, self.key)
            let result = try await global.connect { c in
                var request = Containerd_Services_Snapshots_V1_MountsRequest()
                request.snapshotter = try await option.resolve(c)
                request.key = key
                return try await SnapshotsAPI.Client(wrapping: c.client).mounts(request, metadata: c.metadata).mounts
            }
            Snapshots.printMounts(target, result)
        }
    }

    struct Commit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Commit an active snapshot under a name.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Argument(help: "Name of the committed snapshot.") var name: String
        @Argument(help: "Key of the active snapshot.") var key: String

        func run() async throws {
            let (option, name, key) = (self.option, self.name, self.key)
            try await global.connect { c in
                var request = Containerd_Services_Snapshots_V1_CommitSnapshotRequest()
                request.snapshotter = try await option.resolve(c)
                request.name = name
                request.key = key
                request.labels = [GCLabels.root: Date().formatted(.iso8601)]
                _ = try await SnapshotsAPI.Client(wrapping: c.client).commit(request, metadata: c.metadata)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove snapshots.", aliases: ["remove"])
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Argument(help: "Keys.") var keys: [String]

        func run() async throws {
            let (option, keys) = (self.option, self.keys)
            try await global.connect { c in
                let snapshotter = try await option.resolve(c)
                for key in keys {
                    var request = Containerd_Services_Snapshots_V1_RemoveSnapshotRequest()
                    request.snapshotter = snapshotter
                    request.key = key
                    _ = try await SnapshotsAPI.Client(wrapping: c.client).remove(request, metadata: c.metadata)
                }
            }
        }
    }

    struct Usage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disk usage of snapshots (all, or the keys given).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Flag(name: .customShort("b"), help: "Sizes in bytes.") var bytes = false
        @Argument(help: "Keys.") var keys: [String] = []

        func run() async throws {
            let (option, keys) = (self.option, self.keys)
            let usages = try await global.connect { c in
                let snapshotter = try await option.resolve(c)
                let names = keys.isEmpty ? try await Snapshots.list(c, snapshotter).map(\.name) : keys
                var usages: [(String, Int64, Int64)] = []
                for name in names {
                    var request = Containerd_Services_Snapshots_V1_UsageRequest()
                    request.snapshotter = snapshotter
                    request.key = name
                    let usage = try await SnapshotsAPI.Client(wrapping: c.client).usage(request, metadata: c.metadata)
                    usages.append((name, usage.size, usage.inodes))
                }
                return usages
            }
            switch global.format {
            case .json: Output.json(usages.map { ["key": $0.0, "size": $0.1, "inodes": $0.2] as [String: Any] })
            case .table:
                Output.table(["KEY", "SIZE", "INODES"], usages.map {
                    [$0.0, bytes ? String($0.1) : Output.bytes($0.1), String($0.2)]
                })
            }
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a snapshot's info as JSON.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Argument(help: "Key.") var key: String

        func run() async throws {
            let (option, key) = (self.option, self.key)
            let info = try await global.connect { c in
                var request = Containerd_Services_Snapshots_V1_StatSnapshotRequest()
                request.snapshotter = try await option.resolve(c)
                request.key = key
                return try await SnapshotsAPI.Client(wrapping: c.client).stat(request, metadata: c.metadata).info
            }
            var out: [String: Any] = [
                "Kind": Snapshots.kind(info.kind), "Name": info.name,
                "Created": info.createdAt.date.formatted(.iso8601), "Updated": info.updatedAt.date.formatted(.iso8601),
            ]
            if !info.parent.isEmpty { out["Parent"] = info.parent }
            if !info.labels.isEmpty { out["Labels"] = info.labels }
            Output.json(out)
        }
    }

    struct Label: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set labels on a snapshot (KEY= removes KEY).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var option: SnapshotterOption
        @Argument(help: "Key.") var key: String
        @Argument(help: "Labels as KEY=VALUE.") var labels: [String] = []

        func run() async throws {
            let (option, key, labels) = (self.option, self.key, Output.labels(self.labels))
            let info = try await global.connect { c in
                var request = Containerd_Services_Snapshots_V1_UpdateSnapshotRequest()
                request.snapshotter = try await option.resolve(c)
                request.info.name = key
                request.info.labels = labels.filter { !$0.value.isEmpty }
                request.updateMask.paths = labels.keys.sorted().map { "labels.\($0)" }
                return try await SnapshotsAPI.Client(wrapping: c.client).update(request, metadata: c.metadata).info
            }
            print(Output.labelText(info.labels))
        }
    }
}
