#if canImport(Glibc)
    import Glibc
#endif
@testable import BerthArchive
import BerthCore
import BerthTestSupport
import Foundation
import Testing

/// Small regular files are written by the apply's writer threads (`FileWriters`). These layers put entries
/// that replace, link, hide or look below a file right behind it, while it may still be queued, and require
/// the result a sequential apply gives.
@Suite struct ParallelApplyTests {
    /// File `i` of directory `d`: its owner, mode, time and contents all depend on both, so a mix-up shows.
    static func numbered(_ d: Int, _ i: Int) -> (TarEntry, [UInt8]) {
        let entry = TarEntry(
            name: "d\(d)/f\(i)", type: .regular, mode: 0o600 | UInt32(i % 8) << 3, uid: 1000 + i, gid: 2000 + d,
            mtime: Int64(1_500_000_000 + 1000 * d + i))
        return (entry, Array(String(repeating: "d\(d)f\(i);", count: 1 + i % 50).utf8))
    }

    /// (d, i) of `d<d>/f<i>`.
    static func parse(_ name: String) -> (Int, Int)? {
        let parts = name.split(separator: "/")
        guard parts.count == 2, let d = Int(parts[0].dropFirst()), let i = Int(parts[1].dropFirst()) else { return nil }
        return (d, i)
    }

    @Test func entriesRightBehindQueuedFilesSeeThemWritten() async throws {
        let scratch = try Scratch()
        let root = try scratch.dir("root")
        // Each hazard follows its target right behind 120 other files, so the target is still queued (the
        // writers are far slower than the reader) when the hazard is read.
        let hazards: [[(TarEntry, [UInt8])]] = [
            [Self.numbered(0, 5), file("d0/f5", "second", mode: 0o640)],  // the same name again: the later one wins
            [Self.numbered(1, 7), hardlink("d1/link7", "d1/f7")],  // a link to a queued file
            [Self.numbered(2, 3), dir("d2/f3/", mode: 0o711), file("d2/f3/inner", "below")],  // a directory replaces it
            [Self.numbered(0, 9), symlink("d0/f9", "f8")],  // a symlink replaces it
            [Self.numbered(1, 11), (TarEntry(name: "d1/.wh.f11", type: .regular, mode: 0, mtime: 0), [])],  // hidden
        ]
        var entries: [(TarEntry, [UInt8])] = (0..<3).map { dir("d\($0)/") }
        var fillers: [(Int, Int)] = []
        for (n, hazard) in hazards.enumerated() {
            let d = Self.parse(hazard[0].0.name)?.0 ?? 0
            for i in 0..<120 {
                fillers.append((d, 1000 * (n + 1) + i))
                entries.append(Self.numbered(d, 1000 * (n + 1) + i))
            }
            entries += hazard
        }
        entries.append(dir("d0/", mode: 0o750))  // a directory's metadata again, after its files
        _ = try await LayerApplier.apply(
            BufferSource(try await makeTar(entries)), to: root, options: ApplyOptions(writerThreads: .always))

        for (d, i) in fillers {
            let (entry, data) = Self.numbered(d, i)
            let path = root + "/" + entry.name
            let st = try #require(lstatOf(path), "\(entry.name) missing")
            #expect(st.st_mode == S_IFREG | mode_t(entry.mode), "\(entry.name)")
            #expect(st.st_uid == uid_t(entry.uid) && st.st_gid == gid_t(entry.gid), "\(entry.name)")
            #expect(st.st_mtim.tv_sec == Int(entry.mtime), "\(entry.name)")
            #expect(readText(path) == String(decoding: data, as: UTF8.self), "\(entry.name)")
        }
        #expect(readText(root + "/d0/f5") == "second")
        #expect(lstatOf(root + "/d0/f5")?.st_mode == S_IFREG | 0o640)
        #expect(lstatOf(root + "/d1/link7")?.st_ino == lstatOf(root + "/d1/f7")?.st_ino)
        #expect(lstatOf(root + "/d1/f7")?.st_nlink == 2)
        #expect(lstatOf(root + "/d2/f3")?.st_mode == S_IFDIR | 0o711)
        #expect(readText(root + "/d2/f3/inner") == "below")
        #expect(try await sh("readlink '\(root)/d0/f9'") == "f8\n")
        #expect(lstatOf(root + "/d1/f11") == nil)
        #expect(lstatOf(root + "/d0")?.st_mode == S_IFDIR | 0o750)
        #expect(lstatOf(root + "/d0")?.st_mtim.tv_sec == 1_600_000_000)
        // The fillers, d0/f5, d1/f7 and its link, d2/f3/inner.
        #expect(try await sh("find '\(root)' -type f | wc -l") == "\(fillers.count + 4)\n")
    }

    @Test func aWriterThreadsFailureFailsTheApplyNamingItsEntry() async throws {
        let scratch = try Scratch()
        let root = try scratch.dir("root")
        let long = String(repeating: "x", count: 300)  // longer than NAME_MAX: openat fails on the writer thread
        var entries: [(TarEntry, [UInt8])] = [dir("a/")]
        for i in 0..<100 { entries.append(file("a/f\(i)", "\(i)")) }
        entries.append(file("a/\(long)", "never"))
        for i in 100..<200 { entries.append(file("a/f\(i)", "\(i)")) }
        do {
            _ = try await LayerApplier.apply(
                BufferSource(try await makeTar(entries)), to: root,
                options: ApplyOptions(label: "sha256:abc", writerThreads: .always))
            Issue.record("the apply succeeded")
        } catch let error as BerthError {
            #expect(error.message.hasPrefix("sha256:abc: entry \"a/\(long)\": create: "), "\(error.message)")
            #expect(error.message.contains("File name too long"), "\(error.message)")
        }
    }

    @Test func writerThreadsStartOnceCreatingFilesProvesSlow() throws {
        let scratch = try Scratch()
        let fast = try Extractor(root: try scratch.dir("fast"), options: ApplyOptions())
        for _ in 0..<(4 * Extractor.probeFiles) { fast.noteCreate(15_000) }
        #expect(!fast.slowCreates)
        let slow = try Extractor(root: try scratch.dir("slow"), options: ApplyOptions())
        for _ in 0..<(Extractor.probeFiles - 1) { slow.noteCreate(300_000) }
        #expect(!slow.slowCreates, "decided before a whole probe")
        slow.noteCreate(300_000)
        #expect(slow.slowCreates)
    }
}
