import Foundation
import Glibc

/// A TCP proxy on 127.0.0.1 in front of a registry, on plain threads (off the cooperative pool), that injects faults
/// into blob downloads. It records each request line (with its Range header); it can answer the next blob GETs with
/// 503, cut a blob download after some bytes (and then refuse every connection and request: the registry "goes
/// away"), refuse on demand, and slow responses so concurrent downloads overlap.
public final class TestProxy: @unchecked Sendable {
    public let port: Int
    public let upstreamPort: Int
    /// Microseconds to sleep per forwarded response chunk.
    public let throttle: UInt32
    private let listener: Int32
    private let lock = NSLock()
    private var fail503Remaining: Int
    private var pendingCut: (digest: String?, bytes: Int, thenRefuse: Bool)?
    private var refuse = false
    private var seen: [String] = []

    public var requests: [String] { lock.withLock { seen } }
    public var host: String { "127.0.0.1:\(port)" }

    /// GETs of blobs, by digest.
    public func blobGets(_ digest: String) -> Int {
        requests.filter { $0.hasPrefix("GET ") && $0.contains("/blobs/\(digest) ") }.count
    }

    /// Cuts the next GET of blob `digest` (any blob when nil) after `bytes` response bytes; with `thenRefuse`, every
    /// later connection and request is refused until `setRefusing(false)`.
    public func cut(_ digest: String? = nil, after bytes: Int, thenRefuse: Bool) {
        lock.withLock { pendingCut = (digest, bytes, thenRefuse) }
    }

    public func setRefusing(_ value: Bool) { lock.withLock { refuse = value } }

    /// `fail503`: how many blob GETs to answer with 503 before forwarding any.
    public init(upstreamPort: Int, fail503: Int = 0, throttle: UInt32 = 0) throws {
        self.upstreamPort = upstreamPort
        self.fail503Remaining = fail503
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

    public func stop() {
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

    private enum RequestAction { case forward, fail503, drop }

    /// Records a request and decides what to do with it; arms a pending cut when this GET matches it.
    private func admit(_ line: Substring, range: Substring?, cut: inout (bytes: Int, thenRefuse: Bool)?) -> RequestAction {
        lock.withLock {
            if refuse { return .drop }
            seen.append(String(line) + (range.map { " " + $0 } ?? ""))
            guard line.hasPrefix("GET "), line.contains("/blobs/sha256:") else { return .forward }
            if fail503Remaining > 0 {
                fail503Remaining -= 1
                return .fail503
            }
            if let pending = pendingCut, pending.digest.map({ line.contains("/blobs/\($0) ") }) ?? true {
                cut = (pending.bytes, pending.thenRefuse)
                pendingCut = nil
            }
            return .forward
        }
    }

    private func relay(_ client: Int32) {
        let upstream = connectUpstream()
        defer {
            close(client)
            if upstream >= 0 { close(upstream) }
        }
        guard upstream >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var cut: (bytes: Int, thenRefuse: Bool)?
        while true {
            var fds = [
                pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: upstream, events: Int16(POLLIN), revents: 0),
            ]
            guard poll(&fds, 2, 30_000) > 0 else { return }
            if fds[0].revents != 0 {
                let count = read(client, &buffer, buffer.count)
                if count <= 0 { return }
                let lines = String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\r\n")
                if let line = lines.first, line.hasPrefix("GET ") || line.hasPrefix("HEAD ") {
                    let range = lines.first { $0.lowercased().hasPrefix("range:") }
                    switch admit(line, range: range, cut: &cut) {
                    case .drop:
                        return
                    case .fail503:
                        _ = Self.writeAll(client, Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".utf8)[...])
                        continue
                    case .forward:
                        break
                    }
                }
                if !Self.writeAll(upstream, buffer[0..<count]) { return }
            }
            if fds[1].revents != 0 {
                let count = read(upstream, &buffer, buffer.count)
                if count <= 0 { return }
                if let armed = cut {
                    if count >= armed.bytes {
                        _ = Self.writeAll(client, buffer[0..<armed.bytes])
                        if armed.thenRefuse { lock.withLock { refuse = true } }
                        return  // drop both connections mid-body
                    }
                    cut = (armed.bytes - count, armed.thenRefuse)
                }
                if throttle > 0 { usleep(throttle) }
                if !Self.writeAll(client, buffer[0..<count]) { return }
            }
        }
    }
}
