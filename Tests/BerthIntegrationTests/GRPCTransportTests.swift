import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import GRPCProtobuf
import SwiftProtobuf
import Testing

/// berthd's own HTTP/2 transport (FrameServerTransport) against grpc-swift's client and Debian's ctr: many calls
/// on one connection, flow control across many windows' worth of request bytes, the size limit, unknown
/// methods, cancelled streams, and a shutdown with a subscriber still attached.
@Suite(.serialized, .timeLimit(.minutes(2))) struct GRPCTransportTests {
    typealias ContentAPI = Containerd_Services_Content_V1_Content
    typealias VersionAPI = Containerd_Services_Version_V1_Version
    typealias EventsAPI = Containerd_Services_Events_V1_Events

    @Test func concurrentCallsOnOneConnectionAllAnswer() async throws {
        try await withDaemonAsync { d in
            let versions = try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                try await withThrowingTaskGroup(of: String.self) { group in
                    for _ in 0..<300 {
                        group.addTask {
                            try await VersionAPI.Client(wrapping: c.client).version(Google_Protobuf_Empty()).version
                        }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }
                }
            }
            #expect(versions.count == 300)
            #expect(Set(versions).count == 1 && versions.first?.isEmpty == false)
        }
    }

    /// 48 MiB in 4 MiB messages on one stream: about three stream windows, so it completes only if the
    /// transport reopens the windows as the content service reads. ctr reads the blob back.
    @Test func largeWriteCrossesFlowControlWindows() async throws {
        try await withDaemonAsync { d in
            let chunk = 4 << 20, chunks = 12
            var data = [UInt8](repeating: 0, count: chunk * chunks)
            for i in stride(from: 0, to: data.count, by: 4096) { data[i] = UInt8(truncatingIfNeeded: i / 4096) }
            let file = d.directory + "/blob"
            #expect(FileManager.default.createFile(atPath: file, contents: Data(data)))
            let sum = try execute("/usr/bin/sha256sum", [file]).stdout.split(separator: " ").first.map(String.init) ?? ""
            let digest = "sha256:" + sum
            let payload = data
            try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                try await ContentAPI.Client(wrapping: c.client).write(metadata: c.metadata) { writer in
                    for i in 0..<chunks {
                        var message = Containerd_Services_Content_V1_WriteContentRequest()
                        message.ref = "transport-large"
                        message.action = i == chunks - 1 ? .commit : .write
                        message.offset = Int64(i * chunk)
                        message.data = Data(payload[(i * chunk)..<((i + 1) * chunk)])
                        if i == chunks - 1 {
                            message.total = Int64(payload.count)
                            message.expected = digest
                        }
                        try await writer.write(message)
                    }
                } onResponse: { response in
                    for try await _ in response.messages {}
                }
            }
            let read = try execute(
                "/bin/sh", ["-c", "\(ctrPath) --address \(d.socket) content get \(digest) | sha256sum"], timeout: 60)
            #expect(read.stdout.hasPrefix(sum), "\(read.stdout) \(read.stderr)")
        }
    }

    /// containerd's default max_recv_message_size is 16 MiB.
    @Test func messageOverTheLimitIsResourceExhausted() async throws {
        try await withDaemonAsync { d in
            let error = await #expect(throws: RPCError.self) {
                try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                    try await ServiceAPITests.write(c, ref: "too-big", data: [UInt8](repeating: 7, count: 17 << 20), commit: false)
                }
            }
            #expect(error?.code == .resourceExhausted, "\(String(describing: error))")
            // The connection and daemon still serve.
            let version = try d.ctr(["version"])
            #expect(version.succeeded, "\(version.stderr)")
        }
    }

    @Test func unknownMethodIsUnimplemented() async throws {
        try await withDaemonAsync { d in
            let error = await #expect(throws: RPCError.self) {
                try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                    let method = MethodDescriptor(fullyQualifiedService: "containerd.services.nothing.v1.Nothing", method: "Call")
                    let _: Google_Protobuf_Empty = try await c.client.unary(
                        request: ClientRequest(message: Google_Protobuf_Empty()), descriptor: method,
                        serializer: ProtobufSerializer(), deserializer: ProtobufDeserializer(),
                        options: .defaults) { try $0.message }
                }
            }
            #expect(error?.code == .unimplemented, "\(String(describing: error))")
        }
    }

    /// A subscriber that goes away ends its call; one still attached does not keep the daemon from stopping.
    @Test func cancelledAndOpenSubscriptions() async throws {
        let d = try Daemon()
        defer { d.remove() }
        try await BerthConnection.with(address: d.socket, namespace: "default") { c in
            let subscriber = Task {
                try await EventsAPI.Client(wrapping: c.client).subscribe(Containerd_Services_Events_V1_SubscribeRequest()) {
                    response in for try await _ in response.messages {}
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            subscriber.cancel()
            _ = await subscriber.result
            let version = try await VersionAPI.Client(wrapping: c.client).version(Google_Protobuf_Empty())
            #expect(!version.version.isEmpty)
        }
        let events = try Capture(ctrPath, ["--address", d.socket, "events"])
        defer { events.stop() }
        let subscribed = try await TaskTestSupport.eventually(10) {
            _ = try d.ctr(["namespaces", "create", "probe-\(UUID().uuidString.prefix(6))"])
            return events.text.contains("/namespaces/create")
        }
        #expect(subscribed, "\(events.text)")
        let stopped = d.stop()
        #expect(stopped.status == 0, "\(d.logText.suffix(2000))")
        #expect(stopped.seconds < 8, "took \(stopped.seconds) s")
    }
}
