import BerthCore

/// An image reference `[host[:port]/]repo[:tag][@digest]`, normalised as containerd's `reference/docker`
/// (`ParseNormalizedNamed`/`ParseDockerRef`): Docker Hub names become `docker.io/library/<name>`.
public struct Reference: Sendable, Hashable, CustomStringConvertible {
    /// Registry host with optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    public var domain: String
    /// Repository path inside the registry, e.g. `library/busybox`.
    public var path: String
    public var tag: String?
    public var digest: Digest?

    /// The longest repository name (domain and path) accepted.
    public static let nameTotalLengthMax = 255
    public static let defaultDomain = "docker.io"
    static let legacyDefaultDomain = "index.docker.io"
    static let officialRepoName = "library"

    public init(domain: String, path: String, tag: String? = nil, digest: Digest? = nil) {
        self.domain = domain
        self.path = path
        self.tag = tag
        self.digest = digest
    }

    /// `domain/path`.
    public var name: String { "\(domain)/\(path)" }

    /// `domain/path[:tag][@digest]`.
    public var description: String {
        var text = name
        if let tag { text += ":" + tag }
        if let digest { text += "@" + digest.description }
        return text
    }

    /// The short form Docker shows: `busybox:latest` for `docker.io/library/busybox:latest`.
    public var familiar: String {
        var familiarName = name
        if domain == Self.defaultDomain {
            familiarName = path
            let prefix = Self.officialRepoName + "/"
            if path.hasPrefix(prefix), !path.dropFirst(prefix.count).contains("/") {
                familiarName = String(path.dropFirst(prefix.count))
            }
        }
        var text = familiarName
        if let tag { text += ":" + tag }
        if let digest { text += "@" + digest.description }
        return text
    }

    /// The object a registry resolves: the digest if any, else the tag, else `latest`.
    public var object: String { digest?.description ?? tag ?? "latest" }

    /// containerd's `ParseNormalizedNamed`: Docker Hub defaults applied, tag and digest kept as given.
    public static func parseNormalized(_ text: String) throws(BerthError) -> Reference {
        if text.utf8.count == 64, text.utf8.allSatisfy(Self.isLowerHex) {
            throw .invalidArgument("invalid repository name (\(text)), cannot specify 64-byte hexadecimal strings")
        }
        let (domain, remainder) = splitDockerDomain(text)
        let remoteName = remainder.firstIndex(of: ":").map { String(remainder[..<$0]) } ?? remainder
        if remoteName.lowercased() != remoteName {
            throw .invalidArgument("invalid reference format: repository name must be lowercase")
        }
        return try parse(domain + "/" + remainder)
    }

    /// containerd's `ParseDockerRef`: normalised, and either tagged (default `latest`) or digested (a tag given
    /// with a digest is dropped).
    public static func parseDocker(_ text: String) throws(BerthError) -> Reference {
        var reference = try parseNormalized(text)
        if reference.digest != nil {
            reference.tag = nil
        } else if reference.tag == nil {
            reference.tag = "latest"
        }
        return reference
    }

    /// The grammar's `Parse`: a fully qualified `domain/path[:tag][@digest]` (the first component must look like a
    /// host: contain `.` or `:`, or be `localhost`, else it is part of the path and the domain is empty).
    public static func parse(_ text: String) throws(BerthError) -> Reference {
        guard let match = ReferenceGrammar.match(text) else {
            if text.isEmpty { throw .invalidArgument("repository name must have at least one component") }
            if ReferenceGrammar.match(text.lowercased()) != nil {
                throw .invalidArgument("repository name must be lowercase")
            }
            throw .invalidArgument("invalid reference format")
        }
        if match.name.utf8.count > nameTotalLengthMax {
            throw .invalidArgument("repository name must not be more than \(nameTotalLengthMax) characters")
        }
        var digest: Digest?
        if let digestText = match.digest {
            digest = try Digest(parsing: digestText)
        }
        let (domain, path) = ReferenceGrammar.splitName(match.name)
        return Reference(domain: domain, path: path, tag: match.tag, digest: digest)
    }

    /// containerd's `splitDockerDomain`.
    static func splitDockerDomain(_ name: String) -> (domain: String, remainder: String) {
        var domain: String
        var remainder: String
        if let slash = name.firstIndex(of: "/"),
            name[..<slash].contains(where: { $0 == "." || $0 == ":" }) || name[..<slash] == "localhost"
        {
            domain = String(name[..<slash])
            remainder = String(name[name.index(after: slash)...])
        } else {
            domain = defaultDomain
            remainder = name
        }
        if domain == legacyDefaultDomain { domain = defaultDomain }
        if domain == defaultDomain, !remainder.contains("/") { remainder = officialRepoName + "/" + remainder }
        return (domain, remainder)
    }

    static func isLowerHex(_ byte: UInt8) -> Bool { (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) }
}

/// The distribution reference grammar of containerd's `reference/docker/regexp.go`, checked by hand in linear time
/// (a backtracking regex of `[a-z0-9]+(?:[-]*[a-z0-9]+)*` is exponential on long invalid names).
enum ReferenceGrammar {
    struct Match {
        var name: String
        var tag: String?
        var digest: String?
    }

    /// Matches `name[:tag][@digest]`; nil when the text does not follow the grammar.
    static func match(_ text: String) -> Match? {
        var rest = Substring(text)
        var digest: String?
        if let at = rest.firstIndex(of: "@") {
            let digestText = rest[rest.index(after: at)...]
            guard isDigest(digestText) else { return nil }
            digest = String(digestText)
            rest = rest[..<at]
        }
        var tag: String?
        let lastSlash = rest.lastIndex(of: "/")
        let searchStart = lastSlash.map { rest.index(after: $0) } ?? rest.startIndex
        if let colon = rest[searchStart...].lastIndex(of: ":") {
            let tagText = rest[rest.index(after: colon)...]
            guard isTag(tagText) else { return nil }
            tag = String(tagText)
            rest = rest[..<colon]
        }
        guard isName(rest) else { return nil }
        return Match(name: String(rest), tag: tag, digest: digest)
    }

    /// `(domain/)? component(/component)*`.
    static func isName(_ name: Substring) -> Bool {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.isEmpty else { return false }
        if parts.allSatisfy(isComponent) { return true }
        return parts.count > 1 && isDomain(parts[0]) && parts.dropFirst().allSatisfy(isComponent)
    }

    /// Splits a name into domain and path as the anchored name expression does (domain branch first).
    static func splitName(_ name: String) -> (String, String) {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count > 1, isDomain(parts[0]), parts.dropFirst().allSatisfy(isComponent) {
            return (String(parts[0]), parts.dropFirst().joined(separator: "/"))
        }
        return ("", name)
    }

    static func isLowerAlnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
    static func isAlnum(_ c: UInt8) -> Bool { isLowerAlnum(c) || (c >= 0x41 && c <= 0x5a) }
    static func isWord(_ c: UInt8) -> Bool { isAlnum(c) || c == UInt8(ascii: "_") }
    static func isHex(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46) }

    /// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
    static func isComponent(_ text: Substring) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, let last = bytes.last, isLowerAlnum(first), isLowerAlnum(last) else { return false }
        var index = 0
        while index < bytes.count {
            if isLowerAlnum(bytes[index]) {
                index += 1
                continue
            }
            var end = index
            while end < bytes.count, !isLowerAlnum(bytes[end]) { end += 1 }
            let separator = bytes[index..<end]
            let valid = separator.elementsEqual([UInt8(ascii: ".")]) || separator.elementsEqual([UInt8(ascii: "_")])
                || separator.elementsEqual([UInt8(ascii: "_"), UInt8(ascii: "_")])
                || separator.allSatisfy { $0 == UInt8(ascii: "-") }
            guard valid else { return false }
            index = end
        }
        return true
    }

    /// `domain-component(\.domain-component)*(:[0-9]+)?`.
    static func isDomain(_ text: Substring) -> Bool {
        var host = text
        if let colon = text.firstIndex(of: ":") {
            let port = text[text.index(after: colon)...]
            guard !port.isEmpty, port.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
            host = text[..<colon]
        }
        return host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            let bytes = Array(label.utf8)
            guard let first = bytes.first, let last = bytes.last, isAlnum(first), isAlnum(last) else { return false }
            return bytes.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "-") }
        }
    }

    /// `[\w][\w.-]{0,127}`.
    static func isTag(_ text: Substring) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, isWord(first), bytes.count <= 128 else { return false }
        return bytes.allSatisfy { isWord($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    /// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[[:xdigit:]]{32,}`.
    static func isDigest(_ text: Substring) -> Bool {
        guard let colon = text.firstIndex(of: ":") else { return false }
        let hex = text[text.index(after: colon)...]
        guard hex.utf8.count >= 32, hex.utf8.allSatisfy(isHex) else { return false }
        let algorithm = Array(text[..<colon].utf8)
        var expectLetter = true
        for c in algorithm {
            if expectLetter {
                guard (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) else { return false }
                expectLetter = false
            } else if "-_+.".utf8.contains(c) {
                expectLetter = true
            } else if !isAlnum(c) {
                return false
            }
        }
        return !algorithm.isEmpty && !expectLetter
    }
}
