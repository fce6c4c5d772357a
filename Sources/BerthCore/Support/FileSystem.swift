#if canImport(Glibc)
    import Glibc
#endif
import Foundation

/// Small file-system helpers with errors mapped to BerthError (path and errno text in the message).
public enum FileSystem {
    public static func errnoMessage(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// `mkdir -p` with `mode` for directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(BerthError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw .internalError("mkdir \(current): \(errnoMessage())")
            }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// The whole file as UTF-8, read with read(2) to its end: Foundation's readers stop after the first 4 KiB of a
    /// /proc file (which reports size 0), and mountinfo is often longer.
    public static func read(_ path: String) throws(BerthError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw .notFound("\(path): no such file") }
            throw .internalError("open \(path): \(errnoMessage())")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw .internalError("read \(path): \(errnoMessage())") }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes all of `bytes` to `fd`, retrying on EINTR; false on any other error (errno is left set).
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            written += n
        }
        return true
    }

    /// Creates (or truncates) `path` with `bytes`, without fsync: for runtime state that is rebuilt after a crash
    /// (bundles, spawn scratch files), as containerd writes a bundle's config.json.
    public static func write(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(BerthError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .internalError("open \(path): \(errnoMessage())") }
        defer { close(fd) }
        guard writeAll(fd, bytes) else { throw .internalError("write \(path): \(errnoMessage())") }
    }

    /// Writes `contents` into an existing file in place (for /proc and /sys files, which cannot be renamed over).
    public static func overwrite(_ path: String, _ contents: String) throws(BerthError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .internalError("open \(path): \(errnoMessage())") }
        defer { close(fd) }
        guard writeAll(fd, Array(contents.utf8)) else { throw .internalError("write \(path): \(errnoMessage())") }
    }

    /// Writes through a temporary file, fsync and rename, so readers see the old or the new content, never a part.
    public static func writeAtomically(_ path: String, _ contents: String, mode: mode_t = 0o644) throws(BerthError) {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .internalError("open \(tmp): \(errnoMessage())") }
        guard writeAll(fd, Array(contents.utf8)) else {
            let message = errnoMessage()
            close(fd)
            unlink(tmp)
            throw .internalError("write \(tmp): \(message)")
        }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, rename(tmp, path) == 0 else {
            let message = errnoMessage()
            unlink(tmp)
            throw .internalError("write \(path): \(message)")
        }
    }

    /// Expands a shell glob (`/etc/berth/conf.d/*.toml`); no match yields no paths.
    public static func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, 0, nil, &result) == 0 else { return [] }
        return (0..<Int(result.gl_pathc)).compactMap { i in result.gl_pathv[i].map { String(cString: $0) } }
    }
}
