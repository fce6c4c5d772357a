import BerthCore

/// An image manifest (OCI image manifest or Docker schema 2; the same JSON shape).
public struct Manifest: Sendable, Hashable, Codable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var artifactType: String?
    public var config: OCIDescriptor
    public var layers: [OCIDescriptor]
    public var subject: OCIDescriptor?
    public var annotations: [String: String]?
    public var extras: [String: OCIValue] = [:]

    static let known: Set<String> = ["schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations"]

    public init(
        mediaType: String? = MediaType.ociManifest, config: OCIDescriptor, layers: [OCIDescriptor],
        annotations: [String: String]? = nil
    ) {
        schemaVersion = 2
        self.mediaType = mediaType
        self.config = config
        self.layers = layers
        self.annotations = annotations
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        schemaVersion = try c.value("schemaVersion") ?? 0
        guard schemaVersion == 2 else {
            throw BerthError.invalidArgument("unsupported manifest schemaVersion \(schemaVersion)")
        }
        mediaType = try c.value("mediaType")
        artifactType = try c.value("artifactType")
        guard let config: OCIDescriptor = try c.value("config") else {
            throw BerthError.invalidArgument("manifest without a config descriptor")
        }
        self.config = config
        layers = try c.value("layers") ?? []
        subject = try c.value("subject")
        annotations = try c.value("annotations")
        extras = try c.extras(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.put(schemaVersion, "schemaVersion")
        try c.put(mediaType, "mediaType")
        try c.put(artifactType, "artifactType")
        try c.put(config, "config")
        try c.put(layers, "layers")
        try c.put(subject, "subject")
        try c.put(annotations.flatMap { $0.isEmpty ? nil : $0 }, "annotations")
        try c.putExtras(extras, excluding: Self.known)
    }
}

/// An image index (OCI) or manifest list (Docker): manifests for several platforms.
public struct Index: Sendable, Hashable, Codable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var artifactType: String?
    public var manifests: [OCIDescriptor]
    public var subject: OCIDescriptor?
    public var annotations: [String: String]?
    public var extras: [String: OCIValue] = [:]

    static let known: Set<String> = ["schemaVersion", "mediaType", "artifactType", "manifests", "subject", "annotations"]

    public init(mediaType: String? = MediaType.ociIndex, manifests: [OCIDescriptor], annotations: [String: String]? = nil) {
        schemaVersion = 2
        self.mediaType = mediaType
        self.manifests = manifests
        self.annotations = annotations
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        schemaVersion = try c.value("schemaVersion") ?? 0
        guard schemaVersion == 2 else {
            throw BerthError.invalidArgument("unsupported index schemaVersion \(schemaVersion)")
        }
        mediaType = try c.value("mediaType")
        artifactType = try c.value("artifactType")
        manifests = try c.value("manifests") ?? []
        subject = try c.value("subject")
        annotations = try c.value("annotations")
        extras = try c.extras(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.put(schemaVersion, "schemaVersion")
        try c.put(mediaType, "mediaType")
        try c.put(artifactType, "artifactType")
        try c.put(manifests, "manifests")
        try c.put(subject, "subject")
        try c.put(annotations.flatMap { $0.isEmpty ? nil : $0 }, "annotations")
        try c.putExtras(extras, excluding: Self.known)
    }
}

/// Annotation keys of the OCI image spec that containerd uses.
public enum Annotation {
    /// The tag of a manifest in an OCI layout's index.json (`ctr images import` names images by it).
    public static let refName = "org.opencontainers.image.ref.name"
    /// containerd's full image name on an exported layout entry.
    public static let containerdImageName = "io.containerd.image.name"
    public static let created = "org.opencontainers.image.created"
}
