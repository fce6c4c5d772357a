import BerthCore

/// A streaming tar writer: ustar headers, with a PAX extended header before any entry whose name, link name,
/// ids, size or names do not fit ustar, or that carries xattrs (`SCHILY.xattr.*`). Times are whole seconds, as
/// containerd writes them.
public final class TarWriter {
    let sink: any ByteSink
    private var remaining: Int64 = 0
    private var padding = 0

    public init(_ sink: any ByteSink) { self.sink = sink }

    /// Starts an entry; its data (exactly `entry.size` bytes, for regular files) follows through `write`.
    public func writeHeader(_ entry: TarEntry) async throws(BerthError) {
        guard remaining == 0 else { throw .internalError("tar: previous entry is missing \(remaining) bytes") }
        try await endEntry()
        var records: [UInt8] = []
        var block = [UInt8](repeating: 0, count: TarHeader.blockSize)
        let ascii = { (s: String) in s.utf8.allSatisfy { $0 < 0x80 } }

        if !(ascii(entry.name) && Self.putName(entry.name, into: &block)) {
            records += PAX.record("path", Array(entry.name.utf8))
            _ = TarHeader.put(String(decoding: Array(entry.name.utf8).prefix(100), as: UTF8.self).asciiOnly(100),
                              TarHeader.name, into: &block)
        }
        if !(ascii(entry.linkname) && TarHeader.put(entry.linkname, TarHeader.linkname, into: &block)) {
            records += PAX.record("linkpath", Array(entry.linkname.utf8))
        }
        _ = TarHeader.putOctal(Int64(entry.mode & 0o7777), TarHeader.mode, into: &block)
        if !TarHeader.putOctal(Int64(entry.uid), TarHeader.uid, into: &block) {
            records += PAX.record("uid", Array(String(entry.uid).utf8))
        }
        if !TarHeader.putOctal(Int64(entry.gid), TarHeader.gid, into: &block) {
            records += PAX.record("gid", Array(String(entry.gid).utf8))
        }
        let size = entry.type == .regular ? entry.size : 0
        if !TarHeader.putOctal(size, TarHeader.size, into: &block) {
            records += PAX.record("size", Array(String(size).utf8))
        }
        if !TarHeader.putOctal(entry.mtime, TarHeader.mtime, into: &block) {
            records += PAX.record("mtime", Array(String(entry.mtime).utf8))
        }
        block[TarHeader.typeflag] = entry.type.flag
        block.replaceSubrange(TarHeader.magic, with: Array("ustar\u{0}".utf8))
        block.replaceSubrange(TarHeader.version, with: Array("00".utf8))
        if !(ascii(entry.uname) && TarHeader.put(entry.uname, TarHeader.uname, into: &block)) {
            records += PAX.record("uname", Array(entry.uname.utf8))
        }
        if !(ascii(entry.gname) && TarHeader.put(entry.gname, TarHeader.gname, into: &block)) {
            records += PAX.record("gname", Array(entry.gname.utf8))
        }
        if entry.type == .charDevice || entry.type == .blockDevice {
            guard TarHeader.putOctal(Int64(entry.devmajor), TarHeader.devmajor, into: &block),
                  TarHeader.putOctal(Int64(entry.devminor), TarHeader.devminor, into: &block)
            else { throw .invalidArgument("tar: device numbers too large for \(entry.name)") }
        }
        for key in entry.xattrs.keys.sorted() {
            records += PAX.record("SCHILY.xattr." + key, entry.xattrs[key] ?? [])
        }
        TarHeader.putChecksum(into: &block)

        if !records.isEmpty {
            var pax = [UInt8](repeating: 0, count: TarHeader.blockSize)
            let base = entry.name.split(separator: "/").last.map(String.init) ?? "entry"
            _ = TarHeader.put(("PaxHeaders.0/" + base).asciiOnly(100), TarHeader.name, into: &pax)
            _ = TarHeader.putOctal(0o644, TarHeader.mode, into: &pax)
            _ = TarHeader.putOctal(0, TarHeader.uid, into: &pax)
            _ = TarHeader.putOctal(0, TarHeader.gid, into: &pax)
            _ = TarHeader.putOctal(Int64(records.count), TarHeader.size, into: &pax)
            _ = TarHeader.putOctal(max(0, min(entry.mtime, 0o77777777777)), TarHeader.mtime, into: &pax)
            pax[TarHeader.typeflag] = UInt8(ascii: "x")
            pax.replaceSubrange(TarHeader.magic, with: Array("ustar\u{0}".utf8))
            pax.replaceSubrange(TarHeader.version, with: Array("00".utf8))
            TarHeader.putChecksum(into: &pax)
            let pad = (512 - records.count % 512) % 512
            try await sink.write(pax + records + [UInt8](repeating: 0, count: pad))
        }
        try await sink.write(block)
        remaining = size
        padding = Int((512 - size % 512) % 512)
    }

    /// Appends data of the current entry.
    public func write(_ bytes: [UInt8]) async throws(BerthError) {
        guard Int64(bytes.count) <= remaining else { throw .internalError("tar: entry data longer than its size") }
        remaining -= Int64(bytes.count)
        try await sink.write(bytes)
    }

    private func endEntry() async throws(BerthError) {
        if padding > 0 {
            try await sink.write([UInt8](repeating: 0, count: padding))
            padding = 0
        }
    }

    /// Writes the end-of-archive marker (two zero blocks) and finishes the sink.
    public func finish() async throws(BerthError) {
        guard remaining == 0 else { throw .internalError("tar: last entry is missing \(remaining) bytes") }
        try await endEntry()
        try await sink.write([UInt8](repeating: 0, count: 2 * TarHeader.blockSize))
        try await sink.finish()
    }

    /// Puts `name` into the name field, or splits it into ustar's prefix and name at a slash; false if impossible.
    static func putName(_ name: String, into block: inout [UInt8]) -> Bool {
        let bytes = Array(name.utf8)
        if bytes.count <= 100 { return TarHeader.put(name, TarHeader.name, into: &block) }
        guard bytes.count <= 256 else { return false }
        for i in stride(from: min(bytes.count - 1, 155), through: 1, by: -1) where bytes[i] == UInt8(ascii: "/") {
            let rest = bytes.count - i - 1
            if rest > 0 && rest <= 100 {
                let prefix = String(decoding: bytes[..<i], as: UTF8.self)
                let tail = String(decoding: bytes[(i + 1)...], as: UTF8.self)
                return TarHeader.put(prefix, TarHeader.prefix, into: &block)
                    && TarHeader.put(tail, TarHeader.name, into: &block)
            }
        }
        return false
    }
}

extension String {
    /// ASCII characters only (others become `_`), cut to `limit` bytes: for fallback header fields.
    func asciiOnly(_ limit: Int) -> String {
        String(decoding: utf8.map { $0 < 0x80 ? $0 : UInt8(ascii: "_") }.prefix(limit), as: UTF8.self)
    }
}
