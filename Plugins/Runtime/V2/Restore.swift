import BerthAPI
import BerthCore
import Foundation

/// Restart recovery (containerd's `loadExistingTasks`): every bundle under state is reconnected to its live shim
/// or cleaned up, each in its own task so a stuck shim never holds up start-up; requests for a key being restored
/// wait for it.
extension ShimManager {
    /// Starts one restore per bundle and returns at once.
    func restore() {
        let fm = FileManager.default
        for namespace in (try? fm.contentsOfDirectory(atPath: state)) ?? [] where !namespace.hasPrefix(".") {
            let nsPath = "\(state)/\(namespace)"
            guard Mounting.isDirectory(nsPath) else { continue }
            for id in (try? fm.contentsOfDirectory(atPath: nsPath)) ?? [] where !id.hasPrefix(".") {
                guard Mounting.isDirectory("\(nsPath)/\(id)") else { continue }
                let key = Self.key(namespace, id)
                restoring[key] = Task { [self] in
                    await load(namespace: namespace, id: id)
                    finishRestore(key)
                }
            }
        }
        // Work directories of tasks that no longer have a bundle.
        for namespace in (try? fm.contentsOfDirectory(atPath: root)) ?? [] where !namespace.hasPrefix(".") {
            for id in (try? fm.contentsOfDirectory(atPath: "\(root)/\(namespace)")) ?? []
            where restoring[Self.key(namespace, id)] == nil {
                try? fm.removeItem(atPath: "\(root)/\(namespace)/\(id)")
            }
        }
    }

    func finishRestore(_ key: String) { restoring.removeValue(forKey: key) }

    /// Reconnects one bundle's shim; on failure runs the shim's `delete`, unmounts and removes the bundle, and
    /// publishes the task's exit. A live shim whose task exited while the daemon was down gets its `/tasks/exit`
    /// published now; Wait answers from the shim as before.
    func load(namespace: String, id: String) async {
        let bundle = Bundle(root: root, state: state, namespace: namespace, id: id)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: bundle.path)) ?? []
        if entries.isEmpty {
            bundle.delete()
            return
        }
        let binary = bundle.read("shim-binary-path")?.trimmingCharacters(in: .whitespacesAndNewlines)
            ?? (try? shimBinary(for: "io.containerd.runc.v2")) ?? ""
        logs.attach(bundle)
        var shim: ShimTask?
        if let address = bundle.shimAddress { shim = try? connect(bundle: bundle, binary: binary, address: address) }
        if let shim, (try? await shim.connect(timeout: timeouts.load)) != nil {
            let state: ProcessState?
            do {
                state = try await shim.state(execID: "", timeout: timeouts.state)
            } catch where error.code == .notFound {
                // A shim started for a task whose Create never reached it (the daemon died in between): stop it
                // and clean up, as containerd's "cleaning leaked shim process". There was no task to report.
                logger.info("cleaning leaked shim process", metadata: ["id": "\(id)", "namespace": "\(namespace)"])
                await shutDownAndRemove(shim)
                return
            } catch {
                state = nil
            }
            tasks[Self.key(namespace, id)] = shim
            logger.debug("reconnected shim", metadata: ["id": "\(id)", "namespace": "\(namespace)"])
            if let state, state.status == .stopped {
                let exit = TaskExit(pid: state.pid, status: state.exitStatus, exitedAt: state.exitedAt ?? Date())
                await publishExit(namespace: namespace, id: id, exit: exit, delete: false)
            }
            return
        }
        logger.warning("cleaning up dead shim", metadata: ["id": "\(id)", "namespace": "\(namespace)"])
        shim?.release()
        let exit = await removeShim(binary: binary, bundle: bundle) ?? TaskExit(pid: 0, status: 255, exitedAt: Date())
        await publishExit(namespace: namespace, id: id, exit: exit, delete: true)
    }
}
