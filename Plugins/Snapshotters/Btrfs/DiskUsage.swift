#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// Usage from a file-system walk, as containerd's continuity `fs.DiskUsage` / `fs.DiffUsage`: each inode counted
/// once, size in allocated 512-byte blocks. btrfs qgroups would be cheaper but are off by default.
enum DiskUsage {
    private struct InodeKey: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    private struct Tally {
        var seen: Set<InodeKey> = []
        var size: Int64 = 0

        mutating func add(_ st: stat) {
            if seen.insert(InodeKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))).inserted {
                size += Int64(st.st_blocks) * 512
            }
        }

        var usage: SnapshotUsage { SnapshotUsage(size: size, inodes: Int64(seen.count)) }
    }

    /// Everything under `root`, `root` included.
    static func of(_ root: String) throws(BerthError) -> SnapshotUsage {
        var tally = Tally()
        let st = try lstatOrThrow(root)
        tally.add(st)
        try walk(root, "") { _, st in tally.add(st) }
        return tally.usage
    }

    /// What `upper` adds or changes relative to `lower` (its parent snapshot), as containerd's `fs.DiffUsage`,
    /// plus `upper`'s own root directory (so even an empty layer counts one inode, like the other backends);
    /// deletions are not counted. An entry is unchanged when `lower` has it with the same type, mode, owner,
    /// device number and, for non-directories, size and modification time (content compared when both times
    /// lack nanoseconds).
    static func diff(lower: String, upper: String) throws(BerthError) -> SnapshotUsage {
        var tally = Tally()
        tally.add(try lstatOrThrow(upper))
        try walk(upper, "") { relative, st in
            var old = stat()
            if lstat(lower + relative, &old) == 0, same(old, st, lower + relative, upper + relative) { return }
            tally.add(st)
        }
        return tally.usage
    }

    private static func same(_ a: stat, _ b: stat, _ pathA: String, _ pathB: String) -> Bool {
        guard a.st_mode == b.st_mode, a.st_uid == b.st_uid, a.st_gid == b.st_gid, a.st_rdev == b.st_rdev else {
            return false
        }
        if (a.st_mode & S_IFMT) == S_IFDIR { return true }
        guard a.st_size == b.st_size, a.st_mtim.tv_sec == b.st_mtim.tv_sec else { return false }
        if a.st_mtim.tv_nsec == 0 && b.st_mtim.tv_nsec == 0 {
            if (a.st_mode & S_IFMT) == S_IFLNK {
                return (try? FileManager.default.destinationOfSymbolicLink(atPath: pathA))
                    == (try? FileManager.default.destinationOfSymbolicLink(atPath: pathB))
            }
            return (a.st_mode & S_IFMT) != S_IFREG || FileManager.default.contentsEqual(atPath: pathA, andPath: pathB)
        }
        return a.st_mtim.tv_nsec == b.st_mtim.tv_nsec
    }

    private static func lstatOrThrow(_ path: String) throws(BerthError) -> stat {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            let code = errno
            let message = "usage: lstat \(path): \(FileSystem.errnoMessage(code))"
            throw code == ENOENT ? .notFound(message) : .internalError(message)
        }
        return st
    }

    /// Calls `visit` with the path relative to `root` (starting with "/") and lstat of every entry below
    /// `root`, parents before children.
    private static func walk(
        _ root: String, _ relative: String, _ visit: (String, stat) throws(BerthError) -> Void
    ) throws(BerthError) {
        let directory = root + relative
        guard let dir = opendir(directory) else {
            throw .internalError("usage: open \(directory): \(FileSystem.errnoMessage())")
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                    String(cString: $0)
                }
            }
            if name == "." || name == ".." { continue }
            let child = relative + "/" + name
            var st = stat()
            // Vanished between readdir and lstat (a running container): skip it.
            guard lstat(root + child, &st) == 0 else { continue }
            try visit(child, st)
            if (st.st_mode & S_IFMT) == S_IFDIR { try walk(root, child, visit) }
        }
    }
}
