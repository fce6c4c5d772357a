import BerthCore
import GRPCCore
import GRPCNIOTransportHTTP2

/// A connection to berthd (or containerd) for the CLI and tests: a gRPC client on the unix socket, with the
/// namespace sent in `containerd-namespace` on every call.
public struct BerthConnection: Sendable {
    public let client: GRPCClient<HTTP2ClientTransport.Posix>
    public let namespace: String

    /// Metadata for a call in the connection's namespace.
    public var metadata: Metadata {
        var metadata = Metadata()
        metadata.addString(namespace, forKey: ContextInterceptor.namespaceHeader)
        return metadata
    }

    /// Connects to `address` (a socket path, optionally `unix://`-prefixed), runs `body`, and closes.
    public static func with<T: Sendable>(
        address: String, namespace: String, _ body: @Sendable (BerthConnection) async throws -> T
    ) async throws -> T {
        let path = address.hasPrefix("unix://") ? String(address.dropFirst("unix://".count)) : address
        guard FileSystem.exists(path) else {
            throw BerthError.unavailable("cannot connect to \(path): no such socket (is berthd running?)")
        }
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(BerthConnection(client: client, namespace: namespace))
        }
    }
}
