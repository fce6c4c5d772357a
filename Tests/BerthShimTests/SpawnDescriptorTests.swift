import CBerthShim
import Foundation
import Glibc
import Testing

/// berth-shim's spawn gives a runtime command the descriptors it is handed as its 0, 1 and 2 wherever they sit
/// in the shim. With 20 execs at once the shim's own descriptors pass 100; the copies once went through the fixed
/// spot 100 + i, and a source sitting there was overwritten first: a process got another's pipe end as stdout
/// and its output was lost (`sh: write error: Bad file descriptor`).
@Suite(.serialized) struct SpawnDescriptorTests {
    @Test(arguments: [[101, 100, 102], [102, 100, 101], [100, 101, 102], [300, 100, 200]] as [[Int32]])
    func eachSourceBecomesItsTarget(_ spots: [Int32]) throws {
        for spot in spots { try #require(fcntl(spot, F_GETFD) < 0, "descriptor \(spot) is free in the test") }
        let stdin = try pipe(), stdout = try pipe(), stderr = try pipe()
        _ = "in\n".withCString { write(stdin.write, $0, 3) }
        close(stdin.write)
        let sources = [place(stdin.read, at: spots[0]), place(stdout.write, at: spots[1]), place(stderr.write, at: spots[2])]
        let words: [String] = ["sh", "-c", "read x; echo out:$x; echo err:$x >&2"]
        var argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        let pid = argv.withUnsafeBufferPointer { args in
            sources.withUnsafeBufferPointer { berth_shim_spawn("/bin/sh", args.baseAddress, environ, $0.baseAddress, 3, nil, 0) }
        }
        for fd in sources { close(fd) }
        try #require(pid > 0, "spawn: errno \(-pid)")
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid && status == 0)
        #expect(readAll(stdout.read) == "out:in\n")
        #expect(readAll(stderr.read) == "err:in\n")
        close(stdout.read)
        close(stderr.read)
    }

    func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        try #require(Glibc.pipe(&fds) == 0)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    /// Moves `fd` to descriptor `spot` (close-on-exec, as the shim's own are).
    func place(_ fd: Int32, at spot: Int32) -> Int32 {
        _ = dup2(fd, spot)
        _ = fcntl(spot, F_SETFD, FD_CLOEXEC)
        close(fd)
        return spot
    }

    func readAll(_ fd: Int32) -> String {
        String(decoding: FileHandle(fileDescriptor: fd, closeOnDealloc: false).readDataToEndOfFile(), as: UTF8.self)
    }
}
