import SwiftProtobuf
import Synchronization

/// A ttrpc client on one unix-socket connection. Calls from any number of tasks are multiplexed on it: each gets
/// the next odd stream id, and one reader thread hands every Response (or Data frame) to its caller.
public final class TTRPCClient: Sendable {
    private let core: ClientCore

    /// Connects to `path` (a socket path, or containerd's `unix:///path` address). `onClose` runs once, on the
    /// reader thread, when the connection ends (the peer went away, `close()` was called or the client was released).
    public convenience init(path: String, onClose: (@Sendable () -> Void)? = nil) throws(TTRPCError) {
        try self.init(connectedSocket: UnixSocket.connect(path: path), onClose: onClose)
    }

    /// Takes over an already connected stream socket.
    public init(connectedSocket fd: Int32, onClose: (@Sendable () -> Void)? = nil) throws(TTRPCError) {
        let core = ClientCore(connection: FrameConnection(fd: fd), onClose: onClose)
        do { try spawnThread { core.readLoop() } } catch {
            core.connection.finish()
            throw error
        }
        self.core = core
    }

    deinit { core.connection.shutdown() }

    /// Closes the connection; calls in flight fail with `TTRPCError.closed`.
    public func close() { core.connection.shutdown() }

    /// True once the connection has ended.
    public var isClosed: Bool { core.isClosed }

    /// A unary call with raw payloads. `timeout` is sent to the server (timeout_nano) and bounds the wait here;
    /// when it passes the call fails with DeadlineExceeded. Task cancellation fails it with Canceled.
    public func call(
        service: String, method: String, payload: [UInt8], metadata: TTRPCMetadata = [:], timeout: Duration? = nil
    ) async throws(TTRPCError) -> [UInt8] {
        try await core.call(service: service, method: method, payload: payload, metadata: metadata, timeout: timeout)
    }

    /// A unary call with SwiftProtobuf messages.
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String, request: Request, responseType: Response.Type = Response.self,
        metadata: TTRPCMetadata = [:], timeout: Duration? = nil
    ) async throws(TTRPCError) -> Response {
        let payload: [UInt8]
        do { payload = try request.serializedBytes() } catch {
            throw TTRPCError(.internal, "ttrpc: error marshaling payload: \(error)")
        }
        let bytes = try await call(service: service, method: method, payload: payload, metadata: metadata, timeout: timeout)
        do { return try Response(serializedBytes: bytes) } catch {
            throw TTRPCError(.internal, "ttrpc: error unmarshalling payload: \(error)")
        }
    }

    /// A server-streaming call (ttrpc 1.2): the request is sent flagged "remote closed" and each Data frame the
    /// server sends is one element; the stream ends at the Data frame flagged "remote closed", or throws the
    /// TTRPCError of a Response carrying an error status.
    public func serverStream(
        service: String, method: String, payload: [UInt8], metadata: TTRPCMetadata = [:]
    ) -> AsyncThrowingStream<[UInt8], any Error> {
        core.serverStream(service: service, method: method, payload: payload, metadata: metadata)
    }
}

/// The connection and its calls; the reader thread holds it, the public client only wraps it (so releasing the
/// client closes the connection).
private final class ClientCore: Sendable {
    private enum Waiter {
        case unary(CheckedContinuation<Result<[UInt8], TTRPCError>, Never>)
        case stream(AsyncThrowingStream<[UInt8], any Error>.Continuation)
    }

    private struct State {
        var waiters: [UInt32: Waiter] = [:]
        /// Set once the connection is gone; later calls fail with it.
        var failure: TTRPCError?
    }

    let connection: FrameConnection
    private let state = Mutex(State())
    /// The next stream id. Held while a Request frame is written, so ids reach the server in increasing order.
    private let nextStreamID = Mutex<UInt32>(1)
    private let onClose: (@Sendable () -> Void)?

    init(connection: FrameConnection, onClose: (@Sendable () -> Void)?) {
        self.connection = connection
        self.onClose = onClose
    }

    var isClosed: Bool { state.withLock { $0.failure != nil } }

    /// A unary call with raw payloads. `timeout` is sent to the server (timeout_nano) and bounds the wait here;
    /// when it passes the call fails with DeadlineExceeded. Task cancellation fails it with Canceled.
    func call(
        service: String, method: String, payload: [UInt8], metadata: TTRPCMetadata = [:], timeout: Duration? = nil
    ) async throws(TTRPCError) -> [UInt8] {
        let request = TTRPCRequest(
            service: service, method: method, payload: payload, timeoutNano: timeout.map(Self.nanoseconds) ?? 0,
            metadata: metadata)
        let encoded = request.encoded()
        let slot = CallSlot()
        let result: Result<[UInt8], TTRPCError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<[UInt8], TTRPCError>, Never>) in
                switch send(encoded, flags: 0, waiter: .unary(continuation)) {
                case .failure(let error): continuation.resume(returning: .failure(error))
                case .success(let id):
                    if slot.setStream(id) { fail(id, TTRPCError(.canceled, "context canceled")) }
                    if let timeout {
                        slot.setTimer(Task { [weak self] in
                            guard (try? await Task.sleep(for: timeout)) != nil else { return }
                            self?.fail(id, TTRPCError(.deadlineExceeded, "context deadline exceeded"))
                        })
                    }
                }
            }
        } onCancel: {
            if let id = slot.cancel() { fail(id, TTRPCError(.canceled, "context canceled")) }
        }
        slot.cancelTimer()
        return try result.get()
    }

    /// A server-streaming call (ttrpc 1.2): the request is sent flagged "remote closed" and each Data frame the
    /// server sends is one element; the stream ends at the Data frame flagged "remote closed", or throws the
    /// TTRPCError of a Response carrying an error status.
    func serverStream(
        service: String, method: String, payload: [UInt8], metadata: TTRPCMetadata = [:]
    ) -> AsyncThrowingStream<[UInt8], any Error> {
        let (stream, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let encoded = TTRPCRequest(service: service, method: method, payload: payload, metadata: metadata).encoded()
        switch send(encoded, flags: TTRPCFrame.flagRemoteClosed, waiter: .stream(continuation)) {
        case .failure(let error): continuation.finish(throwing: error)
        case .success(let id):
            continuation.onTermination = { [weak self] termination in
                if case .cancelled = termination { self?.fail(id, TTRPCError(.canceled, "context canceled")) }
            }
        }
        return stream
    }

    /// Allocates a stream id, registers the waiter and writes the Request frame, in that order, under one lock.
    private func send(_ request: [UInt8], flags: UInt8, waiter: Waiter) -> Result<UInt32, TTRPCError> {
        nextStreamID.withLock { next -> Result<UInt32, TTRPCError> in
            let id = next
            let registered: TTRPCError? = state.withLock { state in
                if let failure = state.failure { return failure }
                state.waiters[id] = waiter
                return nil
            }
            if let registered { return .failure(registered) }
            next &+= 2
            do throws(TTRPCError) {
                try connection.send(streamID: id, kind: .request, flags: flags, payload: request)
            } catch {
                _ = state.withLock { $0.waiters.removeValue(forKey: id) }
                return .failure(error)
            }
            return .success(id)
        }
    }

    /// Ends the call on stream `id` with `error`, if it is still waiting.
    private func fail(_ id: UInt32, _ error: TTRPCError) {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        switch waiter {
        case .unary(let continuation): continuation.resume(returning: .failure(error))
        case .stream(let continuation): continuation.finish(throwing: error)
        case nil: break
        }
    }

    /// The reader thread's loop: deliver frames until the connection ends, then fail whatever still waits.
    func readLoop() {
        while true {
            switch connection.receive() {
            case .closed:
                let waiters = state.withLock { state -> [Waiter] in
                    state.failure = state.failure ?? .closed
                    defer { state.waiters = [:] }
                    return Array(state.waiters.values)
                }
                connection.finish()
                for waiter in waiters {
                    switch waiter {
                    case .unary(let continuation): continuation.resume(returning: .failure(.closed))
                    case .stream(let continuation): continuation.finish(throwing: TTRPCError.closed)
                    }
                }
                onClose?()
                return
            case .oversized(let header):
                fail(
                    header.streamID,
                    TTRPCError(
                        .resourceExhausted,
                        "message length \(header.length) exceed maximum message size of \(TTRPCFrame.maxMessageLength)"))
            case .frame(let header, let data):
                deliver(header, data)
            }
        }
    }

    private func deliver(_ header: TTRPCFrame.Header, _ data: [UInt8]) {
        let id = header.streamID
        let isFinal = header.type != TTRPCFrame.Kind.data.rawValue || header.flags & TTRPCFrame.flagRemoteClosed != 0
        let waiter = state.withLock { state -> Waiter? in
            isFinal ? state.waiters.removeValue(forKey: id) : state.waiters[id]
        }
        guard let waiter else { return }  // a call that timed out or was cancelled
        switch (waiter, TTRPCFrame.Kind(rawValue: header.type)) {
        case (.unary(let continuation), .response):
            continuation.resume(returning: Self.decodeResponse(data))
        case (.unary(let continuation), _):
            continuation.resume(returning: .failure(TTRPCError(.internal, "unknown message type received")))
        case (.stream(let continuation), .data):
            if header.flags & TTRPCFrame.flagNoData == 0 { continuation.yield(data) }
            if isFinal { continuation.finish() }
        case (.stream(let continuation), .response):
            switch Self.decodeResponse(data) {
            case .success(let payload):
                if !payload.isEmpty { continuation.yield(payload) }
                continuation.finish()
            case .failure(let error): continuation.finish(throwing: error)
            }
        case (.stream(let continuation), _):
            continuation.finish(throwing: TTRPCError(.internal, "unknown message type received"))
        }
    }

    private static func decodeResponse(_ data: [UInt8]) -> Result<[UInt8], TTRPCError> {
        do throws(TTRPCError) {
            let response = try TTRPCResponse(decoding: data)
            if let status = response.status, status.code != .ok { return .failure(status) }
            return .success(response.payload)
        } catch {
            return .failure(error)
        }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue &+ attoseconds / 1_000_000_000
    }
}

/// Per-call bookkeeping shared with the cancellation handler: the stream id once sent, and the timeout timer.
private final class CallSlot: Sendable {
    private struct Slot {
        var id: UInt32?
        var cancelled = false
        var timer: Task<Void, Never>?
    }
    private let slot = Mutex(Slot())

    /// Records the id; true if the call was cancelled before it was sent.
    func setStream(_ id: UInt32) -> Bool { slot.withLock { $0.id = id; return $0.cancelled } }
    func cancel() -> UInt32? { slot.withLock { $0.cancelled = true; return $0.id } }
    func setTimer(_ timer: Task<Void, Never>) { slot.withLock { $0.timer = timer } }
    func cancelTimer() { slot.withLock { $0.timer?.cancel() } }
}
