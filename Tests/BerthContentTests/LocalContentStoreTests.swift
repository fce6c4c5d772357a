#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthTestSupport
import Foundation
import Testing

@testable import BerthContentPlugin

/// The shared conformance suite, run against the local store.
let localSuite = ContentStoreSuite { directory in try LocalContentStore(root: directory) }

@Suite("LocalContentStore conformance")
struct LocalContentStoreConformance {
    @Test(arguments: ContentStoreSuite.Scenario.allCases)
    func scenario(_ scenario: ContentStoreSuite.Scenario) async throws {
        try await localSuite.run(scenario)
    }
}

/// A scratch directory removed when the test ends.
final class ScratchDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/berth-content-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard let made else {
            throw BerthError.internalError("mkdtemp: \(FileSystem.errnoMessage())")
        }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func bytes(_ count: Int, _ value: UInt8) -> [UInt8] { Array(repeating: value, count: count) }

@Suite("LocalContentStore layout and recovery")
struct LocalContentStoreLayoutTests {
    @Test func registrationIsContainerdsContentPlugin() {
        #expect(registration.type == .content)
        #expect(registration.id == "content")
        #expect(registration.uri == "io.containerd.content.v1.content")
    }

    /// Blobs land at blobs/sha256/<hex>, read-only; ingests at ingest/<sha256 of ref>/ with containerd's files.
    @Test func onDiskLayoutIsContainerds() async throws {
        let scratch = try ScratchDirectory()
        let store = try LocalContentStore(root: scratch.path)
        let content = bytes(1000, 7)
        let expected = try Digest(parsing: "sha256:" + String(repeating: "0", count: 64))
        let writer = try await store.writer(ref: "layout-ref", total: 1000, expected: expected)
        try await writer.write(content)
        let ingest = store.layout.ingestPath("layout-ref")
        #expect(ingest.hasPrefix(scratch.path + "/ingest/"))
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: ingest))
        #expect(files == ["data", "ref", "startedat", "updatedat", "total", "expected"])
        #expect(try String(contentsOfFile: ingest + "/ref", encoding: .utf8) == "layout-ref")
        #expect(try String(contentsOfFile: ingest + "/total", encoding: .utf8) == "1000")
        #expect(try String(contentsOfFile: ingest + "/expected", encoding: .utf8) == expected.description)
        let started = try String(contentsOfFile: ingest + "/startedat", encoding: .utf8)
        #expect(Timestamp.parse(started) != nil)
        try await writer.update(total: 0, expected: nil)
        let digest = try await writer.commit(size: 1000, expected: await writer.digest())
        let blob = scratch.path + "/blobs/sha256/" + digest.encoded
        let st = try #require(try Posix.stat(blob))
        #expect(st.st_mode & 0o777 == 0o444)
        #expect(st.st_size == 1000)
        #expect(!FileManager.default.fileExists(atPath: ingest))
    }

    /// A failed commit leaves nothing in the blob directory, not even a temporary file.
    @Test func failedCommitLeavesNoFile() async throws {
        let scratch = try ScratchDirectory()
        let store = try LocalContentStore(root: scratch.path)
        let writer = try await store.writer(ref: "x", total: 0, expected: nil)
        try await writer.write(bytes(4096, 1))
        let wrong = try Digest(parsing: "sha256:" + String(repeating: "a", count: 64))
        await #expect(throws: BerthError.self) { try await writer.commit(size: 0, expected: wrong) }
        await #expect(throws: BerthError.self) { try await writer.commit(size: 4095, expected: nil) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path + "/blobs/sha256").isEmpty)
        // The writer stays usable after a failed commit.
        try await writer.write(bytes(1, 1))
        let digest = try await writer.commit(size: 4097, expected: nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path + "/blobs/sha256") == [digest.encoded])
    }

    /// Opening sweeps what a crash can leave: a half-created ingest (staging directory) and an ingest whose data
    /// was already renamed into a blob; complete ingests stay.
    @Test func openSweepsUnusableIngests() async throws {
        let scratch = try ScratchDirectory()
        let store = try LocalContentStore(root: scratch.path)
        let kept = try await store.writer(ref: "kept", total: 0, expected: nil)
        try await kept.write(bytes(10, 3))
        await kept.close()
        let ingests = scratch.path + "/ingest"
        try FileManager.default.createDirectory(atPath: ingests + "/.new-abc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: ingests + "/deadbeef", withIntermediateDirectories: true)
        try "committed".write(toFile: ingests + "/deadbeef/ref", atomically: false, encoding: .utf8)
        let reopened = try LocalContentStore(root: scratch.path)
        let keptName = (store.layout.ingestPath("kept") as NSString).lastPathComponent
        #expect(try FileManager.default.contentsOfDirectory(atPath: ingests) == [keptName])
        #expect(try await reopened.statuses().map(\.ref) == ["kept"])
    }

    /// A second store instance on the same root (another process, or a restart while the old one lingers) cannot
    /// take a ref an open writer holds: the data file's flock says so.
    @Test func lockHoldsAcrossInstances() async throws {
        let scratch = try ScratchDirectory()
        let first = try LocalContentStore(root: scratch.path)
        let second = try LocalContentStore(root: scratch.path)
        let writer = try await first.writer(ref: "shared", total: 0, expected: nil)
        let error = await #expect(throws: BerthError.self) {
            try await second.writer(ref: "shared", total: 0, expected: nil)
        }
        #expect(error?.code == .unavailable)
        #expect(error?.description == "ref shared locked: unavailable")
        await writer.close()
        let taken = try await second.writer(ref: "shared", total: 0, expected: nil)
        await taken.close()
    }

    /// Misuse: writes racing on one writer. Each either lands whole or is refused (FailedPrecondition); the file,
    /// offset and digest stay consistent, so the committed blob matches its digest.
    @Test func racingWritesOnOneWriterStayConsistent() async throws {
        let scratch = try ScratchDirectory()
        let store = try LocalContentStore(root: scratch.path)
        let writer = try await store.writer(ref: "raced-writes", total: 0, expected: nil)
        let landed = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<8 {
                group.addTask {
                    do {
                        try await writer.write(bytes(1 << 20, UInt8(index)))
                        return true
                    } catch {
                        #expect((error as? BerthError)?.code == .failedPrecondition)
                        return false
                    }
                }
            }
            var landed = 0
            for await ok in group where ok { landed += 1 }
            return landed
        }
        #expect(landed >= 1)
        #expect(try await writer.status().offset == Int64(landed << 20))
        let digest = try await writer.commit(size: Int64(landed << 20), expected: nil)
        let reader = try await store.reader(digest)
        let content = try await reader.read(at: 0, count: Int(reader.size))
        #expect(try LocalContentStoreCrashTests.sha256(content) == digest)
    }

    @Test func timestampsRoundTripAndReadGoFormat() throws {
        let date = Date(timeIntervalSince1970: 1_700_000_000.123456)
        let text = Timestamp.format(date)
        #expect(text.hasPrefix("2023-11-14T22:13:20.123456"))
        #expect(text.hasSuffix("Z"))
        let parsed = try #require(Timestamp.parse(text))
        #expect(abs(parsed.timeIntervalSince1970 - date.timeIntervalSince1970) < 1e-6)
        let go = try #require(Timestamp.parse("2023-11-14T23:13:20.5+01:00"))
        #expect(go.timeIntervalSince1970 == 1_700_000_000.5)
        #expect(Timestamp.parse("2023-11-14T22:13:20Z")?.timeIntervalSince1970 == 1_700_000_000)
        #expect(Timestamp.parse("yesterday") == nil)
    }
}
