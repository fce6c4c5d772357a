import BerthAPI
import BerthCore
import BerthGRPC
import BerthOCI
import BerthSpec
import Foundation
import GRPCCore

typealias ContainersAPI = Containerd_Services_Containers_V1_Containers
typealias TasksAPI = Containerd_Services_Tasks_V1_Tasks

/// An image as `berth run` needs it: its name, process config and the chain ID of its unpacked root filesystem.
struct ResolvedImage: Sendable {
    var name: String
    var config: ImageProcessConfig
    var chainID: String
    var labels: [String: String]
    /// What unpacking needs: the layers, their diff IDs and the config blob that will reference the snapshot.
    var layers: [OCIDescriptor] = []
    var diffIDs: [String] = []
    var configDigest = ""
}

/// Reads an image's index, manifest and config through the Images and Content services, as ctr does.
enum ImageResolver {
    /// Docker-style short names (`busybox`, `me/app:1`) as containerd stores them (`docker.io/library/busybox:latest`).
    static func normalized(_ reference: String) -> String {
        var name = reference
        let first = name.split(separator: "/").first.map(String.init) ?? name
        let hasDomain = name.contains("/") && (first.contains(".") || first.contains(":") || first == "localhost")
        if !hasDomain { name = "docker.io/" + (name.contains("/") ? name : "library/" + name) }
        let last = name.split(separator: "/").last ?? ""
        if !last.contains(":") && !name.contains("@") { name += ":latest" }
        return name
    }

    /// The image record named `name`, or else its Docker-normalized name (`busybox` → `docker.io/library/busybox:latest`).
    static func image(_ c: BerthConnection, named name: String) async throws -> Containerd_Services_Images_V1_Image {
        let images = ImagesAPI.Client(wrapping: c.client)
        var request = Containerd_Services_Images_V1_GetImageRequest()
        request.name = name
        do {
            return try await images.get(request, metadata: c.metadata).image
        } catch let error as RPCError where error.code == .notFound && normalized(name) != name {
            request.name = normalized(name)
            return try await images.get(request, metadata: c.metadata).image
        }
    }

    static func resolve(_ c: BerthConnection, reference: String) async throws -> ResolvedImage {
        let image = try await image(c, named: reference)
        var digest = image.target.digest
        if MediaType.isIndex(image.target.mediaType) {
            let index = try JSONDecoder().decode(Index.self, from: try await blob(c, digest))
            let matcher = PlatformMatcher.default
            let candidates = index.manifests.filter { d in d.platform.map(matcher.matches) ?? false }
                .sorted { a, b in
                    guard let pa = a.platform, let pb = b.platform else { return false }
                    return matcher.less(pa, pb)
                }
            guard let chosen = candidates.first ?? (index.manifests.count == 1 ? index.manifests.first : nil) else {
                throw BerthError.notFound("image \(image.name): no manifest for \(Platforms.hostString)")
            }
            digest = chosen.digest.description
        }
        let manifest = try JSONDecoder().decode(Manifest.self, from: try await blob(c, digest))
        let config = try JSONDecoder().decode(ImageConfig.self, from: try await blob(c, manifest.config.digest.description))
        guard let chain = try Identity.chainID(config.rootfs.diffIDs) else {
            throw BerthError.invalidArgument("image \(image.name): config has no layers")
        }
        return ResolvedImage(
            name: image.name, config: ImageProcessConfig(config.config), chainID: chain.description, labels: image.labels,
            layers: manifest.layers, diffIDs: config.rootfs.diffIDs.map(\.description),
            configDigest: manifest.config.digest.description)
    }

    /// A whole blob from the content store.
    static func blob(_ c: BerthConnection, _ digest: String) async throws -> Data {
        var request = Containerd_Services_Content_V1_ReadContentRequest()
        request.digest = digest
        let read = request
        return try await ContentAPI.Client(wrapping: c.client).read(read, metadata: c.metadata) { response in
            var all = Data()
            for try await chunk in response.messages { all += chunk.data }
            return all
        }
    }
}

/// Unpacks an image's layers into a snapshotter as containerd's client does before a run: one prepare, Diff/Apply
/// and commit (named by chain ID) per missing layer, then the config blob labelled so GC keeps the snapshots.
enum Unpacker {
    static func unpack(_ c: BerthConnection, _ image: ResolvedImage, snapshotter: String, lease: Metadata) async throws {
        guard image.layers.count == image.diffIDs.count, !image.layers.isEmpty else {
            throw BerthError.invalidArgument("image \(image.name): \(image.layers.count) layers but \(image.diffIDs.count) diff IDs")
        }
        let snapshots = SnapshotsAPI.Client(wrapping: c.client)
        var chain: [String] = []
        for (layer, diffID) in zip(image.layers, image.diffIDs) {
            let parent = chain.last ?? ""
            let id = try Identity.chainID(try (chain.isEmpty ? [] : [Digest(parsing: parent)]) + [Digest(parsing: diffID)])
            let name = chain.isEmpty ? diffID : (id?.description ?? diffID)
            chain.append(name)
            var stat = Containerd_Services_Snapshots_V1_StatSnapshotRequest()
            (stat.snapshotter, stat.key) = (snapshotter, name)
            if (try? await snapshots.stat(stat, metadata: lease)) != nil { continue }
            let key = "extract-\(UInt64.random(in: 0...UInt64.max)) \(name)"
            var prepare = Containerd_Services_Snapshots_V1_PrepareSnapshotRequest()
            (prepare.snapshotter, prepare.key, prepare.parent) = (snapshotter, key, parent)
            let mounts = try await snapshots.prepare(prepare, metadata: lease).mounts
            do {
                var apply = Containerd_Services_Diff_V1_ApplyRequest()
                apply.diff.mediaType = layer.mediaType
                apply.diff.digest = layer.digest.description
                apply.diff.size = layer.size
                apply.mounts = mounts
                let applied = try await Containerd_Services_Diff_V1_Diff.Client(wrapping: c.client)
                    .apply(apply, metadata: lease).applied
                guard applied.digest == diffID else {
                    throw BerthError.failedPrecondition("layer \(layer.digest) unpacked to \(applied.digest), not \(diffID)")
                }
                var commit = Containerd_Services_Snapshots_V1_CommitSnapshotRequest()
                (commit.snapshotter, commit.name, commit.key) = (snapshotter, name, key)
                _ = try await snapshots.commit(commit, metadata: lease)
            } catch {
                var remove = Containerd_Services_Snapshots_V1_RemoveSnapshotRequest()
                (remove.snapshotter, remove.key) = (snapshotter, key)
                _ = try? await snapshots.remove(remove, metadata: lease)
                throw error
            }
        }
        // containerd's unpacker labels the config with the top snapshot so GC keeps the layers after the lease.
        var update = Containerd_Services_Content_V1_UpdateRequest()
        update.info.digest = image.configDigest
        let label = "containerd.io/gc.ref.snapshot.\(snapshotter)"
        update.info.labels = [label: image.chainID]
        update.updateMask.paths = ["labels.\(label)"]
        _ = try await ContentAPI.Client(wrapping: c.client).update(update, metadata: lease)
    }
}
