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

    static func resolve(_ c: BerthConnection, reference: String) async throws -> ResolvedImage {
        let images = ImagesAPI.Client(wrapping: c.client)
        var image: Containerd_Services_Images_V1_Image
        do {
            var request = Containerd_Services_Images_V1_GetImageRequest()
            request.name = reference
            image = try await images.get(request, metadata: c.metadata).image
        } catch let error as RPCError where error.code == .notFound && normalized(reference) != reference {
            var request = Containerd_Services_Images_V1_GetImageRequest()
            request.name = normalized(reference)
            image = try await images.get(request, metadata: c.metadata).image
        }
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
            name: image.name, config: ImageProcessConfig(config.config), chainID: chain.description, labels: image.labels)
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
