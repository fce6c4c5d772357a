#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Crypto
import Foundation

/// BerthCore's digest (swift-crypto exports a `Digest` protocol too).
typealias Digest = BerthCore.Digest

/// The content store conformance suite, in the spirit of containerd's `content/testsuite`: every implementation of
/// `ContentStore` runs the same scenarios. A scenario throws `ConformanceFailure` describing the first check
/// that failed; test targets run one `@Test` per scenario (`@Test(arguments: ContentStoreSuite.Scenario.allCases)`).
///
/// Plain library code (no Swift Testing), so it links into any test target.
public struct ContentStoreSuite: Sendable {
    /// Opens a store on a directory. Called once per scenario with a fresh empty directory, and again with the same
    /// directory where a scenario simulates a restart (a new instance must see what the old one left on disk).
    public typealias Opener = @Sendable (_ directory: String) async throws -> any ContentStore

    public enum Scenario: String, CaseIterable, Sendable, CustomStringConvertible {
        case writeCommitRead
        case randomAccessRead
        case emptyContent
        case commitWrongSize
        case commitWrongDigest
        case commitRecordedExpected
        case resumeAfterClose
        case truncateAndRewrite
        case truncatePartial
        case refLock
        case refLockRace
        case closedWriter
        case abort
        case statuses
        case refNames
        case invalidRef
        case commitExisting
        case writerForExisting
        case delete
        case walk
        case largeContent
        case concurrentWriters
        case concurrentCommitsSameContent
        case reopenSeesIngest
        case reopenAfterDroppedWriter
        case reopenSeesBlobs

        public var description: String { rawValue }
    }

    let open: Opener
    /// Parent of the per-scenario directories.
    let scratch: String

    public init(scratch: String = NSTemporaryDirectory(), open: @escaping Opener) {
        self.open = open
        self.scratch = scratch
    }

    /// Runs one scenario in a fresh directory, removed afterwards (also on failure).
    public func run(_ scenario: Scenario) async throws {
        let directory = try ConformanceFailure.makeTemporaryDirectory(
            in: scratch, prefix: "content-\(scenario.rawValue)-", suite: "content store")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = ScenarioContext(scenario: scenario, directory: directory, open: open)
        do {
            try await context.run()
        } catch let failure as ConformanceFailure {
            throw failure
        } catch {
            throw context.fail("unexpected error: \(error)")
        }
    }

    /// Runs every scenario, stopping at the first failure.
    public func runAll() async throws {
        for scenario in Scenario.allCases { try await run(scenario) }
    }
}

/// Helpers shared by the scenarios: checks that throw `ConformanceFailure`, content generation, digests.
struct ScenarioContext: ConformanceChecks, Sendable {
    let scenario: ContentStoreSuite.Scenario
    let directory: String
    let open: ContentStoreSuite.Opener

    var suiteName: String { "content store" }
    var scenarioName: String { scenario.rawValue }

    /// The digest computed independently of the store, with swift-crypto.
    static func digest(_ bytes: [UInt8]) throws -> Digest {
        let hex = SHA256.hash(data: bytes).map { byte in
            let digits = Array("0123456789abcdef")
            return "\(digits[Int(byte >> 4)])\(digits[Int(byte & 0x0f)])"
        }.joined()
        return try Digest(algorithm: "sha256", encoded: hex)
    }

    /// Deterministic pseudo-random bytes (SplitMix64, stored a word at a time: fast enough for tens of MiB even
    /// in a debug build).
    static func content(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SplitMix(seed: seed)
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            var index = 0
            while index + 8 <= count {
                raw.storeBytes(of: generator.next().littleEndian, toByteOffset: index, as: UInt64.self)
                index += 8
            }
            var last = generator.next()
            while index < count {
                raw[index] = UInt8(truncatingIfNeeded: last)
                last >>= 8
                index += 1
            }
            initialized = count
        }
    }

    /// Writes `bytes` in chunks of `chunk`.
    func write(_ writer: any ContentWriter, _ bytes: [UInt8], chunk: Int = 1 << 20) async throws {
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + chunk)
            try await writer.write(Array(bytes[start..<end]))
            start = end
        }
    }

    /// Writes and commits `bytes` under `ref`, checking the returned digest; returns it.
    @discardableResult
    func ingest(_ store: any ContentStore, ref: String, _ bytes: [UInt8], line: UInt = #line) async throws -> Digest {
        let expected = try Self.digest(bytes)
        let writer = try await store.writer(ref: ref, total: Int64(bytes.count), expected: expected)
        try await write(writer, bytes)
        let committed = try await writer.commit(size: Int64(bytes.count), expected: expected)
        try equal(committed, expected, "digest committed for \(ref)", line: line)
        return committed
    }

    /// Reads a whole blob through its reader in `chunk`-sized reads.
    func readAll(_ store: any ContentStore, _ digest: Digest, chunk: Int = 1 << 20) async throws -> [UInt8] {
        let reader = try await store.reader(digest)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(reader.size))
        while Int64(bytes.count) < reader.size {
            let part = try await reader.read(at: Int64(bytes.count), count: chunk)
            try check(!part.isEmpty, "read of \(digest) at \(bytes.count) returned nothing before size \(reader.size)")
            bytes += part
        }
        await reader.close()
        return bytes
    }

    /// The blob must exist with `bytes` as its content and size.
    func expectBlob(_ store: any ContentStore, _ bytes: [UInt8], line: UInt = #line) async throws {
        let digest = try Self.digest(bytes)
        let info = try await store.info(digest)
        try equal(info.digest, digest, "info digest", line: line)
        try equal(info.size, Int64(bytes.count), "info size of \(digest)", line: line)
        let read = try await readAll(store, digest)
        try check(read == bytes, "content read back from \(digest) differs from what was written", line: line)
    }

    /// Nothing may be committed under `digest`.
    func expectNoBlob(_ store: any ContentStore, _ digest: Digest, line: UInt = #line) async throws {
        try await expectError(.notFound, "info of uncommitted \(digest)", line: line) { try await store.info(digest) }
        let listed = try await store.walk().contains { $0.digest == digest }
        try check(!listed, "walk lists uncommitted \(digest)", line: line)
    }
}
