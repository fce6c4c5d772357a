import BerthCore

/// OCIPlatform parsing, formatting, normalisation and matching as containerd 1.6's `platforms` package.
public enum Platforms {
    /// The host's platform (`DefaultSpec`): linux, the build architecture, and for arm64 the variant `v8`.
    public static var host: OCIPlatform {
        #if arch(x86_64)
        return OCIPlatform(os: "linux", architecture: "amd64")
        #elseif arch(arm64)
        return OCIPlatform(os: "linux", architecture: "arm64", variant: "v8")
        #elseif arch(arm)
        return OCIPlatform(os: "linux", architecture: "arm", variant: "v7")
        #elseif arch(i386)
        return OCIPlatform(os: "linux", architecture: "386")
        #elseif arch(s390x)
        return OCIPlatform(os: "linux", architecture: "s390x")
        #elseif arch(powerpc64le)
        return OCIPlatform(os: "linux", architecture: "ppc64le")
        #else
        return OCIPlatform(os: "linux", architecture: "unknown")
        #endif
    }

    /// `os/arch[/variant]` of the host.
    public static var hostString: String { format(host) }

    /// `os/arch[/variant]` with empty parts left out; "unknown" without an OS.
    public static func format(_ platform: OCIPlatform) -> String {
        guard !platform.os.isEmpty else { return "unknown" }
        return [platform.os, platform.architecture, platform.variant ?? ""].filter { !$0.isEmpty }.joined(separator: "/")
    }

    /// Lower-cases and maps aliases: x86_64 → amd64, aarch64 → arm64 (variant 8/v8 dropped), armhf → arm/v7, …
    public static func normalize(_ platform: OCIPlatform) -> OCIPlatform {
        var result = platform
        result.os = normalizeOS(platform.os)
        let (architecture, variant) = normalizeArch(platform.architecture, platform.variant ?? "")
        result.architecture = architecture
        result.variant = variant.isEmpty ? nil : variant
        return result
    }

    /// Parses a `--platform` specifier: `os`, `arch`, `os/arch` or `os/arch/variant`.
    public static func parse(_ specifier: String) throws(BerthError) -> OCIPlatform {
        if specifier.contains("*") {
            throw .invalidArgument("\"\(specifier)\": wildcards not yet supported")
        }
        let parts = specifier.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for part in parts where part.isEmpty || !part.utf8.allSatisfy(isSpecifierByte) {
            throw .invalidArgument(
                "\"\(part)\" is an invalid component of \"\(specifier)\": platform specifier component must match \"^[A-Za-z0-9_-]+$\"")
        }
        let host = Self.host
        switch parts.count {
        case 1:
            let os = normalizeOS(parts[0])
            if knownOS.contains(os) {
                var platform = OCIPlatform(os: os, architecture: host.architecture)
                if host.architecture == "arm", host.variant != "v7" { platform.variant = host.variant }
                return platform
            }
            var (architecture, variant) = normalizeArch(parts[0], "")
            if architecture == "arm", variant == "v7" { variant = "" }
            if knownArch.contains(architecture) {
                return OCIPlatform(os: host.os, architecture: architecture, variant: variant)
            }
            throw .invalidArgument("\"\(specifier)\": unknown operating system or architecture")
        case 2:
            var (architecture, variant) = normalizeArch(parts[1], "")
            if architecture == "arm", variant == "v7" { variant = "" }
            return OCIPlatform(os: normalizeOS(parts[0]), architecture: architecture, variant: variant)
        case 3:
            var (architecture, variant) = normalizeArch(parts[1], parts[2])
            if architecture == "arm64", variant.isEmpty { variant = "v8" }
            return OCIPlatform(os: normalizeOS(parts[0]), architecture: architecture, variant: variant)
        default:
            throw .invalidArgument("\"\(specifier)\": cannot parse platform specifier")
        }
    }

    static func isSpecifierByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
            || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    static let knownOS: Set<String> = [
        "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd",
        "openbsd", "plan9", "solaris", "windows", "zos",
    ]
    static let knownArch: Set<String> = [
        "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64", "mips", "mipsle",
        "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64",
        "wasm",
    ]

    static func normalizeOS(_ os: String) -> String {
        if os.isEmpty { return "linux" }
        let lower = os.lowercased()
        return lower == "macos" ? "darwin" : lower
    }

    static func normalizeArch(_ architecture: String, _ variant: String) -> (String, String) {
        var architecture = architecture.lowercased()
        var variant = variant.lowercased()
        switch architecture {
        case "i386":
            architecture = "386"
            variant = ""
        case "x86_64", "x86-64", "amd64":
            architecture = "amd64"
            if variant == "v1" { variant = "" }
        case "aarch64", "arm64":
            architecture = "arm64"
            if variant == "8" || variant == "v8" { variant = "" }
        case "armhf":
            architecture = "arm"
            variant = "v7"
        case "armel":
            architecture = "arm"
            variant = "v6"
        case "arm":
            switch variant {
            case "", "7": variant = "v7"
            case "5", "6", "8": variant = "v" + variant
            default: break
            }
        default:
            break
        }
        return (architecture, variant)
    }

    /// The platforms a host of `platform` can run, best first (`platformVector`): amd64/v3 → v2, v1, 386;
    /// arm/v7 → v6, v5; arm64 → arm/v8 … v5.
    static func vector(_ platform: OCIPlatform) -> [OCIPlatform] {
        var result = [platform]
        let variantNumber = Int((platform.variant ?? "").dropFirst((platform.variant ?? "").hasPrefix("v") ? 1 : 0))
        switch platform.architecture {
        case "amd64":
            if let version = variantNumber, version > 1 {
                for lower in stride(from: version - 1, through: 1, by: -1) {
                    result.append(OCIPlatform(os: platform.os, architecture: "amd64", variant: "v\(lower)", osVersion: platform.osVersion))
                }
            }
            result.append(OCIPlatform(os: platform.os, architecture: "386", osVersion: platform.osVersion))
        case "arm":
            if let version = variantNumber, version > 5 {
                for lower in stride(from: version - 1, through: 5, by: -1) {
                    result.append(OCIPlatform(os: platform.os, architecture: "arm", variant: "v\(lower)", osVersion: platform.osVersion))
                }
            }
        case "arm64":
            let variant = platform.variant ?? "v8"
            result += vector(OCIPlatform(os: platform.os, architecture: "arm", variant: variant, osVersion: platform.osVersion))
        default:
            break
        }
        return result
    }
}

/// Chooses platforms from an index: `matches` filters, `less` orders best first (containerd's `MatchComparer`).
public struct PlatformMatcher: Sendable {
    enum Kind: Sendable {
        case ordered([OCIPlatform])
        case any([OCIPlatform])
        case all
    }

    let kind: Kind

    /// What the host runs, best first (containerd's `platforms.Default()`).
    public static var `default`: PlatformMatcher { only(Platforms.host) }
    /// Every platform (`--all-platforms`).
    public static let all = PlatformMatcher(kind: .all)

    /// `platform` and the platforms it can also run, in preference order (`platforms.Only`).
    public static func only(_ platform: OCIPlatform) -> PlatformMatcher {
        PlatformMatcher(kind: .ordered(Platforms.vector(Platforms.normalize(platform)).map(Platforms.normalize)))
    }

    /// Exactly `platform` after normalisation (`platforms.OnlyStrict`).
    public static func onlyStrict(_ platform: OCIPlatform) -> PlatformMatcher {
        PlatformMatcher(kind: .ordered([Platforms.normalize(platform)]))
    }

    /// These platforms, earlier ones preferred (`platforms.Ordered`).
    public static func ordered(_ platforms: [OCIPlatform]) -> PlatformMatcher {
        PlatformMatcher(kind: .ordered(platforms.map(Platforms.normalize)))
    }

    /// Any of these platforms, none preferred over another (`platforms.Any`).
    public static func any(_ platforms: [OCIPlatform]) -> PlatformMatcher {
        PlatformMatcher(kind: .any(platforms.map(Platforms.normalize)))
    }

    /// From `--platform` flags: none → the host default; several → any of them.
    public static func from(specifiers: [String], allPlatforms: Bool = false) throws(BerthError) -> PlatformMatcher {
        if allPlatforms { return .all }
        if specifiers.isEmpty { return .default }
        var platforms: [OCIPlatform] = []
        for specifier in specifiers { platforms.append(try Platforms.parse(specifier)) }
        return platforms.count == 1 ? .only(platforms[0]) : .any(platforms)
    }

    static func same(_ wanted: OCIPlatform, _ candidate: OCIPlatform) -> Bool {
        let normalized = Platforms.normalize(candidate)
        return wanted.os == normalized.os && wanted.architecture == normalized.architecture
            && (wanted.variant ?? "") == (normalized.variant ?? "")
    }

    public func matches(_ platform: OCIPlatform) -> Bool {
        switch kind {
        case .all: return true
        case .ordered(let list), .any(let list): return list.contains { Self.same($0, platform) }
        }
    }

    /// True when `a` is preferred over `b`.
    public func less(_ a: OCIPlatform, _ b: OCIPlatform) -> Bool {
        switch kind {
        case .all:
            return false
        case .ordered(let list):
            for wanted in list {
                let am = Self.same(wanted, a)
                let bm = Self.same(wanted, b)
                if am && !bm { return true }
                if am || bm { return false }
            }
            return false
        case .any(let list):
            let am = list.contains { Self.same($0, a) }
            let bm = list.contains { Self.same($0, b) }
            return am && !bm
        }
    }

    /// The descriptors of an index this matcher accepts, best first (stable; a descriptor without a platform is
    /// kept and sorts after those with one), as containerd's `FilterPlatforms` + `LimitManifests` order them.
    public func select(_ descriptors: [OCIDescriptor]) -> [OCIDescriptor] {
        let kept = descriptors.enumerated().filter { $0.element.platform.map(matches) ?? true }
        return kept.sorted { x, y in
            switch (x.element.platform, y.element.platform) {
            case (let a?, let b?):
                if less(a, b) { return true }
                if less(b, a) { return false }
            case (nil, _?): return false
            case (_?, nil): return true
            case (nil, nil): break
            }
            return x.offset < y.offset
        }.map(\.element)
    }
}
