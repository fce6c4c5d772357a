import ArgumentParser
import BerthCore
import BerthGRPC
import Foundation

/// Entry point: global options may come before the subcommand, as with ctr (`berth --address S namespaces ls`).
@main
enum Main {
    static func main() async {
        await Berth.main(GlobalOptions.hoisted(Array(CommandLine.arguments.dropFirst())))
    }
}

struct Berth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth",
        abstract: "Command-line client for berthd (and any daemon serving containerd's API).",
        subcommands: [
            VersionCommand.self, Plugins.self, Namespaces.self, Events.self, Content.self, Leases.self, Images.self,
            Snapshots.self, RunCommand.self, ExecCommand.self, PsCommand.self, KillCommand.self, RmCommand.self,
            PauseCommand.self, ResumeCommand.self, StatsCommand.self, Containers.self, Tasks.self,
            PullCommand.self, PushCommand.self, ImportCommand.self, ExportCommand.self,
        ])
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: [.customShort("a"), .long], help: "berthd's socket (env BERTH_ADDRESS; default /run/berth/berthd.sock).")
    var address: String?

    @Option(name: [.short, .long], help: "Namespace for the request (env BERTH_NAMESPACE; default \"default\").")
    var namespace: String?

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    /// Moves global options written before the subcommand to the end, where the leaf command parses them.
    static func hoisted(_ arguments: [String]) -> [String] {
        let withValue: Set = ["-a", "--address", "-n", "--namespace", "--format"]
        var leading: [String] = []
        var rest = arguments[...]
        while let first = rest.first, first.hasPrefix("-") {
            let name = String(first.split(separator: "=", maxSplits: 1)[0])
            guard withValue.contains(name) else { break }
            leading.append(first)
            rest = rest.dropFirst()
            if !first.contains("="), let value = rest.first {
                leading.append(value)
                rest = rest.dropFirst()
            }
        }
        return Array(rest) + leading
    }

    var resolvedAddress: String {
        address ?? ProcessInfo.processInfo.environment["BERTH_ADDRESS"] ?? "/run/berth/berthd.sock"
    }

    var resolvedNamespace: String {
        namespace ?? ProcessInfo.processInfo.environment["BERTH_NAMESPACE"] ?? "default"
    }

    /// Connects, runs `body`, and turns any failure into one clear line on stderr and a non-zero exit.
    func connect<T: Sendable>(_ body: @Sendable (BerthConnection) async throws -> T) async throws -> T {
        do {
            return try await BerthConnection.with(address: resolvedAddress, namespace: resolvedNamespace, body)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            Console.err("berth: \(BerthError.from(error))\n")
            throw ExitCode.failure
        }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table, json
}

/// Output helpers shared by the commands: aligned columns or JSON.
enum Output {
    static func table(_ header: [String], _ rows: [[String]]) {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        for row in all {
            let cells = row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0)
            }
            print(cells.joined())
        }
    }

    static func json(_ value: Any) {
        guard JSONSerialization.isValidJSONObject(value),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys])
        else { return }
        print(String(decoding: data, as: UTF8.self))
    }

    /// Parses `KEY=VALUE` arguments; a bare `KEY` means an empty value (which removes a label).
    static func labels(_ arguments: [String]) -> [String: String] {
        var labels: [String: String] = [:]
        for argument in arguments {
            let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            labels[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return labels
    }

    /// Human sizes as ctr prints them (1.0 MiB).
    static func bytes(_ size: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(size)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(size) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func age(_ date: Date) -> String {
        let seconds = Int(Date().timeIntervalSince(date))
        if seconds < 60 { return "\(seconds) seconds" }
        if seconds < 3600 { return "\(seconds / 60) minutes" }
        if seconds < 86400 { return "\(seconds / 3600) hours" }
        return "\(seconds / 86400) days"
    }

    static func labelText(_ labels: [String: String]) -> String {
        labels.isEmpty ? "" : labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }
}
