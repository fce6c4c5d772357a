#if canImport(Glibc)
    import Glibc
#endif
import BerthCore

/// One line of `/proc/self/mountinfo`: what containerd's `mount.Lookup` returns.
struct MountInfo: Sendable, Equatable {
    var mountPoint: String
    var fsType: String
    var source: String

    /// The mount that holds `path` (the longest mount point that is a prefix of its real path), as containerd's
    /// `mount.Lookup`: the btrfs snapshotter needs the file system type and the device to put in its mounts.
    static func lookup(_ path: String, mountinfo: String? = nil) throws(BerthError) -> MountInfo {
        guard let resolved = realpath(path, nil) else {
            throw .internalError("resolve \(path): \(FileSystem.errnoMessage())")
        }
        let real = String(cString: resolved)
        free(resolved)
        let text: String
        if let mountinfo { text = mountinfo } else { text = try FileSystem.read("/proc/self/mountinfo") }
        var best: MountInfo?
        for line in text.split(separator: "\n") {
            guard let info = parse(line), contains(info.mountPoint, real) else { continue }
            // Later lines with the same mount point are mounted over earlier ones: take the last.
            if best == nil || info.mountPoint.count >= (best?.mountPoint.count ?? 0) { best = info }
        }
        guard let best else { throw .notFound("no mount holds \(real)") }
        return best
    }

    /// Parses `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue` (proc(5)).
    static func parse(_ line: Substring) -> MountInfo? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 7, let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 2 < fields.count else {
            return nil
        }
        return MountInfo(
            mountPoint: unescape(fields[4]), fsType: unescape(fields[dash + 1]), source: unescape(fields[dash + 2]))
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count {
                let digits = utf8[(i + 1)...(i + 3)]
                if digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }) {
                    bytes.append(digits.reduce(0) { $0 &* 8 &+ ($1 - UInt8(ascii: "0")) })
                    i += 4
                    continue
                }
            }
            bytes.append(utf8[i])
            i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func contains(_ mountPoint: String, _ path: String) -> Bool {
        mountPoint == "/" || path == mountPoint || path.hasPrefix(mountPoint + "/")
    }
}
