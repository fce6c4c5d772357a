#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthNativeSnapshotter
import Foundation
import Testing

/// The native snapshotter's copy keeps every file kind and attribute; checked with coreutils' `stat` and xattrs.
@Suite("TreeCopy")
struct TreeCopyTests {
    /// `stat` of every path under `root` (relative names): type, mode, owner, size, device numbers, link count,
    /// nanosecond mtime, symlink target. (Not atime: listing directories and reading links to describe them
    /// changes it; atimes are compared with lstat alone.)
    static func describe(_ root: String) throws -> [String] {
        let paths = try runTool("/usr/bin/find", [root, "-mindepth", "0"]).split(separator: "\n").map(String.init).sorted()
        var lines: [String] = []
        for path in paths {
            let line = try runTool("/usr/bin/stat", ["-c", "%F|%A|%u|%g|%s|%t,%T|%h|%y|%N", path])
            lines.append(line.replacingOccurrences(of: root, with: "ROOT"))
        }
        return lines
    }

    static func xattr(_ path: String, _ name: String) -> [UInt8]? {
        guard let get = GNULibc.lgetxattr else { return nil }
        var value = [UInt8](repeating: 0, count: 256)
        let n = get(path, name, &value, value.count)
        return n < 0 ? nil : Array(value[0..<n])
    }

    static func setXattr(_ path: String, _ name: String, _ value: [UInt8]) throws {
        guard let set = GNULibc.lsetxattr else { throw BerthError.notImplemented("lsetxattr") }
        let rc = value.withUnsafeBytes { set(path, name, $0.baseAddress, value.count, 0) }
        guard rc == 0 else { throw BerthError.internalError("setxattr \(name) on \(path): \(FileSystem.errnoMessage())") }
    }

    static func setTimes(_ path: String, atime: Int, mtime: Int, nanoseconds: Int) throws {
        var times = [timespec(tv_sec: atime, tv_nsec: nanoseconds), timespec(tv_sec: mtime, tv_nsec: nanoseconds + 1)]
        guard utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw BerthError.internalError("utimensat \(path): \(FileSystem.errnoMessage())")
        }
    }

    @Test func everyFileKindAndAttributeIsPreserved() throws {
        let scratch = try SnapshotScratch()
        let source = try scratch.dir("source")
        let target = try scratch.dir("target")
        try FileSystem.makeDirectories(source + "/dir/sub")
        try writeFile(source + "/file", "hello\n", mode: 0o640)
        try writeFile(source + "/setuid", "#!/bin/sh\n", mode: 0o755)
        #expect(chown(source + "/setuid", 1000, 1001) == 0)
        #expect(chmod(source + "/setuid", 0o4755) == 0)
        #expect(chmod(source + "/dir", 0o1770) == 0)
        #expect(chown(source + "/dir", 33, 44) == 0)
        try writeFile(source + "/dir/sub/empty", "")
        let big = [UInt8]((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        #expect(FileManager.default.createFile(atPath: source + "/big", contents: Data(big)))
        // A sparse file: 8 MiB hole then data; copied densely, same content.
        let sparse = open(source + "/sparse", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        #expect(sparse >= 0)
        #expect(pwrite(sparse, "tail", 4, 8 << 20) == 4)
        close(sparse)
        #expect(link(source + "/file", source + "/dir/hardlink") == 0)
        #expect(symlink("../file", source + "/dir/link") == 0)
        #expect(symlink("/nonexistent/target", source + "/dangling") == 0)
        #expect(lchown(source + "/dangling", 7, 8) == 0)
        #expect(mkfifo(source + "/fifo", 0o620) == 0)
        #expect(mknod(source + "/null", S_IFCHR | 0o666, UInt(1 << 8 | 3)) == 0)  // makedev(1, 3)
        #expect(mknod(source + "/loop", S_IFBLK | 0o660, UInt(7 << 8 | 0)) == 0)  // makedev(7, 0)
        #expect(mknod(source + "/socket", S_IFSOCK | 0o755, 0) == 0)
        try Self.setXattr(source + "/file", "user.note", Array("kept".utf8))
        try Self.setXattr(source + "/dir", "user.dir", Array("d".utf8))
        try Self.setXattr(source + "/file", "trusted.overlay.opaque", Array("y".utf8))
        // vfs_cap_data revision 2, effective, CAP_NET_BIND_SERVICE permitted.
        let capability: [UInt8] = [0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00] + [UInt8](repeating: 0, count: 12)
        try Self.setXattr(source + "/setuid", "security.capability", capability)
        let timed = ["/file", "/setuid", "/dir/sub/empty", "/big", "/sparse", "/dangling", "/dir/link", "/fifo", "/null",
                     "/loop", "/socket", "/dir/sub", "/dir", ""]
        for (index, path) in timed.enumerated() {
            try Self.setTimes(source + path, atime: 1_500_000_000 + index, mtime: 1_400_000_000 + index,
                              nanoseconds: 123_456_000 + index)
        }
        let atimes = { (root: String) in
            timed.map { path -> [Int] in
                var st = stat()
                return lstat(root + path, &st) == 0 ? [st.st_atim.tv_sec, st.st_atim.tv_nsec] : []
            }
        }
        let expectedAtimes = atimes(source)

        try TreeCopy.copyDirectory(from: source, to: target)

        #expect(atimes(target) == expectedAtimes)
        let expected = try Self.describe(source)

        let actual = try Self.describe(target)
        #expect(actual.count == expected.count)
        for (got, want) in zip(actual, expected) { #expect(got == want) }
        #expect(FileManager.default.contents(atPath: target + "/big") == Data(big))
        #expect(readFile(target + "/sparse") == String(repeating: "\0", count: 8 << 20) + "tail")
        var a = stat(), b = stat()
        #expect(lstat(target + "/file", &a) == 0 && lstat(target + "/dir/hardlink", &b) == 0)
        #expect(a.st_ino == b.st_ino && a.st_nlink == 2, "hard links stay hard links within the copy")
        var original = stat()
        #expect(lstat(source + "/file", &original) == 0 && original.st_ino != a.st_ino, "a copy, not a link to the source")
        #expect(Self.xattr(target + "/file", "user.note") == Array("kept".utf8))
        #expect(Self.xattr(target + "/dir", "user.dir") == Array("d".utf8))
        #expect(Self.xattr(target + "/file", "trusted.overlay.opaque") == Array("y".utf8))
        #expect(Self.xattr(target + "/setuid", "security.capability") == capability)
    }

    @Test func copyIntoANonEmptyTargetFailsOnConflicts() throws {
        let scratch = try SnapshotScratch()
        let source = try scratch.dir("source")
        let target = try scratch.dir("target")
        try writeFile(source + "/same", "a")
        try writeFile(target + "/same", "b")
        #expect(throws: BerthError.self) { try TreeCopy.copyDirectory(from: source, to: target) }
    }
}
