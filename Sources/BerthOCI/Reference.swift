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

/// The distribution reference grammar, ported from containerd's `reference/docker/regexp.go`.
enum ReferenceGrammar {
    static let alphaNumeric = "[a-z0-9]+"
    static let separator = "(?:[._]|__|[-]*)"
    static let nameComponent = "\(alphaNumeric)(?:\(separator)\(alphaNumeric))*"
    static let domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    static let domain = "\(domainComponent)(?:\\.\(domainComponent))*(?::[0-9]+)?"
    static let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
    static let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
    static let name = "(?:\(domain)/)?\(nameComponent)(?:/\(nameComponent))*"
    static let referencePattern = "^(\(name))(?::(\(tag)))?(?:@(\(digest)))?$"
    static let anchoredNamePattern = "^(?:(\(domain))/)?(\(nameComponent)(?:/\(nameComponent))*)$"

    struct Match {
        var name: String
        var tag: String?
        var digest: String?
    }

    /// Matches the whole reference; nil when it does not follow the grammar.
    static func match(_ text: String) -> Match? {
        guard let regex = try? Regex(referencePattern), let match = try? regex.wholeMatch(in: text) else { return nil }
        let output = match.output
        guard output.count == 4, let name = output[1].substring else { return nil }
        return Match(name: String(name), tag: output[2].substring.map(String.init), digest: output[3].substring.map(String.init))
    }

    /// Splits a name into domain and path as the anchored name expression does.
    static func splitName(_ name: String) -> (String, String) {
        guard let regex = try? Regex(anchoredNamePattern), let match = try? regex.wholeMatch(in: name),
            match.output.count == 3, let path = match.output[2].substring
        else { return ("", name) }
        return (match.output[1].substring.map(String.init) ?? "", String(path))
    }
}
