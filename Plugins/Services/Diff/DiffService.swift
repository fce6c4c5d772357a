import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import SwiftProtobuf

/// `[plugins."io.containerd.service.v1.diff-service"]`: the differs to try, in order (containerd's `default`).
public struct DiffServiceConfig: PluginConfig, Equatable {
    public var `default`: [String] = ["walking"]
    public init() {}
}

/// `io.containerd.service.v1.diff-service`: the ordered chain of differ plugins, as containerd's local diff service.
public let serviceRegistration = Registration(
    type: .service, id: "diff-service", requires: [.type(.differ)],
    summary: "Diff service: tries the configured differs in order for each apply and diff.",
    config: DiffServiceConfig.self
) { ic, config in
    var differs: [(String, any Differ)] = []
    for id in config.default {
        differs.append((id, try ic.instance(.differ, id: id, as: (any Differ).self)))
    }
    guard !differs.isEmpty else { throw BerthError.invalidArgument("no differ configured") }
    return DifferChain(differs: differs)
}

/// `io.containerd.grpc.v1.diff`: `containerd.services.diff.v1.Diff` over the diff service.
public let registration = Registration(
    type: .grpc, id: "diff", requires: [.type(.service)],
    summary: "containerd.services.diff.v1.Diff: applies layers onto mounts and computes layers from mounts."
) { ic in
    SingleService(DiffService(differ: try ic.instance(.service, id: "diff-service", as: (any Differ).self)))
}

/// Tries each differ in turn; one answering NotImplemented (an unsupported media type) passes to the next.
struct DifferChain: DiffApplier, DiffComparer {
    let differs: [(String, any Differ)]

    func apply(_ layer: Descriptor, mounts: [Mount], payloads: [String: [UInt8]]) async throws(BerthError)
        -> Descriptor
    {
        var last: BerthError?
        for (_, differ) in differs {
            do {
                return try await differ.apply(layer, mounts: mounts, payloads: payloads)
            } catch where error.code == .notImplemented {
                last = error
            }
        }
        throw last ?? .notImplemented("no differ applies \(layer.mediaType)")
    }

    func compare(lower: [Mount], upper: [Mount], options: DiffOptions) async throws(BerthError) -> Descriptor {
        var last: BerthError?
        for (_, differ) in differs {
            do {
                return try await differ.compare(lower: lower, upper: upper, options: options)
            } catch where error.code == .notImplemented {
                last = error
            }
        }
        throw last ?? .notImplemented("no differ compares to \(options.mediaType)")
    }
}

typealias API = Containerd_Services_Diff_V1_Diff

/// The gRPC façade: converts messages and lets the context interceptor map errors to containerd's codes.
struct DiffService: API.SimpleServiceProtocol {
    let differ: any Differ

    static func mounts(_ mounts: [Containerd_Types_Mount]) -> [Mount] {
        mounts.map { Mount(type: $0.type, source: $0.source, target: $0.target, options: $0.options) }
    }

    func apply(request: Containerd_Services_Diff_V1_ApplyRequest, context: ServerContext) async throws
        -> Containerd_Services_Diff_V1_ApplyResponse
    {
        let layer = try Convert.descriptor(request.diff)
        let payloads = request.payloads.mapValues { [UInt8]($0.value) }
        let applied = try await differ.apply(layer, mounts: Self.mounts(request.mounts), payloads: payloads)
        var response = Containerd_Services_Diff_V1_ApplyResponse()
        response.applied = Convert.descriptor(applied)
        return response
    }

    func diff(request: Containerd_Services_Diff_V1_DiffRequest, context: ServerContext) async throws
        -> Containerd_Services_Diff_V1_DiffResponse
    {
        let options = DiffOptions(mediaType: request.mediaType, ref: request.ref, labels: request.labels)
        let descriptor = try await differ.compare(
            lower: Self.mounts(request.left), upper: Self.mounts(request.right), options: options)
        var response = Containerd_Services_Diff_V1_DiffResponse()
        response.diff = Convert.descriptor(descriptor)
        return response
    }
}
