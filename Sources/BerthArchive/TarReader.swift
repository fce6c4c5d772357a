import BerthCore

/// A streaming tar reader: `next()` returns each entry's header (ustar, PAX `x`/`g`, GNU `L`/`K` applied), and
/// `read()` the entry's data in chunks. Nothing larger than one chunk (or one PAX/GNU header, at most 1 MiB) is held.
public final class TarReader: ByteSource {
    let source: any ByteSource
    private var buffer: [UInt8] = []
    private var position = 0
    private var sourceEnded = false
    /// Data bytes of the current entry not yet read, and its padding to the next block.
    private var remaining: Int64 = 0
    private var padding = 0
    /// True once the end-of-archive marker was read.
    public private(set) var reachedEnd = false

    /// The largest PAX or GNU long-name header accepted (Go's `archive/tar` uses the same bound).
    static let maxSpecialSize: Int64 = 1 << 20

    public init(_ source: any ByteSource) { self.source = source }

    /// Makes at least `count` bytes available in the buffer; false when the stream ends first.
    private func fill(_ count: Int) async throws(BerthError) -> Bool {
        while buffer.count - position < count {
            if sourceEnded { return false }
            let chunk = try await source.read()
            if chunk.isEmpty {
                sourceEnded = true
                continue
            }
            if position > 0 {
                buffer.removeSubrange(0..<position)
                position = 0
            }
            buffer += chunk
        }
        return true
    }

    private func take(_ count: Int) -> ArraySlice<UInt8> {
        defer { position += count }
        return buffer[position..<(position + count)]
    }

    /// The next chunk of the current entry's data; empty at its end.
    public func read() async throws(BerthError) -> [UInt8] {
        guard remaining > 0 else { return [] }
        if position == buffer.count {
            guard !sourceEnded else { throw .invalidArgument("tar: unexpected EOF in entry data") }
            let chunk = try await source.read()
            guard !chunk.isEmpty else { throw .invalidArgument("tar: unexpected EOF in entry data") }
            if Int64(chunk.count) <= remaining {
                remaining -= Int64(chunk.count)
                return chunk
            }
            buffer = chunk
            position = 0
        }
        let count = Int(min(remaining, Int64(buffer.count - position)))
        remaining -= Int64(count)
        return Array(take(count))
    }

    /// Skips what is left of the current entry's data and padding.
    private func skipData() async throws(BerthError) {
        while remaining > 0 { _ = try await read() }
        if padding > 0 {
            guard try await fill(padding) else { throw .invalidArgument("tar: unexpected EOF in padding") }
            position += padding
            padding = 0
        }
    }

    /// Reads the data of a special header (PAX, GNU long name) whole, within `maxSpecialSize`.
    private func special(_ size: Int64) async throws(BerthError) -> [UInt8] {
        guard size <= Self.maxSpecialSize else { throw .invalidArgument("tar: extended header too large (\(size) bytes)") }
        let padded = Int((size + 511) / 512 * 512)
        guard try await fill(padded) else { throw .invalidArgument("tar: unexpected EOF in extended header") }
        let data = Array(take(padded).prefix(Int(size)))
        return data
    }

    /// The next entry, or nil at the end of the archive.
    public func next() async throws(BerthError) -> TarEntry? {
        if reachedEnd { return nil }
        try await skipData()
        var pax: [String: [UInt8]] = [:]
        var longName: String?
        var longLink: String?
        while true {
            guard try await fill(TarHeader.blockSize) else {
                // A stream that ends on a block boundary without the end marker is accepted, as Go's reader does.
                if buffer.count == position, pax.isEmpty, longName == nil, longLink == nil {
                    reachedEnd = true
                    return nil
                }
                throw .invalidArgument("tar: unexpected EOF in header")
            }
            let block = take(TarHeader.blockSize)
            if block.allSatisfy({ $0 == 0 }) {
                reachedEnd = true
                return nil
            }
            guard TarHeader.checksumValid(block) else { throw .invalidArgument("tar: invalid header (bad checksum)") }
            let flag = block[block.startIndex + TarHeader.typeflag]
            let size = try TarHeader.number(block, TarHeader.size)
            switch flag {
            case UInt8(ascii: "x"):
                for record in try PAX.parse(try await special(size)) { pax[record.key] = record.value }
                continue
            case UInt8(ascii: "g"):
                _ = try await special(size)
                continue
            case UInt8(ascii: "L"):
                longName = Self.trimmed(try await special(size))
                continue
            case UInt8(ascii: "K"):
                longLink = Self.trimmed(try await special(size))
                continue
            default:
                break
            }
            var entry = try Self.entry(block, pax: pax)
            if let longName, pax["path"] == nil { entry.name = longName }
            if let longLink, pax["linkpath"] == nil { entry.linkname = longLink }
            switch entry.type {
            case .regular, .other: remaining = entry.size
            default: remaining = 0
            }
            padding = Int((512 - remaining % 512) % 512)
            return entry
        }
    }

    /// Reads the rest of the stream after the end marker (so digests cover every byte, as containerd's do).
    public func drain() async throws(BerthError) {
        try await skipData()
        position = buffer.count
        while !sourceEnded {
            if try await source.read().isEmpty { sourceEnded = true }
        }
    }

    private static func trimmed(_ bytes: [UInt8]) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
        return String(decoding: bytes[..<end], as: UTF8.self)
    }

    /// Builds an entry from a header block and the PAX records that precede it.
    static func entry(_ block: ArraySlice<UInt8>, pax: [String: [UInt8]]) throws(BerthError) -> TarEntry {
        let flag = block[block.startIndex + TarHeader.typeflag]
        var name = TarHeader.string(block, TarHeader.name)
        let magic = Array(block[(block.startIndex + TarHeader.magic.lowerBound)..<(block.startIndex + TarHeader.version.upperBound)])
        let isUstar = magic.starts(with: Array("ustar\u{0}".utf8))
        if isUstar {
            let prefix = TarHeader.string(block, TarHeader.prefix)
            if !prefix.isEmpty { name = prefix + "/" + name }
        }
        let mode = try TarHeader.number(block, TarHeader.mode)
        var entry = TarEntry(
            name: name, type: TarEntryType(flag: flag), mode: UInt32(truncatingIfNeeded: mode & 0o7777),
            uid: Int(try TarHeader.number(block, TarHeader.uid)), gid: Int(try TarHeader.number(block, TarHeader.gid)),
            size: try TarHeader.number(block, TarHeader.size), mtime: try TarHeader.number(block, TarHeader.mtime),
            linkname: TarHeader.string(block, TarHeader.linkname))
        if flag == UInt8(ascii: "5") || (flag == 0 || flag == UInt8(ascii: "0")) && name.hasSuffix("/") {
            entry.type = .directory
        }
        entry.uname = TarHeader.string(block, TarHeader.uname)
        entry.gname = TarHeader.string(block, TarHeader.gname)
        entry.devmajor = UInt32(truncatingIfNeeded: try TarHeader.number(block, TarHeader.devmajor))
        entry.devminor = UInt32(truncatingIfNeeded: try TarHeader.number(block, TarHeader.devminor))
        for (key, value) in pax {
            let text = String(decoding: value, as: UTF8.self)
            switch key {
            case "path": entry.name = text
            case "linkpath": entry.linkname = text
            case "size":
                guard let size = Int64(text), size >= 0 else { throw .invalidArgument("tar: invalid PAX size") }
                entry.size = size
            case "uid":
                guard let uid = Int(text), uid >= 0 else { throw .invalidArgument("tar: invalid PAX uid") }
                entry.uid = uid
            case "gid":
                guard let gid = Int(text), gid >= 0 else { throw .invalidArgument("tar: invalid PAX gid") }
                entry.gid = gid
            case "mtime":
                guard let (seconds, nanos) = PAX.time(text) else { throw .invalidArgument("tar: invalid PAX mtime") }
                entry.mtime = seconds
                entry.mtimeNanoseconds = nanos
            case "uname": entry.uname = text
            case "gname": entry.gname = text
            default:
                if key.hasPrefix("SCHILY.xattr.") {
                    entry.xattrs[String(key.dropFirst("SCHILY.xattr.".count))] = value
                } else if key.hasPrefix("GNU.sparse.") {
                    throw .notImplemented("tar: sparse files are not supported (\(entry.name))")
                }
            }
        }
        return entry
    }
}
