#if canImport(Glibc)
    import Glibc
#endif
@testable import BerthArchive
import BerthCore
import BerthTestSupport
import Foundation
import Testing

/// The double-walk diff: the layer it writes, applied onto the lower tree, reproduces the upper tree.
@Suite struct DiffTests {
    func diff(_ lower: String, _ upper: String) async throws -> [UInt8] {
        let sink = BufferSink()
        try await LayerDiff.write(lower: lower, upper: upper, to: TarWriter(sink), whiteoutTime: 1_700_000_000)
        return sink.bytes
    }

    func names(_ tar: [UInt8]) async throws -> [String] {
        let reader = TarReader(BufferSource(tar))
        var names: [String] = []
        while let entry = try await reader.next() { names.append(entry.name) }
        return names
    }

    @Test func diffAppliedOnLowerGivesUpper() async throws {
        let scratch = try Scratch()
        let lower = try scratch.dir("lower"), upper = try scratch.dir("upper"), replay = try scratch.dir("replay")
        try await sh("""
            cd '\(lower)'; mkdir -p etc/conf.d var/lib/app usr/bin gone/deep; printf a > etc/keep; printf b > etc/edit
            printf c > etc/conf.d/x; printf d > var/lib/app/db; printf e > usr/bin/tool; printf f > gone/deep/file
            ln -s tool usr/bin/alias; printf g > etc/mode; printf h > typechange; mkdir dir2file
            touch -d @1000000000 etc/keep etc/edit etc/mode usr/bin/tool
            cp -a '\(lower)/.' '\(upper)/'
            cd '\(upper)'; printf B > etc/edit; touch -d @1000000000 etc/edit; chmod 600 etc/mode; rm -rf gone
            rm etc/conf.d/x; printf new > etc/conf.d/y; ln -sf other usr/bin/alias; rm typechange; mkdir typechange
            printf t > typechange/inner; rmdir dir2file; printf now-a-file > dir2file; printf hl > var/lib/app/h1
            ln var/lib/app/h1 var/lib/app/h2; chown 7:8 var/lib/app/db; mkfifo var/fifo
            """)
        let tar = try await diff(lower, upper)
        let entryNames = try await names(tar)
        #expect(entryNames.contains(".wh.gone"))
        #expect(entryNames.contains("etc/conf.d/.wh.x"))
        #expect(entryNames.contains("etc/edit"))
        #expect(!entryNames.contains("etc/keep"))
        #expect(!entryNames.contains("usr/bin/tool"))
        #expect(entryNames.filter { $0.hasPrefix("var/lib/app/h") }.count == 2)

        try await sh("cp -a '\(lower)/.' '\(replay)/'")
        _ = try await LayerApplier.apply(BufferSource(tar), to: replay)
        #expect(try await manifest(replay) == (try await manifest(upper)))
        #expect(lstatOf(replay + "/var/lib/app/h1")?.st_ino == lstatOf(replay + "/var/lib/app/h2")?.st_ino)
    }

    @Test func identicalTreesGiveAnEmptyLayerAndGNUTarReadsDiffs() async throws {
        let scratch = try Scratch()
        let lower = try scratch.dir("lower"), upper = try scratch.dir("upper")
        try await sh("cd '\(lower)'; mkdir a; printf x > a/f; cp -a '\(lower)/.' '\(upper)/'")
        #expect(try await names(try await diff(lower, upper)).isEmpty)
        try await sh("printf y > '\(upper)/a/g'; rm '\(upper)/a/f'")
        let tar = try await diff(lower, upper)
        let listing = try await TestCommand.run("/bin/tar", ["-tf", "-"], input: Data(tar))
        #expect(listing.status == 0)
        #expect(listing.stdout == "a/\na/.wh.f\na/g\n")
    }
}
