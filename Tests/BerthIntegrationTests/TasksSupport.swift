import BerthSHA256
import Foundation
import Testing

/// What the task tests share: a busybox rootfs, a daemon whose runtime runs Debian's containerd-shim-runc-v2,
/// and a way to run blocking commands off Swift's concurrency pool.
enum TaskTestSupport {
    static let shim = "/usr/bin/containerd-shim-runc-v2"
    /// Real containers need root, runc, the Go shim and busybox-static.
    static let available = getuid() == 0 && FileManager.default.isExecutableFile(atPath: shim)
        && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runc")
        && FileManager.default.isExecutableFile(atPath: "/bin/busybox")

    /// The daemon config giving `io.containerd.runc.v2` Debian's shim.
    static let runtimeConfig = runtimeConfig(shim: shim)

    /// The daemon config giving `io.containerd.runc.v2` the shim at `path`.
    static func runtimeConfig(shim path: String) -> String {
        """
        [plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.runc.v2"]
          shim = "\(path)"
        """
    }

    /// The shims the task tests run against: Debian's containerd-shim-runc-v2 and Berth's own.
    static let shims = [shim, binDirectory + "/berth-shim"]

    /// A one-layer busybox OCI archive (scripts/busybox-image.sh) named docker.io/library/busybox:latest.
    static func busyboxArchive(in directory: String) throws -> String {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path + "/scripts/busybox-image.sh"
        let out = directory + "/busybox.tar"
        let r = try execute("/bin/bash", [script, out], timeout: 60)
        guard r.succeeded else { throw DaemonFailed(log: "busybox-image.sh: \(r.stderr)") }
        return out
    }

    /// A busybox root file system (the static binary and its applet links) under `directory`.
    static func makeRootfs(in directory: String) throws -> String {
        let rootfs = directory + "/rootfs"
        let bin = rootfs + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        for dir in ["proc", "sys", "dev", "tmp", "etc"] {
            try FileManager.default.createDirectory(atPath: rootfs + "/" + dir, withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: bin + "/busybox")
        for applet in ["sh", "echo", "true", "false", "sleep", "cat", "ls", "ps", "id", "hostname", "printf", "seq"] {
            try FileManager.default.createSymbolicLink(atPath: "\(bin)/\(applet)", withDestinationPath: "busybox")
        }
        return rootfs
    }

    /// Runs blocking work on its own thread, so the test never holds one of the pool's few threads.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    /// `ctr` against `d` in `namespace`, run off the pool. One closure for every call: Swift 6.3.1 mixed up
    /// many near-identical inline closures of one async test (a `tasks rm` ran the body of a `tasks pause`).
    static func ctr(_ d: Daemon, _ namespace: String?, _ arguments: [String], timeout: Double = 30) async throws
        -> CommandResult
    {
        try await offPool { try d.ctr(arguments, namespace: namespace, timeout: timeout) }
    }

    /// Polls `condition` (off the pool) until it holds or `limit` seconds pass.
    static func eventually(_ limit: Double = 20, _ condition: @escaping @Sendable () throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(limit)
        while Date() < deadline {
            if try await offPool(condition) { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await offPool(condition)
    }

    /// `ctr tasks ls` as id → (pid, status).
    static func tasks(_ d: Daemon, namespace: String) throws -> [String: (pid: String, status: String)] {
        let r = try d.ctr(["tasks", "ls"], namespace: namespace)
        var out: [String: (String, String)] = [:]
        for line in r.stdout.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if f.count >= 3 { out[f[0]] = (f[1], f[2]) }
        }
        return out
    }

    /// sha256 of `text` in hex.
    static func sha256Hex(_ text: String) -> String { SHA256Small.hex(Array(text.utf8)) }

    /// Pids of shim processes started for this daemon (their command line names its socket).
    static func shimPids(_ d: Daemon) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let cmdline = String(decoding: data, as: UTF8.self)
            return (cmdline.contains("containerd-shim") || cmdline.contains("berth-shim")) && cmdline.contains(d.socket)
        }
    }

    /// Kills what a failed test left: shims of this daemon (SIGKILL), then runc state of the namespace.
    static func cleanup(_ d: Daemon, namespace: String) {
        for pid in shimPids(d) { kill(pid, SIGKILL) }
        if let ids = try? FileManager.default.contentsOfDirectory(atPath: "/run/containerd/runc/\(namespace)") {
            for id in ids { _ = try? execute("/usr/sbin/runc", ["--root", "/run/containerd/runc/\(namespace)", "delete", "--force", id]) }
        }
        removeNamespaceRemains(namespace)
    }

    /// Removes what a namespace leaves on the host once its last container is gone, as with containerd: the
    /// runtime's empty state root and the namespace's parent cgroup (`/<ns>`, since a task's is `/<ns>/<id>`) in
    /// each hierarchy. Only empty directories go.
    static func removeNamespaceRemains(_ namespace: String) {
        rmdir("/run/containerd/runc/\(namespace)")
        for controller in (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
            rmdir("/sys/fs/cgroup/\(controller)/\(namespace)")
        }
        rmdir("/sys/fs/cgroup/\(namespace)")
    }
}
