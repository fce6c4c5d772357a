import BerthCore
import GRPCCore

/// Binds containerd's request headers (`containerd-namespace`, `containerd-lease`) to `RequestContext` for the
/// whole handler, including a streaming response's producer, and maps thrown `BerthError`s to gRPC status once.
public struct ContextInterceptor: ServerInterceptor {
    public static let namespaceHeader = "containerd-namespace"
    public static let leaseHeader = "containerd-lease"

    public init() {}

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let namespace = request.metadata[stringValues: Self.namespaceHeader].first(where: { _ in true })
        let lease = request.metadata[stringValues: Self.leaseHeader].first(where: { _ in true })
        var response = try await Self.bind(namespace, lease) { try await next(request, context) }
        if case .success(var contents) = response.accepted {
            let producer = contents.producer
            contents.producer = { writer in try await Self.bind(namespace, lease) { try await producer(writer) } }
            response.accepted = .success(contents)
        }
        return response
    }

    static func bind<T>(_ namespace: String?, _ lease: String?, _ body: () async throws -> T) async throws -> T {
        do {
            return try await RequestContext.$namespace.withValue(namespace) {
                try await RequestContext.$lease.withValue(lease) { try await body() }
            }
        } catch let error as BerthError {
            throw RPCError(error)
        }
    }
}
