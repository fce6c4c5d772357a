import BerthCore
import Testing

@Suite struct BerthErrorTests {
    struct StorageFailure: Error, CustomStringConvertible {
        var description: String { "disk I/O error" }
    }

    @Test func storingPassesBerthErrorsAndWrapsTheRest() async throws {
        #expect(try BerthError.storing("metadata") { 7 } == 7)
        #expect(throws: BerthError.notFound("snapshot k does not exist")) {
            try BerthError.storing("metadata") { throw BerthError.notFound("snapshot k does not exist") }
        }
        #expect(throws: BerthError.internalError("metadata: disk I/O error")) {
            try BerthError.storing("metadata") { throw StorageFailure() }
        }
        await #expect(throws: BerthError.internalError("snapshot metadata: disk I/O error")) {
            try await BerthError.storing("snapshot metadata") { () async throws -> Int in throw StorageFailure() }
        }
        #expect(try await BerthError.storing("metadata") { () async throws -> Int in 8 } == 8)
    }
}
