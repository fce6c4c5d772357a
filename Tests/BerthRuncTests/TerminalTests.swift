import CBerthRunc
import Foundation
import Testing

/// `terminal: true` with --console-socket: the runtime sends the pty master over the socket (SCM_RIGHTS), sized
/// as process.consoleSize says.
@Suite(.serialized)
struct TerminalTests {
    /// Listens on a unix socket, returns the listening fd.
    func listen(at path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0, Glibc.listen(fd, 1) == 0 else { throw TestError("bind \(path): \(errno)") }
        return fd
    }

    /// Reads from the pty master until `marker` appears or the writer side closes.
    func readAll(_ fd: Int32, until marker: String) -> String {
        var out = Data()
        var buf = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<500 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 20) <= 0 { continue }
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
            if String(decoding: out, as: UTF8.self).contains(marker) { break }
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func consoleSocketReceivesPtyMaster() throws {
        try withBundle(["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo interactive; stty size; echo END"]) { b in
            try FileManager.default.createSymbolicLink(atPath: b.dir + "/rootfs/bin/stty", withDestinationPath: "busybox")
            b.process["terminal"] = true
            b.process["consoleSize"] = ["height": 31, "width": 97]
            var outputs: [String] = []
            for rt in b.runtimes {
                let sockPath = b.dir + "/console-\(outputs.count).sock"
                let lfd = try listen(at: sockPath)
                defer { close(lfd) }
                let id = try b.prepare()
                let r = try rt("run", "-d", "--console-socket", sockPath, "--bundle", b.dir, id)
                #expect(r.status == 0, "\(rt): \(r.stderr)")
                guard r.status == 0 else { continue }
                let conn = accept(lfd, nil, nil)
                #expect(conn >= 0)
                let master = brc_recv_fd(conn)
                close(conn)
                #expect(master >= 0, "\(rt) sent no pty master")
                guard master >= 0 else { continue }
                outputs.append(readAll(master, until: "END"))
                close(master)
                _ = try rt.wait(id, for: "stopped")
                _ = try rt("delete", "--force", id)
            }
            #expect(outputs.count == 2)
            if outputs.count == 2 {
                #expect(outputs[0] == outputs[1])
                #expect(outputs[1].contains("/dev/pts/0") && outputs[1].contains("interactive"))
                #expect(outputs[1].contains("31 97"), "process.consoleSize: \(outputs[1])")
            }
        }
    }

    @Test func terminalWithoutConsoleSocketIsRefused() throws {
        try withBundle(["true"]) { b in
            b.process["terminal"] = true
            for rt in b.runtimes {
                let id = try b.prepare()
                let r = try rt("create", "--bundle", b.dir, id)
                #expect(r.status != 0, "\(rt)")
                #expect(r.stderr.contains("console socket"), "\(rt): \(r.stderr)")
            }
        }
    }
}
