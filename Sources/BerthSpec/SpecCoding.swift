/// Table-driven Codable for the OCI spec types: each type lists its JSON fields once, with Go's encoding rule
/// (always present, omitted when nil, or omitted when empty), and every unknown field is kept in `extra`, so a
/// spec written by another tool survives a decode/encode round trip.
public protocol OCIObject: Codable, Sendable, Equatable {
    init()
    /// Fields this type does not model, kept as read.
    var extra: [String: JSONValue] { get set }
    static var fields: [OCIField<Self>] { get }
}

extension OCIObject {
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: AnyKey.self)
        let fields = Self.fields
        let known = Set(fields.map(\.name))
        for field in fields { try field.decode(&self, container) }
        for key in container.allKeys where !known.contains(key.stringValue) {
            extra[key.stringValue] = try container.decode(JSONValue.self, forKey: key)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyKey.self)
        let fields = Self.fields
        let known = Set(fields.map(\.name))
        for field in fields { try field.encode(self, &container) }
        for (key, value) in extra where !known.contains(key) {
            try container.encode(value, forKey: AnyKey(key))
        }
    }
}

/// Values Go's `omitempty` leaves out: false, 0, "", empty slices and maps.
public protocol GoEmptiable {
    var isGoEmpty: Bool { get }
}

extension Bool: GoEmptiable { public var isGoEmpty: Bool { !self } }
extension String: GoEmptiable { public var isGoEmpty: Bool { isEmpty } }
extension Array: GoEmptiable { public var isGoEmpty: Bool { isEmpty } }
extension Dictionary: GoEmptiable { public var isGoEmpty: Bool { isEmpty } }
extension UInt32: GoEmptiable { public var isGoEmpty: Bool { self == 0 } }
extension UInt64: GoEmptiable { public var isGoEmpty: Bool { self == 0 } }
extension Int64: GoEmptiable { public var isGoEmpty: Bool { self == 0 } }
extension UInt: GoEmptiable { public var isGoEmpty: Bool { self == 0 } }

/// One JSON field of an OCI type: its name and how to read and write it.
public struct OCIField<Root> {
    public let name: String
    let decode: (inout Root, KeyedDecodingContainer<AnyKey>) throws -> Void
    let encode: (Root, inout KeyedEncodingContainer<AnyKey>) throws -> Void

    /// Always written (Go field without `omitempty`); absent on input leaves the default.
    public static func always<V: Codable>(_ name: String, _ path: WritableKeyPath<Root, V>) -> OCIField {
        OCIField(
            name: name,
            decode: { root, c in
                if let v = try c.decodeIfPresent(V.self, forKey: AnyKey(name)) { root[keyPath: path] = v }
            },
            encode: { root, c in try c.encode(root[keyPath: path], forKey: AnyKey(name)) })
    }

    /// Written unless nil (Go pointer or struct pointer).
    public static func optional<V: Codable>(_ name: String, _ path: WritableKeyPath<Root, V?>) -> OCIField {
        OCIField(
            name: name,
            decode: { root, c in root[keyPath: path] = try c.decodeIfPresent(V.self, forKey: AnyKey(name)) },
            encode: { root, c in try c.encodeIfPresent(root[keyPath: path], forKey: AnyKey(name)) })
    }

    /// Written unless nil or empty (Go `omitempty` on a value).
    public static func omitEmpty<V: Codable & GoEmptiable>(_ name: String, _ path: WritableKeyPath<Root, V?>)
        -> OCIField
    {
        OCIField(
            name: name,
            decode: { root, c in root[keyPath: path] = try c.decodeIfPresent(V.self, forKey: AnyKey(name)) },
            encode: { root, c in
                if let v = root[keyPath: path], !v.isGoEmpty { try c.encode(v, forKey: AnyKey(name)) }
            })
    }
}
