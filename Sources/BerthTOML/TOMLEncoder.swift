import Foundation

/// Encodes `Encodable` values into a `TOMLTable`, e.g. to write a default config or to supply
/// defaults to `TOMLDecoder`.
///
/// Keys keep their encoding order (CodingKeys declaration order for synthesized conformances);
/// nil optionals are omitted (TOML has no null); `[String: V]` dictionaries are written with
/// sorted keys so output is stable; nested structs become tables and arrays of structs become
/// arrays of tables. `Date` becomes an offset date-time, `URL` a string, and `TOMLValue`,
/// `TOMLTable`, `TOMLNode` and `TOMLDateTime` are embedded as they are.
public struct TOMLEncoder: Sendable {
    public init() {}

    /// Encodes `value`, which must encode as a keyed container (a table).
    public func encode<T: Encodable>(_ value: T) throws -> TOMLTable {
        let box = EncodingBox()
        try box.encode(value, codingPath: [])
        guard case .table(let table)? = box.value() else {
            throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "top-level value must encode as a table"))
        }
        return table
    }
}

/// Marks `[String: V]` so the encoder can sort its keys.
protocol StringKeyedDictionaryMarker {}
extension Dictionary: StringKeyedDictionaryMarker where Key == String {}

/// A mutable node in the value tree being encoded. Containers hand out references to boxes so
/// values encoded later land in the right place.
final class EncodingBox {
    enum Content {
        case empty
        case value(TOMLValue)
        case table(keys: [String], children: [String: EncodingBox])
        case array([EncodingBox])
    }

    var content: Content = .empty
    var sortKeys = false

    /// Encodes `value` into this box, special-casing types with a direct TOML form.
    func encode<T: Encodable>(_ value: T, codingPath: [any CodingKey]) throws {
        if let special = try Self.specialValue(value, codingPath: codingPath) {
            content = .value(special)
            return
        }
        try value.encode(to: BoxEncoder(box: self, codingPath: codingPath))
        if value is any StringKeyedDictionaryMarker { sortKeys = true }
    }

    /// The TOML form of types that are not encoded through their own `encode(to:)`.
    static func specialValue(_ value: Any, codingPath: [any CodingKey]) throws -> TOMLValue? {
        switch value {
        case let v as TOMLValue: return v
        case let v as TOMLNode: return v.value
        case let v as TOMLTable: return .table(v)
        case let v as TOMLDateTime: return .datetime(v)
        case let v as Date:
            guard let dateTime = TOMLDateTime(v) else {
                throw EncodingError.invalidValue(v, .init(codingPath: codingPath, debugDescription: "date outside years 0...9999"))
            }
            return .datetime(dateTime)
        case let v as URL: return .string(v.absoluteString)
        default: return nil
        }
    }

    /// Returns the child box for `key`, turning this box into a table if it is not one yet.
    func child(_ key: String) -> EncodingBox {
        var keys: [String] = []
        var children: [String: EncodingBox] = [:]
        if case .table(let k, let c) = content {
            keys = k
            children = c
        }
        if let existing = children[key] { return existing }
        let box = EncodingBox()
        keys.append(key)
        children[key] = box
        content = .table(keys: keys, children: children)
        return box
    }

    func makeTable() {
        if case .table = content { return }
        content = .table(keys: [], children: [:])
    }

    func appendElement() -> EncodingBox {
        var items: [EncodingBox] = []
        if case .array(let existing) = content { items = existing }
        let box = EncodingBox()
        items.append(box)
        content = .array(items)
        return box
    }

    func makeArray() {
        if case .array = content { return }
        content = .array([])
    }

    var arrayCount: Int {
        if case .array(let items) = content { return items.count }
        return 0
    }

    /// The finished value; nil if nothing was encoded (e.g. a nil optional), so the key is omitted.
    func value() -> TOMLValue? {
        switch content {
        case .empty:
            return nil
        case .value(let v):
            return v
        case .array(let items):
            return .array(items.compactMap { $0.value().map { TOMLNode($0) } })
        case .table(let keys, let children):
            var table = TOMLTable()
            for key in sortKeys ? keys.sorted() : keys {
                if let v = children[key]?.value() { table[key] = TOMLNode(v) }
            }
            return .table(table)
        }
    }
}

/// The `Encoder` handed to `encode(to:)`; writes into one box.
struct BoxEncoder: Encoder {
    let box: EncodingBox
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        box.makeTable()
        return KeyedEncodingContainer(KeyedBoxContainer<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        box.makeArray()
        return UnkeyedBoxContainer(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueBoxContainer(box: box, codingPath: codingPath)
    }
}

/// Converts Swift scalars to TOML values, checking integer range.
enum ScalarEncoding {
    static func integer<T: BinaryInteger>(_ value: T, codingPath: [any CodingKey]) throws -> TOMLValue {
        guard let v = Int64(exactly: value) else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "\(value) does not fit in a TOML (64-bit signed) integer"))
        }
        return .integer(v)
    }
}

struct KeyedBoxContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: EncodingBox
    var codingPath: [any CodingKey]

    private func set(_ value: TOMLValue, _ key: Key) { box.child(key.stringValue).content = .value(value) }

    mutating func encodeNil(forKey key: Key) throws {}
    mutating func encode(_ value: Bool, forKey key: Key) throws { set(.boolean(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { set(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { set(.float(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { set(.float(Double(value)), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { set(.integer(Int64(value)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { set(.integer(Int64(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { set(.integer(Int64(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { set(.integer(Int64(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { set(.integer(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { set(try ScalarEncoding.integer(value, codingPath: codingPath + [key]), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { set(.integer(Int64(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { set(.integer(Int64(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { set(.integer(Int64(value)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { set(try ScalarEncoding.integer(value, codingPath: codingPath + [key]), key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        let child = box.child(key.stringValue)
        child.content = .empty
        try child.encode(value, codingPath: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = box.child(key.stringValue)
        child.makeTable()
        return KeyedEncodingContainer(KeyedBoxContainer<NestedKey>(box: child, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = box.child(key.stringValue)
        child.makeArray()
        return UnkeyedBoxContainer(box: child, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        BoxEncoder(box: box.child("super"), codingPath: codingPath + [TOMLCodingKey("super")])
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        BoxEncoder(box: box.child(key.stringValue), codingPath: codingPath + [key])
    }
}

struct UnkeyedBoxContainer: UnkeyedEncodingContainer {
    let box: EncodingBox
    var codingPath: [any CodingKey]
    var count: Int { box.arrayCount }

    private var nextKey: TOMLCodingKey { TOMLCodingKey(index: count) }
    private func append(_ value: TOMLValue) { box.appendElement().content = .value(value) }

    mutating func encodeNil() throws {
        throw EncodingError.invalidValue(Optional<Int>.none as Any, .init(codingPath: codingPath + [nextKey], debugDescription: "TOML arrays cannot hold nil"))
    }
    mutating func encode(_ value: Bool) throws { append(.boolean(value)) }
    mutating func encode(_ value: String) throws { append(.string(value)) }
    mutating func encode(_ value: Double) throws { append(.float(value)) }
    mutating func encode(_ value: Float) throws { append(.float(Double(value))) }
    mutating func encode(_ value: Int) throws { append(.integer(Int64(value))) }
    mutating func encode(_ value: Int8) throws { append(.integer(Int64(value))) }
    mutating func encode(_ value: Int16) throws { append(.integer(Int64(value))) }
    mutating func encode(_ value: Int32) throws { append(.integer(Int64(value))) }
    mutating func encode(_ value: Int64) throws { append(.integer(value)) }
    mutating func encode(_ value: UInt) throws { append(try ScalarEncoding.integer(value, codingPath: codingPath + [nextKey])) }
    mutating func encode(_ value: UInt8) throws { append(.integer(Int64(value))) }
    mutating func encode(_ value: UInt16) throws { append(.integer(Int64(value))) }
    mutating func encode(_ value: UInt32) throws { append(.integer(Int64(value))) }
    mutating func encode(_ value: UInt64) throws { append(try ScalarEncoding.integer(value, codingPath: codingPath + [nextKey])) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let path = codingPath + [nextKey]
        let element = box.appendElement()
        try element.encode(value, codingPath: path)
        if element.value() == nil {
            throw EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "TOML arrays cannot hold nil"))
        }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = codingPath + [nextKey]
        let element = box.appendElement()
        element.makeTable()
        return KeyedEncodingContainer(KeyedBoxContainer<NestedKey>(box: element, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = codingPath + [nextKey]
        let element = box.appendElement()
        element.makeArray()
        return UnkeyedBoxContainer(box: element, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let path = codingPath + [nextKey]
        return BoxEncoder(box: box.appendElement(), codingPath: path)
    }
}

struct SingleValueBoxContainer: SingleValueEncodingContainer {
    let box: EncodingBox
    var codingPath: [any CodingKey]

    mutating func encodeNil() throws { box.content = .empty }
    mutating func encode(_ value: Bool) throws { box.content = .value(.boolean(value)) }
    mutating func encode(_ value: String) throws { box.content = .value(.string(value)) }
    mutating func encode(_ value: Double) throws { box.content = .value(.float(value)) }
    mutating func encode(_ value: Float) throws { box.content = .value(.float(Double(value))) }
    mutating func encode(_ value: Int) throws { box.content = .value(.integer(Int64(value))) }
    mutating func encode(_ value: Int8) throws { box.content = .value(.integer(Int64(value))) }
    mutating func encode(_ value: Int16) throws { box.content = .value(.integer(Int64(value))) }
    mutating func encode(_ value: Int32) throws { box.content = .value(.integer(Int64(value))) }
    mutating func encode(_ value: Int64) throws { box.content = .value(.integer(value)) }
    mutating func encode(_ value: UInt) throws { box.content = .value(try ScalarEncoding.integer(value, codingPath: codingPath)) }
    mutating func encode(_ value: UInt8) throws { box.content = .value(.integer(Int64(value))) }
    mutating func encode(_ value: UInt16) throws { box.content = .value(.integer(Int64(value))) }
    mutating func encode(_ value: UInt32) throws { box.content = .value(.integer(Int64(value))) }
    mutating func encode(_ value: UInt64) throws { box.content = .value(try ScalarEncoding.integer(value, codingPath: codingPath)) }
    mutating func encode<T: Encodable>(_ value: T) throws { try box.encode(value, codingPath: codingPath) }
}

/// A plain coding key for paths the encoder and decoder build themselves.
struct TOMLCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?

    init(_ string: String) {
        stringValue = string
        intValue = nil
    }

    init(index: Int) {
        stringValue = String(index)
        intValue = index
    }

    init?(stringValue: String) { self.init(stringValue) }
    init?(intValue: Int) { self.init(index: intValue) }
}
