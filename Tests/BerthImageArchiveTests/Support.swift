import BerthCore
import BerthEngineTestSupport
import BerthImage
import BerthOCI
import BerthTestSupport
import Foundation
import Glibc

/// An archive file read as a transfer stream (what the streaming service gives an import).
actor FileReadStream: TransferByteStream {
    let fd: Int32
    let chunk: Int

    init(path: String, chunk: Int = 100_000) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ArchiveTestError("open \(path): \(errno)") }
        self.chunk = chunk
    }

    func read() async throws(BerthError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: chunk)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw .internalError("read: \(errno)") }
        return Array(buffer.prefix(n))
    }

    func write(_ bytes: [UInt8]) async throws(BerthError) { throw .notImplemented("read-only stream") }
    func close() async { Glibc.close(fd) }
}

/// A transfer stream an export writes into a file; records the chunk sizes and whether it was closed.
actor FileWriteStream: TransferByteStream {
    let fd: Int32
    private(set) var closed = false
    private(set) var largestChunk = 0
    private(set) var bytes: Int64 = 0

    init(path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ArchiveTestError("create \(path): \(errno)") }
    }

    func read() async throws(BerthError) -> [UInt8] { [] }

    func write(_ bytes: [UInt8]) async throws(BerthError) {
        largestChunk = max(largestChunk, bytes.count)
        self.bytes += Int64(bytes.count)
        guard FileSystem.writeAll(fd, bytes) else { throw .internalError("write: \(errno)") }
    }

    func close() async {
        if !closed { Glibc.close(fd) }
        closed = true
    }
}

struct ArchiveTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Collects progress events (the sink is called from transfer tasks).
final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [TransferProgress] = []
    var sink: ProgressSink { { [self] event in lock.withLock { events.append(event) } } }
    var all: [TransferProgress] { lock.withLock { events } }
    func names(_ event: String) -> [String] { all.filter { $0.event == event }.map(\.name) }
}

/// A test engine, a scratch directory, and the default namespace bound around each call.
struct Fixture {
    let engine: TestEngine
    let scratch: String
    static let namespace = "default"

    static func with<T>(_ body: (Fixture) async throws -> T) async throws -> T {
        let engine = try await TestEngine.start()
        let scratch = "/var/tmp/berth-archive-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let fixture = Fixture(engine: engine, scratch: scratch)
        do {
            let result = try await body(fixture)
            await fixture.cleanup()
            return result
        } catch {
            await fixture.cleanup()
            throw error
        }
    }

    func cleanup() async {
        await engine.stop()
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// Runs `body` in the fixture's namespace.
    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await RequestContext.$namespace.withValue(Self.namespace) { try await body() }
    }

    var metadata: any MetadataProvider { engine.metadata }
    var transferrer: any Transferrer { engine.transferrer }

    /// Imports the archive at `path` into the image store as `store` says.
    func importArchive(_ path: String, _ store: ImageStoreSpec = ImageStoreSpec(), progress: ProgressLog? = nil)
        async throws
    {
        let stream = try FileReadStream(path: path)
        let transferrer = self.transferrer
        try await run {
            try await transferrer.transfer(.importStream(stream, mediaType: ""), .imageStore(store), progress: progress?.sink)
        }
        await stream.close()
    }

    /// Exports to a new file in the scratch directory; returns its path.
    func exportArchive(_ store: ImageStoreSpec, _ spec: ExportSpec = ExportSpec(), file: String) async throws -> String {
        let path = scratch + "/" + file
        let stream = try FileWriteStream(path: path)
        let transferrer = self.transferrer
        try await run { try await transferrer.transfer(.imageStore(store), .exportStream(stream, spec), progress: nil) }
        guard await stream.closed else { throw ArchiveTestError("export did not close its stream") }
        return path
    }

    func images() async throws -> [ImageRecord] {
        let metadata = self.metadata
        return try await run { try await metadata.images.list(.all) }.sorted { $0.name < $1.name }
    }

    func leases() async throws -> [Lease] {
        let metadata = self.metadata
        return try await run { try await metadata.leases.list(.all) }
    }

    func contentInfo(_ digest: BerthCore.Digest) async throws -> ContentInfo? {
        let metadata = self.metadata
        return try await run { try? await metadata.content.info(digest) }
    }

    /// Collects garbage and lists what content is left.
    func contentAfterGC() async throws -> [ContentInfo] {
        let metadata = self.metadata
        return try await run {
            _ = try await metadata.gc.collect()
            return try await metadata.content.list(.all)
        }
    }

    /// Builds a test image layout under the scratch directory and tars it.
    func build(_ kind: TestImages.Kind, name: String = "docker.io/library/busybox", tag: String = "latest")
        async throws -> (layout: TestImageLayout, archive: String)
    {
        let id = UUID().uuidString.prefix(6)
        let layout = try await TestImages.build(kind, in: "\(scratch)/layout-\(id)", name: name, tag: tag)
        let archive = try await layout.archive(to: "\(scratch)/oci-\(id).tar")
        return (layout, archive)
    }
}

/// Runs a tool and returns stdout, failing with its stderr.
@discardableResult
func tool(_ path: String, _ arguments: [String], timeout: Double = 180) async throws -> String {
    try await TestCommand.check(path, arguments, timeout: timeout)
}

/// Lists a tar's entry names.
func tarNames(_ path: String) async throws -> [String] {
    try await tool("/usr/bin/tar", ["-tf", path]).split(separator: "\n").map(String.init)
}

/// Reads one member of a tar.
func tarMember(_ path: String, _ member: String) async throws -> Data {
    Data(try await tool("/usr/bin/tar", ["-xOf", path, member]).utf8)
}
