import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import BerthOCI
import Foundation
import GRPCCore

extension Images {
    /// `berth images inspect NAME`: the image record and what its content says, read through the Images, Content,
    /// Introspection and Snapshots services as ctr would.
    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show an image: descriptor, platforms, manifests, config, size, labels and unpacked snapshotters.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Image name (short Docker names are normalised).") var name: String

        func run() async throws {
            let name = self.name
            let report = try await global.connect { c in try await ImageReport.make(c, name: name) }
            switch global.format {
            case .json: Output.json(report.json)
            case .table: report.print()
            }
        }
    }

    /// `berth images tag SRC DST...`: new image records pointing at SRC's target (ctr's `images tag`).
    struct Tag: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create image names pointing at an image's target.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Replace a destination name that already exists.") var force = false
        @Argument(help: "Source image name.") var source: String
        @Argument(help: "New image names.") var targets: [String]

        func run() async throws {
            let (source, targets, force) = (self.source, self.targets, self.force)
            try await global.connect { c in
                let api = ImagesAPI.Client(wrapping: c.client)
                var image = try await ImageResolver.image(c, named: source)
                for target in targets {
                    image.name = target
                    var create = Containerd_Services_Images_V1_CreateImageRequest()
                    create.image = image
                    do {
                        _ = try await api.create(create, metadata: c.metadata)
                    } catch let error as RPCError where error.code == .alreadyExists && force {
                        var delete = Containerd_Services_Images_V1_DeleteImageRequest()
                        delete.name = target
                        _ = try await api.delete(delete, metadata: c.metadata)
                        _ = try await api.create(create, metadata: c.metadata)
                    }
                    print(target)
                }
            }
        }
    }
}

/// What `images inspect` shows.
struct ImageReport: Sendable {
    struct ManifestEntry: Sendable {
        var descriptor: OCIDescriptor
        var platform: String
        /// Nil when the manifest's content is not in the store (another platform not pulled).
        var config: OCIDescriptor?
        var layers: [OCIDescriptor]
        var chainID: String?
        var size: Int64
    }

    var image: Containerd_Services_Images_V1_Image
    var manifests: [ManifestEntry] = []
    var config: ImageConfig?
    var unpacked: [String] = []

    static func make(_ c: BerthConnection, name: String) async throws -> ImageReport {
        let image = try await ImageResolver.image(c, named: name)
        var report = ImageReport(image: image)
        let target = OCIDescriptor(
            mediaType: image.target.mediaType, digest: try Digest(parsing: image.target.digest), size: image.target.size)
        var candidates: [OCIDescriptor] = [target]
        if MediaType.isIndex(target.mediaType) {
            let index = try JSONDecoder().decode(Index.self, from: try await ImageResolver.blob(c, target.digest.description))
            candidates = index.manifests
        }
        for descriptor in candidates {
            var entry = ManifestEntry(
                descriptor: descriptor, platform: descriptor.platform.map(Platforms.format) ?? "", layers: [], size: 0)
            if let data = try? await ImageResolver.blob(c, descriptor.digest.description),
                let manifest = try? JSONDecoder().decode(Manifest.self, from: data)
            {
                entry.config = manifest.config
                entry.layers = manifest.layers
                entry.size = descriptor.size + manifest.config.size + manifest.layers.reduce(0) { $0 + $1.size }
                if let configData = try? await ImageResolver.blob(c, manifest.config.digest.description),
                    let config = try? JSONDecoder().decode(ImageConfig.self, from: configData)
                {
                    if entry.platform.isEmpty { entry.platform = Platforms.format(config.platform) }
                    entry.chainID = try? Identity.chainID(config.rootfs.diffIDs)?.description
                    if report.config == nil, PlatformMatcher.default.matches(config.platform) { report.config = config }
                }
            }
            report.manifests.append(entry)
        }
        // Unpacked: the host manifest's chain ID exists as a snapshot in that snapshotter.
        let host = report.manifests.first { $0.chainID != nil && PlatformMatcher.default.matches(
            (try? Platforms.parse($0.platform)) ?? OCIPlatform(os: "", architecture: "")) }
        if let chain = host?.chainID {
            var plugins = Containerd_Services_Introspection_V1_PluginsRequest()
            plugins.filters = ["type==io.containerd.snapshotter.v1"]
            let loaded = try await Containerd_Services_Introspection_V1_Introspection.Client(wrapping: c.client)
                .plugins(plugins, metadata: c.metadata).plugins.filter { !$0.hasInitErr }.map(\.id)
            let snapshots = SnapshotsAPI.Client(wrapping: c.client)
            for snapshotter in loaded.sorted() {
                var stat = Containerd_Services_Snapshots_V1_StatSnapshotRequest()
                (stat.snapshotter, stat.key) = (snapshotter, chain)
                if (try? await snapshots.stat(stat, metadata: c.metadata)) != nil { report.unpacked.append(snapshotter) }
            }
        }
        return report
    }

    /// Content size of the image: the index (if any) plus every manifest present with its config and layers.
    var size: Int64 {
        let index = MediaType.isIndex(image.target.mediaType) ? image.target.size : 0
        return index + manifests.reduce(0) { $0 + $1.size }
    }

    var json: [String: Any] {
        var object: [String: Any] = [
            "name": image.name,
            "target": ["mediaType": image.target.mediaType, "digest": image.target.digest, "size": image.target.size],
            "labels": image.labels, "size": size, "unpacked": unpacked,
            "platforms": manifests.map(\.platform).filter { !$0.isEmpty },
            "manifests": manifests.map { entry -> [String: Any] in
                var m: [String: Any] = [
                    "digest": entry.descriptor.digest.description, "mediaType": entry.descriptor.mediaType,
                    "size": entry.descriptor.size, "platform": entry.platform, "present": entry.config != nil,
                ]
                if let config = entry.config { m["config"] = config.digest.description }
                if let chain = entry.chainID { m["chainID"] = chain }
                m["layers"] = entry.layers.map {
                    ["digest": $0.digest.description, "mediaType": $0.mediaType, "size": $0.size] as [String: Any]
                }
                return m
            },
        ]
        if image.hasCreatedAt { object["createdAt"] = image.createdAt.date.formatted(.iso8601) }
        if image.hasUpdatedAt { object["updatedAt"] = image.updatedAt.date.formatted(.iso8601) }
        if let config {
            var c: [String: Any] = ["os": config.os, "architecture": config.architecture]
            if let created = config.created { c["created"] = created }
            if let process = config.config {
                if let env = process.env { c["env"] = env }
                if let entrypoint = process.entrypoint { c["entrypoint"] = entrypoint }
                if let cmd = process.cmd { c["cmd"] = cmd }
                if let dir = process.workingDir { c["workingDir"] = dir }
                if let user = process.user { c["user"] = user }
            }
            c["diffIDs"] = config.rootfs.diffIDs.map(\.description)
            object["config"] = c
        }
        return object
    }

    func print() {
        Swift.print("Name:      \(image.name)")
        Swift.print("Target:    \(image.target.mediaType) \(image.target.digest) (\(Output.bytes(image.target.size)))")
        Swift.print("Size:      \(Output.bytes(size))")
        Swift.print("Platforms: \(manifests.map(\.platform).filter { !$0.isEmpty }.joined(separator: ", "))")
        Swift.print("Labels:    \(Output.labelText(image.labels))")
        Swift.print("Unpacked:  \(unpacked.joined(separator: ", "))")
        for entry in manifests {
            let state = entry.config == nil ? " (not present)" : ""
            Swift.print("Manifest:  \(entry.descriptor.digest) \(entry.platform)\(state)")
            if let config = entry.config { Swift.print("  Config:  \(config.digest) (\(Output.bytes(config.size)))") }
            if let chain = entry.chainID { Swift.print("  ChainID: \(chain)") }
            for layer in entry.layers {
                Swift.print("  Layer:   \(layer.digest) \(layer.mediaType) (\(Output.bytes(layer.size)))")
            }
        }
        if let process = config?.config {
            if let entrypoint = process.entrypoint { Swift.print("Entrypoint: \(entrypoint)") }
            if let cmd = process.cmd { Swift.print("Cmd:        \(cmd)") }
            if let env = process.env { Swift.print("Env:        \(env.joined(separator: " "))") }
        }
    }
}
