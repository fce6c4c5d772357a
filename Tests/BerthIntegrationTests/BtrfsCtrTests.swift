import Foundation
import Testing
#if canImport(Glibc)
    import Glibc
#endif

/// berthd's btrfs snapshotter driven by Debian's `ctr snapshots --snapshotter btrfs`: root_path on a loop-mounted
/// btrfs made by the test; what `ctr snapshots mounts` prints is run as is and written through.
@Suite(.serialized) struct BtrfsCtrTests {
    /// A loop-mounted btrfs under /var/tmp for one test; `tearDown` unmounts everything below it.
    final class LoopFileSystem {
        let directory = "/var/tmp/berth-btrfs-it-\(UUID().uuidString.prefix(8))"
        var mountPoint: String { directory + "/mnt" }

        init() throws {
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            do {
                for (tool, arguments) in [
                    ("/usr/bin/truncate", ["-s", "256M", directory + "/fs.img"]),
                    ("/usr/sbin/mkfs.btrfs", ["-q", "-f", directory + "/fs.img"]),
                    ("/bin/mount", ["-o", "loop", directory + "/fs.img", mountPoint]),
                ] {
                    let r = try execute(tool, arguments)
                    guard r.succeeded else { throw DaemonFailed(log: "\(tool) failed: \(r.stdout)\(r.stderr)") }
                }
            } catch {
                tearDown()
                throw error
            }
        }

        func tearDown() {
            // read(2) to the end: Foundation stops after the first 4 KiB of a /proc file.
            var bytes: [UInt8] = []
            let fd = open("/proc/self/mountinfo", O_RDONLY)
            var buffer = [UInt8](repeating: 0, count: 65536)
            while fd >= 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                bytes += buffer[0..<n]
            }
            if fd >= 0 { close(fd) }
            let mountinfo = String(decoding: bytes, as: UTF8.self)
            let points = mountinfo.split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: " ")
                guard fields.count > 4 else { return nil }
                let point = String(fields[4])
                return point == directory || point.hasPrefix(directory + "/") ? point : nil
            }
            for point in points.reversed() where umount2(point, 0) != 0 { umount2(point, 2 /* MNT_DETACH */) }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Runs the `mount -t TYPE SOURCE TARGET -o OPTIONS` line `ctr snapshots mounts` printed.
    func runMountCommand(_ line: String, target: String) throws {
        let words = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
        #expect(words.first == "mount" && words.contains(target), "\(line)")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        let r = try execute("/bin/mount", Array(words.dropFirst()))
        guard r.succeeded else { throw DaemonFailed(log: "\(line): \(r.stderr)") }
    }

    func unmount(_ target: String) {
        if umount2(target, 0) != 0 { umount2(target, 2) }
    }

    @Test func ctrSnapshotsThroughBtrfs() throws {
        let fs = try LoopFileSystem()
        defer { fs.tearDown() }
        let root = fs.mountPoint + "/snapshotter"
        try withDaemon(extra: """
            [plugins."io.containerd.snapshotter.v1.btrfs"]
              root_path = "\(root)"
            """) { d in
            let work = fs.directory + "/work"
            defer { for name in ["base", "child", "look"] { unmount(work + "/" + name) } }
            let plugins = try d.ctr(["plugins", "ls", "type==io.containerd.snapshotter.v1"])
            let status = Dictionary(plugins.stdout.split(separator: "\n").dropFirst().map { row in
                let f = row.split(separator: " ", omittingEmptySubsequences: true)
                return (String(f[1]), String(f.last ?? ""))
            }, uniquingKeysWith: { a, _ in a })
            #expect(status["btrfs"] == "ok", "\(plugins.stdout)")
            #expect(status["devmapper"] == "skip", "\(plugins.stdout)")
            let detailed = try d.ctr(["plugins", "ls", "--detailed", "id==devmapper"])
            // Here the kernel has no device-mapper; elsewhere the default config has no pool_name.
            #expect(detailed.stdout.contains("device-mapper is not available in this kernel")
                || detailed.stdout.contains("devmapper not configured"), "\(detailed.stdout)")
            #expect(detailed.stdout.contains(": skip plugin"), "\(detailed.stdout)")

            func snapshots(_ arguments: [String]) throws -> CommandResult {
                let r = try d.ctr(["snapshots", "--snapshotter", "btrfs"] + arguments)
                #expect(r.succeeded, "ctr snapshots \(arguments): \(r.stderr)")
                return r
            }

            _ = try snapshots(["prepare", "base-active"])
            var mounts = try snapshots(["mounts", work + "/base", "base-active"]).stdout
            #expect(mounts.range(of: #"^mount -t btrfs /dev/loop[0-9]+ \S+ -o subvolid=[0-9]+\n$"#, options: .regularExpression) != nil, "\(mounts)")
            try runMountCommand(mounts, target: work + "/base")
            try "from base\n".write(toFile: work + "/base/hello", atomically: false, encoding: .utf8)
            unmount(work + "/base")
            _ = try snapshots(["commit", "base", "base-active"])

            _ = try snapshots(["prepare", "child", "base"])
            mounts = try snapshots(["mounts", work + "/child", "child"]).stdout
            try runMountCommand(mounts, target: work + "/child")
            #expect(try String(contentsOfFile: work + "/child/hello", encoding: .utf8) == "from base\n")
            try Data(repeating: 1, count: 1 << 20).write(to: URL(fileURLWithPath: work + "/child/big"))
            unmount(work + "/child")

            _ = try snapshots(["view", "look", "base"])
            mounts = try snapshots(["mounts", work + "/look", "look"]).stdout
            #expect(mounts.hasSuffix(",ro\n"), "\(mounts)")
            try runMountCommand(mounts, target: work + "/look")
            #expect(try String(contentsOfFile: work + "/look/hello", encoding: .utf8) == "from base\n")
            #expect(!FileManager.default.fileExists(atPath: work + "/look/big"))
            #expect(open(work + "/look/new", O_CREAT | O_WRONLY, 0o644) == -1 && errno == EROFS)
            unmount(work + "/look")

            let ls = try snapshots(["ls"]).stdout
            let rows = ls.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(rows.first == ["KEY", "PARENT", "KIND"])
            #expect(Set(rows.dropFirst()) == [["base", "Committed"], ["child", "base", "Active"], ["look", "base", "View"]], "\(ls)")

            let info = try snapshots(["info", "child"]).stdout
            #expect(info.contains("\"Name\": \"child\"") && info.contains("\"Parent\": \"base\""), "\(info)")
            let usage = try snapshots(["usage", "child"]).stdout
            #expect(usage.contains("child"), "\(usage)")

            // The backend's layout: subvolumes under root_path, the committed one read-only.
            for kind in ["active", "view", "snapshots"] {
                let entries = try FileManager.default.contentsOfDirectory(atPath: root + "/" + kind)
                #expect(entries.count == 1, "\(kind): \(entries)")
            }

            let busy = try d.ctr(["snapshots", "--snapshotter", "btrfs", "rm", "base"])
            #expect(!busy.succeeded)
            _ = try snapshots(["rm", "child", "look"])
            _ = try snapshots(["rm", "base"])
            let empty = try snapshots(["ls"]).stdout
            #expect(empty.split(separator: "\n").count == 1, "\(empty)")
        }
    }
}
