/// Writing tables back out as TOML text.
extension TOMLTable {
    /// Renders the table as TOML that parses back to an equal table.
    ///
    /// Each table's plain values come first (`key = value`), then its sub-tables as `[a.b]`
    /// sections and arrays of tables as `[[a.b]]` sections, nested ones indented two spaces per
    /// level like `containerd config default`. Every sub-table gets a header, even when empty.
    /// Keys that are not bare are quoted; strings are written as basic strings with escapes.
    ///
    /// - Parameter comments: text to print as `# ` lines just before a table's header, keyed by
    ///   table path (e.g. `["plugins", "io.containerd.snapshotter.v1.overlayfs"]`); the root's
    ///   comment (key `[]`) is printed at the top. For an array of tables it precedes the first entry.
    public func serialized(comments: [[String]: String] = [:]) -> String {
        var writer = TOMLWriter(comments: comments)
        if let rootComment = comments[[]] {
            writer.writeComment(rootComment, indent: "")
            if !isEmpty { writer.output += "\n" }
        }
        writer.writeBody(self, path: [], depth: 0)
        return writer.output
    }
}

/// Accumulates serialized text; see `TOMLTable.serialized(comments:)`.
struct TOMLWriter {
    let comments: [[String]: String]
    var output = ""

    init(comments: [[String]: String]) {
        self.comments = comments
    }

    /// True for a non-empty array whose items are all tables: written as `[[…]]` sections.
    static func isArrayOfTables(_ value: TOMLValue) -> Bool {
        guard case .array(let items) = value, !items.isEmpty else { return false }
        return items.allSatisfy { if case .table = $0.value { true } else { false } }
    }

    mutating func writeComment(_ text: String, indent: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            output += line.isEmpty ? "\(indent)#\n" : "\(indent)# \(line)\n"
        }
    }

    /// Writes the plain values of `table`, then its sub-table sections.
    mutating func writeBody(_ table: TOMLTable, path: [String], depth: Int) {
        let keyIndent = String(repeating: "  ", count: depth)
        for (key, node) in table.entries {
            if case .table = node.value { continue }
            if Self.isArrayOfTables(node.value) { continue }
            output += keyIndent + Self.key(key) + " = "
            writeInline(node.value)
            output += "\n"
        }
        let headerIndent = String(repeating: "  ", count: depth)
        for (key, node) in table.entries {
            let childPath = path + [key]
            let header = childPath.map(Self.key).joined(separator: ".")
            switch node.value {
            case .table(let child):
                writeSectionStart(path: childPath, indent: headerIndent)
                output += "\(headerIndent)[\(header)]\n"
                writeBody(child, path: childPath, depth: depth + 1)
            case .array(let items) where Self.isArrayOfTables(node.value):
                for (offset, item) in items.enumerated() {
                    guard case .table(let child) = item.value else { continue }
                    if offset == 0 {
                        writeSectionStart(path: childPath, indent: headerIndent)
                    } else {
                        output += "\n"
                    }
                    output += "\(headerIndent)[[\(header)]]\n"
                    writeBody(child, path: childPath, depth: depth + 1)
                }
            default:
                continue
            }
        }
    }

    /// A blank line to separate sections, then the table's comment if there is one.
    private mutating func writeSectionStart(path: [String], indent: String) {
        if !output.isEmpty { output += "\n" }
        if let comment = comments[path] { writeComment(comment, indent: indent) }
    }

    /// Writes a value in inline form (used for values and for array items).
    mutating func writeInline(_ value: TOMLValue) {
        switch value {
        case .string(let s): output += quotedBasicString(s)
        case .integer(let i): output += String(i)
        case .float(let d): output += formatFloat(d)
        case .boolean(let b): output += b ? "true" : "false"
        case .datetime(let d): output += d.text
        case .array(let items):
            output += "["
            for (offset, item) in items.enumerated() {
                if offset > 0 { output += ", " }
                writeInline(item.value)
            }
            output += "]"
        case .table(let table):
            if table.isEmpty {
                output += "{}"
                return
            }
            output += "{ "
            for (offset, entry) in table.entries.enumerated() {
                if offset > 0 { output += ", " }
                output += Self.key(entry.key) + " = "
                writeInline(entry.node.value)
            }
            output += " }"
        }
    }

    /// A key as written in TOML: bare if possible, else a quoted basic string.
    static func key(_ key: String) -> String {
        isBareKey(key) ? key : quotedBasicString(key)
    }
}
