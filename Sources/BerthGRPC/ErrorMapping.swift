import BerthCore
import GRPCCore

extension RPCError {
    /// The one place where Berth's error codes become gRPC status codes (containerd's `errdefs.ToGRPC`).
    public init(_ error: BerthError) {
        let code: RPCError.Code
        switch error.code {
        case .notFound: code = .notFound
        case .alreadyExists: code = .alreadyExists
        case .invalidArgument: code = .invalidArgument
        case .failedPrecondition: code = .failedPrecondition
        case .unavailable: code = .unavailable
        case .notImplemented: code = .unimplemented
        case .canceled: code = .cancelled
        case .deadlineExceeded: code = .deadlineExceeded
        case .aborted: code = .aborted
        case .internalError: code = .internalError
        default: code = .unknown
        }
        self.init(code: code, message: error.description)
    }
}

extension BerthError {
    /// The reverse mapping, for clients (the CLI) that turn a gRPC status back into a Berth error.
    public init(_ error: RPCError) {
        let code: BerthError.Code
        switch error.code {
        case .notFound: code = .notFound
        case .alreadyExists: code = .alreadyExists
        case .invalidArgument: code = .invalidArgument
        case .failedPrecondition: code = .failedPrecondition
        case .unavailable: code = .unavailable
        case .unimplemented: code = .notImplemented
        case .cancelled: code = .canceled
        case .deadlineExceeded: code = .deadlineExceeded
        case .aborted: code = .aborted
        case .internalError: code = .internalError
        default: code = .unknown
        }
        self.init(code, error.message)
    }

    /// Any error a client call may throw, as a BerthError.
    public static func from(_ error: any Error) -> BerthError {
        if let rpc = error as? RPCError { return BerthError(rpc) }
        return .wrap(error)
    }
}
