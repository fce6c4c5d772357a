import BerthAPI
import BerthCore
import Foundation
import SwiftProtobuf
import Testing

@testable import BerthContentService

/// The hand-written List encoding must be the protobuf encoding of the message SwiftProtobuf builds.
@Suite struct ContentListEncodingTests {
    static func info(_ i: Int, labels: [String: String]) throws -> ContentInfo {
        let hex = String(repeating: String(i % 10), count: 64)
        return ContentInfo(
            digest: try Digest(parsing: "sha256:" + hex), size: Int64(i * 1_000_003),
            createdAt: Date(timeIntervalSince1970: 1_700_000_000.123456789 + Double(i)),
            updatedAt: i == 0 ? Date(timeIntervalSince1970: 0) : Date(timeIntervalSince1970: -5.5), labels: labels)
    }

    @Test func decodesToTheSameMessage() throws {
        let infos = [
            try Self.info(0, labels: [:]),
            try Self.info(1, labels: ["containerd.io/gc.root": "x", "empty": "", "ünïcode": String(repeating: "v", count: 300)]),
            try Self.info(2, labels: ["a": "b"]),
        ]
        let encoded = ListEncoding.response(infos[...])
        let decoded = try Containerd_Services_Content_V1_ListContentResponse(serializedBytes: encoded.bytes)
        var expected = Containerd_Services_Content_V1_ListContentResponse()
        expected.info = infos.map(ContentService.message)
        #expect(decoded == expected)
        #expect(encoded.bytes.count == (try expected.serializedBytes() as [UInt8]).count)
    }

    @Test func emptyBatchIsAnEmptyMessage() {
        #expect(ListEncoding.response([]).bytes.isEmpty)
    }
}
