import BerthCore
import CZlib
import CZstd

/// Layer compression, named by media type and recognised by magic bytes.
public enum Compression: String, Sendable, Equatable, CaseIterable {
    case none, gzip, zstd

    /// What the first bytes of a blob say (containerd's `compression.DetectCompression`); nil for formats Berth
    /// does not decompress (bzip2, xz), none for anything else.
    public static func detect(_ prefix: [UInt8]) -> Compression? {
        if prefix.starts(with: [0x1f, 0x8b, 0x08]) { return .gzip }
        if prefix.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) { return .zstd }
        if prefix.starts(with: Array("BZh".utf8)) || prefix.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            return nil
        }
        return Compression.none
    }

    /// Wraps `source` in a decompressor chosen from its first bytes.
    public static func decompressing(_ source: any ByteSource) async throws(BerthError) -> any ByteSource {
        let peek = PeekSource(source)
        let head = try await peek.peek(6)
        guard let kind = detect(head) else { throw .notImplemented("unsupported compression format (bzip2 or xz)") }
        switch kind {
        case .none: return peek
        case .gzip: return try GzipDecompressor(peek)
        case .zstd: return try ZstdDecompressor(peek)
        }
    }

    /// Wraps `sink` in a compressor of this kind.
    public func compressing(_ sink: any ByteSink) throws(BerthError) -> any ByteSink {
        switch self {
        case .none: return sink
        case .gzip: return try GzipCompressor(sink)
        case .zstd: return try ZstdCompressor(sink)
        }
    }
}

/// Lets the first bytes of a stream be inspected without consuming them.
final class PeekSource: ByteSource {
    let upstream: any ByteSource
    private var pending: [UInt8] = []
    private var ended = false

    init(_ upstream: any ByteSource) { self.upstream = upstream }

    func peek(_ count: Int) async throws(BerthError) -> [UInt8] {
        while pending.count < count && !ended {
            let chunk = try await upstream.read()
            if chunk.isEmpty { ended = true } else { pending += chunk }
        }
        return Array(pending.prefix(count))
    }

    func read() async throws(BerthError) -> [UInt8] {
        if !pending.isEmpty {
            defer { pending = [] }
            return pending
        }
        return ended ? [] : try await upstream.read()
    }
}

/// Output chunk of the decompressors.
let inflateChunk = 256 * 1024

/// gzip decompression with zlib's streaming inflate. Concatenated members are read one after the other, as Go's
/// gzip reader does; a truncated stream or garbage after a member is an error.
final class GzipDecompressor: ByteSource {
    let upstream: any ByteSource
    private let stream: UnsafeMutablePointer<z_stream>
    private var input: [UInt8] = []
    private var inputOffset = 0
    private var upstreamEnded = false
    private var memberEnded = false
    private var finished = false

    init(_ upstream: any ByteSource) throws(BerthError) {
        self.upstream = upstream
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // 15 window bits + 16: gzip wrapper only.
        let rc = inflateInit2_(stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else {
            stream.deallocate()
            throw .internalError("gzip: inflateInit2 failed (\(rc))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    func read() async throws(BerthError) -> [UInt8] {
        if finished { return [] }
        var out = [UInt8](repeating: 0, count: inflateChunk)
        var produced = 0
        while produced < out.count {
            if inputOffset == input.count && !upstreamEnded {
                input = try await upstream.read()
                inputOffset = 0
                if input.isEmpty { upstreamEnded = true }
            }
            if memberEnded {
                if inputOffset == input.count && upstreamEnded {
                    finished = true
                    break
                }
                guard inputOffset < input.count else { continue }
                inflateReset(stream)
                memberEnded = false
            }
            guard inputOffset < input.count else { throw .invalidArgument("gzip: unexpected EOF") }
            let (rc, consumed, made) = input.withUnsafeMutableBufferPointer { inBuf in
                out.withUnsafeMutableBufferPointer { outBuf in
                    stream.pointee.next_in = inBuf.baseAddress.map { $0 + inputOffset }
                    stream.pointee.avail_in = UInt32(inBuf.count - inputOffset)
                    stream.pointee.next_out = outBuf.baseAddress.map { $0 + produced }
                    stream.pointee.avail_out = UInt32(outBuf.count - produced)
                    let before = (stream.pointee.avail_in, stream.pointee.avail_out)
                    let rc = inflate(stream, Z_NO_FLUSH)
                    return (rc, Int(before.0 - stream.pointee.avail_in), Int(before.1 - stream.pointee.avail_out))
                }
            }
            inputOffset += consumed
            produced += made
            switch rc {
            case Z_STREAM_END: memberEnded = true
            case Z_OK: break
            case Z_BUF_ERROR where consumed > 0 || made > 0: break
            default:
                let message = stream.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
                throw .invalidArgument("gzip: invalid data: \(message)")
            }
        }
        out.removeSubrange(produced...)
        return out
    }
}

/// zstd decompression with libzstd's streaming API (any number of frames).
final class ZstdDecompressor: ByteSource {
    let upstream: any ByteSource
    private let context: OpaquePointer
    private var input: [UInt8] = []
    private var inputOffset = 0
    private var upstreamEnded = false
    /// libzstd's last hint: 0 when a frame ended exactly.
    private var lastHint = 0
    private var finished = false

    init(_ upstream: any ByteSource) throws(BerthError) {
        self.upstream = upstream
        guard let context = ZSTD_createDCtx() else { throw .internalError("zstd: cannot create a context") }
        self.context = context
    }

    deinit { ZSTD_freeDCtx(context) }

    func read() async throws(BerthError) -> [UInt8] {
        if finished { return [] }
        var out = [UInt8](repeating: 0, count: inflateChunk)
        var produced = 0
        while produced < out.count {
            if inputOffset == input.count && !upstreamEnded {
                input = try await upstream.read()
                inputOffset = 0
                if input.isEmpty { upstreamEnded = true }
            }
            if inputOffset == input.count && upstreamEnded {
                // Flush what the decoder still holds, then the stream must have ended on a frame boundary.
                if lastHint != 0 && produced == 0 {
                    let made = try step(&out, produced: produced)
                    produced += made
                    if made > 0 { continue }
                    throw .invalidArgument("zstd: unexpected EOF")
                }
                if lastHint == 0 { finished = true }
                break
            }
            produced += try step(&out, produced: produced)
        }
        out.removeSubrange(produced...)
        return out
    }

    /// One decompression call; returns the bytes produced.
    private func step(_ out: inout [UInt8], produced: Int) throws(BerthError) -> Int {
        let (hint, consumed, made) = input.withUnsafeBytes { inBuf in
            out.withUnsafeMutableBytes { outBuf in
                var inb = ZSTD_inBuffer(src: inBuf.baseAddress, size: inBuf.count, pos: inputOffset)
                var outb = ZSTD_outBuffer(dst: outBuf.baseAddress, size: outBuf.count, pos: produced)
                let hint = ZSTD_decompressStream(context, &outb, &inb)
                return (hint, inb.pos - inputOffset, outb.pos - produced)
            }
        }
        if ZSTD_isError(hint) != 0 {
            throw .invalidArgument("zstd: invalid data: \(String(cString: ZSTD_getErrorName(hint)))")
        }
        inputOffset += consumed
        lastHint = hint
        return made
    }
}

/// gzip compression (zlib deflate, default level) for layers the differ writes.
final class GzipCompressor: ByteSink {
    let downstream: any ByteSink
    private let stream: UnsafeMutablePointer<z_stream>

    init(_ downstream: any ByteSink, level: Int32 = Z_DEFAULT_COMPRESSION) throws(BerthError) {
        self.downstream = downstream
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let rc = deflateInit2_(
            stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else {
            stream.deallocate()
            throw .internalError("gzip: deflateInit2 failed (\(rc))")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
    }

    func write(_ bytes: [UInt8]) async throws(BerthError) { try await run(bytes, flush: Z_NO_FLUSH) }

    func finish() async throws(BerthError) {
        try await run([], flush: Z_FINISH)
        try await downstream.finish()
    }

    private func run(_ bytes: [UInt8], flush: Int32) async throws(BerthError) {
        var input = bytes
        var offset = 0
        while true {
            var out = [UInt8](repeating: 0, count: inflateChunk)
            let (rc, consumed, made) = input.withUnsafeMutableBufferPointer { inBuf in
                out.withUnsafeMutableBufferPointer { outBuf in
                    stream.pointee.next_in = inBuf.baseAddress.map { $0 + offset }
                    stream.pointee.avail_in = UInt32(inBuf.count - offset)
                    stream.pointee.next_out = outBuf.baseAddress
                    stream.pointee.avail_out = UInt32(outBuf.count)
                    let before = stream.pointee.avail_in
                    let rc = deflate(stream, flush)
                    return (rc, Int(before - stream.pointee.avail_in), outBuf.count - Int(stream.pointee.avail_out))
                }
            }
            offset += consumed
            guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else {
                throw .internalError("gzip: deflate failed (\(rc))")
            }
            if made > 0 {
                out.removeSubrange(made...)
                try await downstream.write(out)
            }
            if flush == Z_FINISH {
                if rc == Z_STREAM_END { return }
            } else if offset == input.count && made < inflateChunk {
                return
            }
        }
    }
}

/// zstd compression (level 3, libzstd's default).
final class ZstdCompressor: ByteSink {
    let downstream: any ByteSink
    private let context: OpaquePointer

    init(_ downstream: any ByteSink) throws(BerthError) {
        self.downstream = downstream
        guard let context = ZSTD_createCCtx() else { throw .internalError("zstd: cannot create a context") }
        self.context = context
    }

    deinit { ZSTD_freeCCtx(context) }

    func write(_ bytes: [UInt8]) async throws(BerthError) { try await run(bytes, end: false) }

    func finish() async throws(BerthError) {
        try await run([], end: true)
        try await downstream.finish()
    }

    private func run(_ bytes: [UInt8], end: Bool) async throws(BerthError) {
        var offset = 0
        while true {
            var out = [UInt8](repeating: 0, count: inflateChunk)
            let (remaining, consumed, made) = bytes.withUnsafeBytes { inBuf in
                out.withUnsafeMutableBytes { outBuf in
                    var inb = ZSTD_inBuffer(src: inBuf.baseAddress, size: inBuf.count, pos: offset)
                    var outb = ZSTD_outBuffer(dst: outBuf.baseAddress, size: outBuf.count, pos: 0)
                    let r = ZSTD_compressStream2(context, &outb, &inb, end ? ZSTD_e_end : ZSTD_e_continue)
                    return (r, inb.pos - offset, outb.pos)
                }
            }
            if ZSTD_isError(remaining) != 0 {
                throw .internalError("zstd: \(String(cString: ZSTD_getErrorName(remaining)))")
            }
            offset += consumed
            if made > 0 {
                out.removeSubrange(made...)
                try await downstream.write(out)
            }
            if end ? remaining == 0 : (offset == bytes.count && made < inflateChunk) { return }
        }
    }
}
