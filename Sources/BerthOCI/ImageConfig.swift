import BerthCore

/// An image configuration (OCI `application/vnd.oci.image.config.v1+json`, same shape as Docker's image JSON).
public struct ImageConfig: Sendable, Hashable, Codable {
    /// RFC 3339 creation time, kept as text so that it round-trips byte for byte.
    public var created: String?
    public var author: String?
    public var architecture: String
    public var os: String
    public var osVersion: String?
    public var osFeatures: [String]?
    public var variant: String?
    public var config: ContainerConfig?
    public var rootfs: RootFS
    public var history: [History]?
    public var extras: [String: OCIValue] = [:]

    static let known: Set<String> = [
        "created", "author", "architecture", "os", "os.version", "os.features", "variant", "config", "rootfs", "history",
    ]

    public init(
        architecture: String, os: String, variant: String? = nil, config: ContainerConfig? = nil, rootfs: RootFS,
        history: [History]? = nil, created: String? = nil
    ) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
        self.config = config
        self.rootfs = rootfs
        self.history = history
        self.created = created
    }

    /// The platform this config declares.
    public var platform: OCIPlatform { OCIPlatform(os: os, architecture: architecture, variant: variant, osVersion: osVersion) }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        created = try c.value("created")
        author = try c.value("author")
        architecture = try c.value("architecture") ?? ""
        os = try c.value("os") ?? ""
        osVersion = try c.value("os.version")
        osFeatures = try c.value("os.features")
        variant = try c.value("variant")
        config = try c.value("config")
        rootfs = try c.value("rootfs") ?? RootFS(diffIDs: [])
        history = try c.value("history")
        extras = try c.extras(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.put(created, "created")
        try c.put(author, "author")
        try c.put(architecture, "architecture")
        try c.put(os, "os")
        try c.put(osVersion, "os.version")
        try c.put(osFeatures, "os.features")
        try c.put(variant, "variant")
        try c.put(config, "config")
        try c.put(rootfs, "rootfs")
        try c.put(history, "history")
        try c.putExtras(extras, excluding: Self.known)
    }
}

/// The execution parameters of an image (`config` in the image JSON; Go field names in PascalCase).
public struct ContainerConfig: Sendable, Hashable, Codable {
    public var user: String?
    /// `ExposedPorts` keys such as `80/tcp` (the JSON values are empty objects).
    public var exposedPorts: [String]?
    public var env: [String]?
    public var entrypoint: [String]?
    public var cmd: [String]?
    /// `Volumes` keys (mount points; the JSON values are empty objects).
    public var volumes: [String]?
    public var workingDir: String?
    public var labels: [String: String]?
    public var stopSignal: String?
    public var extras: [String: OCIValue] = [:]

    static let known: Set<String> = [
        "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal",
    ]

    public init(
        user: String? = nil, exposedPorts: [String]? = nil, env: [String]? = nil, entrypoint: [String]? = nil,
        cmd: [String]? = nil, volumes: [String]? = nil, workingDir: String? = nil, labels: [String: String]? = nil,
        stopSignal: String? = nil
    ) {
        self.user = user
        self.exposedPorts = exposedPorts
        self.env = env
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.volumes = volumes
        self.workingDir = workingDir
        self.labels = labels
        self.stopSignal = stopSignal
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        user = try c.value("User")
        exposedPorts = try c.value("ExposedPorts", as: [String: OCIValue].self).map { $0.keys.sorted() }
        env = try c.value("Env")
        entrypoint = try c.value("Entrypoint")
        cmd = try c.value("Cmd")
        volumes = try c.value("Volumes", as: [String: OCIValue].self).map { $0.keys.sorted() }
        workingDir = try c.value("WorkingDir")
        labels = try c.value("Labels")
        stopSignal = try c.value("StopSignal")
        extras = try c.extras(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.put(user.flatMap { $0.isEmpty ? nil : $0 }, "User")
        try c.put(exposedPorts.map { Dictionary(uniqueKeysWithValues: $0.map { ($0, OCIValue.object([:])) }) }, "ExposedPorts")
        try c.put(env, "Env")
        try c.put(entrypoint, "Entrypoint")
        try c.put(cmd, "Cmd")
        try c.put(volumes.map { Dictionary(uniqueKeysWithValues: $0.map { ($0, OCIValue.object([:])) }) }, "Volumes")
        try c.put(workingDir.flatMap { $0.isEmpty ? nil : $0 }, "WorkingDir")
        try c.put(labels, "Labels")
        try c.put(stopSignal.flatMap { $0.isEmpty ? nil : $0 }, "StopSignal")
        try c.putExtras(extras, excluding: Self.known)
    }
}

/// The layers of an image by uncompressed digest.
public struct RootFS: Sendable, Hashable, Codable {
    public var type: String
    public var diffIDs: [Digest]
    public var extras: [String: OCIValue] = [:]

    static let known: Set<String> = ["type", "diff_ids"]

    public init(type: String = "layers", diffIDs: [Digest]) {
        self.type = type
        self.diffIDs = diffIDs
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        type = try c.value("type") ?? ""
        diffIDs = try c.value("diff_ids") ?? []
        extras = try c.extras(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.put(type, "type")
        try c.put(diffIDs, "diff_ids")
        try c.putExtras(extras, excluding: Self.known)
    }
}

/// One history entry of an image config.
public struct History: Sendable, Hashable, Codable {
    public var created: String?
    public var createdBy: String?
    public var author: String?
    public var comment: String?
    public var emptyLayer: Bool?
    public var extras: [String: OCIValue] = [:]

    static let known: Set<String> = ["created", "created_by", "author", "comment", "empty_layer"]

    public init(created: String? = nil, createdBy: String? = nil, comment: String? = nil, emptyLayer: Bool? = nil) {
        self.created = created
        self.createdBy = createdBy
        self.comment = comment
        self.emptyLayer = emptyLayer
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: JSONKey.self)
        created = try c.value("created")
        createdBy = try c.value("created_by")
        author = try c.value("author")
        comment = try c.value("comment")
        emptyLayer = try c.value("empty_layer")
        extras = try c.extras(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        try c.put(created, "created")
        try c.put(createdBy, "created_by")
        try c.put(author, "author")
        try c.put(comment, "comment")
        try c.put(emptyLayer == true ? true : nil, "empty_layer")
        try c.putExtras(extras, excluding: Self.known)
    }
}
