import BerthCore

/// The kinds of tar entries a layer may hold.
public enum TarEntryType: Sendable, Equatable {
    case regular, hardlink, symlink, charDevice, blockDevice, directory, fifo
    /// Any other type flag (sparse files, volume labels, …): a layer containing one is refused, as containerd does.
    case other(UInt8)

    init(flag: UInt8) {
        switch flag {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"): self = .regular
        case UInt8(ascii: "1"): self = .hardlink
        case UInt8(ascii: "2"): self = .symlink
        case UInt8(ascii: "3"): self = .charDevice
        case UInt8(ascii: "4"): self = .blockDevice
        case UInt8(ascii: "5"): self = .directory
        case UInt8(ascii: "6"): self = .fifo
        default: self = .other(flag)
        }
    }

    var flag: UInt8 {
        switch self {
        case .regular: UInt8(ascii: "0")
        case .hardlink: UInt8(ascii: "1")
        case .symlink: UInt8(ascii: "2")
        case .charDevice: UInt8(ascii: "3")
        case .blockDevice: UInt8(ascii: "4")
        case .directory: UInt8(ascii: "5")
        case .fifo: UInt8(ascii: "6")
        case .other(let f): f
        }
    }
}

/// One tar entry's metadata, after PAX and GNU extensions are applied. `mode` holds permission bits plus
/// setuid/setgid/sticky (07777); the type is separate.
public struct TarEntry: Sendable, Equatable {
    public var name: String
    public var type: TarEntryType
    public var mode: UInt32
    public var uid: Int
    public var gid: Int
    public var size: Int64
    /// Seconds and nanoseconds since the epoch.
    public var mtime: Int64
    public var mtimeNanoseconds: Int32 = 0
    public var linkname: String
    public var devmajor: UInt32 = 0
    public var devminor: UInt32 = 0
    public var uname: String = ""
    public var gname: String = ""
    /// Extended attributes (`SCHILY.xattr.NAME` records), values as raw bytes.
    public var xattrs: [String: [UInt8]] = [:]

    public init(name: String, type: TarEntryType, mode: UInt32 = 0o644, uid: Int = 0, gid: Int = 0, size: Int64 = 0,
                mtime: Int64 = 0, linkname: String = "") {
        self.name = name
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime = mtime
        self.linkname = linkname
    }
}

/// The fixed layout of a 512-byte tar header block (POSIX ustar; GNU's variant differs only after offset 345).
enum TarHeader {
    static let blockSize = 512
    static let name = 0..<100, mode = 100..<108, uid = 108..<116, gid = 116..<124, size = 124..<136
    static let mtime = 136..<148, checksum = 148..<156, typeflag = 156, linkname = 157..<257
    static let magic = 257..<263, version = 263..<265, uname = 265..<297, gname = 297..<329
    static let devmajor = 329..<337, devminor = 337..<345, prefix = 345..<500

    /// A NUL-terminated string field.
    static func string(_ block: ArraySlice<UInt8>, _ range: Range<Int>) -> String {
        let base = block.startIndex
        let field = block[(base + range.lowerBound)..<(base + range.upperBound)]
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[field.startIndex..<end], as: UTF8.self)
    }

    /// A numeric field: octal text (spaces/NULs around it), or GNU base-256 when the high bit of the first byte is set.
    static func number(_ block: ArraySlice<UInt8>, _ range: Range<Int>) throws(BerthError) -> Int64 {
        let base = block.startIndex
        let field = block[(base + range.lowerBound)..<(base + range.upperBound)]
        guard let first = field.first else { return 0 }
        if first & 0x80 != 0 {
            // Base-256: big-endian two's complement with the marker bit cleared (positive) or set (negative).
            guard first & 0x40 == 0 else { throw .invalidArgument("tar: negative base-256 number") }
            var value: Int64 = Int64(first & 0x3f)
            for byte in field.dropFirst() {
                guard value < (Int64.max >> 8) else { throw .invalidArgument("tar: numeric field overflows") }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        var value: Int64 = 0
        var seenDigit = false
        for byte in field {
            if byte == 0 || byte == UInt8(ascii: " ") {
                if seenDigit { break } else { continue }
            }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "7") else {
                throw .invalidArgument("tar: invalid octal number in header")
            }
            guard value < (Int64.max >> 3) else { throw .invalidArgument("tar: numeric field overflows") }
            value = value << 3 | Int64(byte - UInt8(ascii: "0"))
            seenDigit = true
        }
        return value
    }

    /// True when the checksum field matches the header (unsigned or signed sum, as old tars wrote either).
    static func checksumValid(_ block: ArraySlice<UInt8>) -> Bool {
        guard let stored = try? number(block, checksum) else { return false }
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (i, byte) in block.enumerated() {
            let b = checksum.contains(i) ? UInt8(ascii: " ") : byte
            unsigned += Int64(b)
            signed += Int64(Int8(bitPattern: b))
        }
        return stored == unsigned || stored == signed
    }

    /// Writes `value` as a NUL-padded string; false when it does not fit.
    static func put(_ value: String, _ range: Range<Int>, into block: inout [UInt8]) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count <= range.count else { return false }
        block.replaceSubrange(range.lowerBound..<(range.lowerBound + bytes.count), with: bytes)
        return true
    }

    /// Writes `value` as zero-padded octal with a trailing NUL; false when it does not fit.
    static func putOctal(_ value: Int64, _ range: Range<Int>, into block: inout [UInt8]) -> Bool {
        guard value >= 0 else { return false }
        let digits = Array(String(value, radix: 8).utf8)
        guard digits.count <= range.count - 1 else { return false }
        let padded = [UInt8](repeating: UInt8(ascii: "0"), count: range.count - 1 - digits.count) + digits + [0]
        block.replaceSubrange(range, with: padded)
        return true
    }

    static func putChecksum(into block: inout [UInt8]) {
        block.replaceSubrange(checksum, with: [UInt8](repeating: UInt8(ascii: " "), count: 8))
        let sum = block.reduce(0) { $0 + Int64($1) }
        let digits = Array(String(sum, radix: 8).utf8)
        let field = [UInt8](repeating: UInt8(ascii: "0"), count: max(0, 6 - digits.count)) + digits + [0, UInt8(ascii: " ")]
        block.replaceSubrange(checksum, with: field.suffix(8))
    }
}

/// PAX extended header records (`"%d %s=%s\n"`).
enum PAX {
    /// Parses a PAX header body. Values are raw bytes (xattr values are binary).
    static func parse(_ data: [UInt8]) throws(BerthError) -> [(key: String, value: [UInt8])] {
        var records: [(String, [UInt8])] = []
        var i = 0
        while i < data.count {
            if data[i] == 0 { break }
            guard let space = data[i...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: data[i..<space], as: UTF8.self)),
                  length > space - i + 1, i + length <= data.count, data[i + length - 1] == UInt8(ascii: "\n")
            else { throw .invalidArgument("tar: invalid PAX record") }
            let record = data[(space + 1)..<(i + length - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else {
                throw .invalidArgument("tar: invalid PAX record")
            }
            records.append((String(decoding: record[record.startIndex..<equals], as: UTF8.self),
                            Array(record[(equals + 1)...])))
            i += length
        }
        return records
    }

    /// One record, its length prefix included.
    static func record(_ key: String, _ value: [UInt8]) -> [UInt8] {
        let body = Array(" \(key)=".utf8) + value + [UInt8(ascii: "\n")]
        var length = body.count + 1
        while String(length).utf8.count + body.count != length { length = String(length).utf8.count + body.count }
        return Array(String(length).utf8) + body
    }

    /// `seconds[.fraction]` into seconds and nanoseconds.
    static func time(_ text: String) -> (Int64, Int32)? {
        let parts = text.split(separator: ".", maxSplits: 1)
        guard let first = parts.first, let seconds = Int64(first) else { return nil }
        var nanos: Int32 = 0
        if parts.count == 2 {
            let digits = String(parts[1].prefix(9)).padding(toLength: 9, withPad: "0", startingAt: 0)
            guard let n = Int32(digits) else { return nil }
            nanos = seconds < 0 ? -n : n
        }
        return (seconds, nanos)
    }
}
