import BerthCore
import Foundation
import Glibc

/// Debian's containerd 1.6 on its own root, state and sockets in a temp dir (CRI disabled): the reference daemon the
/// tests check Berth's fixtures and clients against. `stop()` always cleans up (process, mounts, directory).
public final class TestContainerd: @unchecked Sendable {
    public let directory: String
    /// The gRPC socket (`ctr --address`).
    public let socket: String
    public let process: TestProcess

    /// Starts containerd and waits (blocking this thread, up to 20 s) until its socket accepts connections. For code
    /// already off the cooperative pool; async code uses `start(prefix:)`.
    public init(prefix: String = "berth-ctd") throws {
        directory = "/tmp/\(prefix)-\(UUID().uuidString.prefix(8))"
        socket = directory + "/containerd.sock"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try """
            version = 2
            root = "\(directory)/root"
            state = "\(directory)/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "\(socket)"
            [ttrpc]
              address = "\(socket).ttrpc"
            """.write(toFile: directory + "/config.toml", atomically: true, encoding: .utf8)
        do {
            process = try TestProcess("/usr/bin/containerd", ["--config", directory + "/config.toml"], outputPath: nil)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        do {
            let deadline = Date().addingTimeInterval(20)
            while !Self.accepts(socket: socket) {
                guard Date() < deadline, process.isRunning else { throw TestRegistryError("containerd did not start") }
                usleep(20_000)
            }
        } catch {
            stop()
            throw error
        }
    }

    /// Starts containerd from async code: the wait runs on a GCD thread, not on the cooperative pool.
    public static func start(prefix: String = "berth-ctd") async throws -> TestContainerd {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try TestContainerd(prefix: prefix) }) }
        }
    }

    /// Debian's `ctr` against this containerd in `namespace`.
    public func ctr(_ arguments: [String], namespace: String = "default", timeout: Double = 120) async throws
        -> TestCommand.Result
    {
        try await TestCommand.run(
            "/usr/bin/ctr", ["--address", socket, "--namespace", namespace] + arguments, timeout: timeout)
    }

    /// SIGTERM (SIGKILL after 10 s), then lazily unmounts whatever is left below the directory (snapshot mounts of
    /// a failed test) and removes it. Blocks; safe to call twice.
    public func stop() {
        if process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        let mounts = (try? FileSystem.read("/proc/self/mountinfo")) ?? ""
        let points = mounts.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasPrefix(directory + "/") ? String(fields[4]) : nil
        }
        for point in points.sorted(by: { $0.count > $1.count }) { umount2(point, Int32(MNT_DETACH)) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Whether something accepts connections on the unix socket at `path` (a stale socket file does not count).
    public static func accepts(socket path: String) -> Bool {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[i] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }
}
