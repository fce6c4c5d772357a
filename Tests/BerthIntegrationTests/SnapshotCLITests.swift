import Foundation
import Testing

/// `berth snapshots …` against berthd, cross-checked with ctr.
@Suite(.serialized) struct SnapshotCLITests {
    @Test(arguments: ["overlayfs", "native"]) func everySubcommand(snapshotter: String) throws {
        try withDaemon(extra: quietGC) { d in
            func berth(_ arguments: [String]) throws -> CommandResult {
                let r = try d.berth(["snapshots"] + arguments + ["--snapshotter", snapshotter])
                #expect(r.succeeded, "berth snapshots \(arguments): \(r.stderr)")
                return r
            }
            let prepared = try berth(["prepare", "--mounts", "base"])
            #expect(prepared.stdout.hasPrefix("mount -t "), "\(prepared.stdout)")
            _ = try berth(["commit", "base-c", "base"])
            _ = try berth(["prepare", "work", "base-c"])
            _ = try berth(["view", "ro", "base-c"])

            let ls = try berth(["ls"])
            #expect(ls.stdout.hasPrefix("KEY"), "\(ls.stdout)")
            let rows = ls.stdout.split(separator: "\n").dropFirst().map {
                $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            }
            #expect(rows.contains(["work", "base-c", "Active"]), "\(ls.stdout)")
            #expect(rows.contains(["base-c", "Committed"]), "\(ls.stdout)")
            #expect(rows.contains(["ro", "base-c", "View"]), "\(ls.stdout)")
            // ctr sees the same snapshots in the same namespace.
            #expect(try d.ctr(["snapshots", "--snapshotter", snapshotter, "ls"]).stdout.contains("work"))

            let tree = try berth(["tree"])
            #expect(tree.stdout.contains(" base-c\n") && tree.stdout.contains("  \\_ work"), "\(tree.stdout)")
            let mounts = try berth(["mounts", "/mnt/x", "work"])
            #expect(mounts.stdout.hasPrefix("mount -t ") && mounts.stdout.contains(" /mnt/x -o "), "\(mounts.stdout)")
            let info = try berth(["info", "work"])
            #expect(info.stdout.contains("\"Kind\" : \"Active\"") || info.stdout.contains("\"Kind\": \"Active\""), "\(info.stdout)")
            let label = try berth(["label", "work", "a=b"])
            #expect(label.stdout.contains("a=b"), "\(label.stdout)")
            #expect(try d.ctr(["snapshots", "--snapshotter", snapshotter, "info", "work"]).stdout.contains("\"a\": \"b\""))
            let usage = try berth(["usage", "-b", "work"])
            #expect(usage.stdout.contains("work"), "\(usage.stdout)")

            let failing = try d.berth(["snapshots", "rm", "base-c", "--snapshotter", snapshotter])
            #expect(!failing.succeeded)
            #expect(failing.stderr.contains("cannot remove snapshot with child"), "\(failing.stderr)")
            _ = try berth(["rm", "work", "ro", "base-c"])
            #expect(try berth(["ls"]).stdout.split(separator: "\n").count == 1)
        }
    }
}
