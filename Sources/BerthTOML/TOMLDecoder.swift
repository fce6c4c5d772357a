import Foundation

/// Decodes `Decodable` types from a parsed `TOMLTable`, with defaults, unknown-key reporting and
/// errors that name the key path, the expected and found types, and the source line.
///
/// Integers decode into any Swift integer type with a range check; `Double`/`Float` accept floats
/// and integers; `[String: V]` decodes from a table; `Date` from an offset date-time; `URL` from a
/// string. `TOMLTable`, `TOMLValue`, `TOMLNode` and `TOMLDateTime` decode as they are (keeping
/// positions), which lets a config keep a section raw and decode it later with its own type.
public struct TOMLDecoder: Sendable {
    public init() {}

    /// Decodes `T` from `table`.
    ///
    /// - Parameters:
    ///   - defaults: when given, it is encoded with `TOMLEncoder` and `table` is deep-merged over
    ///     it, so keys absent from `table` keep their default values (plain synthesized `Codable`
    ///     structs then work with partial files). `T` must then also be `Encodable`.
    ///   - codingPath: the path of `table` within a larger document; prefixed to error and
    ///     unknown-key paths.
    /// - Returns: the value and the keys of `table` that decoding never read. Keys that exist only
    ///   because of `defaults` are never reported.
    /// - Throws: `TOMLDecodingError` for type mismatches, out-of-range integers, invalid enum
    ///   values and missing required keys; `EncodingError` if `defaults` cannot be encoded.
    public func decode<T: Decodable>(
        _ type: T.Type, from table: TOMLTable, defaults: T? = nil, codingPath: [String] = []
    ) throws -> TOMLDecoded<T> {
        var effective = table
        if let defaults {
            guard let encodable = defaults as? any Encodable else {
                throw EncodingError.invalidValue(defaults, .init(codingPath: [], debugDescription: "defaults must be Encodable"))
            }
            effective = try TOMLEncoder().encode(encodable)
            effective.merge(table)
        }
        let state = DecodingState(rootPath: codingPath)
        let root = TOMLNode(.table(effective), position: table.position ?? .unknown)
        let value = try state.decode(T.self, node: root, path: [], codingPath: codingPath.map { TOMLCodingKey($0) })
        return TOMLDecoded(value: value, unknownKeys: state.unknownKeys(in: table))
    }
}

/// Shared bookkeeping for one `decode` call: which key paths were read.
final class DecodingState {
    let rootPath: [String]
    /// Relative paths (array items as their index) that the decodable type asked for.
    var accessed: Set<[String]> = []
    /// Relative paths decoded whole (as `TOMLTable`, `TOMLValue`, …): nothing below is unknown.
    var consumed: Set<[String]> = []

    init(rootPath: [String]) {
        self.rootPath = rootPath
    }

    func mismatch(_ expected: String, _ node: TOMLNode, _ path: [String]) -> TOMLDecodingError {
        TOMLDecodingError(path: rootPath + path, position: known(node.position), expected: expected, found: node.value.typeName)
    }

    func missing(_ type: Any.Type, path: [String], tablePosition: SourcePosition?) -> TOMLDecodingError {
        TOMLDecodingError(path: rootPath + path, position: tablePosition.flatMap(known), expected: expectedTypeName(type), found: "nothing")
    }

    func known(_ position: SourcePosition) -> SourcePosition? {
        position.isKnown ? position : nil
    }

    /// Decodes `T` from `node`, turning `DecodingError`s thrown by the type itself (e.g. an enum
    /// rejecting a raw value) into `TOMLDecodingError`s that point at `node`.
    func decode<T: Decodable>(_ type: T.Type, node: TOMLNode, path: [String], codingPath: [any CodingKey]) throws -> T {
        if let special = try decodeSpecial(type, node: node, path: path) { return special }
        do {
            return try T(from: NodeDecoder(state: self, node: node, path: path, codingPath: codingPath))
        } catch let error as DecodingError {
            throw convert(error, type: type, node: node, path: path)
        }
    }

    private func decodeSpecial<T>(_ type: T.Type, node: TOMLNode, path: [String]) throws -> T? {
        switch type {
        case is TOMLValue.Type:
            consumed.insert(path)
            return node.value as? T
        case is TOMLNode.Type:
            consumed.insert(path)
            return node as? T
        case is TOMLTable.Type:
            guard case .table(let table) = node.value else { throw mismatch("table", node, path) }
            consumed.insert(path)
            return table as? T
        case is TOMLDateTime.Type:
            guard case .datetime(let value) = node.value else { throw mismatch("datetime", node, path) }
            return value as? T
        case is Date.Type:
            guard case .datetime(let value) = node.value else { throw mismatch("datetime", node, path) }
            guard let date = value.foundationDate else {
                throw TOMLDecodingError(path: rootPath + path, position: known(node.position), expected: "offset date-time", found: "local \(value.text)")
            }
            return date as? T
        case is URL.Type:
            guard case .string(let string) = node.value else { throw mismatch("string", node, path) }
            guard let url = URL(string: string) else {
                throw TOMLDecodingError(path: rootPath + path, position: known(node.position), expected: "URL", found: node.value.summary)
            }
            return url as? T
        default:
            return nil
        }
    }

    private func convert(_ error: DecodingError, type: Any.Type, node: TOMLNode, path: [String]) -> TOMLDecodingError {
        let position = known(node.position)
        switch error {
        case .keyNotFound(let key, _):
            return TOMLDecodingError(path: rootPath + path + [key.stringValue], position: position, expected: "value", found: "nothing")
        case .typeMismatch(let expected, _):
            return TOMLDecodingError(path: rootPath + path, position: position, expected: expectedTypeName(expected), found: node.value.typeName)
        case .valueNotFound(let expected, _):
            return TOMLDecodingError(path: rootPath + path, position: position, expected: expectedTypeName(expected), found: "nothing")
        case .dataCorrupted(let context):
            let expected = allowedValuesDescription(type) ?? "valid \(type) (\(context.debugDescription))"
            return TOMLDecodingError(path: rootPath + path, position: position, expected: expected, found: node.value.summary)
        @unknown default:
            return TOMLDecodingError(path: rootPath + path, position: position, expected: "valid \(type)", found: node.value.summary)
        }
    }

    /// Keys of `table` (the caller's table, not the defaults) whose paths were never read.
    func unknownKeys(in table: TOMLTable) -> [UnknownKey] {
        var result: [UnknownKey] = []
        collectUnknown(in: table, path: [], into: &result)
        return result
    }

    private func collectUnknown(in table: TOMLTable, path: [String], into result: inout [UnknownKey]) {
        for (key, node) in table.entries {
            let keyPath = path + [key]
            if consumed.contains(keyPath) { continue }
            guard accessed.contains(keyPath) else {
                result.append(UnknownKey(path: rootPath + keyPath, position: known(node.position)))
                continue
            }
            switch node.value {
            case .table(let inner):
                collectUnknown(in: inner, path: keyPath, into: &result)
            case .array(let items):
                for (index, item) in items.enumerated() {
                    let itemPath = keyPath + [String(index)]
                    guard case .table(let inner) = item.value, accessed.contains(itemPath), !consumed.contains(itemPath) else { continue }
                    collectUnknown(in: inner, path: itemPath, into: &result)
                }
            default:
                continue
            }
        }
    }
}

/// The `Decoder` for one node.
struct NodeDecoder: Decoder {
    let state: DecodingState
    let node: TOMLNode
    let path: [String]
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .table(let table) = node.value else { throw state.mismatch("table", node, path) }
        return KeyedDecodingContainer(KeyedNodeContainer<Key>(state: state, table: table, path: path, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = node.value else { throw state.mismatch("array", node, path) }
        return UnkeyedNodeContainer(state: state, items: items, path: path, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleValueNodeContainer(state: state, node: node, path: path, codingPath: codingPath)
    }
}

struct KeyedNodeContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let state: DecodingState
    let table: TOMLTable
    let path: [String]
    var codingPath: [any CodingKey]

    var allKeys: [Key] { table.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { table[key.stringValue] != nil }

    func decodeNil(forKey key: Key) throws -> Bool { table[key.stringValue] == nil }

    /// Looks up `key`, marks it read, and returns its node and path; throws if it is missing.
    private func entry(_ key: Key, expecting type: Any.Type) throws -> (TOMLNode, [String]) {
        let keyPath = path + [key.stringValue]
        guard let node = table[key.stringValue] else {
            throw state.missing(type, path: keyPath, tablePosition: table.position)
        }
        state.accessed.insert(keyPath)
        return (node, keyPath)
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decodeValue(type, forKey: key)
    }

    private func decodeValue<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let (node, keyPath) = try entry(key, expecting: type)
        return try state.decode(type, node: node, path: keyPath, codingPath: codingPath + [key])
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decodeValue(type, forKey: key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decodeValue(type, forKey: key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decodeValue(type, forKey: key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decodeValue(type, forKey: key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decodeValue(type, forKey: key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decodeValue(type, forKey: key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decodeValue(type, forKey: key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decodeValue(type, forKey: key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decodeValue(type, forKey: key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decodeValue(type, forKey: key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decodeValue(type, forKey: key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decodeValue(type, forKey: key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decodeValue(type, forKey: key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decodeValue(type, forKey: key) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        let (node, keyPath) = try entry(key, expecting: TOMLTable.self)
        guard case .table(let inner) = node.value else { throw state.mismatch("table", node, keyPath) }
        return KeyedDecodingContainer(KeyedNodeContainer<NestedKey>(state: state, table: inner, path: keyPath, codingPath: codingPath + [key]))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        let (node, keyPath) = try entry(key, expecting: [TOMLValue].self)
        guard case .array(let items) = node.value else { throw state.mismatch("array", node, keyPath) }
        return UnkeyedNodeContainer(state: state, items: items, path: keyPath, codingPath: codingPath + [key])
    }

    func superDecoder() throws -> any Decoder {
        try superDecoder(key: TOMLCodingKey("super"))
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        try superDecoder(key: key)
    }

    private func superDecoder(key: any CodingKey) throws -> any Decoder {
        let keyPath = path + [key.stringValue]
        let node = table[key.stringValue] ?? TOMLNode(.table(TOMLTable()))
        state.accessed.insert(keyPath)
        return NodeDecoder(state: state, node: node, path: keyPath, codingPath: codingPath + [key])
    }
}

struct UnkeyedNodeContainer: UnkeyedDecodingContainer {
    let state: DecodingState
    let items: [TOMLNode]
    let path: [String]
    var codingPath: [any CodingKey]
    var currentIndex = 0

    init(state: DecodingState, items: [TOMLNode], path: [String], codingPath: [any CodingKey]) {
        self.state = state
        self.items = items
        self.path = path
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    /// The next item and its path, marking it read; throws if the array is exhausted.
    private mutating func next(expecting type: Any.Type) throws -> (TOMLNode, [String], any CodingKey) {
        let itemPath = path + [String(currentIndex)]
        guard currentIndex < items.count else {
            throw state.missing(type, path: itemPath, tablePosition: nil)
        }
        let node = items[currentIndex]
        let key = TOMLCodingKey(index: currentIndex)
        state.accessed.insert(itemPath)
        currentIndex += 1
        return (node, itemPath, key)
    }

    mutating func decodeNil() throws -> Bool { false }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (node, itemPath, key) = try next(expecting: type)
        return try state.decode(type, node: node, path: itemPath, codingPath: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (node, itemPath, key) = try next(expecting: TOMLTable.self)
        guard case .table(let inner) = node.value else { throw state.mismatch("table", node, itemPath) }
        return KeyedDecodingContainer(KeyedNodeContainer<NestedKey>(state: state, table: inner, path: itemPath, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (node, itemPath, key) = try next(expecting: [TOMLValue].self)
        guard case .array(let inner) = node.value else { throw state.mismatch("array", node, itemPath) }
        return UnkeyedNodeContainer(state: state, items: inner, path: itemPath, codingPath: codingPath + [key])
    }

    mutating func superDecoder() throws -> any Decoder {
        let (node, itemPath, key) = try next(expecting: TOMLValue.self)
        return NodeDecoder(state: state, node: node, path: itemPath, codingPath: codingPath + [key])
    }
}

struct SingleValueNodeContainer: SingleValueDecodingContainer {
    let state: DecodingState
    let node: TOMLNode
    let path: [String]
    var codingPath: [any CodingKey]

    func decodeNil() -> Bool { false }

    private func mismatch(_ expected: String) -> TOMLDecodingError { state.mismatch(expected, node, path) }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard case .boolean(let b) = node.value else { throw mismatch("boolean") }
        return b
    }

    func decode(_ type: String.Type) throws -> String {
        guard case .string(let s) = node.value else { throw mismatch("string") }
        return s
    }

    func decode(_ type: Double.Type) throws -> Double {
        switch node.value {
        case .float(let d): return d
        case .integer(let i): return Double(i)
        default: throw mismatch("float")
        }
    }

    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }

    /// Integers with a range check against the Swift type.
    private func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        guard case .integer(let v) = node.value else { throw mismatch("integer") }
        guard let result = I(exactly: v) else {
            throw TOMLDecodingError(path: state.rootPath + path, position: state.known(node.position),
                                    expected: "integer between \(I.min) and \(I.max)", found: String(v))
        }
        return result
    }

    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try state.decode(type, node: node, path: path, codingPath: codingPath)
    }
}
