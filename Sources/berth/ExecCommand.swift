import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import BerthSpec
import Foundation
import SwiftProtobuf

/// `berth exec`: runs another process in a running container, attached to this terminal or stdio.
struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec", abstract: "Run a command in a running container.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Allocate a terminal.") var tty = false
    @Flag(name: .shortAndLong, help: "Keep stdin open and forward it.") var interactive = false
    @Option(help: "Exec id (random when absent).") var execID: String?
    @Option(name: [.customShort("e"), .long], help: "Set an environment variable.") var env: [String] = []
    @Option(name: [.customShort("u"), .long], help: "User as uid[:gid].") var user: String?
    @Option(name: [.customShort("w"), .long], help: "Working directory.") var workdir: String?
    @Option(help: "Directory for the stdio FIFOs.") var fifoDir = "/run/berth/fifo"
    @Argument(help: "Container id.") var container: String
    @Argument(parsing: .captureForPassthrough, help: "Command and arguments.") var command: [String] = []

    func run() async throws {
        let (args, global) = Passthrough.split(command, global: self.global)
        guard !args.isEmpty else { throw ValidationError("exec needs a command") }
        let execID = self.execID ?? "exec-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let (id, tty, interactive, env, user, workdir, fifoDir) =
            (container, self.tty, self.interactive, self.env, self.user, self.workdir, self.fifoDir)
        let status = try await global.connect { c -> UInt32 in
            var get = Containerd_Services_Containers_V1_GetContainerRequest()
            get.id = id
            let container = try await ContainersAPI.Client(wrapping: c.client).get(get, metadata: c.metadata).container
            let spec = try JSONDecoder().decode(Spec.self, from: container.spec.value)
            var process = spec.process ?? Process()
            process.args = args
            process.terminal = tty
            process.consoleSize = tty ? Terminal.size().map { Box(width: UInt($0.width), height: UInt($0.height)) } : nil
            if tty { process.env = SpecBuilder.mergeEnv(process.env ?? [], ["TERM=xterm"]) }
            if !env.isEmpty { process.env = SpecBuilder.mergeEnv(process.env ?? [], env) }
            if let workdir { process.cwd = workdir }
            if let user {
                let parts = user.split(separator: ":").compactMap { UInt32($0) }
                guard !parts.isEmpty, parts.count <= 2 else { throw ValidationError("exec --user takes uid[:gid]") }
                process.user.uid = parts[0]
                process.user.gid = parts.count > 1 ? parts[1] : 0
                process.user.additionalGids = nil
            }
            let io = try TaskIO(root: fifoDir, id: execID, stdin: interactive, terminal: tty)
            defer { io.remove() }
            var exec = Containerd_Services_Tasks_V1_ExecProcessRequest()
            (exec.containerID, exec.execID, exec.terminal) = (id, execID, tty)
            (exec.stdin, exec.stdout, exec.stderr) = (io.stdin, io.stdout, io.stderr)
            exec.spec.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
            exec.spec.value = try JSONEncoder().encode(process)
            let tasks = TasksAPI.Client(wrapping: c.client)
            io.start(onStdinClosed: { ContainerTask.closeStdin(c, id: id, execID: execID) })
            do {
                _ = try await tasks.exec(exec, metadata: c.metadata)
            } catch {
                io.cancel()
                throw error
            }
            let status = try await ContainerTask.attach(c, id: id, execID: execID, terminal: tty, io: io)
            var delete = Containerd_Services_Tasks_V1_DeleteProcessRequest()
            (delete.containerID, delete.execID) = (id, execID)
            _ = try await tasks.deleteProcess(delete, metadata: c.metadata)
            return status
        }
        if status != 0 { throw ExitCode(Int32(bitPattern: status)) }
    }
}
