/// A value decoded by `TOMLDecoder`, plus the keys in the source that decoding never read.
public struct TOMLDecoded<T> {
    public var value: T
    /// Keys present in the decoded table (at any depth) that the type never asked for, in
    /// document order. They are warnings for the caller, not errors.
    public var unknownKeys: [UnknownKey]

    public init(value: T, unknownKeys: [UnknownKey]) {
        self.value = value
        self.unknownKeys = unknownKeys
    }
}

extension TOMLDecoded: Sendable where T: Sendable {}
extension TOMLDecoded: Equatable where T: Equatable {}

/// A key the decoded type did not use, e.g. a misspelled option.
public struct UnknownKey: Sendable, Equatable, CustomStringConvertible {
    /// Full path from the root given to `decode(codingPath:)`; array items appear as their index.
    public var path: [String]
    /// Where the key appears in the source; nil for tables built in code.
    public var position: SourcePosition?

    public init(path: [String], position: SourcePosition?) {
        self.path = path
        self.position = position
    }

    /// e.g. `unknown key "grpc.adress" (line 4)`.
    public var description: String {
        "unknown key \"\(displayPath(path))\"" + (position.map { " (line \($0.line))" } ?? "")
    }
}

/// A TOML value that does not fit the Swift type being decoded, or a required key that is missing.
public struct TOMLDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Full key path from the root given to `decode(codingPath:)`; array items appear as their index.
    public var path: [String]
    /// Where the offending key (or, for a missing key, its table) appears; nil if unknown.
    public var position: SourcePosition?
    /// What was expected: a TOML type ("string", "integer", …), a range, or allowed values.
    public var expected: String
    /// What was found: a TOML type, a value, or "nothing" for a missing key.
    public var found: String

    public init(path: [String], position: SourcePosition?, expected: String, found: String) {
        self.path = path
        self.position = position
        self.expected = expected
        self.found = found
    }

    /// e.g. `key "grpc.address" (line 4): expected string, found integer`; path parts that are
    /// not bare keys are single-quoted.
    public var description: String {
        let subject = path.isEmpty ? "top-level table" : "key \"\(displayPath(path))\""
        let line = position.flatMap { $0.isKnown ? " (line \($0.line))" : nil } ?? ""
        return "\(subject)\(line): expected \(expected), found \(found)"
    }
}

/// Marks array-like types, so a missing key of that type is reported as an expected "array".
protocol ArrayLikeMarker {}
extension Array: ArrayLikeMarker {}
extension Set: ArrayLikeMarker {}
extension ContiguousArray: ArrayLikeMarker {}

/// The TOML type name to report for a Swift type that was expected.
func expectedTypeName(_ type: Any.Type) -> String {
    if type == String.self || type == Substring.self || type == Character.self { return "string" }
    if type == Bool.self { return "boolean" }
    if type is any BinaryInteger.Type { return "integer" }
    if type is any BinaryFloatingPoint.Type { return "float" }
    if type == TOMLTable.self || type is any StringKeyedDictionaryMarker.Type { return "table" }
    if type == TOMLDateTime.self { return "datetime" }
    if type == TOMLValue.self || type == TOMLNode.self { return "value" }
    if type is any ArrayLikeMarker.Type { return "array" }
    if let wrapper = type as? any OptionalMarker.Type { return expectedTypeName(wrapper.wrappedType) }
    if let raw = type as? any RawRepresentable.Type { return expectedTypeName(rawValueType(raw)) }
    return String(describing: type)
}

private func rawValueType<R: RawRepresentable>(_: R.Type) -> Any.Type { R.RawValue.self }

/// Lets `expectedTypeName` see through `Optional`.
protocol OptionalMarker {
    static var wrappedType: Any.Type { get }
}

extension Optional: OptionalMarker {
    static var wrappedType: Any.Type { Wrapped.self }
}

/// For a `CaseIterable` type (typically a String-backed enum): `one of "a", "b"`.
func allowedValuesDescription(_ type: Any.Type) -> String? {
    guard let caseType = type as? any CaseIterable.Type else { return nil }
    return describeCases(caseType)
}

private func describeCases<C: CaseIterable>(_: C.Type) -> String? {
    let names = C.allCases.map { value -> String in
        if let raw = value as? any RawRepresentable {
            let rawValue: Any = raw.rawValue
            if let string = rawValue as? String { return quotedBasicString(string) }
            return "\(rawValue)"
        }
        return "\(value)"
    }
    return names.isEmpty ? nil : "one of " + names.joined(separator: ", ")
}
