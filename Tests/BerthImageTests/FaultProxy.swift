import Foundation
import Glibc

/// A TCP proxy in front of a registry that injects faults into blob downloads: it can answer the first blob GET with
/// 503, and cut the connection after `cutAfter` response bytes of the first blob GET it forwards. Records the
/// requests it saw (first line and any Range header).
final class FaultProxy: @unchecked Sendable {
    let port: Int
    let upstreamPort: Int
    let listener: Int32
    let lock = NSLock()
    var fail503Remaining: Int
    var cutAfter: Int?
    var seen: [String] = []

    var requests: [String] { lock.withLock { seen } }

    init(upstreamPort: Int, fail503: Int = 0, cutAfter: Int? = nil) throws {
        self.upstreamPort = upstreamPort
        self.fail503Remaining = fail503
        self.cutAfter = cutAfter
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 && listen(fd, 64) == 0
            }
        }
        guard fd >= 0, ok else { throw POSIXError(.EADDRINUSE) }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            Thread { [self] in relay(client) }.start()
        }
    }

    func connectUpstream() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(upstreamPort).bigEndian
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        return ok ? fd : -1
    }

    static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let count = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { return false }
            offset += count
        }
        return true
    }

    func relay(_ client: Int32) {
        let upstream = connectUpstream()
        defer {
            close(client)
            if upstream >= 0 { close(upstream) }
        }
        guard upstream >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 32768)
        var cutBudget: Int?
        while true {
            var fds = [pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: upstream, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, 30_000) > 0 else { return }
            if fds[0].revents != 0 {
                let count = read(client, &buffer, buffer.count)
                if count <= 0 { return }
                let text = String(decoding: buffer[0..<count], as: UTF8.self)
                if let line = text.split(separator: "\r\n").first, line.hasPrefix("GET ") || line.hasPrefix("HEAD ") {
                    let range = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("range:") }
                    lock.withLock { seen.append(String(line) + (range.map { " " + $0 } ?? "")) }
                    if line.hasPrefix("GET "), line.contains("/blobs/sha256:") {
                        let inject = lock.withLock { () -> Bool in
                            if fail503Remaining > 0 {
                                fail503Remaining -= 1
                                return true
                            }
                            if let cut = cutAfter {
                                cutBudget = cut
                                cutAfter = nil
                            }
                            return false
                        }
                        if inject {
                            _ = Self.writeAll(client, Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".utf8)[...])
                            continue
                        }
                    }
                }
                if !Self.writeAll(upstream, buffer[0..<count]) { return }
            }
            if fds[1].revents != 0 {
                let count = read(upstream, &buffer, buffer.count)
                if count <= 0 { return }
                if let budget = cutBudget {
                    if count >= budget {
                        _ = Self.writeAll(client, buffer[0..<budget])
                        return  // drop both connections mid-body
                    }
                    cutBudget = budget - count
                }
                if !Self.writeAll(client, buffer[0..<count]) { return }
            }
        }
    }
}
