import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import BerthSpec
import Foundation
import GRPCCore
import SwiftProtobuf

/// Flags that shape a container's spec, shared by `run` (and reusable by a future `create`).
struct SpecFlags: ParsableArguments {
    @Option(name: [.customShort("e"), .long], help: "Set an environment variable (KEY=VALUE; KEY alone unsets).")
    var env: [String] = []
    @Option(help: "Add a mount: type=bind,src=/host,dst=/ctr,options=rbind:ro.") var mount: [String] = []
    @Flag(help: "Mount the container's root filesystem read-only.") var readOnly = false
    @Option(name: [.customShort("u"), .long], help: "User: name, uid, user:group or uid:gid.") var user: String?
    @Option(name: [.customShort("w"), .long], help: "Working directory inside the container.") var workdir: String?
    @Option(help: "Add a capability (CAP_...; ALL for every one).") var capAdd: [String] = []
    @Option(help: "Drop a capability (CAP_...; ALL for every one).") var capDrop: [String] = []
    @Flag(help: "All capabilities and devices, no seccomp, masked or read-only paths.") var privileged = false
    @Option(help: "Memory limit (bytes, or with k/m/g).") var memory: String?
    @Option(help: "CPU quota in CPUs (0.5 = half a CPU).") var cpus: Double?
    @Option(help: "Maximum number of processes.") var pidsLimit: Int64?
    @Option(help: "Network: none (a private namespace) or host.") var net: String = "none"
    @Option(help: "Hostname inside the container.") var hostname: String?
    @Flag(help: "Run without the default seccomp profile.") var noSeccomp = false
    @Option(help: "Annotation KEY=VALUE for the OCI spec.") var annotation: [String] = []

    func runOptions(args: [String], tty: Bool) throws -> RunOptions {
        var o = RunOptions()
        o.args = args
        o.env = env
        o.mounts = try mount.map { try RunOptions.parseMount($0) }
        o.readOnly = readOnly
        o.user = user
        o.cwd = workdir
        o.capAdd = capAdd.map(Self.capability)
        o.capDrop = capDrop.map(Self.capability)
        o.privileged = privileged
        o.memory = try memory.map { try RunOptions.parseBytes($0) }
        o.cpus = cpus
        o.pidsLimit = pidsLimit
        guard let network = NetworkMode(rawValue: net) else { throw ValidationError("--net must be none or host") }
        o.network = network
        o.hostname = hostname
        o.tty = tty
        o.seccomp = !noSeccomp
        o.annotations = Output.labels(annotation)
        return o
    }

    /// Accepts `sys_admin` or `SYS_ADMIN` for `CAP_SYS_ADMIN`.
    static func capability(_ name: String) -> String {
        let upper = name.uppercased()
        return upper == "ALL" || upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Create and start a container from an image, attached to its stdio.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Remove the container, its task and snapshot when it exits.") var rm = false
    @Flag(name: .shortAndLong, help: "Start the container and print its id without waiting.") var detach = false
    @Flag(name: .shortAndLong, help: "Allocate a terminal.") var tty = false
    @Flag(name: .shortAndLong, help: "Keep stdin open and forward it.") var interactive = false
    @Option(help: "Container id (random when absent).") var name: String?
    @Option(help: "Runtime name.") var runtime = "io.containerd.runc.v2"
    @Option(help: "Snapshotter (env CONTAINERD_SNAPSHOTTER; default overlayfs).") var snapshotter: String?
    @Option(help: "Container label KEY=VALUE.") var label: [String] = []
    @Option(help: "Directory for the stdio FIFOs.") var fifoDir = "/run/berth/fifo"
    @OptionGroup var flags: SpecFlags
    @Argument(help: "Image reference.") var image: String
    @Argument(parsing: .captureForPassthrough, help: "Command and arguments (default: the image's).")
    var command: [String] = []

    func validate() throws {
        if rm && detach { throw ValidationError("--rm and --detach cannot be used together") }
    }

    func run() async throws {
        let (args, global) = Passthrough.split(command, global: self.global)
        let options = try flags.runOptions(args: args, tty: tty)
        let id = name ?? String((0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16) }.joined().prefix(32))
        try Identifiers.validate(id)
        let flow = RunFlow(
            id: id, image: image, options: options, runtime: runtime,
            snapshotter: snapshotter ?? ProcessInfo.processInfo.environment["CONTAINERD_SNAPSHOTTER"] ?? "overlayfs",
            labels: Output.labels(label), fifoDir: fifoDir, rm: rm, detach: detach, interactive: interactive)
        let status = try await global.connect { c in try await flow.run(c) }
        if detach { print(id) }
        if status != 0 { throw ExitCode(Int32(bitPattern: status)) }
    }
}

/// Global options written before the command were hoisted behind it (Main); a passthrough argument list captures
/// them, so take them back off its end and apply them.
enum Passthrough {
    static func split(_ captured: [String], global: GlobalOptions) -> ([String], GlobalOptions) {
        let leading = leadingGlobals(Array(CommandLine.arguments.dropFirst()))
        guard !leading.isEmpty, captured.count >= leading.count, Array(captured.suffix(leading.count)) == leading,
            let parsed = try? GlobalOptions.parse(leading)
        else { return (captured, global) }
        return (Array(captured.dropLast(leading.count)), parsed)
    }

    /// The global options `GlobalOptions.hoisted` moves from the front of `args` to its end.
    static func leadingGlobals(_ args: [String]) -> [String] {
        let moved = GlobalOptions.hoisted(args)
        guard moved != args else { return [] }
        for k in 1..<max(args.count, 1) where Array(args.dropFirst(k)) + Array(args.prefix(k)) == moved {
            return Array(args.prefix(k))
        }
        return []
    }
}
