#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SwiftProtobuf
import Synchronization

/// What a handler knows about its request.
public struct TTRPCContext: Sendable {
    public var service: String
    public var method: String
    public var metadata: TTRPCMetadata
    /// From the request's timeout_nano; the handler is cancelled when it passes.
    public var deadline: ContinuousClock.Instant?

    /// The containerd namespace the caller sent (`containerd-namespace-ttrpc`).
    public var namespace: String? { metadata[ttrpcNamespaceHeader] }
}

/// A unary method: request payload in, response payload out; a thrown error becomes the Response status.
public typealias TTRPCHandler = @Sendable (_ payload: [UInt8], _ context: TTRPCContext) async throws -> [UInt8]

/// A server-streaming method: sends any number of messages through `stream`, then returns (or throws).
public typealias TTRPCStreamHandler =
    @Sendable (_ payload: [UInt8], _ context: TTRPCContext, _ stream: TTRPCStreamWriter) async throws -> Void

/// Sends the Data frames of one server stream.
public struct TTRPCStreamWriter: Sendable {
    let connection: FrameConnection
    let streamID: UInt32

    public func send(_ payload: [UInt8]) throws(TTRPCError) {
        try connection.send(streamID: streamID, kind: .data, flags: 0, payload: payload)
    }

    public func send(_ message: some SwiftProtobuf.Message) throws(TTRPCError) {
        let payload: [UInt8]
        do { payload = try message.serializedBytes() } catch {
            throw TTRPCError(.internal, "ttrpc: error marshaling payload: \(error)")
        }
        try send(payload)
    }
}

/// A ttrpc server: services registered by name, each a table of methods; any number of listening sockets and
/// connections; each request runs in its own task, so one connection serves requests concurrently.
public final class TTRPCServer: Sendable {
    enum Method: Sendable {
        case unary(TTRPCHandler)
        case stream(TTRPCStreamHandler)
    }

    private struct State {
        var services: [String: [String: Method]] = [:]
        var listeners: [Listener] = []
        var connections: [ObjectIdentifier: ServerConnection] = [:]
        var stopped = false
    }

    private let state = Mutex(State())
    let errorMapper: @Sendable (any Error) -> TTRPCError

    /// `errorMapper` turns what a handler throws into the status sent back (default `TTRPCError.from`).
    public init(errorMapper: @escaping @Sendable (any Error) -> TTRPCError = TTRPCError.from) {
        self.errorMapper = errorMapper
    }

    /// Registers a unary method (replacing one of the same name).
    public func register(service: String, method: String, _ handler: @escaping TTRPCHandler) {
        state.withLock { $0.services[service, default: [:]][method] = .unary(handler) }
    }

    /// Registers a unary method over SwiftProtobuf messages.
    public func register<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String, _ handler: @escaping @Sendable (Request, TTRPCContext) async throws -> Response
    ) {
        register(service: service, method: method) { payload, context in
            let request: Request
            do { request = try Request(serializedBytes: payload) } catch {
                throw TTRPCError(.internal, "ttrpc: error unmarshalling payload: \(error)")
            }
            let response = try await handler(request, context)
            do { return try response.serializedBytes() } catch {
                throw TTRPCError(.internal, "ttrpc: error marshaling payload: \(error)")
            }
        }
    }

    /// Registers a server-streaming method.
    public func registerStream(service: String, method: String, _ handler: @escaping TTRPCStreamHandler) {
        state.withLock { $0.services[service, default: [:]][method] = .stream(handler) }
    }

    /// Listens on the unix socket `path` (a stale socket file is replaced; the file is removed on shutdown).
    public func listen(path: String, mode: mode_t = 0o600) throws(TTRPCError) {
        let fd = try UnixSocket.listen(path: path, mode: mode)
        try serve(listener: Listener(fd: fd, path: path))
    }

    /// Serves an already listening socket, e.g. the one a shim inherits from its `start` command.
    public func serve(listeningSocket fd: Int32) throws(TTRPCError) {
        try serve(listener: Listener(fd: fd, path: nil))
    }

    private func serve(listener: Listener) throws(TTRPCError) {
        let stopped = state.withLock { state in
            if !state.stopped { state.listeners.append(listener) }
            return state.stopped
        }
        if stopped {
            listener.stop()
            listener.close()
            throw TTRPCError(.unavailable, "ttrpc: server closed")
        }
        do { try spawnThread { [self] in acceptLoop(listener) } } catch {
            listener.close()
            throw error
        }
    }

    private func acceptLoop(_ listener: Listener) {
        defer { listener.close() }
        while true {
            let fd = accept(listener.fd, nil, nil)
            if fd < 0 {
                let code = errno
                if listener.isStopped { return }
                if code == EINTR || code == ECONNABORTED { continue }
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                    usleep(10_000)
                    continue
                }
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let connection = ServerConnection(server: self, connection: FrameConnection(fd: fd))
            let accepted = state.withLock { state in
                if !state.stopped { state.connections[ObjectIdentifier(connection)] = connection }
                return !state.stopped
            }
            guard accepted else {
                connection.connection.finish()
                continue
            }
            do { try spawnThread { connection.readLoop() } } catch {
                remove(connection)
                connection.connection.finish()
            }
        }
    }

    func method(service: String, method: String) -> Result<Method, TTRPCError> {
        state.withLock { state in
            guard let methods = state.services[service] else {
                return .failure(TTRPCError(.unimplemented, "service \(service)"))
            }
            guard let handler = methods[method] else { return .failure(TTRPCError(.unimplemented, "method \(method)")) }
            return .success(handler)
        }
    }

    func remove(_ connection: ServerConnection) {
        _ = state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    /// Stops accepting and removes the socket files this server created.
    private func stopListening() -> [ServerConnection] {
        let (listeners, connections) = state.withLock { state in
            state.stopped = true
            defer { state.listeners = [] }
            return (state.listeners, Array(state.connections.values))
        }
        for listener in listeners { listener.stop() }
        return connections
    }

    /// Graceful stop: no new connections; each connection is closed once its requests have been answered.
    /// Returns when every connection is closed.
    public func shutdown() async {
        _ = stopListening()
        while true {
            let connections = state.withLock { Array($0.connections.values) }
            if connections.isEmpty { return }
            for connection in connections { connection.closeIfIdle() }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Immediate stop: listeners and connections are closed, requests in flight are cancelled.
    public func close() {
        for connection in stopListening() { connection.connection.shutdown() }
    }
}

/// A listening socket and its accept thread.
final class Listener: Sendable {
    let fd: Int32
    let path: String?
    private let stopped = Mutex(false)

    init(fd: Int32, path: String?) {
        self.fd = fd
        self.path = path
    }

    var isStopped: Bool { stopped.withLock { $0 } }

    /// Wakes the accept thread (accept fails once the socket is shut down) and removes the socket file.
    func stop() {
        let first = stopped.withLock { wasStopped in
            defer { wasStopped = true }
            return !wasStopped
        }
        guard first else { return }
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        if let path { unlink(path) }
    }

    /// Called once, by the accept thread when it ends (or instead of it).
    func close() { _ = Glibc.close(fd) }
}

/// One accepted connection: a reader thread dispatching requests, one task per request.
final class ServerConnection: Sendable {
    private struct State {
        var lastStreamID: UInt32 = 0
        var active: [UInt32: Task<Void, Never>] = [:]
        var closing = false
    }

    let connection: FrameConnection
    private let server: TTRPCServer
    private let state = Mutex(State())

    init(server: TTRPCServer, connection: FrameConnection) {
        self.server = server
        self.connection = connection
    }

    /// Closes the connection if no request is in flight (graceful shutdown).
    func closeIfIdle() {
        let idle = state.withLock { state in
            if state.active.isEmpty { state.closing = true }
            return state.active.isEmpty
        }
        if idle { connection.shutdown() }
    }

    func readLoop() {
        while true {
            switch connection.receive() {
            case .closed:
                let tasks = state.withLock { state in
                    state.closing = true
                    return Array(state.active.values)
                }
                for task in tasks { task.cancel() }
                connection.finish()
                server.remove(self)
                return
            case .oversized(let header):
                sendStatus(
                    header.streamID,
                    TTRPCError(
                        .resourceExhausted,
                        "message length \(header.length) exceed maximum message size of \(TTRPCFrame.maxMessageLength)"))
            case .frame(let header, let data):
                handle(header, data)
            }
        }
    }

    private func sendStatus(_ streamID: UInt32, _ error: TTRPCError) {
        try? connection.send(
            streamID: streamID, kind: .response, flags: 0, payload: TTRPCResponse(status: error, payload: []).encoded())
    }

    private func handle(_ header: TTRPCFrame.Header, _ data: [UInt8]) {
        let id = header.streamID
        guard id % 2 == 1 else {
            return sendStatus(id, TTRPCError(.invalidArgument, "StreamID must be odd for client initiated streams"))
        }
        // Data frames only matter to client-streaming methods, which this server does not offer; ignore them
        // like unknown frame types (ttrpc ignores those for future compatibility).
        guard header.type == TTRPCFrame.Kind.request.rawValue else { return }
        let accepted = state.withLock { state -> Bool? in
            if state.closing { return nil }
            guard id > state.lastStreamID else { return false }
            state.lastStreamID = id
            return true
        }
        guard let accepted else { return }
        guard accepted else {
            return sendStatus(id, TTRPCError(.invalidArgument, "StreamID cannot be re-used and must increment"))
        }
        let request: TTRPCRequest
        do { request = try TTRPCRequest(decoding: data) } catch {
            return sendStatus(id, TTRPCError(.invalidArgument, "unmarshal request error: \(error.message)"))
        }
        let method: TTRPCServer.Method
        switch server.method(service: request.service, method: request.method) {
        case .success(let found): method = found
        case .failure(let error): return sendStatus(id, error)
        }
        let timeout: Duration? = request.timeoutNano > 0 ? .nanoseconds(request.timeoutNano) : nil
        let context = TTRPCContext(
            service: request.service, method: request.method, metadata: request.metadata,
            deadline: timeout.map { ContinuousClock.now + $0 })
        let mapper = server.errorMapper
        let connection = connection
        // The task registers itself only after this lock is released, so the entry is added here, before it runs.
        state.withLock { state in
            let task = Task {
                let response: [UInt8]
                do {
                    let payload = try await Self.run(method, request.payload, context, timeout, connection, id)
                    response = payload.map { TTRPCResponse(status: nil, payload: $0).encoded() } ?? []
                } catch {
                    response = TTRPCResponse(status: mapper(error), payload: []).encoded()
                }
                self.finish(id, response)
            }
            state.active[id] = task
        }
    }

    /// Runs a handler, cancelled at the deadline; nil for a stream that ended well (its end frame is sent here).
    private static func run(
        _ method: TTRPCServer.Method, _ payload: [UInt8], _ context: TTRPCContext, _ timeout: Duration?,
        _ connection: FrameConnection, _ id: UInt32
    ) async throws -> [UInt8]? {
        try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            group.addTask {
                switch method {
                case .unary(let handler):
                    return try await handler(payload, context)
                case .stream(let handler):
                    try await handler(payload, context, TTRPCStreamWriter(connection: connection, streamID: id))
                    try connection.send(
                        streamID: id, kind: .data, flags: TTRPCFrame.flagRemoteClosed | TTRPCFrame.flagNoData,
                        payload: [])
                    return nil
                }
            }
            if let timeout {
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw TTRPCError(.deadlineExceeded, "context deadline exceeded")
                }
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { return nil }
            return first
        }
    }

    /// Sends the Response (if any) and forgets the request.
    private func finish(_ id: UInt32, _ response: [UInt8]) {
        if !response.isEmpty {
            do { try connection.send(streamID: id, kind: .response, flags: 0, payload: response) } catch {
                if !error.isConnectionClosed { sendStatus(id, error) }
            }
        }
        _ = state.withLock { $0.active.removeValue(forKey: id) }
    }
}
