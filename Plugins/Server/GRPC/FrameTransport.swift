import GRPCCore
import NIOCore
import NIOHTTP2
import NIOPosix
import Synchronization

/// berthd's gRPC server transport: HTTP/2 on the API's already-listening unix socket, one
/// FrameConnectionHandler per connection. GRPCCore still routes, intercepts and runs every call; only the
/// per-call channel machinery of the stock NIO transport is gone (a Version call took 660 µs of CPU with it).
final class FrameServerTransport: ServerTransport {
    typealias Bytes = FrameBytes

    struct Settings: Sendable {
        var maxRequestPayloadSize: Int
        /// Each stream's flow-control window (SETTINGS_INITIAL_WINDOW_SIZE); at least one largest message.
        var streamWindow: Int
        var connectionWindow: Int
        var maxFrameSize: Int

        init(maxRequestPayloadSize: Int, window: Int = 16 << 20, maxFrameSize: Int = 1 << 20) {
            self.maxRequestPayloadSize = maxRequestPayloadSize
            streamWindow = min(Int(Int32.max), max(window, maxRequestPayloadSize + (1 << 20)))
            connectionWindow = streamWindow
            self.maxFrameSize = maxFrameSize
        }
    }

    /// The open connections and the calls in flight, for graceful shutdown.
    final class Registry: Sendable {
        private struct State {
            var connections: [ObjectIdentifier: (handler: FrameConnectionHandler, loop: any EventLoop)] = [:]
            var calls = 0
            var shuttingDown = false
            var idle: [CheckedContinuation<Void, Never>] = []
        }

        private let state = Mutex(State())
        let fallbackLoop: any EventLoop

        init(fallbackLoop: any EventLoop) { self.fallbackLoop = fallbackLoop }

        func add(_ handler: FrameConnectionHandler, eventLoop: any EventLoop) {
            let late = state.withLock { s in
                s.connections[ObjectIdentifier(handler)] = (handler, eventLoop)
                return s.shuttingDown
            }
            if late { eventLoop.execute { handler.goAway() } }
        }

        func remove(_ handler: FrameConnectionHandler) {
            resumeIfIdle { $0.connections.removeValue(forKey: ObjectIdentifier(handler)) }
        }

        func callStarted() { state.withLock { $0.calls += 1 } }

        func callFinished() { resumeIfIdle { $0.calls -= 1 } }

        private func resumeIfIdle(_ change: (inout State) -> Void) {
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                change(&s)
                guard s.calls == 0, s.connections.isEmpty else { return [] }
                defer { s.idle = [] }
                return s.idle
            }
            for waiter in waiters { waiter.resume() }
        }

        /// Sends GOAWAY on every connection; each closes once its calls are done.
        func beginShutdown() {
            let all = state.withLock { s in
                s.shuttingDown = true
                return Array(s.connections.values)
            }
            for (handler, loop) in all { loop.execute { handler.goAway() } }
        }

        func closeAll() {
            for (handler, loop) in state.withLock({ Array($0.connections.values) }) {
                loop.execute { handler.closeNow() }
            }
        }

        /// Returns once no connection and no call remains.
        func waitIdle() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.calls == 0, s.connections.isEmpty { return true }
                    s.idle.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        }
    }

    let descriptor: Int32
    let path: String
    let settings: Settings
    let group: MultiThreadedEventLoopGroup
    let registry: Registry
    private let listener = Mutex<(channel: (any Channel)?, shutdown: CheckedContinuation<Void, Never>?, stopped: Bool)>(
        (nil, nil, false))
    private let started = Mutex<(done: Result<Void, any Error>?, waiters: [CheckedContinuation<Void, any Error>])>(
        (nil, []))

    /// `descriptor` is a bound, listening unix socket (UnixListener); the transport closes it when it stops.
    init(descriptor: Int32, path: String, settings: Settings, group: MultiThreadedEventLoopGroup = .singleton) {
        self.descriptor = descriptor
        self.path = path
        self.settings = settings
        self.group = group
        self.registry = Registry(fallbackLoop: group.next())
    }

    func listen(streamHandler: @escaping FrameConnectionHandler.StreamHandler) async throws {
        let settings = self.settings
        let registry = self.registry
        let localPeer = "unix:\(path)"
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .childChannelInitializer { child in
                    child.eventLoop.makeCompletedFuture {
                        let sync = child.pipeline.syncOperations
                        try sync.addHandler(NIOHTTP2Handler(
                            mode: .server, connectionConfiguration: Self.connectionConfiguration(settings)))
                        try sync.addHandler(FrameConnectionHandler(
                            settings: settings, registry: registry, localPeer: localPeer, handler: streamHandler))
                    }
                }
                .withBoundSocket(descriptor).get()
        } catch {
            finishStart(.failure(error))
            throw error
        }
        let stopEarly = listener.withLock { state -> Bool in
            state.channel = channel
            return state.stopped
        }
        finishStart(.success(()))
        if !stopEarly {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let stopped = listener.withLock { state -> Bool in
                        if !state.stopped { state.shutdown = continuation }
                        return state.stopped
                    }
                    if stopped { continuation.resume() }
                }
            } onCancel: {
                self.beginGracefulShutdown()
                registry.closeAll()
            }
        }
        try? await channel.close()
        if Task.isCancelled { registry.closeAll() }
        await withTaskCancellationHandler {
            await registry.waitIdle()
        } onCancel: {
            registry.closeAll()
        }
    }

    /// Local peers: no limit on PINGs (grpc-go sends one per chunk of a large write to estimate bandwidth), on
    /// resets, or on stream errors, which NIOHTTP2 would otherwise count as a flood after 200 in 30 s.
    static func connectionConfiguration(_ settings: Settings) -> NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        configuration.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 4096),
            HTTP2Setting(parameter: .initialWindowSize, value: settings.streamWindow),
            HTTP2Setting(parameter: .maxFrameSize, value: settings.maxFrameSize),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 16),
        ]
        configuration.controlFrameRateLimit.maximumCount = Int.max / 2
        configuration.maximumConnectionGlitches = Int.max / 2
        return configuration
    }

    /// Returns once the socket is being served, or throws why it could not be.
    func waitStarted() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let done = started.withLock { state -> Result<Void, any Error>? in
                if state.done == nil { state.waiters.append(continuation) }
                return state.done
            }
            if let done { continuation.resume(with: done) }
        }
    }

    private func finishStart(_ result: Result<Void, any Error>) {
        let waiters = started.withLock { state in
            state.done = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    func beginGracefulShutdown() {
        let (channel, shutdown) = listener.withLock { state in
            state.stopped = true
            defer { state.shutdown = nil }
            return (state.channel, state.shutdown)
        }
        channel?.close(promise: nil)
        registry.beginShutdown()
        shutdown?.resume()
    }
}
