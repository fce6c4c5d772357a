#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthThreads
import Synchronization

/// Unix stream sockets and detached reader threads, on Glibc alone.
enum UnixSocket {
    static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    static func failure(_ what: String, _ code: Int32 = errno) -> TTRPCError {
        let grpcCode: TTRPCError.Code
        switch code {
        case ENOENT: grpcCode = .notFound
        case EACCES, EPERM: grpcCode = .permissionDenied
        case EADDRINUSE, EEXIST: grpcCode = .alreadyExists
        case ECONNREFUSED, ECONNRESET, EPIPE: grpcCode = .unavailable
        default: grpcCode = .unknown
        }
        return TTRPCError(grpcCode, "\(what): \(errorText(code))")
    }

    /// Fills a sockaddr_un for `path` (a filesystem path; abstract names are refused).
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) throws(TTRPCError) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes[0] != 0 else { throw TTRPCError(.invalidArgument, "ttrpc: empty or abstract socket path") }
        guard bytes.count < capacity else {
            throw TTRPCError(.invalidArgument, "ttrpc: socket path \(path) is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    static func makeSocket() throws(TTRPCError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("ttrpc: socket") }
        return fd
    }

    /// Connects to the unix socket at `path`; the path may carry containerd's `unix://` prefix.
    static func connect(path: String) throws(TTRPCError) -> Int32 {
        let path = path.hasPrefix("unix://") ? String(path.dropFirst("unix://".count)) : path
        let fd = try makeSocket()
        let result = try withAddress(path) { Glibc.connect(fd, $0, $1) }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw failure("ttrpc: dial \(path)", code)
        }
        return fd
    }

    /// Binds and listens on `path`, replacing a stale socket file (never another kind of file).
    static func listen(path: String, mode: mode_t) throws(TTRPCError) -> Int32 {
        var info = stat()
        if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        let fd = try makeSocket()
        let result = try withAddress(path) { bind(fd, $0, $1) }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw failure("ttrpc: listen \(path)", code)
        }
        chmod(path, mode)
        guard Glibc.listen(fd, 128) == 0 else {
            let code = errno
            Glibc.close(fd)
            unlink(path)
            throw failure("ttrpc: listen \(path)", code)
        }
        return fd
    }
}

/// Unix sockets for ttrpc peers made outside a `TTRPCServer`.
public enum TTRPCSocket {
    /// A listening socket at `path` (close-on-exec, a stale socket file replaced) for a shim to inherit as fd 3.
    public static func listen(path: String, mode: mode_t = 0o600) throws(TTRPCError) -> Int32 {
        try UnixSocket.listen(path: path, mode: mode)
    }
}

/// Starts a detached thread running `body` (readers block in recv, so they do not use the concurrency pool).
func spawnThread(_ body: @escaping @Sendable () -> Void) throws(TTRPCError) {
    do {
        try PosixThread.start(detached: true, stackSize: 512 << 10, body)
    } catch {
        throw UnixSocket.failure("ttrpc: pthread_create", error.code)
    }
}

/// What a reader got from the connection.
enum ReadResult {
    case frame(TTRPCFrame.Header, [UInt8])
    /// A frame over the size limit; its data was read and dropped, the stream can still be answered.
    case oversized(TTRPCFrame.Header)
    /// The peer closed the connection, or it broke.
    case closed
}

/// One connected socket: frames in (from a single reader thread), frames out (any thread, one frame at a time).
/// The descriptor is closed only by `finish()`, under the same lock writers take, so it is never reused under them.
final class FrameConnection: Sendable {
    let fd: Int32
    /// True once the descriptor is closed.
    private let closed = Mutex(false)

    init(fd: Int32) { self.fd = fd }

    /// Writes one frame. Data over 4 MiB is refused before anything is sent (ResourceExhausted).
    func send(streamID: UInt32, kind: TTRPCFrame.Kind, flags: UInt8, payload: [UInt8]) throws(TTRPCError) {
        guard payload.count <= TTRPCFrame.maxMessageLength else {
            throw TTRPCError(
                .resourceExhausted,
                "message length \(payload.count) exceed maximum message size of \(TTRPCFrame.maxMessageLength)")
        }
        var frame: [UInt8] = []
        frame.reserveCapacity(TTRPCFrame.headerLength + payload.count)
        TTRPCFrame.Header(length: UInt32(payload.count), streamID: streamID, type: kind.rawValue, flags: flags)
            .encode(into: &frame)
        frame.append(contentsOf: payload)
        let failure: Int32? = closed.withLock { isClosed in
            if isClosed { return EPIPE }
            return frame.withUnsafeBytes { raw -> Int32? in
                guard let base = raw.baseAddress else { return nil }
                var offset = 0
                while offset < raw.count {
                    let written = Glibc.send(fd, base + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                    if written < 0 {
                        if errno == EINTR { continue }
                        return errno
                    }
                    offset += written
                }
                return nil
            }
        }
        if failure != nil { throw TTRPCError.closed }
    }

    /// Reads `count` bytes into `buffer` (or drops them when `buffer` is nil); false on EOF or error.
    private func readFully(_ buffer: UnsafeMutableRawBufferPointer?, count: Int) -> Bool {
        var scratch = [UInt8](repeating: 0, count: buffer == nil ? min(count, 64 << 10) : 0)
        var done = 0
        while done < count {
            let got: Int
            if let base = buffer?.baseAddress {
                got = recv(fd, base + done, count - done, 0)
            } else {
                let want = min(count - done, scratch.count)
                got = scratch.withUnsafeMutableBytes { raw in raw.baseAddress.map { recv(fd, $0, want, 0) } ?? -1 }
            }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return false }
            done += got
        }
        return true
    }

    /// Blocks for the next frame. Only the connection's reader thread calls this.
    func receive() -> ReadResult {
        var headerBytes = [UInt8](repeating: 0, count: TTRPCFrame.headerLength)
        guard headerBytes.withUnsafeMutableBytes({ readFully($0, count: TTRPCFrame.headerLength) }) else { return .closed }
        let header = TTRPCFrame.Header(decoding: headerBytes)
        let length = Int(header.length)
        if length > TTRPCFrame.maxMessageLength {
            return readFully(nil, count: length) ? .oversized(header) : .closed
        }
        var data = [UInt8](repeating: 0, count: length)
        if length > 0 {
            guard data.withUnsafeMutableBytes({ readFully($0, count: length) }) else { return .closed }
        }
        return .frame(header, data)
    }

    /// Wakes the reader (it sees EOF) without closing the descriptor.
    func shutdown() {
        closed.withLock { isClosed in
            if !isClosed { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Closes the descriptor; the reader thread calls this once it has stopped reading.
    func finish() {
        closed.withLock { isClosed in
            if !isClosed {
                isClosed = true
                Glibc.close(fd)
            }
        }
    }
}
