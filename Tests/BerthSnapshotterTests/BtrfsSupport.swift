import BerthCore
import BerthDevmapperSnapshotter
@testable import BerthBtrfsSnapshotter
import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// A program's exit status and combined output.
struct BtrfsCommandResult {
    var status: Int32
    var output: String
}

/// Runs a program to completion (no shell), returning its status and stdout+stderr (devmapper's executor).
@discardableResult
func btrfsRun(_ path: String, _ arguments: [String]) throws -> BtrfsCommandResult {
    let (status, output) = try SystemCommandExecutor().run(path, arguments)
    return BtrfsCommandResult(status: status, output: output)
}

struct BtrfsSetupFailed: Error, CustomStringConvertible {
    var description: String
}

/// A btrfs file system of its own for one test: a sparse image file in /var/tmp, `mkfs.btrfs`, `mount -o loop`
/// (the loop device detaches itself on unmount). `tearDown()` unmounts everything below it and deletes the
/// image; call it from a `defer` so a failing test cleans up too.
final class LoopBtrfs: @unchecked Sendable {
    let directory: String
    let image: String
    let mountPoint: String
    /// The loop device the file system is mounted from (what the snapshotter's mounts name as source).
    private(set) var device = ""

    init(sizeMB: Int = 256) throws {
        directory = "/var/tmp/berth-btrfs-\(UUID().uuidString.prefix(8))"
        image = directory + "/fs.img"
        mountPoint = directory + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        do {
            try check(btrfsRun("/usr/bin/truncate", ["-s", "\(sizeMB)M", image]), "truncate")
            try check(btrfsRun("/usr/sbin/mkfs.btrfs", ["-q", "-f", image]), "mkfs.btrfs")
            try check(btrfsRun("/bin/mount", ["-o", "loop", image, mountPoint]), "mount")
            device = try mountSource(mountPoint)
        } catch {
            tearDown()
            throw error
        }
    }

    private func check(_ result: BtrfsCommandResult, _ what: String) throws {
        guard result.status == 0 else { throw BtrfsSetupFailed(description: "\(what) failed: \(result.output)") }
    }

    /// Unmounts every mount at or below the file system (deepest first), then removes image and directories.
    func tearDown() {
        for target in mountsBelow(directory).reversed() where umount2(target, 0) != 0 {
            umount2(target, Int32(MNT_DETACH))
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Mount points at or below `prefix`, in mount order.
func mountsBelow(_ prefix: String) -> [String] {
    guard let text = try? FileSystem.read("/proc/self/mountinfo") else { return [] }
    return text.split(separator: "\n").compactMap { line -> String? in
        let fields = line.split(separator: " ")
        guard fields.count > 4 else { return nil }
        let point = String(fields[4])
        return point == prefix || point.hasPrefix(prefix + "/") ? point : nil
    }
}

/// The source (device) of the mount at `mountPoint`.
func mountSource(_ mountPoint: String) throws -> String {
    let text = try FileSystem.read("/proc/self/mountinfo")
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count > 4, fields[4] == mountPoint, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count
        else { continue }
        return String(fields[dash + 2])
    }
    throw BtrfsSetupFailed(description: "\(mountPoint) is not mounted")
}

/// Mounts what a snapshotter returned at `target` with mount(8) (one mount: btrfs returns exactly one).
func btrfsMount(_ mounts: [Mount], at target: String) throws {
    try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
    for mount in mounts {
        let result = try btrfsRun(
            "/bin/mount", ["-t", mount.type] + (mount.options.isEmpty ? [] : ["-o", mount.options.joined(separator: ",")])
                + [mount.source, target])
        guard result.status == 0 else { throw BtrfsSetupFailed(description: "mount \(mount) failed: \(result.output)") }
    }
}

/// Unmounts `target` (lazily if busy).
func btrfsUnmount(_ target: String) {
    if umount2(target, 0) != 0 { umount2(target, Int32(MNT_DETACH)) }
}

/// Mounts `mounts` on a fresh directory, runs `body` with it, and always unmounts.
func withBtrfsMounted<T>(_ mounts: [Mount], _ body: (String) throws -> T) throws -> T {
    let target = "/var/tmp/berth-btrfs-mnt-\(UUID().uuidString.prefix(8))"
    try btrfsMount(mounts, at: target)
    defer {
        btrfsUnmount(target)
        rmdir(target)
    }
    return try body(target)
}
