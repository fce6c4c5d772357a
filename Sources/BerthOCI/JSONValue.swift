/// Any JSON value. OCI documents carry fields this version does not know (new spec fields, vendor extensions);
/// every Codable type in BerthOCI keeps them as `OCIValue`s so a decode/encode round trip loses nothing.
public enum OCIValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([OCIValue])
    case object([String: OCIValue])

    public init(from decoder: any Decoder) throws {
        if var array = try? decoder.unkeyedContainer() {
            var values: [OCIValue] = []
            while !array.isAtEnd { values.append(try array.decode(OCIValue.self)) }
            self = .array(values)
            return
        }
        if let object = try? decoder.container(keyedBy: JSONKey.self) {
            var values: [String: OCIValue] = [:]
            for key in object.allKeys { values[key.stringValue] = try object.decode(OCIValue.self, forKey: key) }
            self = .object(values)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let value = try? single.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? single.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? single.decode(Double.self) {
            self = .double(value)
        } else {
            self = .string(try single.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var single = encoder.singleValueContainer()
            try single.encodeNil()
        case .bool(let value):
            var single = encoder.singleValueContainer()
            try single.encode(value)
        case .int(let value):
            var single = encoder.singleValueContainer()
            try single.encode(value)
        case .double(let value):
            var single = encoder.singleValueContainer()
            try single.encode(value)
        case .string(let value):
            var single = encoder.singleValueContainer()
            try single.encode(value)
        case .array(let values):
            var array = encoder.unkeyedContainer()
            for value in values { try array.encode(value) }
        case .object(let values):
            var object = encoder.container(keyedBy: JSONKey.self)
            for (key, value) in values { try object.encode(value, forKey: JSONKey(key)) }
        }
    }
}

/// A coding key made from any string: how BerthOCI types read known and unknown fields from one container.
public struct JSONKey: CodingKey, Hashable, Sendable {
    public let stringValue: String
    public var intValue: Int? { nil }
    public init(_ string: String) { stringValue = string }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { return nil }
}

extension KeyedDecodingContainer where Key == JSONKey {
    /// The value at `key`, nil when absent or JSON null (Go's zero value).
    func value<T: Decodable>(_ key: String, as type: T.Type = T.self) throws -> T? {
        try decodeIfPresent(T.self, forKey: JSONKey(key))
    }

    /// Every field whose name is not in `known`, kept for re-encoding.
    func extras(excluding known: Set<String>) throws -> [String: OCIValue] {
        var extras: [String: OCIValue] = [:]
        for key in allKeys where !known.contains(key.stringValue) {
            extras[key.stringValue] = try decode(OCIValue.self, forKey: key)
        }
        return extras
    }
}

extension KeyedEncodingContainer where Key == JSONKey {
    /// Encodes `value` unless nil (Go's `omitempty` for pointers, slices and maps that callers model as optionals).
    mutating func put<T: Encodable>(_ value: T?, _ key: String) throws {
        if let value { try encode(value, forKey: JSONKey(key)) }
    }

    /// Writes back unknown fields; a known field always wins over an extra of the same name.
    mutating func putExtras(_ extras: [String: OCIValue], excluding known: Set<String>) throws {
        for (key, value) in extras where !known.contains(key) { try encode(value, forKey: JSONKey(key)) }
    }
}
