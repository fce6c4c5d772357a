import GRPCCore
import NIOCore
import NIOHTTP2
import Synchronization

/// One stream's request parts: the connection handler pushes them on its event loop, the RPC's task reads them.
/// Message bytes read are handed back through `onConsumed` in large steps, to reopen the stream's flow-control
/// window only as the service takes the data in.
final class InboundBuffer: Sendable {
    typealias Part = RPCRequestPart<FrameBytes>

    private struct State {
        var parts = CircularBuffer<Part>()
        var finished = false
        var error: (any Error)?
        var waiter: CheckedContinuation<Part?, any Error>?
        var consumed = 0
    }

    private let state = Mutex(State())
    private let creditThreshold: Int
    private let onConsumed: @Sendable (Int) -> Void

    init(creditThreshold: Int, onConsumed: @escaping @Sendable (Int) -> Void) {
        self.creditThreshold = creditThreshold
        self.onConsumed = onConsumed
    }

    /// Counts a message handed to the reader; returns the bytes to credit once past the threshold.
    private func account(_ part: Part, _ state: inout State) -> Int {
        guard case .message(let bytes) = part else { return 0 }
        state.consumed += bytes.count + 5
        guard state.consumed >= creditThreshold else { return 0 }
        defer { state.consumed = 0 }
        return state.consumed
    }

    func push(_ part: Part) {
        let (waiter, credit) = state.withLock { s -> (CheckedContinuation<Part?, any Error>?, Int) in
            guard !s.finished else { return (nil, 0) }
            guard let waiter = s.waiter else {
                s.parts.append(part)
                return (nil, 0)
            }
            s.waiter = nil
            return (waiter, account(part, &s))
        }
        if credit > 0 { onConsumed(credit) }
        waiter?.resume(returning: part)
    }

    /// Ends the sequence after the parts already queued; with `error`, at once.
    func finish(throwing error: (any Error)? = nil) {
        let waiter = state.withLock { s -> CheckedContinuation<Part?, any Error>? in
            guard !s.finished else { return nil }
            s.finished = true
            s.error = error
            if error != nil { s.parts.removeAll() }
            defer { s.waiter = nil }
            return s.waiter
        }
        if let error { waiter?.resume(throwing: error) } else { waiter?.resume(returning: nil) }
    }

    private enum Step {
        case part(Part, credit: Int)
        case end((any Error)?)
        case wait
    }

    private func step(_ s: inout State) -> Step {
        if let part = s.parts.popFirst() { return .part(part, credit: account(part, &s)) }
        if s.finished { return .end(s.error) }
        return .wait
    }

    func next() async throws -> Part? {
        switch state.withLock({ step(&$0) }) {
        case .part(let part, let credit):
            if credit > 0 { onConsumed(credit) }
            return part
        case .end(let error):
            if let error { throw error }
            return nil
        case .wait:
            break
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Part?, any Error>) in
                let now = state.withLock { s -> Step in
                    let step = step(&s)
                    if case .wait = step {
                        if Task.isCancelled { return .end(CancellationError()) }
                        s.waiter = continuation
                    }
                    return step
                }
                switch now {
                case .part(let part, let credit):
                    if credit > 0 { onConsumed(credit) }
                    continuation.resume(returning: part)
                case .end(let error):
                    if let error { continuation.resume(throwing: error) } else { continuation.resume(returning: nil) }
                case .wait:
                    break
                }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Part?, any Error>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}

/// The AsyncSequence view of an InboundBuffer that GRPCCore reads requests from.
struct InboundParts: AsyncSequence, Sendable {
    typealias Element = RPCRequestPart<FrameBytes>
    typealias Failure = any Error
    let buffer: InboundBuffer

    struct AsyncIterator: AsyncIteratorProtocol {
        let buffer: InboundBuffer
        mutating func next() async throws -> Element? { try await buffer.next() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer) }
}

/// The response half of one stream. Its mutable state belongs to the connection's event loop: the RPC's task
/// calls in through `write` and `writerFinished`, which run there (inline when the task already runs on that
/// loop, the usual case: the task has this loop as its executor preference).
final class ServerStream: @unchecked Sendable {
    /// Bytes of response messages written but not yet on the socket above which a writer waits.
    static let highWater = 1 << 20

    let id: HTTP2StreamID
    let inbound: InboundBuffer
    let eventLoop: any EventLoop
    /// The connection's handler; it drops its streams when the connection closes, which ends this cycle.
    let connection: FrameConnectionHandler

    // Event-loop state.
    var headersSent = false
    /// The final status went out, or the stream was reset: nothing more is written.
    var ended = false
    /// The client half-closed (END_STREAM).
    var clientDone = false
    var pendingBytes = 0
    /// Bytes of a request message split across DATA frames.
    var framing: ByteBuffer?
    var task: Task<Void, Never>?

    private let cancellation = Mutex<(handle: ServerContext.RPCCancellationHandle?, cancelled: Bool)>((nil, false))

    init(id: HTTP2StreamID, connection: FrameConnectionHandler, eventLoop: any EventLoop, creditThreshold: Int) {
        self.id = id
        self.connection = connection
        self.eventLoop = eventLoop
        self.inbound = InboundBuffer(creditThreshold: creditThreshold) { [eventLoop, id, connection] bytes in
            eventLoop.execute { connection.credit(stream: id, bytes: bytes) }
        }
    }

    /// Records the RPC's cancellation handle; cancels it at once if the client already went away.
    func attach(_ handle: ServerContext.RPCCancellationHandle) {
        let cancelled = cancellation.withLock { state in
            state.handle = handle
            return state.cancelled
        }
        if cancelled { handle.cancel() }
    }

    func write(_ part: RPCResponsePart<FrameBytes>) async throws {
        let drained: EventLoopFuture<Void>?
        if eventLoop.inEventLoop {
            drained = try send(part)
        } else {
            drained = try await eventLoop.submit { try self.send(part) }.get()
        }
        if let drained { try await drained.get() }
    }

    /// Writes one response part; returns a future to wait on when too many message bytes are in flight.
    func send(_ part: RPCResponsePart<FrameBytes>) throws -> EventLoopFuture<Void>? {
        guard !ended else { throw RPCError(code: .cancelled, message: "the call's stream is closed") }
        switch part {
        case .metadata(let metadata):
            guard !headersSent else { return nil }
            headersSent = true
            connection.write(id, .headers(.init(headers: GRPCHeaders.response(metadata))), flush: false)
            return nil
        case .message(let bytes):
            if !headersSent {
                headersSent = true
                connection.write(id, .headers(.init(headers: GRPCHeaders.response([:]))), flush: false)
            }
            var frame = connection.allocator.buffer(capacity: 5 + bytes.count)
            frame.writeInteger(UInt8(0))
            frame.writeInteger(UInt32(bytes.count))
            var payload = bytes.buffer
            frame.writeBuffer(&payload)
            let size = frame.readableBytes
            pendingBytes += size
            let promise = eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenComplete { _ in self.pendingBytes -= size }
            connection.write(id, .data(.init(data: .byteBuffer(frame))), promise: promise, flush: false)
            connection.flushSoon()
            return pendingBytes > Self.highWater ? promise.futureResult : nil
        case .status(let status, let trailers):
            ended = true
            let block = GRPCHeaders.trailers(status, trailers, trailersOnly: !headersSent)
            connection.write(id, .headers(.init(headers: block, endStream: true)), flush: clientDone)
            // The client may still be sending: tell it to stop (gRPC's RST_STREAM NO_ERROR after trailers).
            if !clientDone { connection.write(id, .rstStream(.noError), flush: true) }
            inbound.finish()
            return nil
        }
    }

    /// The RPC's writer closed: a stream that got no status is reset.
    func writerFinished() {
        let finish: @Sendable () -> Void = { [self] in
            guard !ended else { return }
            ended = true
            connection.write(id, .rstStream(.internalError), flush: true)
            inbound.finish(throwing: RPCError(code: .internalError, message: "the call ended without a status"))
        }
        if eventLoop.inEventLoop { finish() } else { eventLoop.execute(finish) }
    }

    /// Ends the call with `status` before the service finished it (a bad request message).
    func fail(_ status: Status) {
        guard !ended else { return }
        inbound.finish(throwing: RPCError(code: .init(status.code) ?? .internalError, message: status.message))
        _ = try? send(.status(status, [:]))
        cancel()
    }

    /// The client reset the stream or the connection closed: the call is cancelled.
    func reset() {
        ended = true
        inbound.finish(throwing: RPCError(code: .cancelled, message: "the client cancelled the call"))
        cancel()
    }

    private func cancel() {
        let handle = cancellation.withLock { state in
            state.cancelled = true
            return state.handle
        }
        handle?.cancel()
        task?.cancel()
    }
}

/// GRPCCore's view of a ServerStream's response half.
struct ResponseWriter: ClosableRPCWriterProtocol {
    typealias Element = RPCResponsePart<FrameBytes>
    let stream: ServerStream

    func write(_ element: Element) async throws { try await stream.write(element) }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for element in elements { try await stream.write(element) }
    }

    func finish() async { stream.writerFinished() }

    func finish(throwing error: any Error) async { stream.writerFinished() }
}
