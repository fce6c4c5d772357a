/// A TOML table: string keys to positioned values, remembering the order keys were inserted.
///
/// Order matters for faithful output (`serialized`) but not for equality: two tables are equal
/// when they hold the same keys with equal values, regardless of order and source positions.
public struct TOMLTable: Sendable, Equatable {
    var orderedKeys: [String]
    var storage: [String: TOMLNode]

    /// Where the table was opened in the source (its `[header]`, the `{` of an inline table, or the
    /// first key of a dotted key that created it); nil for the root and for tables built in code.
    public var position: SourcePosition?

    public init() {
        orderedKeys = []
        storage = [:]
        position = nil
    }

    init(keys: [String], storage: [String: TOMLNode], position: SourcePosition?) {
        self.orderedKeys = keys
        self.storage = storage
        self.position = position
    }

    /// Keys in insertion order.
    public var keys: [String] { orderedKeys }

    public var count: Int { orderedKeys.count }

    public var isEmpty: Bool { orderedKeys.isEmpty }

    /// The entry for `key`. Assigning a new key appends it; assigning nil removes it.
    public subscript(key: String) -> TOMLNode? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil {
                    orderedKeys.append(key)
                }
            } else if storage.removeValue(forKey: key) != nil {
                orderedKeys.removeAll { $0 == key }
            }
        }
    }

    /// The entry at a dotted path of keys through nested tables, e.g. `["grpc", "address"]`.
    public subscript(path path: [String]) -> TOMLNode? {
        guard let first = path.first, let node = storage[first] else { return nil }
        if path.count == 1 { return node }
        guard case .table(let inner) = node.value else { return nil }
        return inner[path: Array(path.dropFirst())]
    }

    /// Entries in insertion order.
    public var entries: [(key: String, node: TOMLNode)] {
        orderedKeys.compactMap { key in storage[key].map { (key, $0) } }
    }

    /// Deep merge: where both sides hold a table the tables merge recursively; any other value in
    /// `other` replaces ours (arrays are replaced, not concatenated). New keys keep `other`'s order
    /// after ours. Positions from `other` win when known, so merged values point at `other`'s text.
    public mutating func merge(_ other: TOMLTable) {
        for key in other.orderedKeys {
            guard let theirs = other.storage[key] else { continue }
            if let mine = storage[key], case .table(var mineTable) = mine.value, case .table(let theirTable) = theirs.value {
                mineTable.merge(theirTable)
                let position = theirs.position.isKnown ? theirs.position : mine.position
                storage[key] = TOMLNode(.table(mineTable), position: position)
            } else {
                self[key] = theirs
            }
        }
        if let otherPosition = other.position {
            position = otherPosition
        }
    }

    /// Returns a copy of `self` deep-merged with `other` (see `merge`).
    public func merging(_ other: TOMLTable) -> TOMLTable {
        var copy = self
        copy.merge(other)
        return copy
    }

    public static func == (lhs: TOMLTable, rhs: TOMLTable) -> Bool {
        lhs.storage == rhs.storage
    }
}
