import Foundation
import Glibc

/// A TCP proxy on 127.0.0.1 in front of a registry, on plain threads (off the cooperative pool). It records each
/// request line (with its Range header), can cut a blob download after some bytes and then refuse every
/// connection and request until told otherwise (the registry "goes away").
final class RegistryProxy: @unchecked Sendable {
    let port: Int
    let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var cut: (digest: String, bytes: Int)?
    private var refuse = false
    private var seen: [String] = []

    var requests: [String] { lock.withLock { seen } }
    var host: String { "127.0.0.1:\(port)" }

    /// GETs of blobs, by digest.
    func blobGets(_ digest: String) -> Int {
        requests.filter { $0.hasPrefix("GET ") && $0.contains("/blobs/\(digest) ") }.count
    }

    /// Cuts the next GET of blob `digest` after `bytes` response bytes and then refuses connections.
    func cut(_ digest: String, after bytes: Int) { lock.withLock { cut = (digest, bytes) } }
    func setRefusing(_ value: Bool) { lock.withLock { refuse = value } }

    /// Microseconds to sleep per forwarded response chunk (slows downloads so concurrent pulls overlap).
    let throttle: UInt32

    init(upstreamPort: Int, throttle: UInt32 = 0) throws {
        self.upstreamPort = upstreamPort
        self.throttle = throttle
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

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            if lock.withLock({ refuse }) {
                close(client)
                continue
            }
            Thread { [self] in relay(client) }.start()
        }
    }

    private func connectUpstream() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(upstreamPort).bigEndian
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        return ok ? fd : -1
    }

    private static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let count = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { return false }
            offset += count
        }
        return true
    }

    private func relay(_ client: Int32) {
        let upstream = connectUpstream()
        defer {
            close(client)
            if upstream >= 0 { close(upstream) }
        }
        guard upstream >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var budget: Int?
        while true {
            var fds = [
                pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: upstream, events: Int16(POLLIN), revents: 0),
            ]
            guard poll(&fds, 2, 30_000) > 0 else { return }
            if fds[0].revents != 0 {
                let count = read(client, &buffer, buffer.count)
                if count <= 0 { return }
                let text = String(decoding: buffer[0..<count], as: UTF8.self)
                let lines = text.split(separator: "\r\n")
                if let line = lines.first, line.hasPrefix("GET ") || line.hasPrefix("HEAD ") {
                    let range = lines.first { $0.lowercased().hasPrefix("range:") }
                    let refused = lock.withLock { () -> Bool in
                        if refuse { return true }
                        seen.append(String(line) + (range.map { " " + $0 } ?? ""))
                        if line.hasPrefix("GET "), let cut, line.contains("/blobs/\(cut.digest) ") {
                            budget = cut.bytes
                            self.cut = nil
                        }
                        return false
                    }
                    if refused { return }
                }
                if !Self.writeAll(upstream, buffer[0..<count]) { return }
            }
            if fds[1].revents != 0 {
                let count = read(upstream, &buffer, buffer.count)
                if count <= 0 { return }
                if let left = budget {
                    if count >= left {
                        _ = Self.writeAll(client, buffer[0..<left])
                        lock.withLock { refuse = true }
                        return  // drop both connections mid-body; the registry is gone from now on
                    }
                    budget = left - count
                }
                if throttle > 0 { usleep(throttle) }
                if !Self.writeAll(client, buffer[0..<count]) { return }
            }
        }
    }
}
