@testable import BerthArchive
import BerthCore
import BerthTestSupport
import Foundation
import Testing

/// The tar reader and writer against each other and against GNU tar, both directions.
@Suite struct TarTests {
    func readAll(_ bytes: [UInt8], chunk: Int = 700) async throws -> [(TarEntry, [UInt8])] {
        let reader = TarReader(BufferSource(bytes, chunk: chunk))
        var out: [(TarEntry, [UInt8])] = []
        while let entry = try await reader.next() {
            var data: [UInt8] = []
            while true {
                let c = try await reader.read()
                if c.isEmpty { break }
                data += c
            }
            out.append((entry, data))
        }
        return out
    }

    @Test func roundTripOfEveryFieldAndExtension() async throws {
        let longName = String(repeating: "d", count: 120) + "/" + String(repeating: "n", count: 150)
        let longLink = "/" + String(repeating: "t", count: 300)
        var big = TarEntry(name: "big-ids", type: .regular, mode: 0o4755, uid: 3_000_000, gid: 70_000_000, mtime: 1)
        big.xattrs = ["security.capability": [1, 0, 0, 2, 0x20, 0, 0, 0], "user.k": Array("v=1\n".utf8)]
        var device = TarEntry(name: "dev/null", type: .charDevice, mode: 0o666)
        device.devmajor = 1
        device.devminor = 3
        let entries: [(TarEntry, [UInt8])] = [
            dir("a/"), file("a/f", "hello"), (big, Array(repeating: 7, count: 1025)),
            (TarEntry(name: longName, type: .regular, mode: 0o600, mtime: 2), Array("long".utf8)),
            symlink("ln", longLink), hardlink("hl", "a/f"), (device, []),
            (TarEntry(name: "fifo", type: .fifo, mode: 0o640), []),
            (TarEntry(name: "ünïcode-名前", type: .regular, mode: 0o644), Array("u".utf8)),
        ]
        let bytes = try await makeTar(entries)
        #expect(bytes.count % 512 == 0)
        for chunk in [1, 511, 513, 1 << 20] {
            let back = try await readAll(bytes, chunk: chunk)
            #expect(back.count == entries.count)
            for ((want, wantData), (got, gotData)) in zip(entries, back) {
                #expect(got.name == want.name)
                #expect(got.type == want.type)
                #expect(got.mode == want.mode)
                #expect(got.uid == want.uid && got.gid == want.gid)
                #expect(got.linkname == want.linkname)
                #expect(got.xattrs == want.xattrs)
                #expect(got.devmajor == want.devmajor && got.devminor == want.devminor)
                #expect(gotData == wantData)
            }
        }
    }

    @Test func readsGNUTarOutputWithLongNamesAndPAXXattrs() async throws {
        let scratch = try Scratch()
        let src = try scratch.dir("src")
        let long = String(repeating: "x", count: 140)
        try await sh("""
            cd '\(src)'; mkdir -p "deep/\(long)"; printf data > "deep/\(long)/\(long)"
            ln -s "\(String(repeating: "y", count: 150))" "deep/longlink"; ln "deep/\(long)/\(long)" hard
            mkfifo fifo; mknod chr c 1 7; printf x > cap
            """)
        #expect(Xattr.set(src + "/cap", "user.color", Array("blue".utf8)) == 0)
        for format in ["gnu", "posix"] {
            let out = try await TestCommand.run(
                "/bin/tar", ["--format=\(format)", "--xattrs", "--xattrs-include=*", "-C", src, "-cf", "-", "."])
            #expect(out.status == 0, "\(out.stderr)")
            let entries = try await readAll(Array(out.output))
            let byName = Dictionary(entries.map { ($0.0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let file = try #require(byName["./deep/\(long)/\(long)"])
            #expect(file.1 == Array("data".utf8))
            #expect(byName["./deep/longlink"]?.0.linkname == String(repeating: "y", count: 150))
            #expect(byName["./deep/longlink"]?.0.type == .symlink)
            #expect(byName["./hard"]?.0.type == .hardlink)
            #expect(byName["./fifo"]?.0.type == .fifo)
            #expect(byName["./chr"]?.0.devmajor == 1 && byName["./chr"]?.0.devminor == 7)
            if format == "posix" { #expect(byName["./cap"]?.0.xattrs["user.color"] == Array("blue".utf8)) }
        }
    }

    @Test func gnuTarExtractsWhatBerthWrites() async throws {
        let scratch = try Scratch()
        let out = try scratch.dir("out")
        let longName = "p/" + String(repeating: "q", count: 200)
        var withXattr = TarEntry(name: "x", type: .regular, mode: 0o640, uid: 1234, gid: 5678, mtime: 1_500_000_000)
        withXattr.xattrs = ["user.note": Array("hi".utf8)]
        let bytes = try await makeTar([
            dir("p/"), (TarEntry(name: longName, type: .regular, mode: 0o600, mtime: 1), Array("L".utf8)),
            (withXattr, Array("xx".utf8)), symlink("s", "p"), hardlink("h", "x"),
        ])
        let result = try await TestCommand.run(
            "/bin/tar", ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", out, "-xpf", "-"], input: Data(bytes))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(readText(out + "/" + longName) == "L")
        let st = try #require(lstatOf(out + "/x"))
        #expect(st.st_uid == 1234 && st.st_gid == 5678 && st.st_mode & 0o7777 == 0o640 && st.st_mtim.tv_sec == 1_500_000_000)
        #expect(Xattr.all(out + "/x")["user.note"] == Array("hi".utf8))
        #expect(lstatOf(out + "/h")?.st_ino == st.st_ino)
        #expect(try await sh("readlink '\(out)/s'") == "p\n")
    }

    @Test func corruptHeadersAndTruncationFail() async throws {
        var bytes = try await makeTar([file("a", String(repeating: "z", count: 2000))])
        var corrupt = bytes
        corrupt[10] ^= 0xff
        await #expect(throws: BerthError.self) { _ = try await readAll(corrupt) }
        bytes.removeSubrange(1200...)
        await #expect(throws: BerthError.self) { _ = try await readAll(bytes) }
    }
}

/// gzip and zstd streams against the command-line tools.
@Suite struct CompressionTests {
    func drain(_ source: any ByteSource) async throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            let c = try await source.read()
            if c.isEmpty { return out }
            out += c
        }
    }

    @Test(arguments: ["gzip", "zstd"]) func toolsAndBerthAgree(tool: String) async throws {
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 7 / 3) }
        let compressed = try await TestCommand.run("/usr/bin/env", [tool, "-c"], input: Data(payload))
        #expect(compressed.status == 0)
        #expect(Compression.detect(Array(compressed.output.prefix(6))) == (tool == "gzip" ? .gzip : .zstd))
        let ours = try await drain(try await Compression.decompressing(BufferSource(Array(compressed.output), chunk: 333)))
        #expect(ours == payload)

        let sink = BufferSink()
        let compressor = try (tool == "gzip" ? Compression.gzip : .zstd).compressing(sink)
        for start in stride(from: 0, to: payload.count, by: 65536) {
            try await compressor.write(Array(payload[start..<min(payload.count, start + 65536)]))
        }
        try await compressor.finish()
        let back = try await TestCommand.run("/usr/bin/env", [tool, "-dc"], input: Data(sink.bytes))
        #expect(back.status == 0, "\(back.stderr)")
        #expect(Array(back.output) == payload)
    }

    @Test func concatenatedGzipMembersAndTruncation() async throws {
        let a = try await gzip(Array("first ".utf8)), b = try await gzip(Array("second".utf8))
        let both = try await drain(try await Compression.decompressing(BufferSource(a + b, chunk: 5)))
        #expect(String(decoding: both, as: UTF8.self) == "first second")
        await #expect(throws: BerthError.self) {
            _ = try await self.drain(try await Compression.decompressing(BufferSource(Array(a.dropLast(5)))))
        }
        await #expect(throws: BerthError.self) {
            _ = try await self.drain(try await Compression.decompressing(BufferSource(a + [1, 2, 3])))
        }
    }

    @Test func uncompressedPassesThroughAndXzIsRefused() async throws {
        let plain = Array("just a tar, or anything".utf8)
        #expect(try await drain(try await Compression.decompressing(BufferSource(plain))) == plain)
        await #expect(throws: BerthError.self) {
            _ = try await Compression.decompressing(BufferSource([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1]))
        }
    }
}
