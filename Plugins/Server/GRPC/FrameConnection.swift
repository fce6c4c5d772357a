import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2

/// Serves gRPC on one HTTP/2 connection, behind a NIOHTTP2Handler that has no stream multiplexer: this handler
/// sees every stream's frames, keeps a small record per stream, and starts one task per call. A call costs no
/// child channel, pipeline or async channel, which is where most of a unary call's CPU went with the stock
/// transport. It also does what the multiplexer did: it opens the connection's and each stream's flow-control
/// windows (the connection's as data arrives, a stream's as its service reads the messages).
final class FrameConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    typealias StreamHandler = @Sendable (
        RPCStream<FrameServerTransport.Inbound, FrameServerTransport.Outbound>, ServerContext
    ) async -> Void

    let settings: FrameServerTransport.Settings
    let registry: FrameServerTransport.Registry
    let handler: StreamHandler
    let localPeer: String

    private var context: ChannelHandlerContext?
    private var executor: LoopExecutor?
    private var streams: [HTTP2StreamID: ServerStream] = [:]
    private var windowOpened = false
    /// Connection-level DATA bytes received since the last connection WINDOW_UPDATE.
    private var unacknowledged = 0
    private var needsFlush = false
    private var flushScheduled = false
    private var goingAway = false
    private var lastStreamID = HTTP2StreamID.rootStream

    init(settings: FrameServerTransport.Settings, registry: FrameServerTransport.Registry, localPeer: String,
         handler: @escaping StreamHandler) {
        self.settings = settings
        self.registry = registry
        self.localPeer = localPeer
        self.handler = handler
    }

    var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        executor = LoopExecutor(context.eventLoop)
        registry.add(self, eventLoop: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        dropStreams()
        self.context = nil
        registry.remove(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        dropStreams()
        context.fireChannelInactive()
    }

    private func dropStreams() {
        let open = streams.values
        streams = [:]
        for stream in open { stream.reset() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if !windowOpened {
            // The client's SETTINGS came first: raise the connection window from the protocol's 64 KiB.
            windowOpened = true
            let increment = settings.connectionWindow - 65_535
            if increment > 0 { write(.rootStream, .windowUpdate(windowSizeIncrement: increment), flush: false) }
        }
        switch frame.payload {
        case .headers(let headers):
            if let stream = streams[frame.streamID] {
                if headers.endStream { clientEnded(stream) }
            } else {
                open(frame.streamID, headers)
            }
        case .data(let payload):
            received(frame.streamID, payload)
        case .rstStream:
            streams.removeValue(forKey: frame.streamID)?.reset()
            closeIfDone()
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent {
            if let stream = streams.removeValue(forKey: closed.streamID), closed.reason != nil || !stream.ended {
                stream.reset()
            }
            closeIfDone()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIOHTTP2 reports stream-level protocol errors here and answers them itself; a broken socket ends all.
        if error is IOError || error is ChannelError { context.close(promise: nil) }
    }

    // MARK: Requests

    private func open(_ id: HTTP2StreamID, _ headers: HTTP2Frame.FramePayload.Headers) {
        guard !goingAway else {
            write(id, .rstStream(.refusedStream), flush: true)
            return
        }
        if id > lastStreamID { lastStreamID = id }
        let stream = ServerStream(
            id: id, connection: self, eventLoop: context?.eventLoop ?? registry.fallbackLoop,
            creditThreshold: settings.streamWindow / 2)
        streams[id] = stream
        if headers.endStream { stream.clientDone = true }
        let request = headers.headers
        guard let path = request.first(name: ":path"), path.hasPrefix("/"),
            let slash = path.dropFirst().firstIndex(of: "/")
        else {
            stream.fail(Status(code: .unimplemented, message: "malformed :path"))
            return
        }
        guard request.first(name: "content-type")?.hasPrefix("application/grpc") == true else {
            stream.fail(Status(code: .internalError, message: "content-type must be application/grpc"))
            return
        }
        if let encoding = request.first(name: "grpc-encoding"), encoding != "identity" {
            stream.fail(Status(code: .unimplemented, message: "compression \(encoding) is not supported"))
            return
        }
        let descriptor = MethodDescriptor(
            fullyQualifiedService: String(path[path.index(after: path.startIndex)..<slash]),
            method: String(path[path.index(after: slash)...]))
        stream.inbound.push(.metadata(GRPCHeaders.metadata(request)))
        if headers.endStream { stream.inbound.finish() }

        let rpc = RPCStream(
            descriptor: descriptor, inbound: RPCAsyncSequence(wrapping: InboundParts(buffer: stream.inbound)),
            outbound: RPCWriter.Closable(wrapping: ResponseWriter(stream: stream)))
        let handler = self.handler
        let registry = self.registry
        let localPeer = self.localPeer
        registry.callStarted()
        // The call's task prefers this connection's loop: after each hop to an actor or a database queue it
        // comes back here, so its response frames are written without another hop.
        stream.task = Task(executorPreference: executor) {
            await withServerContextRPCCancellationHandle { handle in
                stream.attach(handle)
                let context = ServerContext(
                    descriptor: descriptor, remotePeer: "unix:", localPeer: localPeer, cancellation: handle)
                await handler(rpc, context)
            }
            registry.callFinished()
        }
    }

    private func clientEnded(_ stream: ServerStream) {
        stream.clientDone = true
        if stream.framing?.readableBytes ?? 0 > 0 {
            stream.fail(Status(code: .internalError, message: "the request ended inside a message"))
        } else {
            stream.inbound.finish()
        }
    }

    private func received(_ id: HTTP2StreamID, _ payload: HTTP2Frame.FramePayload.Data) {
        guard case .byteBuffer(var bytes) = payload.data else { return }
        let padding = payload.paddingBytes.map { $0 + 1 } ?? 0
        unacknowledged += bytes.readableBytes + padding
        if unacknowledged >= settings.connectionWindow / 2 {
            write(.rootStream, .windowUpdate(windowSizeIncrement: unacknowledged), flush: false)
            unacknowledged = 0
        }
        guard let stream = streams[id], !stream.ended else { return }
        if padding > 0 { credit(stream: id, bytes: padding) }
        if var pending = stream.framing {
            // Released first, so the append below owns the buffer instead of copying it for every frame.
            stream.framing = nil
            pending.writeBuffer(&bytes)
            bytes = pending
        }
        while bytes.readableBytes >= 5 {
            guard let flag: UInt8 = bytes.getInteger(at: bytes.readerIndex),
                let length: UInt32 = bytes.getInteger(at: bytes.readerIndex + 1)
            else { break }
            guard flag == 0 else {
                stream.fail(Status(code: .unimplemented, message: "compressed messages are not supported"))
                return
            }
            guard Int(length) <= settings.maxRequestPayloadSize else {
                stream.fail(Status(
                    code: .resourceExhausted,
                    message: "message of \(length) bytes exceeds the limit of \(settings.maxRequestPayloadSize)"))
                return
            }
            guard bytes.readableBytes >= 5 + Int(length) else { break }
            bytes.moveReaderIndex(forwardBy: 5)
            guard let message = bytes.readSlice(length: Int(length)) else { break }
            stream.inbound.push(.message(FrameBytes(message)))
        }
        if bytes.readableBytes > 0 { stream.framing = bytes }
        if payload.endStream { clientEnded(stream) }
    }

    /// Reopens a stream's window by the message bytes its service has read.
    func credit(stream id: HTTP2StreamID, bytes: Int) {
        guard let stream = streams[id], !stream.clientDone else { return }
        write(id, .windowUpdate(windowSizeIncrement: bytes), flush: true)
    }

    // MARK: Writes

    func write(_ id: HTTP2StreamID, _ payload: HTTP2Frame.FramePayload, promise: EventLoopPromise<Void>? = nil,
               flush: Bool) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: payload)), promise: promise)
        if flush {
            needsFlush = false
            context.flush()
        } else {
            needsFlush = true
        }
    }

    /// Flushes at the end of this event-loop turn: a unary call's message and status then leave in one write.
    func flushSoon() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.execute { [self] in
            flushScheduled = false
            if needsFlush, let context = self.context {
                needsFlush = false
                context.flush()
            }
        }
    }

    // MARK: Shutdown

    /// GOAWAY: no new calls on this connection; it closes once its calls are done.
    func goAway() {
        guard !goingAway else { return }
        goingAway = true
        write(.rootStream, .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil), flush: true)
        closeIfDone()
    }

    func closeNow() { context?.close(promise: nil) }

    private func closeIfDone() {
        if goingAway, streams.isEmpty { context?.close(promise: nil) }
    }
}

/// An event loop as a TaskExecutor, for tasks that should run where their connection's frames are handled.
final class LoopExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
