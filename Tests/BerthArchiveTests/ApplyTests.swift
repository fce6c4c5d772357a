#if canImport(Glibc)
    import Glibc
#endif
@testable import BerthArchive
import BerthCore
import BerthTestSupport
import Foundation
import Testing

/// Applying layers: every entry type with its metadata, whiteouts as deletions and in overlay form (proved by a
/// real overlay mount), digests, and a round trip of a tree through GNU tar.
@Suite struct ApplyTests {
    @Test func everyEntryTypeWithMetadata() async throws {
        let scratch = try Scratch()
        let root = try scratch.dir("root")
        var capFile = TarEntry(name: "bin/ping", type: .regular, mode: 0o4755, uid: 0, gid: 0, mtime: 1_234_567_890)
        // security.capability v2: cap_net_raw (bit 13) permitted+effective.
        capFile.xattrs = ["security.capability": [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                          "user.origin": Array("layer".utf8)]
        var owned = TarEntry(name: "home/u/file", type: .regular, mode: 0o640, uid: 1000, gid: 2000, mtime: 1_000_000_000)
        owned.mtimeNanoseconds = 500
        var chr = TarEntry(name: "dev/zero", type: .charDevice, mode: 0o666, mtime: 5)
        chr.devmajor = 1
        chr.devminor = 5
        var blk = TarEntry(name: "dev/loopx", type: .blockDevice, mode: 0o660, mtime: 5)
        blk.devmajor = 7
        blk.devminor = 300
        let tar = try await makeTar([
            (TarEntry(name: "bin/", type: .directory, mode: 0o755, mtime: 1_111_111_111), []),
            (capFile, Array("binary".utf8)),
            (TarEntry(name: "tmp/", type: .directory, mode: 0o1777, mtime: 42), []),
            (owned, Array("mine".utf8)),
            symlink("bin/sh", "ping"), hardlink("bin/ping6", "bin/ping"), (chr, []), (blk, []),
            (TarEntry(name: "run/fifo", type: .fifo, mode: 0o600, mtime: 5), []),
        ])
        let applied = try await LayerApplier.apply(BufferSource(tar), to: root)
        #expect(applied.compression == Compression.none)
        #expect(applied.diffID == (try Digests.sha256(tar)))
        #expect(applied.compressedDigest == applied.diffID)

        let ping = try #require(lstatOf(root + "/bin/ping"))
        #expect(ping.st_mode & 0o7777 == 0o4755)
        #expect(ping.st_mtim.tv_sec == 1_234_567_890)
        #expect(Xattr.all(root + "/bin/ping")["security.capability"]?.count == 20)
        #expect(Xattr.all(root + "/bin/ping")["user.origin"] == Array("layer".utf8))
        #expect(lstatOf(root + "/bin/ping6")?.st_ino == ping.st_ino)
        #expect(try await sh("readlink '\(root)/bin/sh'") == "ping\n")
        // Directory times are set after their children were created.
        #expect(lstatOf(root + "/bin")?.st_mtim.tv_sec == 1_111_111_111)
        #expect(lstatOf(root + "/tmp")?.st_mode ?? 0 & 0o7777 == S_IFDIR | 0o1777)
        let mine = try #require(lstatOf(root + "/home/u/file"))
        #expect(mine.st_uid == 1000 && mine.st_gid == 2000 && mine.st_mode & 0o7777 == 0o640)
        // Berth's writer keeps whole seconds, as containerd's does (sub-second times round-trip through GNU tar below).
        #expect(mine.st_mtim.tv_sec == 1_000_000_000 && mine.st_mtim.tv_nsec == 0)
        #expect(readText(root + "/home/u/file") == "mine")
        let zero = try #require(lstatOf(root + "/dev/zero"))
        #expect(zero.st_mode & S_IFMT == S_IFCHR && zero.st_rdev == Extractor.makedev(1, 5))
        let loop = try #require(lstatOf(root + "/dev/loopx"))
        #expect(loop.st_mode & S_IFMT == S_IFBLK && loop.st_rdev == Extractor.makedev(7, 300))
        #expect(lstatOf(root + "/run/fifo")?.st_mode ?? 0 & S_IFMT == S_IFIFO | 0o600)
    }

    @Test func compressedLayersCarryBothDigestsAndAMismatchIsVisible() async throws {
        let scratch = try Scratch()
        let tar = try await makeTar([file("a", "alpha"), dir("d/"), file("d/b", "beta")])
        let gz = try await gzip(tar)
        let zst = try await TestCommand.run("/usr/bin/zstd", ["-c"], input: Data(tar))
        for (blob, kind) in [(gz, Compression.gzip), (Array(zst.output), .zstd)] {
            let root = try scratch.dir("root-\(kind)")
            let applied = try await LayerApplier.apply(BufferSource(blob, chunk: 100), to: root)
            #expect(applied.compression == kind)
            #expect(applied.diffID == (try Digests.sha256(tar)))
            #expect(applied.uncompressedSize == Int64(tar.count))
            #expect(applied.compressedDigest == (try Digests.sha256(blob)))
            #expect(applied.compressedSize == Int64(blob.count))
            #expect(readText(root + "/d/b") == "beta")
        }
    }

    /// The lower tree both whiteout tests start from.
    func lowerLayer() async throws -> [UInt8] {
        try await makeTar([
            dir("etc/"), file("etc/keep", "k"), file("etc/gone", "g"), dir("var/"), dir("var/cache/"),
            file("var/cache/old1", "1"), dir("var/cache/sub/"), file("var/cache/sub/old2", "2"), dir("opt/"),
            file("opt/tool", "t"),
        ])
    }

    func upperLayer() async throws -> [UInt8] {
        try await makeTar([
            file("etc/.wh.gone", ""), dir("var/cache/"), file("var/cache/.wh..wh..opq", ""),
            file("var/cache/new", "n"), file("opt/.wh.tool", ""), file(".wh.nonexistent", ""),
        ])
    }

    @Test func whiteoutsAsDeletions() async throws {
        let scratch = try Scratch()
        let root = try scratch.dir("root")
        _ = try await LayerApplier.apply(BufferSource(try await lowerLayer()), to: root)
        _ = try await LayerApplier.apply(BufferSource(try await upperLayer()), to: root)
        let listing = try await sh("cd '\(root)' && find . | LC_ALL=C sort")
        #expect(listing == ".\n./etc\n./etc/keep\n./opt\n./var\n./var/cache\n./var/cache/new\n")
    }

    @Test func whiteoutsInOverlayFormHideLowerFilesInARealOverlay() async throws {
        let scratch = try Scratch()
        let lower = try scratch.dir("lower"), upper = try scratch.dir("upper")
        let work = try scratch.dir("work"), merged = try scratch.dir("merged")
        _ = try await LayerApplier.apply(BufferSource(try await lowerLayer()), to: lower)
        let options = ApplyOptions(whiteouts: .overlay, lowerDirectories: [lower])
        _ = try await LayerApplier.apply(BufferSource(try await upperLayer()), to: upper, options: options)
        let gone = try #require(lstatOf(upper + "/etc/gone"))
        #expect(gone.st_mode & S_IFMT == S_IFCHR && gone.st_rdev == 0)
        #expect(Xattr.all(upper + "/var/cache")["trusted.overlay.opaque"] == Array("y".utf8))
        // Parents the layer implies take the lower's metadata.
        #expect(lstatOf(upper + "/opt")?.st_mode == lstatOf(lower + "/opt")?.st_mode)

        try Mounting.mount(
            Mount(type: "overlay", source: "overlay",
                  options: ["lowerdir=\(lower)", "upperdir=\(upper)", "workdir=\(work)"]), at: merged)
        defer { try? Mounting.unmount(merged, detach: true) }
        let listing = try await sh("cd '\(merged)' && find . | LC_ALL=C sort")
        #expect(listing == ".\n./etc\n./etc/keep\n./opt\n./var\n./var/cache\n./var/cache/new\n")
    }

    @Test func gnuTarTreeRoundTripsThroughApply() async throws {
        let scratch = try Scratch()
        let src = try scratch.dir("src"), dst = try scratch.dir("dst")
        try await sh("""
            cd '\(src)'; mkdir -p a/b/c "sp ace"; printf one > a/b/c/f; chmod 4711 a/b/c/f; printf two > "sp ace/g"
            ln -s ../b a/link; ln a/b/c/f a/hard; mkfifo a/fifo; mknod a/null c 1 3; chown 12:34 a/b; chmod 1770 a/b
            touch -d @1000000000 a/b/c/f a/b/c a/b a
            """)
        let out = try await TestCommand.run("/bin/tar", ["--format=posix", "--numeric-owner", "-C", src, "-cf", "-", "."])
        #expect(out.status == 0)
        _ = try await LayerApplier.apply(BufferSource(Array(out.output)), to: dst)
        #expect(try await manifest(src) == (try await manifest(dst)))
        #expect(try await sh("cd '\(src)' && find . -printf '%p %T@\\n' | LC_ALL=C sort | grep -v '^\\. '")
            == (try await sh("cd '\(dst)' && find . -printf '%p %T@\\n' | LC_ALL=C sort | grep -v '^\\. '")))
    }
}
