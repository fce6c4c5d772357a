/// containerd's identifier and label rules, so names that containerd rejects are rejected here with the same code.
public enum Identifiers {
    /// containerd's `identifiers.maxLength`.
    public static let maxLength = 76

    /// Validates a namespace, container or snapshot-style identifier: `^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$`, 1–76 chars.
    public static func validate(_ s: String) throws(BerthError) {
        if s.isEmpty { throw .invalidArgument("identifier must not be empty") }
        if s.utf8.count > maxLength {
            throw .invalidArgument("identifier \"\(s)\" greater than maximum length (\(maxLength) characters)")
        }
        var previousWasSeparator = true  // a leading separator is invalid
        for byte in s.utf8 {
            let alnum = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            let separator = byte == 0x2E || byte == 0x5F || byte == 0x2D  // . _ -
            if alnum {
                previousWasSeparator = false
            } else if separator && !previousWasSeparator {
                previousWasSeparator = true
            } else {
                throw .invalidArgument(
                    "identifier \"\(s)\" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")
            }
        }
        if previousWasSeparator {
            throw .invalidArgument("identifier \"\(s)\" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")
        }
    }
}

/// containerd's label rules (`labels.Validate`).
public enum Labels {
    public static let maxSize = 4096

    public static func validate(key: String, value: String) throws(BerthError) {
        if key.utf8.count + value.utf8.count > maxSize {
            let shown = key.count > 10 ? String(key.prefix(10)) : key
            throw .invalidArgument("label key and value greater than maximum size (\(maxSize) bytes), key: \(shown)")
        }
    }

    public static func validate(_ labels: [String: String]) throws(BerthError) {
        for (key, value) in labels { try validate(key: key, value: value) }
    }
}
