import Foundation
import GRPCCore
import NIOCore
import NIOHPACK

/// A gRPC message's bytes as a slice of the connection's read buffer: requests are decoded without a copy.
struct FrameBytes: GRPCContiguousBytes, Sendable {
    var buffer: ByteBuffer

    init(_ buffer: ByteBuffer) { self.buffer = buffer }

    init(repeating byte: UInt8, count: Int) { buffer = ByteBuffer(repeating: byte, count: count) }

    init<Bytes: Sequence>(_ sequence: Bytes) where Bytes.Element == UInt8 { buffer = ByteBuffer(bytes: sequence) }

    var count: Int { buffer.readableBytes }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes(body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes(body)
    }
}

/// gRPC over HTTP/2 header blocks (PROTOCOL-HTTP2.md in grpc/grpc): request headers to metadata, and the
/// response's headers and trailers.
enum GRPCHeaders {
    /// Request metadata: every header but the pseudo-headers; `-bin` values are base64.
    static func metadata(_ headers: HPACKHeaders) -> Metadata {
        var metadata = Metadata()
        for header in headers where !header.name.hasPrefix(":") {
            if header.name.hasSuffix("-bin"), let data = Data(base64Encoded: Self.padded(header.value)) {
                metadata.addBinary([UInt8](data), forKey: header.name)
            } else {
                metadata.addString(header.value, forKey: header.name)
            }
        }
        return metadata
    }

    /// gRPC peers may omit base64 padding.
    static func padded(_ value: String) -> String {
        let remainder = value.utf8.count % 4
        return remainder == 0 ? value : value + String(repeating: "=", count: 4 - remainder)
    }

    /// The response's first header block.
    static func response(_ metadata: Metadata) -> HPACKHeaders {
        var headers: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
        add(metadata, to: &headers)
        return headers
    }

    /// The closing header block; `trailersOnly` when no response headers went out before it.
    static func trailers(_ status: Status, _ metadata: Metadata, trailersOnly: Bool) -> HPACKHeaders {
        var headers: HPACKHeaders = trailersOnly ? [":status": "200", "content-type": "application/grpc"] : [:]
        headers.add(name: "grpc-status", value: String(status.code.rawValue))
        if !status.message.isEmpty { headers.add(name: "grpc-message", value: percentEncoded(status.message)) }
        add(metadata, to: &headers)
        return headers
    }

    static func add(_ metadata: Metadata, to headers: inout HPACKHeaders) {
        for pair in metadata {
            switch pair.value {
            case .string(let value): headers.add(name: pair.key.lowercased(), value: value)
            case .binary(let bytes): headers.add(name: pair.key.lowercased(), value: Data(bytes).base64EncodedString())
            }
        }
    }

    /// grpc-message: bytes outside printable ASCII, and '%', as %XX.
    static func percentEncoded(_ message: String) -> String {
        var out = ""
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
