import BerthCore

/// `[plugins."io.containerd.snapshotter.v1.devmapper"]`, containerd's keys (snapshots/devmapper/config.go).
/// Sizes are human-readable as containerd parses them ("10GB", "512MiB", "8g": binary multiples).
public struct DevmapperConfig: PluginConfig, Equatable {
    /// Directory for the snapshot and device metadata; empty means the plugin's own root.
    public var rootPath: String = ""
    /// The thin-pool device (without `/dev/mapper/`); empty means not configured, and the plugin skips.
    public var poolName: String = ""
    /// Virtual size of each base thin device (the file system created on it).
    public var baseImageSize: String = ""
    /// Defer the device removal to the snapshotter's `cleanup` (containerd's GC calls it).
    public var asyncRemove: Bool = false
    /// Discard a thin device's blocks (`blkdiscard`) before removing it, returning space to the pool.
    public var discardBlocks: Bool = false
    /// File system made on base devices: `ext4` (default), `xfs` or `ext2`.
    public var fsType: String = ""
    /// Extra options for mkfs (ext4: `-E` options).
    public var fsOptions: String = ""

    public init() {}

    enum CodingKeys: String, CodingKey {
        case rootPath = "root_path"
        case poolName = "pool_name"
        case baseImageSize = "base_image_size"
        case asyncRemove = "async_remove"
        case discardBlocks = "discard_blocks"
        case fsType = "fs_type"
        case fsOptions = "fs_options"
    }

    /// Checks every key and returns the parsed settings; the error lists each bad key by name (containerd
    /// joins them the same way). `root` fills an empty `root_path`.
    public func validated(defaultRoot: String = "") throws(BerthError) -> DevmapperSettings {
        var problems: [String] = []
        if poolName.isEmpty { problems.append("pool_name is required") }
        if poolName.contains("/") || poolName.contains(" ") {
            problems.append("pool_name \"\(poolName)\" must be a device name without \"/\" or spaces")
        }
        let root = rootPath.isEmpty ? defaultRoot : rootPath
        if root.isEmpty { problems.append("root_path is required") }
        var size: UInt64 = 0
        if baseImageSize.isEmpty {
            problems.append("base_image_size is required")
        } else {
            do throws(BerthError) {
                size = try parseSize(baseImageSize)
                if size < 512 || size % 512 != 0 {
                    problems.append(
                        "base_image_size \"\(baseImageSize)\" must be a positive multiple of 512 bytes (one sector)")
                }
            } catch {
                problems.append("failed to parse base_image_size: \"\(baseImageSize)\": \(error.message)")
            }
        }
        let fs = fsType.isEmpty ? FileSystemType.ext4 : FileSystemType(rawValue: fsType)
        if fs == nil { problems.append("fs_type: unsupported file system type \"\(fsType)\" (ext4, xfs or ext2)") }
        guard problems.isEmpty, let fs else {
            throw .invalidArgument("devmapper config: " + problems.joined(separator: "; "))
        }
        return DevmapperSettings(
            rootPath: root, poolName: poolName, baseImageSizeBytes: size, asyncRemove: asyncRemove,
            discardBlocks: discardBlocks, fsType: fs, fsOptions: fsOptions)
    }
}

/// The file systems the snapshotter can make on a base device.
public enum FileSystemType: String, Sendable, CaseIterable {
    case ext4, xfs, ext2
}

/// A validated devmapper configuration.
public struct DevmapperSettings: Sendable, Equatable {
    public var rootPath: String
    public var poolName: String
    public var baseImageSizeBytes: UInt64
    public var asyncRemove: Bool
    public var discardBlocks: Bool
    public var fsType: FileSystemType
    public var fsOptions: String
}

/// Parses a size as docker/go-units `RAMInBytes` (what containerd uses): a decimal number, an optional space,
/// an optional unit `k`, `m`, `g`, `t` or `p` (any case, multiples of 1024), optionally followed by `i` and/or
/// `b` ("10GB", "10 GiB", "10g", "512", "1.5m"). Anything else is InvalidArgument.
public func parseSize(_ text: String) throws(BerthError) -> UInt64 {
    let invalid = BerthError.invalidArgument("invalid size: '\(text)'")
    var chars = Substring(text)
    var number = ""
    while let c = chars.first, c.isASCII, c.isNumber || c == "." {
        number.append(c)
        chars.removeFirst()
    }
    // go-units' pattern: digits, then any number of ".digits" groups; ParseFloat then rejects "1.2.3".
    guard let first = number.first, first.isNumber, !number.hasSuffix("."), !number.contains(".."),
        number.filter({ $0 == "." }).count <= 1, let value = Double(number)
    else { throw invalid }
    if chars.first == " " { chars.removeFirst() }
    var suffix = chars.lowercased()[...]
    var multiplier: Double = 1
    if let unit = suffix.first, let power = "kmgtp".firstIndex(of: unit) {
        multiplier = Double(1 << (10 * ("kmgtp".distance(from: "kmgtp".startIndex, to: power) + 1)))
        suffix.removeFirst()
    }
    if suffix.first == "i" { suffix.removeFirst() }
    if suffix.first == "b" { suffix.removeFirst() }
    guard suffix.isEmpty else { throw invalid }
    let bytes = value * multiplier
    guard bytes < Double(UInt64.max) else { throw invalid }
    return UInt64(bytes)
}
