/// A content digest (`algorithm:encoded`), validated on construction so an invalid digest never travels further
/// than the edge that received it (InvalidArgument there). It is stored as its text, so `description`, hashing and
/// comparison cost no formatting: listings build thousands of them.
public struct Digest: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    /// `algorithm:encoded`.
    public let description: String
    /// UTF-8 length of the algorithm part.
    private let algorithmLength: Int

    /// Hex lengths of the algorithms the OCI image spec registers.
    static let lengths = ["sha256": 64, "sha384": 96, "sha512": 128]

    public var algorithm: String { String(Substring(description.utf8.prefix(algorithmLength))) }
    public var encoded: String { String(Substring(description.utf8.dropFirst(algorithmLength + 1))) }

    public init(algorithm: String, encoded: String) throws(BerthError) {
        try self.init(parsing: algorithm + ":" + encoded)
    }

    /// Parses `sha256:<hex>` (lower-case hex of the algorithm's length), scanning the UTF-8 bytes in place.
    public init(parsing text: String) throws(BerthError) {
        var text = text
        // (colon offset, hex length or -1 for an unknown algorithm, -2 for bad hex); nil without a colon.
        let parsed: (colon: Int, length: Int)? = text.withUTF8 { bytes in
            guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), colon > 0 else { return nil }
            let algorithm = UnsafeBufferPointer(rebasing: bytes[..<colon])
            guard let length = Self.lengths.first(where: { $0.key.utf8.elementsEqual(algorithm) })?.value else {
                return (colon, -1)
            }
            guard bytes.count - colon - 1 == length else { return (colon, -2) }
            for byte in bytes[(colon + 1)...] where !((byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66)) {
                return (colon, -2)
            }
            return (colon, length)
        }
        guard let parsed else { throw .invalidArgument("invalid checksum digest format: \"\(text)\"") }
        guard parsed.length != -1 else {
            throw .invalidArgument("unsupported digest algorithm \"\(String(text.utf8.prefix(parsed.colon)) ?? "")\"")
        }
        guard parsed.length > 0 else { throw .invalidArgument("invalid checksum digest format: \(text)") }
        description = text
        algorithmLength = parsed.colon
    }

    public static func == (a: Digest, b: Digest) -> Bool { a.description == b.description }
    public func hash(into hasher: inout Hasher) { hasher.combine(description) }
    public static func < (a: Digest, b: Digest) -> Bool { a.description < b.description }

    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
