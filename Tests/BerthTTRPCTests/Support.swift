import BerthTestSupport
import BerthTTRPC
import Foundation
import Glibc

/// A fresh temporary directory, removed by `cleanup()`.
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ prefix: String = "ttrpc") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.flatMap { mkdtemp($0) }.map { String(cString: $0) }
        }
        guard let made else { throw TTRPCError(.internal, "mkdtemp failed: \(errno)") }
        path = made
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// A raw connection for sending hand-made frames (bad stream ids, oversized lengths) to a server.
final class RawConnection {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else { throw TTRPCError(.unavailable, "connect \(path): \(errno)") }
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Sends a frame header declaring `length` bytes, then `data`.
    func sendFrame(streamID: UInt32, type: UInt8, flags: UInt8 = 0, length: Int? = nil, data: [UInt8]) {
        var frame: [UInt8] = []
        TTRPCFrame.Header(length: UInt32(length ?? data.count), streamID: streamID, type: type, flags: flags)
            .encode(into: &frame)
        write(frame + data)
    }

    func readExactly(_ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer[done...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            done += n
        }
        return buffer
    }

    /// Reads one frame.
    func readFrame() -> (TTRPCFrame.Header, [UInt8])? {
        guard let head = readExactly(TTRPCFrame.headerLength) else { return nil }
        let header = TTRPCFrame.Header(decoding: head)
        guard let data = readExactly(Int(header.length)) else { return nil }
        return (header, data)
    }
}

/// Runs a program to completion with posix_spawn + waitpid (killed after `limit` seconds); stdout and stderr go to
/// `outputPath`, stdin is /dev/null. Not Foundation's Process: it watches its child through a socket the child
/// inherits, and the shim's `start` hands every inherited descriptor on to the daemon it leaves behind, so the
/// Process would look alive for as long as the shim runs.
func spawnAndWait(
    _ path: String, _ arguments: [String], cwd: String? = nil, environment: [String: String] = [:],
    outputPath: String, limit: Double = 60
) throws -> Int32 {
    var argv = [path] + arguments
    var program = path
    if let cwd {
        program = "/bin/sh"
        argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", cwd] + argv
    }
    let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = env.map { strdup($0) } + [nil]
    defer {
        for pointer in cArgs { free(pointer) }
        for pointer in cEnv { free(pointer) }
    }
    var pid: pid_t = 0
    let result = posix_spawn(&pid, program, &actions, nil, cArgs, cEnv)
    guard result == 0 else { throw TTRPCError(.internal, "posix_spawn \(program): \(result)") }
    let deadline = Date().addingTimeInterval(limit)
    var status: Int32 = 0
    while waitpid(pid, &status, WNOHANG) == 0 {
        if Date() > deadline { kill(pid, SIGKILL) }
        usleep(5_000)
    }
    return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}
