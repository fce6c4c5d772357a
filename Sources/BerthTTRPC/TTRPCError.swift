/// A ttrpc failure: a gRPC status code, a message and optional details, as carried by google.rpc.Status in a
/// Response. Local failures (connection closed, timeout, oversized message) use the codes containerd's ttrpc uses.
public struct TTRPCError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A gRPC status code (google.golang.org/grpc/codes); the raw value is the number on the wire.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let ok = Code(rawValue: 0)
        public static let canceled = Code(rawValue: 1)
        public static let unknown = Code(rawValue: 2)
        public static let invalidArgument = Code(rawValue: 3)
        public static let deadlineExceeded = Code(rawValue: 4)
        public static let notFound = Code(rawValue: 5)
        public static let alreadyExists = Code(rawValue: 6)
        public static let permissionDenied = Code(rawValue: 7)
        public static let resourceExhausted = Code(rawValue: 8)
        public static let failedPrecondition = Code(rawValue: 9)
        public static let aborted = Code(rawValue: 10)
        public static let outOfRange = Code(rawValue: 11)
        public static let unimplemented = Code(rawValue: 12)
        public static let `internal` = Code(rawValue: 13)
        public static let unavailable = Code(rawValue: 14)
        public static let dataLoss = Code(rawValue: 15)
        public static let unauthenticated = Code(rawValue: 16)

        private static let names = [
            "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
            "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
            "Internal", "Unavailable", "DataLoss", "Unauthenticated",
        ]
        /// grpc-go's name for the code ("NotFound"), or "Code(n)".
        public var description: String {
            rawValue >= 0 && Int(rawValue) < Self.names.count ? Self.names[Int(rawValue)] : "Code(\(rawValue))"
        }
    }

    public var code: Code
    public var message: String
    public var details: [TTRPCAny]

    public init(_ code: Code, _ message: String, details: [TTRPCAny] = []) {
        self.code = code
        self.message = message
        self.details = details
    }

    /// As grpc-go prints a status error: `rpc error: code = NotFound desc = …`.
    public var description: String { "rpc error: code = \(code) desc = \(message)" }

    /// The connection is gone (containerd's `ttrpc.ErrClosed`); pending and later calls fail with this.
    public static let closed = TTRPCError(.unavailable, "ttrpc: closed")

    /// True for `closed`: the peer went away, as opposed to an error status the peer sent.
    public var isConnectionClosed: Bool { self == .closed }
}

/// An error type that knows its ttrpc status (conform an engine error type to this in the module that owns both).
/// The server sends it as the Response status when a handler throws it.
public protocol TTRPCErrorConvertible: Error {
    var ttrpcError: TTRPCError { get }
}

extension TTRPCError {
    /// How the server turns a thrown error into a status: TTRPCError as is, a convertible error by its
    /// conversion, cancellation as Canceled, anything else Unknown with its description (like ttrpc's convertCode).
    public static func from(_ error: any Error) -> TTRPCError {
        if let error = error as? TTRPCError { return error }
        if let error = error as? any TTRPCErrorConvertible { return error.ttrpcError }
        if error is CancellationError { return TTRPCError(.canceled, "context canceled") }
        return TTRPCError(.unknown, String(describing: error))
    }
}
