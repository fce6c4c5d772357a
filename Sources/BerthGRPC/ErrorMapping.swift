import BerthCore
import GRPCCore

/// The one table that pairs Berth's error codes with gRPC status codes (containerd's `errdefs.ToGRPC` and
/// `FromGRPC`); both directions read it, so they cannot drift apart.
let codePairs: [(BerthError.Code, RPCError.Code)] = [
    (.notFound, .notFound), (.alreadyExists, .alreadyExists), (.invalidArgument, .invalidArgument),
    (.failedPrecondition, .failedPrecondition), (.unavailable, .unavailable), (.notImplemented, .unimplemented),
    (.canceled, .cancelled), (.deadlineExceeded, .deadlineExceeded), (.aborted, .aborted),
    (.internalError, .internalError),
]

extension RPCError {
    /// The one place where Berth's errors become gRPC status codes.
    public init(_ error: BerthError) {
        let code = codePairs.first { $0.0 == error.code }?.1 ?? .unknown
        self.init(code: code, message: error.description)
    }
}

extension BerthError {
    /// The reverse mapping, for clients (the CLI) that turn a gRPC status back into a Berth error.
    public init(_ error: RPCError) {
        self.init(codePairs.first { $0.1 == error.code }?.0 ?? .unknown, error.message)
    }

    /// Any error a client call may throw, as a BerthError.
    public static func from(_ error: any Error) -> BerthError {
        if let rpc = error as? RPCError { return BerthError(rpc) }
        return .wrap(error)
    }
}
