#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Synchronization

/// Random access to a committed blob through `pread` on one descriptor. The descriptor is guarded so that `close`
/// cannot race a read into a reused fd; the blob stays readable after a delete until closed (POSIX unlink).
final class LocalContentReader: ContentReader {
    let size: Int64
    private let path: String
    /// The open descriptor, -1 once closed.
    private let fd: Mutex<Int32>

    init(fd: Int32, size: Int64, path: String) {
        self.fd = Mutex(fd)
        self.size = size
        self.path = path
    }

    deinit {
        fd.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    func read(at offset: Int64, count: Int) async throws(BerthError) -> [UInt8] {
        guard offset >= 0, count >= 0 else {
            throw .invalidArgument("invalid read of \(count) bytes at offset \(offset)")
        }
        let wanted = Int(max(0, min(Int64(count), size - offset)))
        guard wanted > 0 else { return [] }
        var failure: Int32 = 0
        let bytes = fd.withLock { fd -> [UInt8] in
            guard fd >= 0 else {
                failure = EBADF
                return []
            }
            return [UInt8](unsafeUninitializedCapacity: wanted) { buffer, initialized in
                let n = Posix.preadFull(fd, UnsafeMutableRawBufferPointer(buffer), at: offset)
                if n < 0 { failure = Int32(-n) }
                initialized = max(0, n)
            }
        }
        if failure == EBADF { throw .failedPrecondition("read on closed reader of \(path)") }
        if failure != 0 { throw Posix.error("read", path, failure) }
        return bytes
    }

    func close() async {
        fd.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }
}
