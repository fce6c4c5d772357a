#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// The `dmsetup` command lines the devmapper snapshotter issues (containerd's snapshots/devmapper/dmsetup), as
/// pure functions so they can be checked without a device-mapper kernel, plus parsers for its output.
public enum DMSetup {
    public static let devMapperDirectory = "/dev/mapper/"
    /// Bytes per device-mapper sector.
    public static let sectorSize: UInt64 = 512

    /// `/dev/mapper/<name>` (unchanged when already a full path).
    public static func fullPath(_ name: String) -> String {
        name.hasPrefix(devMapperDirectory) ? name : devMapperDirectory + name
    }

    /// `dmsetup message <pool> 0 "create_thin <id>"`: a new, empty thin device.
    public static func createThin(pool: String, id: UInt32) -> [String] {
        ["message", pool, "0", "create_thin \(id)"]
    }

    /// `dmsetup message <pool> 0 "create_snap <id> <origin>"`: a thin snapshot of device `origin` (which must be
    /// suspended if active).
    public static func createSnapshot(pool: String, id: UInt32, origin: UInt32) -> [String] {
        ["message", pool, "0", "create_snap \(id) \(origin)"]
    }

    /// `dmsetup message <pool> 0 "delete <id>"`.
    public static func delete(pool: String, id: UInt32) -> [String] {
        ["message", pool, "0", "delete \(id)"]
    }

    /// The `thin` target line: `0 <sectors> thin /dev/mapper/<pool> <id> [external origin]`.
    public static func thinTable(pool: String, id: UInt32, sizeBytes: UInt64, externalOrigin: String = "") -> String {
        "0 \(sizeBytes / sectorSize) thin \(fullPath(pool)) \(id) \(externalOrigin)"
            .trimmingCharacters(in: .whitespaces)
    }

    /// `dmsetup create <name> --table "<thin table>"`: activates a thin device as /dev/mapper/<name>.
    public static func activate(pool: String, name: String, id: UInt32, sizeBytes: UInt64) -> [String] {
        ["create", name, "--table", thinTable(pool: pool, id: id, sizeBytes: sizeBytes)]
    }

    /// The thin-pool target line for creating a pool from a data and a metadata device.
    public static func thinPoolTable(
        dataDevice: String, metadataDevice: String, dataSizeBytes: UInt64, blockSizeSectors: UInt32,
        lowWaterMark: UInt64 = 32768
    ) -> String {
        "0 \(dataSizeBytes / sectorSize) thin-pool \(metadataDevice) \(dataDevice) \(blockSizeSectors) \(lowWaterMark) 1 skip_block_zeroing"
    }

    public static func suspend(_ name: String) -> [String] { ["suspend", name] }
    public static func resume(_ name: String) -> [String] { ["resume", name] }

    /// Flags of `dmsetup remove`.
    public enum RemoveOption: String, Sendable {
        /// Replace the table with one failing all I/O when the device is open.
        case force = "--force"
        /// Retry for a few seconds when busy.
        case retry = "--retry"
        /// Remove when the last user closes it.
        case deferred = "--deferred"
    }

    /// `dmsetup remove [options] /dev/mapper/<name>`.
    public static func remove(_ name: String, options: [RemoveOption]) -> [String] {
        ["remove"] + options.map(\.rawValue) + [fullPath(name)]
    }

    /// `dmsetup info` in the column format `parseInfo` reads.
    public static func info(_ name: String) -> [String] {
        ["info", "--columns", "--noheadings", "-o", "name,blkdevname,attr,major,minor,open,segments,events",
         "--separator", " ", name]
    }

    public static func status(_ name: String) -> [String] { ["status", name] }
    public static func version() -> [String] { ["version"] }

    /// One line of `dmsetup info --columns` as requested by `info(_:)`.
    public struct Info: Sendable, Equatable {
        public var name: String
        public var blockDeviceName: String
        public var tableLive: Bool
        public var tableInactive: Bool
        public var suspended: Bool
        public var readOnly: Bool
        public var major: UInt32
        public var minor: UInt32
        public var openCount: UInt32
        public var targetCount: UInt32
        public var eventNumber: UInt32
    }

    public static func parseInfo(_ output: String) throws(BerthError) -> [Info] {
        var infos: [Info] = []
        for line in output.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let f = line.split(separator: " ")
            guard f.count == 8, let major = UInt32(f[3]), let minor = UInt32(f[4]), let open = UInt32(f[5]),
                let segments = UInt32(f[6]), let events = UInt32(f[7])
            else { throw .internalError("failed to parse line \"\(line)\" of dmsetup info") }
            let attr = f[2]
            infos.append(Info(
                name: String(f[0]), blockDeviceName: String(f[1]), tableLive: attr.contains("L"),
                tableInactive: attr.contains("I"), suspended: attr.contains("s"), readOnly: attr.contains("r"),
                major: major, minor: minor, openCount: open, targetCount: segments, eventNumber: events))
        }
        return infos
    }

    /// `dmsetup status <name>`: `<offset> <length> <target> <params…>`.
    public struct Status: Sendable, Equatable {
        public var offset: Int64
        public var length: Int64
        public var target: String
        public var params: [String]
    }

    public static func parseStatus(_ output: String) throws(BerthError) -> Status {
        let parts = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
        guard parts.count >= 4, let offset = Int64(parts[0]), let length = Int64(parts[1]) else {
            throw .internalError("failed to parse dmsetup status output: \"\(output)\"")
        }
        return Status(offset: offset, length: length, target: parts[2], params: Array(parts[3...]))
    }

    /// Bytes a thin device uses: the first status parameter is its mapped sectors
    /// (`device2: 0 204800 thin 17280 204799`).
    public static func usedBytes(_ status: Status) throws(BerthError) -> Int64 {
        guard let first = status.params.first, let sectors = Int64(first) else {
            throw .internalError("failed to get the number of used blocks from dmsetup status \(status.params)")
        }
        return sectors * Int64(sectorSize)
    }

    /// The errno behind a failed dmsetup, from its message (`device-mapper: message ioctl on pool failed: File
    /// exists`; "… not found" is ENXIO), as containerd's `tryGetUnixError`; nil when the text names none.
    public static func errno(fromOutput output: String) -> Int32? {
        let lines = output.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        guard lines.count >= 2 else { return nil }
        let line = lines[0]
        if line.hasSuffix("not found") { return ENXIO }
        guard let range = line.range(of: "failed: ", options: .backwards) else { return nil }
        let text = line[range.upperBound...].lowercased()
        for code in Int32(1)...Int32(133) where String(cString: strerror(code)).lowercased() == text {
            return code
        }
        return nil
    }
}
