#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthGRPC
import GRPCCore
import Logging
import Synchronization

/// The gRPC listener (containerd's v4 `io.containerd.server.v1.grpc`): serves every loaded gRPC plugin on the
/// `[grpc]` unix socket. It requires all gRPC plugins, so it starts last and, closing in reverse order, stops
/// accepting requests first.
public let registration = Registration(
    type: .server, id: "grpc", requires: [.type(.grpc)],
    summary: "gRPC listener on [grpc] address: serves every loaded io.containerd.grpc.v1 plugin."
) { ic in
    let settings = ic.properties.config.grpc
    let services = ic.all(.grpc, as: (any GRPCServiceProvider).self).flatMap { $0.instance.grpcServices }
    let fd = try UnixListener.listen(path: settings.address, mode: 0o660, uid: settings.uid, gid: settings.gid)
    let transport = FrameServerTransport(
        descriptor: fd, path: settings.address,
        settings: .init(maxRequestPayloadSize: settings.maxRecvMessageSize))
    let server = GRPCServer(transport: transport, services: services, interceptors: [ContextInterceptor()])
    let listener = GRPCListener(server: server, path: settings.address, logger: ic.logger)
    try await listener.start()
    ic.export("address", settings.address)
    return listener
}

/// A running gRPC server and the socket file it owns.
public final class GRPCListener: Closable {
    let server: GRPCServer<FrameServerTransport>
    let path: String
    let logger: Logger
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(server: GRPCServer<FrameServerTransport>, path: String, logger: Logger) {
        self.server = server
        self.path = path
        self.logger = logger
    }

    /// Starts serving and returns once the socket accepts connections.
    func start() async throws(BerthError) {
        let server = self.server
        let logger = self.logger
        let running = Task {
            do {
                try await server.serve()
            } catch {
                logger.error("gRPC server stopped", metadata: ["error": "\(error)"])
            }
        }
        task.withLock { $0 = running }
        do {
            try await server.transport.waitStarted()
        } catch {
            throw .internalError("gRPC listener on \(path) did not start: \(error)")
        }
        logger.info("serving", metadata: ["address": "\(path)"])
    }

    /// Stops accepting connections, lets in-flight calls finish (streams are cancelled after 1 s), removes the socket.
    public func close() async throws {
        server.beginGracefulShutdown()
        if let running = task.withLock({ $0 }) {
            let cancel = Task {
                try await Task.sleep(for: .seconds(1))
                running.cancel()
            }
            await running.value
            cancel.cancel()
        }
        unlink(path)
    }
}
