/// A content digest (`algorithm:encoded`), validated on construction so an invalid digest never travels further
/// than the edge that received it (InvalidArgument there).
public struct Digest: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public let algorithm: String
    public let encoded: String

    /// Hex lengths of the algorithms the OCI image spec registers.
    static let lengths = ["sha256": 64, "sha384": 96, "sha512": 128]

    public init(algorithm: String, encoded: String) throws(BerthError) {
        guard let length = Self.lengths[algorithm] else {
            throw .invalidArgument("unsupported digest algorithm \"\(algorithm)\"")
        }
        guard encoded.utf8.count == length,
            encoded.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else {
            throw .invalidArgument("invalid checksum digest format: \(algorithm):\(encoded)")
        }
        self.algorithm = algorithm
        self.encoded = encoded
    }

    /// Parses `sha256:<hex>`.
    public init(parsing text: String) throws(BerthError) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty else {
            throw .invalidArgument("invalid checksum digest format: \"\(text)\"")
        }
        try self.init(algorithm: String(parts[0]), encoded: String(parts[1]))
    }

    public var description: String { "\(algorithm):\(encoded)" }

    public static func < (a: Digest, b: Digest) -> Bool { a.description < b.description }

    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
