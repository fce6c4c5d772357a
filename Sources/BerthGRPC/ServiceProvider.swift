import BerthCore
import GRPCCore

/// What a plugin of type `io.containerd.grpc.v1` returns: the gRPC services the listener should register.
/// The listener serves every loaded one and leaves failed ones out, as containerd does.
public protocol GRPCServiceProvider: Sendable {
    var grpcServices: [any RegistrableRPCService] { get }
}

/// The common case: a plugin that provides one service.
public struct SingleService: GRPCServiceProvider {
    public let service: any RegistrableRPCService
    public init(_ service: any RegistrableRPCService) { self.service = service }
    public var grpcServices: [any RegistrableRPCService] { [service] }
}
