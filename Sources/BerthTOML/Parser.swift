/// ASCII byte constants used by the scanner.
enum ASCII {
    static let tab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let hash: UInt8 = 0x23
    static let apostrophe: UInt8 = 0x27
    static let plus: UInt8 = 0x2B
    static let comma: UInt8 = 0x2C
    static let minus: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let colon: UInt8 = 0x3A
    static let equals: UInt8 = 0x3D
    static let leftBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let rightBracket: UInt8 = 0x5D
    static let leftBrace: UInt8 = 0x7B
    static let rightBrace: UInt8 = 0x7D
    static let delete: UInt8 = 0x7F
}

/// A mutable table used while parsing. Reference semantics let headers and dotted keys reach
/// into nested tables cheaply; `build()` turns the tree into value types at the end.
final class TableBuilder {
    /// How a table came to exist; decides whether a later header or dotted key may touch it.
    enum Origin: Equatable {
        /// Created as the parent of a header, e.g. `a` for `[a.b]`; may be defined later.
        case implicit
        /// Defined by a `[header]` or `[[header]]` (or the root); cannot be defined again.
        case header
        /// Created by dotted keys in the given section; only that section may add to it.
        case dotted(section: Int)
    }

    /// One key's content: a finished value, a sub-table still open for headers, or an array of tables.
    enum Entry {
        case value(TOMLNode)
        case table(TableBuilder, keyPosition: SourcePosition)
        case tables([TableBuilder], keyPosition: SourcePosition)
    }

    var origin: Origin
    var position: SourcePosition?
    var keys: [String] = []
    var entries: [String: Entry] = [:]

    init(origin: Origin, position: SourcePosition?) {
        self.origin = origin
        self.position = position
    }

    func insert(_ key: String, _ entry: Entry) {
        if entries.updateValue(entry, forKey: key) == nil {
            keys.append(key)
        }
    }

    func build() -> TOMLTable {
        var storage: [String: TOMLNode] = [:]
        storage.reserveCapacity(keys.count)
        for key in keys {
            switch entries[key] {
            case .value(let node)?:
                storage[key] = node
            case .table(let table, let keyPosition)?:
                storage[key] = TOMLNode(.table(table.build()), position: keyPosition)
            case .tables(let tables, let keyPosition)?:
                let items = tables.map { TOMLNode(.table($0.build()), position: $0.position ?? keyPosition) }
                storage[key] = TOMLNode(.array(items), position: keyPosition)
            case nil:
                break
            }
        }
        return TOMLTable(keys: keys, storage: storage, position: position)
    }
}

/// One part of a (possibly dotted) key and the byte offset where it starts.
struct KeyPart {
    var name: String
    var offset: Int
}

/// Recursive-descent TOML 1.0 parser over UTF-8 bytes.
///
/// Lines and columns are computed only when a position is needed, from a forward-moving cache,
/// so scanning itself never tracks them.
struct Parser {
    let bytes: [UInt8]
    var index = 0
    /// Source of fresh section ids: each header and each inline table gets its own.
    var sectionCounter = 0

    private var cacheOffset = 0
    private var cacheLine = 1
    private var cacheLineStart = 0

    init(_ text: String) {
        bytes = Array(text.utf8)
    }

    // MARK: Positions and errors

    /// Line and column of a byte offset. Moves a cached (offset, line, line start) forward or
    /// backward, so cost is proportional to the distance from the previous query.
    mutating func position(at offset: Int) -> SourcePosition {
        let end = min(offset, bytes.count)
        if end < cacheLineStart {
            var i = cacheLineStart - 1
            while i >= end {
                if bytes[i] == ASCII.lf { cacheLine -= 1 }
                i -= 1
            }
            var start = end
            while start > 0, bytes[start - 1] != ASCII.lf { start -= 1 }
            cacheLineStart = start
        } else {
            var i = cacheOffset
            while i < end {
                if bytes[i] == ASCII.lf {
                    cacheLine += 1
                    cacheLineStart = i + 1
                }
                i += 1
            }
        }
        cacheOffset = end
        var column = 1
        var j = cacheLineStart
        while j < end {
            if bytes[j] & 0xC0 != 0x80 { column += 1 }
            j += 1
        }
        return SourcePosition(line: cacheLine, column: column)
    }

    mutating func error(_ message: String, at offset: Int) -> TOMLParseError {
        TOMLParseError(position: position(at: offset), message: message)
    }

    /// Describes the character at `offset` for messages: `'x'`, `U+0001` for control characters,
    /// `'к' (U+043A)` for other non-ASCII characters.
    func describe(at offset: Int) -> String {
        guard offset < bytes.count else { return "end of file" }
        let b = bytes[offset]
        if b == ASCII.lf || b == ASCII.cr { return "end of line" }
        if b >= 0x21 && b <= 0x7E { return "'\(Character(Unicode.Scalar(b)))'" }
        var end = offset + 1
        while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
        guard let scalar = String(decoding: bytes[offset..<end], as: UTF8.self).unicodeScalars.first else { return "byte" }
        let hex = String(scalar.value, radix: 16, uppercase: true)
        let code = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        return scalar.value < 0x80 ? code : "'\(scalar)' (\(code))"
    }

    @inline(__always) var atEnd: Bool { index >= bytes.count }

    @inline(__always) func peek(_ ahead: Int = 0) -> UInt8? {
        let i = index + ahead
        return i < bytes.count ? bytes[i] : nil
    }

    // MARK: Whitespace, comments, line ends

    mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == ASCII.space || bytes[index] == ASCII.tab {
            index += 1
        }
    }

    /// Skips a `#` comment up to (not including) the line end, rejecting control characters.
    mutating func skipComment() throws(TOMLParseError) {
        guard peek() == ASCII.hash else { return }
        index += 1
        while index < bytes.count {
            let b = bytes[index]
            if b == ASCII.lf { return }
            if b == ASCII.cr, peek(1) == ASCII.lf { return }
            if (b < 0x20 && b != ASCII.tab) || b == ASCII.delete {
                throw error("control character \(describe(at: index)) is not allowed in a comment", at: index)
            }
            index += 1
        }
    }

    /// Consumes a newline (LF or CRLF) if one is next; returns whether it did.
    mutating func consumeNewline() throws(TOMLParseError) -> Bool {
        guard let b = peek() else { return false }
        if b == ASCII.lf {
            index += 1
            return true
        }
        if b == ASCII.cr {
            guard peek(1) == ASCII.lf else { throw error("carriage return must be followed by a newline", at: index) }
            index += 2
            return true
        }
        return false
    }

    /// After a key/value pair or header: optional whitespace and comment, then newline or end of file.
    mutating func expectLineEnd(after what: String) throws(TOMLParseError) {
        skipWhitespace()
        try skipComment()
        if atEnd { return }
        if try consumeNewline() { return }
        throw error("expected a newline after \(what), found \(describe(at: index))", at: index)
    }

    /// Inside arrays: skips whitespace, newlines and comments.
    mutating func skipWhitespaceCommentsAndNewlines() throws(TOMLParseError) {
        while true {
            skipWhitespace()
            try skipComment()
            if !(try consumeNewline()) { return }
        }
    }

    // MARK: Document structure

    mutating func parseDocument() throws(TOMLParseError) -> TOMLTable {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }  // byte order mark
        let root = TableBuilder(origin: .header, position: nil)
        var current = root
        var currentPath: [String] = []
        var section = 0
        while true {
            skipWhitespace()
            guard let b = peek() else { break }
            if b == ASCII.hash || b == ASCII.lf || b == ASCII.cr {
                try expectLineEnd(after: "comment")
                continue
            }
            if b == ASCII.leftBracket {
                sectionCounter += 1
                section = sectionCounter
                (current, currentPath) = try parseHeader(root: root)
                try expectLineEnd(after: "table header")
            } else {
                try parseKeyValue(into: current, path: currentPath, section: section)
                try expectLineEnd(after: "value")
            }
        }
        return root.build()
    }

    /// Parses a key: one or more simple keys separated by dots (whitespace allowed around dots).
    mutating func parseKey() throws(TOMLParseError) -> [KeyPart] {
        var parts: [KeyPart] = []
        while true {
            skipWhitespace()
            let start = index
            guard let b = peek() else { throw error("expected a key, found end of file", at: index) }
            let name: String
            if b == ASCII.quote || b == ASCII.apostrophe {
                if peek(1) == b, peek(2) == b {
                    throw error("multi-line strings cannot be used as keys", at: index)
                }
                name = b == ASCII.quote ? try parseBasicString() : try parseLiteralString()
            } else if isBareKeyByte(b) {
                while index < bytes.count, isBareKeyByte(bytes[index]) { index += 1 }
                name = String(decoding: bytes[start..<index], as: UTF8.self)
            } else {
                throw error("expected a key, found \(describe(at: index))", at: index)
            }
            parts.append(KeyPart(name: name, offset: start))
            skipWhitespace()
            guard peek() == ASCII.dot else { return parts }
            index += 1
        }
    }

    /// Parses `key = value` and stores it under `table` (dotted keys create sub-tables).
    mutating func parseKeyValue(into table: TableBuilder, path: [String], section: Int) throws(TOMLParseError) {
        let key = try parseKey()
        skipWhitespace()
        guard peek() == ASCII.equals else {
            throw error("expected '=' after key \"\(displayPath(key.map(\.name)))\", found \(describe(at: index))", at: index)
        }
        index += 1
        skipWhitespace()
        let (target, last) = try resolveDottedKey(key, in: table, path: path, section: section)
        let keyPosition = position(at: last.offset)
        let value = try parseValue()
        target.insert(last.name, .value(TOMLNode(value, position: keyPosition)))
    }

    /// Walks the dotted prefix of `key` from `table`, creating tables as needed and enforcing
    /// TOML's rules; returns the table that will hold the last part. Fails if the key exists.
    mutating func resolveDottedKey(_ key: [KeyPart], in table: TableBuilder, path: [String], section: Int) throws(TOMLParseError) -> (TableBuilder, KeyPart) {
        var table = table
        var fullPath = path
        for part in key.dropLast() {
            fullPath.append(part.name)
            switch table.entries[part.name] {
            case nil:
                let partPosition = position(at: part.offset)
                let created = TableBuilder(origin: .dotted(section: section), position: partPosition)
                table.insert(part.name, .table(created, keyPosition: partPosition))
                table = created
            case .table(let existing, _)?:
                switch existing.origin {
                case .implicit:
                    existing.origin = .dotted(section: section)
                case .dotted(let s) where s == section:
                    break
                case .dotted:
                    throw error("cannot add to table \"\(displayPath(fullPath))\" with dotted keys: it was defined in another section\(at(existing.position))", at: part.offset)
                case .header:
                    throw error("cannot add to table \"\(displayPath(fullPath))\" with dotted keys: it is defined by a [table] header\(at(existing.position))", at: part.offset)
                }
                table = existing
            case .tables(_, let keyPosition)?:
                throw error("cannot add to array of tables \"\(displayPath(fullPath))\" with dotted keys\(at(keyPosition))", at: part.offset)
            case .value(let node)?:
                throw error(notATable(fullPath, node), at: part.offset)
            }
        }
        // `key` always has at least one part.
        let last = key[key.count - 1]
        fullPath.append(last.name)
        switch table.entries[last.name] {
        case nil:
            return (table, last)
        case .value(let node)?:
            throw error("duplicate key \"\(displayPath(fullPath))\"\(at(node.position, "first defined"))", at: last.offset)
        case .table(let existing, let keyPosition)?:
            throw error("duplicate key \"\(displayPath(fullPath))\": it is already a table\(at(existing.position ?? keyPosition))", at: last.offset)
        case .tables(_, let keyPosition)?:
            throw error("duplicate key \"\(displayPath(fullPath))\": it is already an array of tables\(at(keyPosition))", at: last.offset)
        }
    }

    /// Parses `[a.b]` or `[[a.b]]` starting at `[`; returns the table that following keys go into.
    mutating func parseHeader(root: TableBuilder) throws(TOMLParseError) -> (TableBuilder, [String]) {
        let start = index
        let isArray = peek(1) == ASCII.leftBracket
        index += isArray ? 2 : 1
        let key = try parseKey()
        skipWhitespace()
        guard peek() == ASCII.rightBracket, !isArray || peek(1) == ASCII.rightBracket else {
            throw error("expected '\(isArray ? "]]" : "]")' to close the table header, found \(describe(at: index))", at: index)
        }
        index += isArray ? 2 : 1
        let headerPosition = position(at: start)
        var table = root
        var fullPath: [String] = []
        for part in key.dropLast() {
            fullPath.append(part.name)
            switch table.entries[part.name] {
            case nil:
                let created = TableBuilder(origin: .implicit, position: headerPosition)
                table.insert(part.name, .table(created, keyPosition: position(at: part.offset)))
                table = created
            case .table(let existing, _)?:
                table = existing
            case .tables(let tables, _)?:
                guard let lastTable = tables.last else { throw error("empty array of tables", at: part.offset) }
                table = lastTable
            case .value(let node)?:
                throw error(notATable(fullPath, node), at: part.offset)
            }
        }
        let last = key[key.count - 1]
        fullPath.append(last.name)
        let keyPosition = position(at: last.offset)
        switch table.entries[last.name] {
        case nil:
            let created = TableBuilder(origin: .header, position: headerPosition)
            table.insert(last.name, isArray ? .tables([created], keyPosition: keyPosition) : .table(created, keyPosition: keyPosition))
            return (created, fullPath)
        case .tables(let tables, let firstPosition)? where isArray:
            let created = TableBuilder(origin: .header, position: headerPosition)
            table.insert(last.name, .tables(tables + [created], keyPosition: firstPosition))
            return (created, fullPath)
        case .tables(_, let firstPosition)?:
            throw error("cannot define table \"\(displayPath(fullPath))\": it is already an array of tables\(at(firstPosition))", at: last.offset)
        case .table(let existing, _)? where isArray:
            throw error("cannot define array of tables \"\(displayPath(fullPath))\": it is already a table\(at(existing.position))", at: last.offset)
        case .table(let existing, _)?:
            switch existing.origin {
            case .implicit:
                existing.origin = .header
                existing.position = headerPosition
                table.insert(last.name, .table(existing, keyPosition: keyPosition))
                return (existing, fullPath)
            case .header:
                throw error("table \"\(displayPath(fullPath))\" is defined twice\(at(existing.position, "first defined"))", at: last.offset)
            case .dotted:
                throw error("table \"\(displayPath(fullPath))\" was already defined by dotted keys\(at(existing.position))", at: last.offset)
            }
        case .value(let node)?:
            if isArray, case .array = node.value {
                throw error("cannot append to static array \"\(displayPath(fullPath))\" with [[\(displayPath(fullPath))]]\(at(node.position, "defined"))", at: last.offset)
            }
            if case .table = node.value {
                throw error("cannot reopen inline table \"\(displayPath(fullPath))\" with a header\(at(node.position, "defined"))", at: last.offset)
            }
            throw error("key \"\(displayPath(fullPath))\" is already defined as \(article(node.value.typeName))\(at(node.position))", at: last.offset)
        }
    }

    /// Message for walking through a key that holds a non-table value (or a closed inline table).
    private func notATable(_ path: [String], _ node: TOMLNode) -> String {
        if case .table = node.value {
            return "cannot add keys to inline table \"\(displayPath(path))\"\(at(node.position, "defined"))"
        }
        return "key \"\(displayPath(path))\" is \(article(node.value.typeName)), not a table\(at(node.position, "defined"))"
    }

    /// " (line N)" / " (first defined at line N)" suffix for messages, empty when unknown.
    private func at(_ position: SourcePosition?, _ verb: String = "at") -> String {
        guard let position, position.isKnown else { return "" }
        return verb == "at" ? " (line \(position.line))" : " (\(verb) at line \(position.line))"
    }

    private func article(_ typeName: String) -> String {
        typeName == "array" || typeName == "integer" ? "an \(typeName)" : "a \(typeName)"
    }
}
