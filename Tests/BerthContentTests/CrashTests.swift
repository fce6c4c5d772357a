#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthTestSupport
import Crypto
import Foundation
import Testing

@testable import BerthContentPlugin

/// A real `kill -9` of the real writer code: the test binary re-runs itself with only this test selected and an
/// environment variable that makes it the child, which ingests into a store and is SIGKILLed mid-write. The parent
/// then opens the store, checks the ingest's status against the data on disk and finishes the write.
/// (berthd itself is killed mid-ingest by the integration tests, through ctr.)
@Suite("LocalContentStore crash")
struct LocalContentStoreCrashTests {
    static let childRootVariable = "BERTH_CONTENT_CRASH_CHILD_ROOT"
    static let ref = "crash-ref"
    static let total = 64 << 20
    static let chunk = 100_003

    /// The same bytes in any process: a pseudo-random MiB, each copy stamped with its index.
    static func content() -> [UInt8] {
        var state: UInt64 = 42
        let block = (0..<(1 << 20)).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(total)
        for index in 0..<(total >> 20) {
            bytes += withUnsafeBytes(of: UInt64(index).littleEndian, Array.init)
            bytes += block[8...]
        }
        return bytes
    }

    static func sha256(_ bytes: [UInt8]) throws -> BerthCore.Digest {
        let hex = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        return try BerthCore.Digest(algorithm: "sha256", encoded: hex)
    }

    @Test func killedWriterResumesFromDisk() async throws {
        if let root = ProcessInfo.processInfo.environment[Self.childRootVariable] {
            try await Self.child(root: root)
            return
        }
        let scratch = try ScratchDirectory()
        let bytes = Self.content()
        let digest = try Self.sha256(bytes)
        let child = try TestChild.launch(
            test: "killedWriterResumesFromDisk", variable: Self.childRootVariable, value: scratch.path + "/store",
            log: scratch.path + "/child.log")

        // Kill once a good part of the ingest is on disk, while the child is still writing.
        let data = Layout(root: scratch.path + "/store").ingestPath(Self.ref) + "/data"
        let deadline = Date().addingTimeInterval(120)
        var size: Int64 = 0
        while Date() < deadline && child.process.isRunning {
            size = (try? Posix.stat(data)).flatMap { $0.map { Int64($0.st_size) } } ?? 0
            if size >= 16 << 20 { break }
            try await Task.sleep(for: .milliseconds(2))
        }
        let wasRunning = child.kill()
        try #require(wasRunning && size >= 16 << 20, "child did not get to 16 MiB (\(size) bytes): \(child.output)")
        #expect(child.process.terminationReason == .uncaughtSignal)

        let store = try LocalContentStore(root: scratch.path + "/store")
        try await #require(store.walk().map(\.size) == [1000], "only the blob committed before the kill exists")
        let status = try await store.status(Self.ref)
        let onDisk = try #require(try Posix.stat(data)).st_size
        #expect(status.offset == Int64(onDisk))
        #expect(status.offset >= 16 << 20 && status.offset <= Int64(Self.total))
        #expect(status.total == Int64(Self.total))
        #expect(status.expected == digest)
        let writer = try await store.writer(ref: Self.ref, total: 0, expected: nil)
        let offset = Int(try await writer.status().offset)
        #expect(await writer.digest() == (try Self.sha256(Array(bytes[0..<offset]))))
        var start = offset
        while start < bytes.count {
            try await writer.write(Array(bytes[start..<min(bytes.count, start + (1 << 20))]))
            start += 1 << 20
        }
        #expect(try await writer.commit(size: Int64(Self.total), expected: nil) == digest)
        #expect(try await store.info(digest).size == Int64(Self.total))
        #expect(try await store.statuses().isEmpty)
    }

    static let commitsRootVariable = "BERTH_CONTENT_COMMITS_CHILD_ROOT"

    /// kill -9 at a random moment of a loop of ingests and commits: afterwards every visible blob is whole and
    /// matches its digest, and every ingest left is resumable with its offset equal to its data on disk.
    @Test func killDuringCommitLoopLeavesOnlyWholeBlobs() async throws {
        if let root = ProcessInfo.processInfo.environment[Self.commitsRootVariable] {
            try await Self.commitLoop(root: root)
            return
        }
        let scratch = try ScratchDirectory()
        let root = scratch.path + "/store"
        for round in 0..<3 {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            child.arguments = [
                "--testing-library", "swift-testing", "--filter", "killDuringCommitLoopLeavesOnlyWholeBlobs",
            ]
            var environment = ProcessInfo.processInfo.environment
            environment[Self.commitsRootVariable] = root
            child.environment = environment
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            // Let it commit a few blobs, then kill at a moment that differs from round to round.
            let blobs = root + "/blobs/sha256"
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline && child.isRunning && ((try? Posix.list(blobs).count) ?? 0) < 3 * (round + 1) {
                try await Task.sleep(for: .milliseconds(1))
            }
            try await Task.sleep(for: .microseconds(UInt64.random(in: 0..<20_000)))
            try #require(child.isRunning, "the child stopped before it was killed")
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()

            let store = try LocalContentStore(root: root)
            let infos = try await store.walk()
            #expect(infos.count >= 3 * (round + 1))
            for info in infos {
                let reader = try await store.reader(info.digest)
                let bytes = try await reader.read(at: 0, count: Int(reader.size))
                await reader.close()
                #expect(Int64(bytes.count) == info.size)
                #expect(try Self.sha256(bytes) == info.digest, "blob \(info.digest) does not match its content")
            }
            for status in try await store.statuses() {
                let data = try #require(try Posix.stat(store.layout.ingestPath(status.ref) + "/data"))
                #expect(status.offset == Int64(data.st_size))
                let writer = try await store.writer(ref: status.ref, total: 0, expected: nil)
                #expect(try await writer.status().offset == status.offset)
                await writer.close()
            }
        }
    }

    /// The child of the commit loop: ingests and commits random blobs of 1 to 4 MiB until killed.
    static func commitLoop(root: String) async throws {
        let store = try LocalContentStore(root: root)
        var generator = SystemRandomNumberGenerator()
        for index in 0..<100_000 {
            var bytes = [UInt8](repeating: 0, count: Int.random(in: (1 << 20)...(4 << 20), using: &generator))
            bytes.withUnsafeMutableBytes { raw in
                for word in stride(from: 0, to: raw.count - 8, by: 8) {
                    raw.storeBytes(of: generator.next(), toByteOffset: word, as: UInt64.self)
                }
            }
            let writer = try await store.writer(ref: "loop-\(getpid())-\(index)", total: 0, expected: nil)
            var start = 0
            while start < bytes.count {
                try await writer.write(Array(bytes[start..<min(bytes.count, start + 300_000)]))
                start += 300_000
            }
            _ = try await writer.commit(size: Int64(bytes.count), expected: nil)
        }
    }

    /// The child: commits a small blob, then ingests the content and waits to be killed, never closing.
    static func child(root: String) async throws {
        let store = try LocalContentStore(root: root)
        let small = [UInt8](repeating: 5, count: 1000)
        let before = try await store.writer(ref: "before-crash", total: 0, expected: nil)
        try await before.write(small)
        _ = try await before.commit(size: 1000, expected: try sha256(small))
        let bytes = content()
        let writer = try await store.writer(ref: ref, total: Int64(total), expected: try sha256(bytes))
        var start = 0
        while start < bytes.count {
            try await writer.write(Array(bytes[start..<min(bytes.count, start + chunk)]))
            start += chunk
        }
        try await Task.sleep(for: .seconds(600))
    }
}
