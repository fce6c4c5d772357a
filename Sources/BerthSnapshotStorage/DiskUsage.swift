#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// File-tree helpers the snapshotter backends share: containerd's `fs.DiskUsage` and directory listing.
public enum SnapshotFiles {
    private struct Inode: Hashable {
        var device: UInt64
        var number: UInt64
    }

    /// containerd's `fs.DiskUsage`: every distinct inode under `root` (root included, hard links counted once)
    /// adds its allocated blocks × 512 to the size; `inodes` is the number of distinct inodes.
    public static func diskUsage(_ root: String) throws(BerthError) -> SnapshotUsage {
        var seen = Set<Inode>()
        var size: Int64 = 0
        var pending = [root]
        while let path = pending.popLast() {
            var st = stat()
            guard lstat(path, &st) == 0 else {
                if errno == ENOENT && path != root { continue }  // removed while walking
                throw .internalError("disk usage of \(path): \(FileSystem.errnoMessage())")
            }
            if seen.insert(Inode(device: UInt64(st.st_dev), number: UInt64(st.st_ino))).inserted {
                size += Int64(st.st_blocks) * 512
            }
            if st.st_mode & S_IFMT == S_IFDIR {
                for name in try entries(path) { pending.append(path + "/" + name) }
            }
        }
        return SnapshotUsage(size: size, inodes: Int64(seen.count))
    }

    /// The names in directory `path`, without `.` and `..`.
    public static func entries(_ path: String) throws(BerthError) -> [String] {
        guard let dir = opendir(path) else {
            throw .internalError("open directory \(path): \(FileSystem.errnoMessage())")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `rm -rf path`; a missing path is fine.
    public static func removeTree(_ path: String) throws(BerthError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            if FileSystem.exists(path) { throw .internalError("remove \(path): \(error)") }
        }
    }

    /// Creates a fresh directory `<parent>/<prefix>XXXXXX` (mkdtemp, mode 0700) and returns its path.
    public static func makeTemporaryDirectory(in parent: String, prefix: String) throws(BerthError) -> String {
        var template = Array((parent + "/" + prefix + "XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard let made else { throw .internalError("mkdtemp in \(parent): \(FileSystem.errnoMessage())") }
        return String(cString: made)
    }
}
