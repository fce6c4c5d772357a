#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation
import Testing

/// `Mounting` against the real kernel: option parsing, bind (ro/rw), tmpfs, overlay (long lowerdir lists),
/// btrfs-as-bind, unmounting and `withMounts`.
@Suite("Mounting")
struct MountingTests {
    @Test func optionWordsBecomeFlagsOrData() {
        let parsed = Mounting.parseOptions(["ro", "rbind", "nosuid", "nodev", "size=10m", "lowerdir=/a:/b", "rw", "defaults"])
        #expect(parsed.flags == Mounting.MS_BIND | Mounting.MS_REC | Mounting.MS_NOSUID | Mounting.MS_NODEV)
        #expect(parsed.data == ["size=10m", "lowerdir=/a:/b"])
        #expect(Mounting.parseOptions(["rw", "ro"]).flags == Mounting.MS_RDONLY)
        #expect(Mounting.parseOptions(["noexec", "exec", "rprivate"]).flags == Mounting.MS_PRIVATE | Mounting.MS_REC)
    }

    @Test func readOnlyBindRefusesWritesAndUnmounts() async throws {
        let scratch = try SnapshotScratch()
        let source = try scratch.dir("source")
        let target = try scratch.dir("target")
        try writeFile(source + "/file", "hello")
        let code = try await Mounting.withMounts([Mount(type: "bind", source: source, options: ["ro", "rbind"])], at: target) {
            #expect(readFile(target + "/file") == "hello")
            let fd = open(target + "/new", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            let code = errno
            if fd >= 0 { close(fd) }
            return fd >= 0 ? 0 : code
        }
        #expect(code == EROFS)
        #expect(readFile(target + "/file") == nil, "unmounted after withMounts")
        try await Mounting.withMounts([Mount(type: "bind", source: source, options: ["rw", "rbind"])], at: target) {
            try writeFile(target + "/new", "written")
        }
        #expect(readFile(source + "/new") == "written")
    }

    @Test func withMountsUnmountsWhenTheBodyThrows() async throws {
        let scratch = try SnapshotScratch()
        let target = try scratch.dir("target")
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            try await Mounting.withMounts([Mount(type: "tmpfs", source: "tmpfs", options: ["size=1m"])], at: target) {
                try writeFile(target + "/x", "x")
                throw Boom()
            }
        }
        #expect(!FileSystem.exists(target + "/x"))
        #expect(GNULibc.fileSystemType(target) != GNULibc.tmpfsMagic)
    }

    @Test func tmpfsWithDataOptions() async throws {
        let scratch = try SnapshotScratch()
        let target = try scratch.dir("target")
        try await Mounting.withMounts([Mount(type: "tmpfs", source: "tmpfs", options: ["nodev", "size=2m", "mode=750"])],
                                      at: target) {
            #expect(GNULibc.fileSystemType(target) == GNULibc.tmpfsMagic)
            var st = stat()
            #expect(stat(target, &st) == 0 && st.st_mode & 0o777 == 0o750)
        }
    }

    /// 200 lowerdirs under a long path make more than a page of options: mounted relative to their common parent.
    @Test func overlayWithMoreThanAPageOfLowerdirs() async throws {
        let scratch = try SnapshotScratch()
        let layers = try scratch.dir(String(repeating: "long-directory-name/", count: 3) + "snapshots")
        var lowers: [String] = []
        for i in 0..<200 {
            let dir = layers + "/\(i)/fs"
            try FileSystem.makeDirectories(dir)
            try writeFile(dir + "/file-\(i)", "\(i)")
            try writeFile(dir + "/top", "\(i)")
            lowers.insert(dir, at: 0)  // nearest (highest) first
        }
        let upper = try scratch.dir("upper")
        let work = try scratch.dir("work")
        let target = try scratch.dir("merged")
        let options = ["workdir=\(work)", "upperdir=\(upper)", "lowerdir=\(lowers.joined(separator: ":"))"]
        #expect(options.joined(separator: ",").utf8.count > Int(getpagesize()))
        let cwd = FileManager.default.currentDirectoryPath
        try await Mounting.withMounts([Mount(type: "overlay", source: "overlay", options: options)], at: target) {
            #expect(readFile(target + "/top") == "199")
            #expect(readFile(target + "/file-0") == "0")
            try writeFile(target + "/written", "up")
        }
        #expect(readFile(upper + "/written") == "up")
        #expect(FileManager.default.currentDirectoryPath == cwd, "the process's cwd is untouched")
    }

    @Test func compactLowerdirKeepsDirectoryBoundaries() {
        let (dir, data) = Mounting.compactLowerdir(["index=off", "lowerdir=/r/snapshots/12/fs:/r/snapshots/1/fs"])
        #expect(dir == "/r/snapshots")
        #expect(data == ["index=off", "lowerdir=12/fs:1/fs"])
        #expect(Mounting.compactLowerdir(["lowerdir=/a/fs"]).0 == nil)
    }

    @Test func btrfsMountOfADirectoryIsABind() async throws {
        let scratch = try SnapshotScratch()
        let source = try scratch.dir("subvolume")
        let target = try scratch.dir("target")
        try writeFile(source + "/f", "btrfs")
        try await Mounting.withMounts([Mount(type: "btrfs", source: source, options: ["ro", "subvol=x"])], at: target) {
            #expect(readFile(target + "/f") == "btrfs")
            #expect(open(target + "/g", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644) < 0 && errno == EROFS)
        }
    }

    @Test func unmountOfANonMountPointIsFine() throws {
        let scratch = try SnapshotScratch()
        try Mounting.unmount(try scratch.dir("plain"))
        try Mounting.unmountAll(scratch.path + "/missing")
    }

    @Test func stackedMountsAreAllUnmounted() async throws {
        let scratch = try SnapshotScratch()
        let target = try scratch.dir("target")
        let tmpfs = Mount(type: "tmpfs", source: "tmpfs", options: ["size=1m"])
        try Mounting.mountAll([tmpfs, tmpfs], at: target)
        try Mounting.unmountAll(target)
        #expect(GNULibc.fileSystemType(target) != GNULibc.tmpfsMagic)
    }

    @Test func failedMountNamesItsArguments() throws {
        let scratch = try SnapshotScratch()
        #expect(throws: BerthError.self) {
            try Mounting.mount(Mount(type: "bind", source: scratch.path + "/missing", options: ["rbind"]),
                               at: try scratch.dir("t"))
        }
    }
}
