import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import SwiftProtobuf

/// The client's end of one named stream of the Streaming service: messages to send go into `outbound` (finishing
/// it half-closes the stream), the daemon's messages arrive on `inbound` (after the registration ack).
struct ClientStream: Sendable {
    let id: String
    let outbound: AsyncStream<Google_Protobuf_Any>.Continuation
    let inbound: AsyncThrowingStream<Google_Protobuf_Any, any Error>

    func send<M: SwiftProtobuf.Message>(_ message: M) {
        outbound.yield(TransferMessages.any(message))
    }
}

/// Any encoding as containerd's typeurl: the bare full message name as type URL.
enum TransferMessages {
    static func any<M: SwiftProtobuf.Message>(_ message: M) -> Google_Protobuf_Any {
        var any = Google_Protobuf_Any()
        any.typeURL = M.protoMessageName
        any.value = (try? message.serializedData()) ?? Data()
        return any
    }

    static func decode<M: SwiftProtobuf.Message>(_ any: Google_Protobuf_Any, as: M.Type) -> M? {
        let name = any.typeURL.split(separator: "/").last.map(String.init) ?? any.typeURL
        guard name == M.protoMessageName else { return nil }
        return try? M(serializedBytes: any.value)
    }

    /// containerd's stream ids: `<prefix>-<nanoseconds>-<4 base64url chars>`.
    static func streamID(_ prefix: String) -> String {
        let nanos = Int(Date().timeIntervalSince1970 * 1e9) % 1_000_000_000
        let random = (0..<3).map { _ in UInt8.random(in: 0...255) }
        let encoded = Data(random).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
        return "\(prefix)-\(nanos)-\(encoded)"
    }
}

/// One transfer from the client side: `prepare` opens the streams (each an RPC in its own task) and starts their
/// handlers, then the Transfer call names them. After a successful transfer the daemon has closed every stream it
/// used, so their tasks end by themselves; after a failure they are cancelled.
enum TransferCall {
    static func run(
        _ connection: BerthConnection,
        prepare: @Sendable (StreamOpener) async throws -> Containerd_Services_Transfer_V1_TransferRequest
    ) async throws {
        let opener = StreamOpener(connection: connection)
        do {
            let request = try await prepare(opener)
            _ = try await Containerd_Services_Transfer_V1_Transfer.Client(wrapping: connection.client)
                .transfer(request, metadata: connection.metadata)
        } catch {
            await opener.cancelAll()
            throw error
        }
        try await opener.waitAll()
    }
}

/// Opens streams and keeps their RPC tasks, so a transfer can wait for them or cancel them.
actor StreamOpener {
    let connection: BerthConnection
    private var tasks: [Task<Void, any Error>] = []
    private var outbounds: [AsyncStream<Google_Protobuf_Any>.Continuation] = []
    private var helpers: [Task<Void, any Error>] = []

    init(connection: BerthConnection) {
        self.connection = connection
    }

    /// Opens stream `id` and returns once the daemon has registered it.
    func open(_ id: String) async throws -> ClientStream {
        let (outStream, outbound) = AsyncStream<Google_Protobuf_Any>.makeStream()
        let (inbound, inContinuation) = AsyncThrowingStream<Google_Protobuf_Any, any Error>.makeStream()
        let (ready, readyContinuation) = AsyncThrowingStream<Void, any Error>.makeStream()
        var initMessage = Containerd_Services_Streaming_V1_StreamInit()
        initMessage.id = id
        let first = TransferMessages.any(initMessage)
        let connection = self.connection
        let task = Task<Void, any Error> {
            do {
                let request = StreamingClientRequest<Google_Protobuf_Any>(metadata: connection.metadata) { writer in
                    try await writer.write(first)
                    for await message in outStream { try await writer.write(message) }
                }
                try await Containerd_Services_Streaming_V1_Streaming.Client(wrapping: connection.client)
                    .stream(request: request) { response in
                        // The call returns only once the request side ends too: end it with the response.
                        defer { outbound.finish() }
                        var acknowledged = false
                        do {
                            for try await message in response.messages {
                                if !acknowledged {
                                    acknowledged = true
                                    readyContinuation.yield()
                                    readyContinuation.finish()
                                    continue
                                }
                                inContinuation.yield(message)
                            }
                        } catch {
                            readyContinuation.finish(throwing: error)
                            inContinuation.finish(throwing: error)
                            throw error
                        }
                    }
                readyContinuation.finish(throwing: BerthError.unavailable("stream \(id) ended before it was registered"))
                inContinuation.finish()
            } catch {
                readyContinuation.finish(throwing: error)
                inContinuation.finish(throwing: error)
                throw error
            }
        }
        tasks.append(task)
        outbounds.append(outbound)
        for try await _ in ready { break }
        return ClientStream(id: id, outbound: outbound, inbound: inbound)
    }

    /// Runs a stream's handler (progress display, credential answers, archive bytes) until it ends.
    func spawn(_ work: @escaping @Sendable () async throws -> Void) {
        helpers.append(Task { try await work() })
    }

    /// Half-closes every stream, waits for the daemon to end them and for the handlers to finish.
    func waitAll() async throws {
        for outbound in outbounds { outbound.finish() }
        for task in tasks { try await task.value }
        for task in helpers { try await task.value }
    }

    func cancelAll() async {
        for outbound in outbounds { outbound.finish() }
        for task in tasks + helpers { task.cancel() }
        for task in tasks + helpers { _ = try? await task.value }
    }
}
