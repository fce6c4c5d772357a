import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import SwiftProtobuf

/// `io.containerd.grpc.v1.streaming`: `containerd.services.streaming.v1.Streaming/Stream`. A client opens a
/// stream with `StreamInit{id}`; the stream is registered under that id in the request's namespace and
/// acknowledged with an `Empty`; then Any payloads flow both ways until a transfer closes it (or the client leaves).
public let registration = Registration(
    type: .grpc, id: "streaming", requires: [.plugin(.streaming, "manager")],
    summary: "containerd.services.streaming.v1.Streaming: named bidirectional streams for transfers."
) { ic in
    SingleService(StreamingService(manager: try ic.instance(.streaming, id: "manager", as: (any StreamManager).self)))
}

/// Type URLs as containerd's typeurl writes them: the bare full message name.
enum TypeNames {
    static let streamInit = "containerd.services.streaming.v1.StreamInit"
    static let empty = "google.protobuf.Empty"
}

struct StreamingService: Containerd_Services_Streaming_V1_Streaming.SimpleServiceProtocol {
    let manager: any StreamManager

    func stream(
        request: RPCAsyncSequence<Google_Protobuf_Any, any Error>, response: RPCWriter<Google_Protobuf_Any>,
        context: ServerContext
    ) async throws {
        let namespace = try RequestContext.requireNamespace()
        let session = StreamSession(writer: response)
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The inbound side is pumped by its own task so the session can be read from other requests.
            group.addTask {
                do {
                    for try await message in request {
                        await session.deliver(StreamMessage(typeURL: message.typeURL, value: [UInt8](message.value)))
                    }
                    await session.inboundEnded(nil)
                } catch {
                    // A reset or broken client stream ends the stream (containerd: the RPC context is done).
                    await session.inboundEnded(BerthError.from(error))
                    await session.close()
                }
            }
            defer { group.cancelAll() }
            guard let first = try await session.receive() else { return }
            guard first.typeName == TypeNames.streamInit else {
                throw BerthError.invalidArgument("first stream message must be a StreamInit, not \(first.typeURL)")
            }
            let id: String
            do {
                id = try Containerd_Services_Streaming_V1_StreamInit(serializedBytes: first.value).id
            } catch {
                throw BerthError.invalidArgument("invalid StreamInit: \(error)")
            }
            try await manager.register(namespace: namespace, name: id, stream: session)
            let manager = self.manager
            await session.onClose { await manager.unregister(namespace: namespace, name: id) }
            try await session.send(StreamMessage(typeURL: TypeNames.empty, value: []))
            // The client going away (or the server stopping) cancels the RPC: the stream is then removed.
            await withRPCCancellationHandler {
                await withTaskCancellationHandler {
                    await session.waitClosed()
                } onCancel: {
                    Task { await session.close() }
                }
            } onCancelRPC: {
                Task { await session.close() }
            }
            await session.close()
        }
    }
}

/// The daemon's end of one open stream: messages the client sent wait in an inbox until read; sends go straight
/// to the RPC's response writer while the RPC lasts.
actor StreamSession: ManagedStream {
    private let writer: RPCWriter<Google_Protobuf_Any>
    private var inbox: [StreamMessage] = []
    private var readers: [CheckedContinuation<Result<StreamMessage?, BerthError>, Never>] = []
    private var ended = false
    private var endError: BerthError?
    private var closed = false
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []
    private var closeHandler: (@Sendable () async -> Void)?

    init(writer: RPCWriter<Google_Protobuf_Any>) {
        self.writer = writer
    }

    func onClose(_ handler: @escaping @Sendable () async -> Void) {
        closeHandler = handler
    }

    func deliver(_ message: StreamMessage) {
        guard !closed else { return }
        if readers.isEmpty {
            inbox.append(message)
        } else {
            readers.removeFirst().resume(returning: .success(message))
        }
    }

    func inboundEnded(_ error: BerthError?) {
        guard !ended else { return }
        ended = true
        endError = error
        let waiting = readers
        readers = []
        for reader in waiting { reader.resume(returning: error.map { .failure($0) } ?? .success(nil)) }
    }

    func send(_ message: StreamMessage) async throws(BerthError) {
        guard !closed else { throw .failedPrecondition("stream is closed") }
        var any = Google_Protobuf_Any()
        any.typeURL = message.typeURL
        any.value = .init(message.value)
        do {
            try await writer.write(any)
        } catch {
            throw BerthError.from(error)
        }
    }

    func receive() async throws(BerthError) -> StreamMessage? {
        if !inbox.isEmpty { return inbox.removeFirst() }
        if ended || closed {
            if let endError { throw endError }
            return nil
        }
        let result = await withCheckedContinuation { readers.append($0) }
        return try result.get()
    }

    func waitClosed() async {
        if closed { return }
        await withCheckedContinuation { closeWaiters.append($0) }
    }

    func close() async {
        guard !closed else { return }
        closed = true
        inbox = []
        let waiting = readers
        readers = []
        for reader in waiting { reader.resume(returning: .success(nil)) }
        for waiter in closeWaiters { waiter.resume() }
        closeWaiters = []
        let handler = closeHandler
        closeHandler = nil
        await handler?()
    }
}
