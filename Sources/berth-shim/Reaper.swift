// The shim's child reaper: one thread reaps every exited child with waitpid(-1) and hands each exit to whoever owns the pid. Runtime invocations (`runc create`, `start`, …) are
// spawned under the reaper's lock and registered in the same step, so their exits always reach their waiter;
// container and exec pids are claimed once known (from the pid file), and exits that came first are kept until then.
#if canImport(Glibc)
import Glibc
#endif
import BerthTTRPC
import CBerthShim
import Synchronization

/// One reaped exit: pid, status as containerd reports it (exit code, or 128 + signal) and when it was seen.
struct ExitRecord: Sendable {
    var pid: Int32
    var status: Int32
    var time: WallTime
}

final class Reaper: Sendable {
    static let shared = Reaper()

    private struct State {
        /// Spawned runtime commands: a waiter, or the exit when it came before the waiter.
        var commands: [Int32: CheckedContinuation<ExitRecord, Never>] = [:]
        var commandExits: [Int32: ExitRecord] = [:]
        var commandPids: Set<Int32> = []
        /// Claimed container and exec pids.
        var handlers: [Int32: @Sendable (ExitRecord) -> Void] = [:]
        /// Exits nobody claimed yet (a container that exited before its pid file was read, or orphans).
        var unclaimed: [Int32: ExitRecord] = [:]
        var unclaimedOrder: [Int32] = []
    }

    private let state = Mutex(State())

    /// Written to whenever a child is spawned, so a reaper that found no child wakes up.
    private let wake: (read: Int32, write: Int32)

    init() {
        wake = (try? makePipe()) ?? (-1, -1)
    }

    /// Starts the reaper thread: it blocks in waitpid(-1) (no signal handling, so no thread's signal mask
    /// matters), and sleeps on the wake pipe while the shim has no child.
    func start() {
        startThread { [self] in
            var byte: UInt8 = 0
            while true {
                var status: Int32 = 0
                let pid = waitpid(-1, &status, 0)
                if pid > 0 {
                    let signal = status & 0x7f
                    let code = signal == 0 ? (status >> 8) & 0xff : 128 + signal
                    dispatch(ExitRecord(pid: pid, status: code, time: .now()))
                } else if errno == ECHILD {
                    if wake.read < 0 || read(wake.read, &byte, 1) < 0 { usleep(20_000) }
                }
            }
        }
    }

    /// Tells the reaper thread a child now exists.
    private func childSpawned() {
        var byte: UInt8 = 1
        if wake.write >= 0 { _ = write(wake.write, &byte, 1) }
    }

    private func dispatch(_ exit: ExitRecord) {
        enum Target {
            case command(CheckedContinuation<ExitRecord, Never>)
            case handler(@Sendable (ExitRecord) -> Void)
            case none
        }
        let target: Target = state.withLock { state in
            if state.commandPids.contains(exit.pid) {
                if let waiter = state.commands.removeValue(forKey: exit.pid) {
                    state.commandPids.remove(exit.pid)
                    return .command(waiter)
                }
                state.commandExits[exit.pid] = exit
                return .none
            }
            if let handler = state.handlers.removeValue(forKey: exit.pid) { return .handler(handler) }
            state.unclaimed[exit.pid] = exit
            state.unclaimedOrder.append(exit.pid)
            if state.unclaimedOrder.count > 4096 {
                let old = state.unclaimedOrder.removeFirst()
                state.unclaimed.removeValue(forKey: old)
            }
            return .none
        }
        switch target {
        case .command(let waiter): waiter.resume(returning: exit)
        case .handler(let handler): handler(exit)
        case .none: break
        }
    }

    /// Spawns a runtime command and waits for its exit without racing the reaper.
    func run(_ argv: [String], fds: [Int32], cwd: String? = nil) async throws(TTRPCError) -> ExitRecord {
        let pid: Int32 = try state.withLock { (state: inout State) throws(TTRPCError) -> Int32 in
            let pid = try spawn(argv, fds: fds, cwd: cwd)
            state.commandPids.insert(pid)
            return pid
        }
        childSpawned()
        return await withCheckedContinuation { (continuation: CheckedContinuation<ExitRecord, Never>) in
            let early: ExitRecord? = state.withLock { state in
                if let exit = state.commandExits.removeValue(forKey: pid) {
                    state.commandPids.remove(pid)
                    return exit
                }
                state.commands[pid] = continuation
                return nil
            }
            if let early { continuation.resume(returning: early) }
        }
    }

    /// Hands the exit of `pid` to `handler`, now if it already exited.
    func claim(_ pid: Int32, _ handler: @escaping @Sendable (ExitRecord) -> Void) {
        let early: ExitRecord? = state.withLock { state in
            if let exit = state.unclaimed.removeValue(forKey: pid) {
                state.unclaimedOrder.removeAll { $0 == pid }
                return exit
            }
            state.handlers[pid] = handler
            return nil
        }
        if let early { handler(early) }
    }
}
