#if canImport(Glibc)
    import Glibc
#endif
import BerthCore

/// Creates the API's listening unix socket ourselves, so that its mode and owner are set before anyone can
/// connect, a stale socket file is replaced, and a live one (another daemon answering) is an error.
public enum UnixListener {
    /// Binds and listens on `path` with `mode` and `uid:gid`; returns the descriptor (ownership passes to the caller).
    public static func listen(path: String, mode: mode_t = 0o660, uid: Int = 0, gid: Int = 0) throws(BerthError)
        -> Int32
    {
        guard path.utf8.count < 108 else { throw .invalidArgument("socket path too long (max 107 bytes): \(path)") }
        let directory = String(path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            .joined(separator: "/"))
        if !directory.isEmpty { try FileSystem.makeDirectories(directory, mode: 0o711) }

        if FileSystem.exists(path) {
            if isLive(path) {
                throw .unavailable("another daemon is already serving \(path); stop it or choose another [grpc] address")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .internalError("socket: \(FileSystem.errnoMessage())") }
        var address = makeAddress(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let message = FileSystem.errnoMessage()
            close(fd)
            throw .internalError("bind \(path): \(message)")
        }
        guard chmod(path, mode) == 0, chown(path, uid_t(uid), gid_t(gid)) == 0, Glibc.listen(fd, 1024) == 0 else {
            let message = FileSystem.errnoMessage()
            close(fd)
            unlink(path)
            throw .internalError("preparing \(path): \(message)")
        }
        return fd
    }

    /// Whether something accepts connections on the socket at `path`.
    public static func isLive(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = makeAddress(path)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }

    static func makeAddress(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[i] = byte }
        }
        return address
    }
}
