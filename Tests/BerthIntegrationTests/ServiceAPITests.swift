import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import SwiftProtobuf
import Testing

/// Content and Leases methods that ctr does not reach, called through the gRPC API as any client would.
@Suite(.serialized) struct ServiceAPITests {
    typealias ContentAPI = Containerd_Services_Content_V1_Content
    typealias LeasesAPI = Containerd_Services_Leases_V1_Leases

    /// Writes `data` under `ref` (optionally committing) in one Write stream, with optional extra metadata.
    static func write(_ c: BerthConnection, ref: String, data: [UInt8], commit: Bool, lease: String? = nil) async throws {
        var metadata = c.metadata
        if let lease { metadata.addString(lease, forKey: ContextInterceptor.leaseHeader) }
        try await ContentAPI.Client(wrapping: c.client).write(metadata: metadata) { writer in
            var message = Containerd_Services_Content_V1_WriteContentRequest()
            message.ref = ref
            message.action = commit ? .commit : .write
            message.data = Data(data)
            message.total = commit ? Int64(data.count) : 0
            try await writer.write(message)
        } onResponse: { response in
            for try await _ in response.messages {}
        }
    }

    @Test func statusAbortInfoAndCodes() async throws {
        try await withDaemonAsync(extra: quietGC) { d in
            try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                let api = ContentAPI.Client(wrapping: c.client)
                try await Self.write(c, ref: "partial", data: Array(repeating: 1, count: 1000), commit: false)
                var status = Containerd_Services_Content_V1_StatusRequest()
                status.ref = "partial"
                #expect(try await api.status(status, metadata: c.metadata).status.offset == 1000)

                var abort = Containerd_Services_Content_V1_AbortRequest()
                abort.ref = "partial"
                _ = try await api.abort(abort, metadata: c.metadata)
                await #expect { _ = try await api.status(status, metadata: c.metadata) } throws: {
                    ($0 as? RPCError)?.code == .notFound
                }
                await #expect { _ = try await api.abort(abort, metadata: c.metadata) } throws: {
                    ($0 as? RPCError)?.code == .notFound
                }

                var info = Containerd_Services_Content_V1_InfoRequest()
                info.digest = "sha256:nothex"
                await #expect { _ = try await api.info(info, metadata: c.metadata) } throws: {
                    ($0 as? RPCError)?.code == .invalidArgument
                }
                info.digest = "sha256:" + String(repeating: "0", count: 64)
                await #expect { _ = try await api.info(info, metadata: c.metadata) } throws: {
                    ($0 as? RPCError)?.code == .notFound
                }
                // A request without a namespace header is refused, as containerd does.
                await #expect {
                    _ = try await api.info(info)
                } throws: { ($0 as? RPCError)?.code == .failedPrecondition }
            }
        }
    }

    @Test func leaseHeaderAndResources() async throws {
        try await withDaemonAsync(extra: quietGC) { d in
            try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                let leases = LeasesAPI.Client(wrapping: c.client)
                var create = Containerd_Services_Leases_V1_CreateRequest()
                create.id = "pull-1"
                _ = try await leases.create(create, metadata: c.metadata)
                let data = Array("leased bytes".utf8)
                try await Self.write(c, ref: "under-lease", data: data, commit: true, lease: "pull-1")

                var list = Containerd_Services_Leases_V1_ListResourcesRequest()
                list.id = "pull-1"
                let resources = try await leases.listResources(list, metadata: c.metadata).resources
                #expect(resources.map(\.type) == ["content"], "\(resources)")
                let digest = try #require(resources.first?.id)

                var remove = Containerd_Services_Leases_V1_DeleteResourceRequest()
                remove.id = "pull-1"
                remove.resource.id = digest
                remove.resource.type = "content"
                _ = try await leases.deleteResource(remove, metadata: c.metadata)
                #expect(try await leases.listResources(list, metadata: c.metadata).resources.isEmpty)

                var bad = Containerd_Services_Leases_V1_AddResourceRequest()
                bad.id = "pull-1"
                bad.resource.id = "x"
                bad.resource.type = "unknown"
                await #expect { _ = try await leases.addResource(bad, metadata: c.metadata) } throws: {
                    ($0 as? RPCError)?.code == .invalidArgument
                }
                list.id = "missing"
                await #expect { _ = try await leases.listResources(list, metadata: c.metadata) } throws: {
                    ($0 as? RPCError)?.code == .notFound
                }
            }
        }
    }

    @Test func isolatedPolicyMakesEachNamespaceWriteItsOwnBytes() async throws {
        try await withDaemonAsync(extra: """
            [plugins."io.containerd.metadata.v1.bolt"]
              content_sharing_policy = "isolated"
            \(quietGC)
            """) { d in
            let data = Array("same bytes in two namespaces".utf8)
            try await BerthConnection.with(address: d.socket, namespace: "one") { c in
                try await Self.write(c, ref: "r", data: data, commit: true)
            }
            let file = d.directory + "/same"
            try Data(data).write(to: URL(fileURLWithPath: file))
            let digest = try execute("/bin/sh", ["-c", "sha256sum \(file)"]).stdout.prefix(64)
            // Naming the digest does not claim another namespace's blob under "isolated": the bytes must be sent.
            let claim = try ctrWithInput(d, ["content", "ingest", "--expected-digest", "sha256:\(digest)", "r"], input: "/dev/null", namespace: "two")
            #expect(!claim.succeeded)
            let write = try ctrWithInput(d, ["content", "ingest", "--expected-digest", "sha256:\(digest)", "r2"], input: file, namespace: "two")
            #expect(write.succeeded, "\(write.stderr)")
            #expect(try d.ctr(["content", "ls", "-q"], namespace: "two").stdout.contains(String(digest)))
        }
    }
}

/// `withDaemon` for async bodies.
func withDaemonAsync(extra: String = "", _ body: (Daemon) async throws -> Void) async throws {
    let daemon = try Daemon(extra: extra)
    defer { daemon.remove() }
    try await body(daemon)
}
