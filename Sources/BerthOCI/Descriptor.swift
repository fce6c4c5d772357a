import BerthCore

/// An OCI content descriptor: what a manifest, index or layout says about one blob.
public struct OCIDescriptor: Sendable, Hashable, Codable {
    public var mediaType: String
    public var digest: Digest
    public var size: Int64
    public var urls: [String]?
    public var annotations: [String: String]?
    /// Embedded content (base64 in JSON), rarely used.
    public var data: String?
    public var platform: OCIPlatform?
    public var artifactType: String?
    /// Fields this version does not know, kept across a round trip.
    public var extras: [String: OCIValue] = [:]

    static let known: Set<String> = ["mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType"]

    public init(
        mediaType: String, digest: Digest, size: Int64, urls: [String]? = nil, annotations: [String: String]? = nil,
        platform: OCIPlatform? = nil, artifactType: String? = nil
    ) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.urls = urls
        self.annotations = annotations
        self.platform = platform
        self.artifactType = artifactType
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        mediaType = try c.value("mediaType") ?? ""
        guard let digest: Digest = try c.value("digest") else {
            throw BerthError.invalidArgument("descriptor without a digest")
        }
        self.digest = digest
        size = try c.value("size") ?? 0
        urls = try c.value("urls")
        annotations = try c.value("annotations")
        data = try c.value("data")
        platform = try c.value("platform")
        artifactType = try c.value("artifactType")
        extras = try c.extras(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.put(mediaType, "mediaType")
        try c.put(digest, "digest")
        try c.put(size, "size")
        try c.put(urls.flatMap { $0.isEmpty ? nil : $0 }, "urls")
        try c.put(annotations.flatMap { $0.isEmpty ? nil : $0 }, "annotations")
        try c.put(data, "data")
        try c.put(platform, "platform")
        try c.put(artifactType, "artifactType")
        try c.putExtras(extras, excluding: Self.known)
    }
}

/// The platform an image runs on (OCI `platform` object). Parsing, formatting and matching are in Platforms.swift.
public struct OCIPlatform: Sendable, Hashable, Codable, CustomStringConvertible {
    public var os: String
    public var architecture: String
    public var variant: String?
    public var osVersion: String?
    public var osFeatures: [String]?
    public var extras: [String: OCIValue] = [:]

    static let known: Set<String> = ["architecture", "os", "os.version", "os.features", "variant"]

    public init(os: String, architecture: String, variant: String? = nil, osVersion: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant.flatMap { $0.isEmpty ? nil : $0 }
        self.osVersion = osVersion
    }

    /// `os/arch[/variant]`, "unknown" without an OS (containerd's `platforms.Format`).
    public var description: String { Platforms.format(self) }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        os = try c.value("os") ?? ""
        architecture = try c.value("architecture") ?? ""
        variant = try c.value("variant", as: String.self).flatMap { $0.isEmpty ? nil : $0 }
        osVersion = try c.value("os.version")
        osFeatures = try c.value("os.features")
        extras = try c.extras(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.put(architecture, "architecture")
        try c.put(os, "os")
        try c.put(osVersion.flatMap { $0.isEmpty ? nil : $0 }, "os.version")
        try c.put(osFeatures.flatMap { $0.isEmpty ? nil : $0 }, "os.features")
        try c.put(variant.flatMap { $0.isEmpty ? nil : $0 }, "variant")
        try c.putExtras(extras, excluding: Self.known)
    }
}

extension OCIDescriptor {
    /// From the descriptor BerthCore's stores keep (image targets).
    public init(_ core: Descriptor) {
        self.init(
            mediaType: core.mediaType, digest: core.digest, size: core.size,
            annotations: core.annotations.isEmpty ? nil : core.annotations)
    }

    /// The descriptor BerthCore's stores keep (urls, platform and unknown fields dropped).
    public var core: Descriptor {
        Descriptor(mediaType: mediaType, digest: digest, size: size, annotations: annotations ?? [:])
    }
}

extension OCIPlatform {
    /// From BerthCore's plugin platform.
    public init(_ core: Platform) {
        self.init(os: core.os, architecture: core.architecture, variant: core.variant)
    }

    /// BerthCore's plugin platform.
    public var core: Platform { Platform(os: os, architecture: architecture, variant: variant ?? "") }
}
