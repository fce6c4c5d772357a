#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Crypto

/// Crypto also declares a `Digest`; in this module the name means the content digest.
typealias Digest = BerthCore.Digest

/// A pull stream of bytes: each call returns the next chunk, an empty array at the end. Layers flow through chains
/// of these (content → hash → decompress → limit → tar), so no layer is ever held in memory whole.
public protocol ByteSource: AnyObject {
    func read() async throws(BerthError) -> [UInt8]
}

/// A push stream of bytes (tar writer → compressor → hash → content ingest). `finish` flushes and ends it.
public protocol ByteSink: AnyObject {
    func write(_ bytes: [UInt8]) async throws(BerthError)
    func finish() async throws(BerthError)
}

/// Chunk size for reads from files and content.
public let streamChunkSize = 1 << 20

/// Bytes held in memory (tests, small blobs).
public final class BufferSource: ByteSource {
    private var bytes: [UInt8]
    private var offset = 0
    private let chunk: Int

    public init(_ bytes: [UInt8], chunk: Int = streamChunkSize) {
        self.bytes = bytes
        self.chunk = max(1, chunk)
    }

    public func read() async throws(BerthError) -> [UInt8] {
        guard offset < bytes.count else { return [] }
        let end = min(bytes.count, offset + chunk)
        defer { offset = end }
        return Array(bytes[offset..<end])
    }
}

/// Reads a file descriptor to its end (the descriptor stays owned by the caller).
public final class FileDescriptorSource: ByteSource {
    let fd: Int32
    public init(fd: Int32) { self.fd = fd }

    public func read() async throws(BerthError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: streamChunkSize)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw .internalError("read: \(FileSystem.errnoMessage())") }
            buffer.removeSubrange(n...)
            return buffer
        }
    }
}

/// Reads a committed blob through a content reader, in chunks.
public final class ContentSource: ByteSource {
    let reader: any ContentReader
    private var offset: Int64 = 0

    public init(_ reader: any ContentReader) { self.reader = reader }

    public func read() async throws(BerthError) -> [UInt8] {
        guard offset < reader.size else { return [] }
        let bytes = try await reader.read(at: offset, count: streamChunkSize)
        offset += Int64(bytes.count)
        return bytes
    }
}

/// Passes bytes through while hashing (SHA-256) and counting them.
public final class DigestingSource: ByteSource {
    let upstream: any ByteSource
    /// False: only counts (the digest is then that of nothing read).
    let hashing: Bool
    private var hasher = SHA256()
    public private(set) var count: Int64 = 0
    public private(set) var ended = false

    public init(_ upstream: any ByteSource, hashing: Bool = true) {
        self.upstream = upstream
        self.hashing = hashing
    }

    public func read() async throws(BerthError) -> [UInt8] {
        let bytes = try await upstream.read()
        if bytes.isEmpty { ended = true }
        if hashing { hasher.update(data: bytes) }
        count += Int64(bytes.count)
        return bytes
    }

    /// The digest of everything read so far.
    public func digest() throws(BerthError) -> BerthCore.Digest { try Digests.make(hasher.finalize()) }
}

/// Fails once more than `limit` bytes came through: the bound that stops a decompression bomb.
public final class LimitingSource: ByteSource {
    let upstream: any ByteSource
    let limit: Int64
    let what: String
    private var count: Int64 = 0

    public init(_ upstream: any ByteSource, limit: Int64, what: String) {
        self.upstream = upstream
        self.limit = limit
        self.what = what
    }

    public func read() async throws(BerthError) -> [UInt8] {
        let bytes = try await upstream.read()
        count += Int64(bytes.count)
        if limit > 0 && count > limit {
            throw .failedPrecondition(
                "\(what): uncompressed size exceeds the limit of \(limit) bytes (decompression bomb?)")
        }
        return bytes
    }
}

/// Collects everything written (tests, small blobs).
public final class BufferSink: ByteSink {
    public private(set) var bytes: [UInt8] = []
    public private(set) var finished = false
    public init() {}
    public func write(_ bytes: [UInt8]) async throws(BerthError) { self.bytes += bytes }
    public func finish() async throws(BerthError) { finished = true }
}

/// Writes to a file descriptor owned by the caller.
public final class FileDescriptorSink: ByteSink {
    let fd: Int32
    public init(fd: Int32) { self.fd = fd }
    public func write(_ bytes: [UInt8]) async throws(BerthError) {
        guard FileSystem.writeAll(fd, bytes) else { throw .internalError("write: \(FileSystem.errnoMessage())") }
    }
    public func finish() async throws(BerthError) {}
}

/// Hashes and counts bytes on their way to `downstream`.
public final class DigestingSink: ByteSink {
    let downstream: any ByteSink
    private var hasher = SHA256()
    public private(set) var count: Int64 = 0

    public init(_ downstream: any ByteSink) { self.downstream = downstream }

    public func write(_ bytes: [UInt8]) async throws(BerthError) {
        hasher.update(data: bytes)
        count += Int64(bytes.count)
        try await downstream.write(bytes)
    }

    public func finish() async throws(BerthError) { try await downstream.finish() }
    public func digest() throws(BerthError) -> BerthCore.Digest { try Digests.make(hasher.finalize()) }
}

/// Appends to a content ingest; `finish` does not commit (the caller commits with size, digest and labels).
public final class ContentWriterSink: ByteSink {
    let writer: any ContentWriter
    public init(_ writer: any ContentWriter) { self.writer = writer }
    public func write(_ bytes: [UInt8]) async throws(BerthError) { try await writer.write(bytes) }
    public func finish() async throws(BerthError) {}
}

/// Collects small writes into chunks before passing them on (tar headers are 512 bytes each).
public final class BufferingSink: ByteSink {
    let downstream: any ByteSink
    let threshold: Int
    private var pending: [UInt8] = []

    public init(_ downstream: any ByteSink, threshold: Int = streamChunkSize) {
        self.downstream = downstream
        self.threshold = threshold
        pending.reserveCapacity(threshold)
    }

    public func write(_ bytes: [UInt8]) async throws(BerthError) {
        pending += bytes
        if pending.count >= threshold {
            let out = pending
            pending.removeAll(keepingCapacity: true)
            try await downstream.write(out)
        }
    }

    public func finish() async throws(BerthError) {
        if !pending.isEmpty {
            let out = pending
            pending = []
            try await downstream.write(out)
        }
        try await downstream.finish()
    }
}

/// SHA-256 results as `Digest`s.
public enum Digests {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func make(_ hash: SHA256.Digest) throws(BerthError) -> BerthCore.Digest {
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in hash {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0x0f)])
        }
        return try Digest(algorithm: "sha256", encoded: String(decoding: hex, as: UTF8.self))
    }

    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) throws(BerthError) -> BerthCore.Digest { try make(SHA256.hash(data: bytes)) }
}
