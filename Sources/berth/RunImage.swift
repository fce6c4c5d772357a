import BerthAPI
import BerthCore
import BerthGRPC
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
    static let indexTypes: Set = [
        "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
    static let manifestTypes: Set = [
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    ]

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
        var descriptor = image.target
        if indexTypes.contains(descriptor.mediaType) {
            let index = try await json(c, descriptor.digest)
            guard let manifests = index["manifests"] as? [[String: Any]],
                let chosen = manifests.first(where: { matchesPlatform($0["platform"] as? [String: Any]) })
                    ?? (manifests.count == 1 ? manifests.first : nil),
                let digest = chosen["digest"] as? String
            else { throw BerthError.notFound("image \(image.name): no manifest for \(platform)") }
            descriptor.digest = digest
            descriptor.mediaType = chosen["mediaType"] as? String ?? ""
        }
        let manifest = try await json(c, descriptor.digest)
        guard let configDigest = (manifest["config"] as? [String: Any])?["digest"] as? String else {
            throw BerthError.invalidArgument("image \(image.name): manifest \(descriptor.digest) has no config")
        }
        let config = try await json(c, configDigest)
        let diffIDs = (config["rootfs"] as? [String: Any])?["diff_ids"] as? [String] ?? []
        guard let chain = chainID(diffIDs) else {
            throw BerthError.invalidArgument("image \(image.name): config has no layers")
        }
        let process = config["config"] as? [String: Any] ?? [:]
        var processConfig = ImageProcessConfig(
            entrypoint: process["Entrypoint"] as? [String] ?? [], cmd: process["Cmd"] as? [String] ?? [],
            env: process["Env"] as? [String] ?? [], workingDir: process["WorkingDir"] as? String ?? "",
            user: process["User"] as? String ?? "")
        processConfig.stopSignal = process["StopSignal"] as? String ?? ""
        return ResolvedImage(name: image.name, config: processConfig, chainID: chain, labels: image.labels)
    }

    static var platform: String {
        #if arch(arm64)
            "linux/arm64"
        #else
            "linux/amd64"
        #endif
    }

    static func matchesPlatform(_ p: [String: Any]?) -> Bool {
        guard let p else { return false }
        return "\(p["os"] as? String ?? "")/\(p["architecture"] as? String ?? "")" == platform
    }

    /// A whole blob from the content store, decoded as a JSON object.
    static func json(_ c: BerthConnection, _ digest: String) async throws -> [String: Any] {
        var request = Containerd_Services_Content_V1_ReadContentRequest()
        request.digest = digest
        let read = request
        let data = try await ContentAPI.Client(wrapping: c.client).read(read, metadata: c.metadata) { response in
            var all = Data()
            for try await chunk in response.messages { all += chunk.data }
            return all
        }
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw BerthError.invalidArgument("blob \(digest) is not a JSON object")
        }
        return object
    }

    /// The OCI chain ID of a layer stack: chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " + diff(n)).
    static func chainID(_ diffIDs: [String]) -> String? {
        guard var chain = diffIDs.first else { return nil }
        for diff in diffIDs.dropFirst() { chain = "sha256:" + SHA256.hex(Array("\(chain) \(diff)".utf8)) }
        return chain
    }
}

/// A small SHA-256 (FIPS 180-4), enough for chain IDs; the CLI links no crypto library.
enum SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hex(_ message: [UInt8]) -> String {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var data = message + [0x80]
        while data.count % 64 != 56 { data.append(0) }
        let bits = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                let b = chunk + i * 4
                w[i] = UInt32(data[b]) << 24 | UInt32(data[b + 1]) << 16 | UInt32(data[b + 2]) << 8 | UInt32(data[b + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
        }
        return h.map { String(format: "%08x", $0) }.joined()
    }
}
