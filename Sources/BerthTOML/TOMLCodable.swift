/// Codable conformances for the value types, so configs can hold raw TOML (for example a plugin's
/// section, decoded later with the plugin's own type). `TOMLEncoder`/`TOMLDecoder` pass these
/// types through unchanged (keeping positions); other coders (e.g. JSON) get a plain mapping in
/// which date/times become strings.
extension TOMLValue: Codable {
    public init(from decoder: any Decoder) throws {
        if let container = try? decoder.container(keyedBy: TOMLCodingKey.self) {
            var table = TOMLTable()
            for key in container.allKeys {
                table[key.stringValue] = TOMLNode(try container.decode(TOMLValue.self, forKey: key))
            }
            self = .table(table)
            return
        }
        if var container = try? decoder.unkeyedContainer() {
            var items: [TOMLNode] = []
            while !container.isAtEnd {
                items.append(TOMLNode(try container.decode(TOMLValue.self)))
            }
            self = .array(items)
            return
        }
        let container = try decoder.singleValueContainer()
        if let b = try? container.decode(Bool.self) {
            self = .boolean(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .integer(i)
        } else if let d = try? container.decode(Double.self) {
            self = .float(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a TOML value"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .string(let s):
            var container = encoder.singleValueContainer()
            try container.encode(s)
        case .integer(let i):
            var container = encoder.singleValueContainer()
            try container.encode(i)
        case .float(let d):
            var container = encoder.singleValueContainer()
            try container.encode(d)
        case .boolean(let b):
            var container = encoder.singleValueContainer()
            try container.encode(b)
        case .datetime(let d):
            var container = encoder.singleValueContainer()
            try container.encode(d.text)
        case .array(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item.value) }
        case .table(let table):
            var container = encoder.container(keyedBy: TOMLCodingKey.self)
            for (key, node) in table.entries {
                try container.encode(node.value, forKey: TOMLCodingKey(key))
            }
        }
    }
}

extension TOMLTable: Codable {
    public init(from decoder: any Decoder) throws {
        guard case .table(let table) = try TOMLValue(from: decoder) else {
            throw DecodingError.typeMismatch(TOMLTable.self, .init(codingPath: decoder.codingPath, debugDescription: "expected a table"))
        }
        self = table
    }

    public func encode(to encoder: any Encoder) throws {
        try TOMLValue.table(self).encode(to: encoder)
    }
}

extension TOMLNode: Codable {
    public init(from decoder: any Decoder) throws {
        self.init(try TOMLValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try value.encode(to: encoder)
    }
}

extension TOMLDateTime: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = TOMLDateTime(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a TOML date/time: \(text)"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
