#if canImport(Glibc)
    import Glibc
#endif
@testable import BerthArchive
import BerthCore
import Foundation
import Testing

/// A malicious-layer corpus built with Berth's own tar writer. Each layer tries to create or change something
/// outside the root; the apply must either fail or resolve everything inside the root. Every case checks that a
/// sentinel directory beside the root is untouched and that nothing new appeared next to it.
@Suite struct MaliciousLayerTests {
    /// One attack: a name and the entries; `S` in names and targets is replaced by the sentinel's absolute path.
    struct Attack: Sendable, CustomTestStringConvertible {
        let name: String
        let entries: @Sendable (String) -> [(TarEntry, [UInt8])]
        var testDescription: String { name }
    }

    static let attacks: [Attack] = [
        Attack(name: "dot-dot in a file name") { _ in [file("../../../../../../escape-dotdot", "x")] },
        Attack(name: "dot-dot into the sentinel") { s in [file("../../../../../../..\(s)/file", "pwned")] },
        Attack(name: "absolute file name") { s in [file("\(s)/file", "pwned"), file("\(s)/new", "pwned")] },
        Attack(name: "absolute symlink, then a file written through it") { s in
            [symlink("link", s), file("link/file", "pwned"), file("link/new", "pwned")]
        },
        Attack(name: "relative symlink climbing out, then a file through it") { s in
            [symlink("link", "../../../../../../../..\(s)"), file("link/file", "pwned")]
        },
        Attack(name: "symlink to the sentinel file, then the same name as a file") { s in
            [symlink("f", "\(s)/file"), file("f", "replaced the link only")]
        },
        Attack(name: "symlink to a file outside, then a hardlink to it") { s in
            [symlink("f", "\(s)/file"), hardlink("h", "f"), file("h", "pwned")]
        },
        Attack(name: "hardlink to an absolute outside path") { s in [hardlink("h", "\(s)/file")] },
        Attack(name: "hardlink with dot-dot to outside") { s in [hardlink("h", "../../../../../..\(s)/file")] },
        Attack(name: "hardlink through a symlinked parent") { s in [symlink("d", s), hardlink("h", "d/file")] },
        Attack(name: "symlink replacing a directory mid-layer") { s in
            [dir("d/"), file("d/a", "inside"), symlink("d", s), file("d/b", "pwned"), file("d/file", "pwned")]
        },
        Attack(name: "chained symlinks ending outside") { s in
            [symlink("a", "b"), symlink("b", "c/.."), dir("c/"), symlink("c/up", "../../../.."), symlink("e", "c/up\(s)"),
             file("e/new", "pwned")]
        },
        Attack(name: "whiteout through a symlink") { s in [symlink("d", s), file("d/.wh.file", "")] },
        Attack(name: "opaque marker through a symlink") { s in [symlink("d", s), file("d/.wh..wh..opq", "")] },
        Attack(name: "whiteout with dot-dot") { _ in [file("../.wh.sentinel", ""), file("a/../../.wh.sentinel", "")] },
        Attack(name: "directory entry through a symlink changes no mode") { s in
            [symlink("d", s), (TarEntry(name: "d/", type: .directory, mode: 0o777, uid: 4242, mtime: 1), [])]
        },
        Attack(name: "device and fifo through a symlink") { s in
            var dev = TarEntry(name: "d/dev", type: .charDevice, mode: 0o666)
            dev.devmajor = 1
            dev.devminor = 1
            return [symlink("d", s), (dev, []), (TarEntry(name: "d/fifo", type: .fifo, mode: 0o666), [])]
        },
        Attack(name: "xattr through a symlink") { s in
            var e = TarEntry(name: "d/file", type: .regular, mode: 0o644)
            e.xattrs = ["user.pwned": [1]]
            return [symlink("d", s), (e, Array("pwned".utf8))]
        },
    ]

    /// Sets up `<scratch>/root` and `<scratch>/sentinel` (with a file and a subdirectory), and returns a
    /// snapshot of everything under the scratch directory except the root.
    func setUp(_ scratch: Scratch) async throws -> (root: String, sentinel: String, before: String) {
        let root = try scratch.dir("root")
        let sentinel = try scratch.dir("sentinel")
        try await sh("printf original > '\(sentinel)/file'; mkdir '\(sentinel)/sub'; chmod 700 '\(sentinel)'")
        return (root, sentinel, try await outside(scratch))
    }

    func outside(_ scratch: Scratch) async throws -> String {
        try await sh("cd '\(scratch.path)' && find . -path ./root -prune -o -printf '%p %y %m %U %s %T@\\n' | LC_ALL=C sort"
            + " && cat sentinel/file && getfattr -d sentinel/file 2>/dev/null || true")
            + (try await sh("ls -la / /tmp | grep -c escape || true"))
    }

    @Test(arguments: attacks) func attackIsContained(_ attack: Attack) async throws {
        let scratch = try Scratch()
        let (root, sentinel, before) = try await setUp(scratch)
        let tar = try await makeTar(attack.entries(sentinel))
        var failure: BerthError?
        do {
            _ = try await LayerApplier.apply(BufferSource(try await gzip(tar)), to: root)
        } catch {
            failure = error as? BerthError ?? BerthError.wrap(error)
        }
        #expect(try await outside(scratch) == before, "sentinel changed; apply error: \(String(describing: failure))")
        #expect(readText(sentinel + "/file") == "original")
        #expect(Xattr.all(sentinel + "/file")["user.pwned"] == nil)
        #expect(!FileManager.default.fileExists(atPath: "/escape-dotdot"))
        if let failure {
            // A refused entry is named in the error.
            #expect(failure.message.contains("entry"), "\(failure)")
        }
    }

    @Test func resolvedInsideTheRootLikeContainerd() async throws {
        let scratch = try Scratch()
        let (root, sentinel, _) = try await setUp(scratch)
        let tar = try await makeTar([
            file("../../../../dotdot", "a"), file("\(sentinel)/abs", "b"), symlink("link", sentinel),
            file("link/through", "c"),
        ])
        _ = try await LayerApplier.apply(BufferSource(tar), to: root)
        #expect(readText(root + "/dotdot") == "a")
        #expect(readText(root + sentinel + "/abs") == "b")
        #expect(readText(root + sentinel + "/through") == "c")
    }

    @Test func gzipBombIsStoppedByTheLimit() async throws {
        let scratch = try Scratch()
        let (root, _, before) = try await setUp(scratch)
        // 64 MiB of zeros in one entry compress to ~64 KiB; the limit is 4 MiB.
        let sink = BufferSink()
        let compressor = try Compression.gzip.compressing(sink)
        let writer = TarWriter(compressor)
        try await writer.writeHeader(TarEntry(name: "bomb", type: .regular, size: 64 << 20))
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<64 { try await writer.write(zeros) }
        try await writer.finish()
        #expect(sink.bytes.count < 1 << 20)
        let options = ApplyOptions(maxUncompressedBytes: 4 << 20, label: "bomb layer")
        let error = await #expect(throws: BerthError.self) {
            _ = try await LayerApplier.apply(BufferSource(sink.bytes), to: root, options: options)
        }
        #expect(error?.message.contains("exceeds the limit of 4194304 bytes") == true, "\(String(describing: error))")
        #expect(try await outside(scratch) == before)
        // The partial file stays inside the root and is bounded by the limit.
        #expect((lstatOf(root + "/bomb")?.st_size ?? 0) <= 4 << 20)
    }
}
