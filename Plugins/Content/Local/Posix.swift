#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Crypto
import Foundation

/// BerthCore's digest; swift-crypto also exports a `Digest` (a protocol), which this module never means.
typealias Digest = BerthCore.Digest

/// Thin POSIX wrappers for the content store: errors become `BerthError` carrying the path and errno text, and
/// every loop retries on EINTR. Kept free of Foundation `Data` so the write path never copies bytes.
enum Posix {
    /// Size of the buffers used to rehash or copy files (large, so a 1 GiB rehash is ~1000 syscalls).
    static let bufferSize = 1 << 20

    static func error(_ operation: String, _ path: String, _ code: Int32 = errno) -> BerthError {
        if code == ENOENT { return .notFound("\(operation) \(path): \(FileSystem.errnoMessage(code))") }
        return .internalError("\(operation) \(path): \(FileSystem.errnoMessage(code))")
    }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(BerthError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw error("open", path) }
        }
    }

    /// `stat(2)`; nil when the path does not exist.
    static func stat(_ path: String) throws(BerthError) -> stat? {
        var st = Glibc.stat()
        if systemStat(path, &st) == 0 { return st }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw error("stat", path)
    }

    static func fstat(_ fd: Int32, _ path: String) throws(BerthError) -> stat {
        var st = Glibc.stat()
        guard Glibc.fstat(fd, &st) == 0 else { throw error("stat", path) }
        return st
    }

    static func date(_ ts: timespec) -> Date {
        Date(timeIntervalSince1970: Double(ts.tv_sec) + Double(ts.tv_nsec) / 1_000_000_000)
    }

    /// Writes all of `buffer` at `offset` with `pwrite(2)`.
    static func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: Int64) -> Int32? {
        guard let base = buffer.baseAddress else { return nil }
        var done = 0
        while done < buffer.count {
            let n = Glibc.pwrite(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if n == 0 { return EIO }
            done += n
        }
        return nil
    }

    /// Reads up to `buffer.count` bytes at `offset`; fewer only at end of file. Returns the count, or -errno.
    static func preadFull(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return -Int(errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Hashes the first `length` bytes of `fd` (all of it when nil) into a fresh SHA-256; returns the hasher and
    /// the number of bytes hashed. Used to restore a writer's running digest on resume and after truncate.
    static func rehash(_ fd: Int32, path: String, length: Int64? = nil) throws(BerthError) -> (SHA256, Int64) {
        var hasher = SHA256()
        var offset: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            var want = bufferSize
            if let length { want = Int(min(Int64(bufferSize), length - offset)) }
            if want <= 0 { break }
            let n = preadFull(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: offset)
            if n < 0 { throw error("read", path, Int32(-n)) }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            offset += Int64(n)
        }
        return (hasher, offset)
    }

    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32

    /// Linux's `sync_file_range(2)`, looked up at run time because Glibc's module map hides it (`_GNU_SOURCE`).
    private static let syncFileRangeFunction: SyncFileRange? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "sync_file_range") else { return nil }
        return unsafeBitCast(symbol, to: SyncFileRange.self)
    }()

    /// Starts writeback of a range without waiting (`SYNC_FILE_RANGE_WRITE`), so the fsync at commit finds little
    /// left to flush: disk writes overlap the ingest instead of following it. Best effort; errors are ignored
    /// because the commit's fsync reports any that matter.
    static func startWriteback(_ fd: Int32, offset: Int64, count: Int64) {
        _ = syncFileRangeFunction?(fd, offset, count, 2)
    }

    /// Waits for writeback of a range started earlier, then drops its clean pages from the page cache.
    static func dropWritten(_ fd: Int32, offset: Int64, count: Int64) {
        _ = syncFileRangeFunction?(fd, offset, count, 7)
        _ = posix_fadvise(fd, off_t(offset), off_t(count), POSIX_FADV_DONTNEED)
    }

    /// fsyncs a directory so a rename or unlink inside it survives a power loss.
    static func syncDirectory(_ path: String) throws(BerthError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw error("fsync", path) }
    }

    /// Names in a directory, without `.` and `..`; empty when the directory does not exist.
    static func list(_ path: String) throws(BerthError) -> [String] {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return [] }
            throw error("opendir", path)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes a flat directory (an ingest: files only) and everything in it; absent is fine.
    static func removeFlatDirectory(_ path: String) throws(BerthError) {
        for name in try list(path) where unlink(path + "/" + name) != 0 && errno != ENOENT {
            throw error("unlink", path + "/" + name)
        }
        if rmdir(path) != 0 && errno != ENOENT { throw error("rmdir", path) }
    }

    /// Writes a small metadata file through a temporary file and rename, so it is never seen half-written. No
    /// fsync (as containerd): a torn ingest is detected on resume (ref mismatch) and started afresh.
    static func writeSmallFile(_ path: String, _ text: String) throws(BerthError) {
        let tmp = path + ".tmp"
        let fd = try open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        let ok = FileSystem.writeAll(fd, Array(text.utf8))
        let code = errno
        close(fd)
        guard ok else { throw error("write", tmp, code) }
        guard rename(tmp, path) == 0 else { throw error("rename", tmp) }
    }

    /// Contents of a small metadata file; nil when absent.
    static func readSmallFile(_ path: String) throws(BerthError) -> String? {
        let fd: Int32
        do { fd = try open(path, O_RDONLY) } catch where error.code == .notFound { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("read", path)
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// `stat(2)` from file scope, where the function is not shadowed by `Posix.stat` or the `stat` struct.
private func systemStat(_ path: String, _ st: inout stat) -> Int32 { stat(path, &st) }

/// Lowercase hex of bytes, through a table (a digest is hexed on every commit and status).
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Timestamps in the ingest's `startedat`/`updatedat` files, as Go's `time.MarshalText` writes them (RFC 3339
/// with nanoseconds), so the layout reads like containerd's local store.
enum Timestamp {
    static func format(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        var nanos = Int(((interval - Double(seconds)) * 1_000_000_000).rounded())
        if nanos >= 1_000_000_000 {
            seconds += 1
            nanos -= 1_000_000_000
        }
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        var text = "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
        text += "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
        if nanos > 0 {
            var fraction = pad(Int32(nanos), 9)
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return text + "Z"
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; nil when malformed.
    static func parse(_ text: String) -> Date? {
        let s = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        func number(_ from: Int, _ count: Int) -> Int32? {
            guard from + count <= s.count else { return nil }
            var value: Int32 = 0
            for c in s[from..<(from + count)] {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                value = value * 10 + Int32(c - 0x30)
            }
            return value
        }
        guard s.count >= 20, let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        var index = 19
        var fraction = 0.0
        if index < s.count && s[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            while index < s.count, s[index] >= 0x30 && s[index] <= 0x39 {
                fraction += Double(s[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
        }
        var offset = 0
        if index < s.count && s[index] == UInt8(ascii: "Z") {
            index += 1
        } else if index < s.count, s[index] == UInt8(ascii: "+") || s[index] == UInt8(ascii: "-"),
            let h = number(index + 1, 2), let m = number(index + 4, 2)
        {
            offset = (Int(h) * 3600 + Int(m) * 60) * (s[index] == UInt8(ascii: "-") ? -1 : 1)
            index += 6
        } else {
            return nil
        }
        guard index == s.count else { return nil }
        let seconds = timegm(&parts) - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }
}
