import BerthAPI
import BerthCore
import Foundation
import GRPCCore
import SwiftProtobuf

/// The encoded bytes of one `ListContentResponse`, sent as they are (see `ListEncoding`).
struct EncodedListResponse: Sendable {
    var bytes: [UInt8]
}

/// Sends pre-encoded messages unchanged.
struct EncodedListSerializer: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: EncodedListResponse) throws -> Bytes {
        Bytes(message.bytes)
    }
}

/// Encodes `ListContentResponse` batches straight from `ContentInfo` values, without building a
/// `Containerd_Services_Content_V1_Info` per blob: listings of many blobs spent most of their time creating those
/// messages and their label maps only to serialise them once. The bytes are the protobuf encoding of the same message
/// (`repeated Info info = 1`; Info: digest 1, size 2, created_at 3, updated_at 4, labels 5), which a test checks
/// against SwiftProtobuf's.
enum ListEncoding {
    static func response(_ infos: ArraySlice<ContentInfo>) -> EncodedListResponse {
        var out: [UInt8] = []
        out.reserveCapacity(infos.count * 140)
        for info in infos {
            let created = Google_Protobuf_Timestamp(date: info.createdAt)
            let updated = Google_Protobuf_Timestamp(date: info.updatedAt)
            let digest = info.digest.description
            var size = 0
            if !digest.isEmpty { size += field(bytes: digest.utf8.count) }
            if info.size != 0 { size += 1 + varintSize(UInt64(bitPattern: info.size)) }
            size += field(bytes: timestampSize(created)) + field(bytes: timestampSize(updated))
            for (key, value) in info.labels { size += field(bytes: entrySize(key, value)) }

            tag(1, &out)
            varint(UInt64(size), &out)
            if !digest.isEmpty { string(1, digest, &out) }
            if info.size != 0 {
                out.append(2 << 3)
                varint(UInt64(bitPattern: info.size), &out)
            }
            timestamp(3, created, &out)
            timestamp(4, updated, &out)
            for (key, value) in info.labels {
                tag(5, &out)
                varint(UInt64(entrySize(key, value)), &out)
                string(1, key, &out)
                string(2, value, &out)
            }
        }
        return EncodedListResponse(bytes: out)
    }

    /// A length-delimited tag (fields 1–15 take one byte).
    private static func tag(_ number: UInt8, _ out: inout [UInt8]) { out.append(number << 3 | 2) }

    private static func string(_ number: UInt8, _ text: String, _ out: inout [UInt8]) {
        tag(number, &out)
        varint(UInt64(text.utf8.count), &out)
        out.append(contentsOf: text.utf8)
    }

    private static func timestamp(_ number: UInt8, _ t: Google_Protobuf_Timestamp, _ out: inout [UInt8]) {
        tag(number, &out)
        varint(UInt64(timestampSize(t)), &out)
        if t.seconds != 0 {
            out.append(1 << 3)
            varint(UInt64(bitPattern: t.seconds), &out)
        }
        if t.nanos != 0 {
            out.append(2 << 3)
            varint(UInt64(bitPattern: Int64(t.nanos)), &out)
        }
    }

    private static func timestampSize(_ t: Google_Protobuf_Timestamp) -> Int {
        (t.seconds != 0 ? 1 + varintSize(UInt64(bitPattern: t.seconds)) : 0)
            + (t.nanos != 0 ? 1 + varintSize(UInt64(bitPattern: Int64(t.nanos))) : 0)
    }

    /// A map entry writes key and value always, as SwiftProtobuf and Go do.
    private static func entrySize(_ key: String, _ value: String) -> Int {
        field(bytes: key.utf8.count) + field(bytes: value.utf8.count)
    }

    /// Size of a length-delimited field with a one-byte tag and `bytes` of payload.
    private static func field(bytes: Int) -> Int { 1 + varintSize(UInt64(bytes)) + bytes }

    private static func varintSize(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    private static func varint(_ value: UInt64, _ out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
}
