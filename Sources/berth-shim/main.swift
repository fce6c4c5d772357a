// berth-shim: containerd's shim v2 for Berth (see Commands.swift for the command line, TaskService.swift for the
// task API). The long-lived shim serves ttrpc on the socket inherited as fd 3, reaps its children as a
// subreaper and publishes task events to TTRPC_ADDRESS.
#if canImport(Glibc)
import Glibc
#endif
import BerthTTRPC
import CBerthShim

// A FIFO or pipe whose reader left must not kill the shim (children get default dispositions back on spawn).
_ = signal(SIGPIPE, SIG_IGN)

func fail(_ message: String) -> Never {
    writeAll(2, Array((message + "\n").utf8))
    exit(1)
}

let flags: ShimFlags
do { flags = try ShimFlags.parse(Array(CommandLine.arguments.dropFirst())) } catch { fail("berth-shim: \(error.message)") }
if flags.namespace.isEmpty { fail("shim namespace cannot be empty") }
// Before anything starts a thread: the process forks here.
if flags.detach && flags.action.isEmpty {
    let detached = berth_shim_detach()
    if detached != 0 { fail("berth-shim: detach: \(String(cString: strerror(-detached)))") }
}

switch flags.action {
case "start":
    do { try ShimCommands.start(flags) } catch { fail("berth-shim start: \(error.message)") }
    exit(0)
case "delete":
    do { try ShimCommands.delete(flags) } catch { fail("berth-shim delete: \(error.message)") }
    exit(0)
case "":
    break
default:
    fail("berth-shim: unknown action \(flags.action)")
}

// The long-lived shim.
let bundle = currentDirectory()
ShimLog.open(bundle + "/log")
berth_shim_limit_malloc_arenas()
if berth_shim_set_subreaper() != 0 { ShimLog.write("cannot become a child subreaper") }
let config = ShimConfig(
    namespace: flags.namespace, id: flags.id, address: flags.address,
    ttrpcAddress: environment("TTRPC_ADDRESS") ?? "", bundle: bundle)
let publisher = EventPublisher(address: config.ttrpcAddress, namespace: config.namespace)
let server = TTRPCServer()

/// The socket the start command made for this shim, read now: the daemon may remove the bundle once Shutdown
/// was answered.
let socketPath: String? = readFile(bundle + "/address").flatMap { address in
    let text = String(decoding: address, as: UTF8.self)
    return text.hasPrefix("unix://") ? String(text.dropFirst(7)) : nil
}

/// Leaves after the Shutdown answer went out and queued events were sent (at most 5 s).
@Sendable func exitShim() {
    Task {
        try? await Task.sleep(for: .milliseconds(20))
        await publisher.flush(limit: .seconds(5))
        if let socketPath { unlink(socketPath) }
        exit(0)
    }
}

let service = TaskService(config: config, publisher: publisher, onShutdown: exitShim)
service.register(on: server)
Reaper.shared.start()
let listener: Int32 = 3
_ = fcntl(listener, F_SETFD, FD_CLOEXEC)
do { try server.serve(listeningSocket: listener) } catch { fail("berth-shim: serve: \(error.message)") }
ShimLog.write("serving \(flags.id) in namespace \(flags.namespace)")
while true { try? await Task.sleep(for: .seconds(3600)) }
