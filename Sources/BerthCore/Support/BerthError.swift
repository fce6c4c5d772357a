/// Berth's one error type. Codes mirror containerd's errdefs so that the gRPC edge maps each to the status code
/// containerd would return (see `BerthGRPC.RPCError(_:)`); everything inside the daemon throws this.
public struct BerthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A code is a struct over a private raw value so that codes can be added without breaking `switch`es.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let raw: String
        public static let unknown = Code(raw: "unknown")
        public static let invalidArgument = Code(raw: "invalid argument")
        public static let notFound = Code(raw: "not found")
        public static let alreadyExists = Code(raw: "already exists")
        public static let failedPrecondition = Code(raw: "failed precondition")
        public static let unavailable = Code(raw: "unavailable")
        public static let notImplemented = Code(raw: "not implemented")
        public static let canceled = Code(raw: "canceled")
        public static let deadlineExceeded = Code(raw: "deadline exceeded")
        public static let aborted = Code(raw: "aborted")
        public static let internalError = Code(raw: "internal")
        public var description: String { raw }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// containerd appends the code's text to the message ("namespace \"x\": not found"); so do we, unless already there.
    public var description: String {
        message.hasSuffix(code.raw) || code == .unknown ? message : "\(message): \(code.raw)"
    }

    public static func notFound(_ message: String) -> BerthError { BerthError(.notFound, message) }
    public static func alreadyExists(_ message: String) -> BerthError { BerthError(.alreadyExists, message) }
    public static func invalidArgument(_ message: String) -> BerthError { BerthError(.invalidArgument, message) }
    public static func failedPrecondition(_ message: String) -> BerthError { BerthError(.failedPrecondition, message) }
    public static func unavailable(_ message: String) -> BerthError { BerthError(.unavailable, message) }
    public static func notImplemented(_ message: String) -> BerthError { BerthError(.notImplemented, message) }
    public static func internalError(_ message: String) -> BerthError { BerthError(.internalError, message) }

    /// Wraps any error: a `BerthError` passes through, anything else becomes `.unknown` with its description.
    public static func wrap(_ error: any Error, _ context: String? = nil) -> BerthError {
        var berth = (error as? BerthError) ?? BerthError(.unknown, String(describing: error))
        if let context { berth.message = "\(context): \(berth.message)" }
        return berth
    }

    /// Runs a storage call (SQLite through GRDB): a `BerthError` it throws passes through unchanged, anything else
    /// becomes an internal error prefixed by `store`.
    public static func storing<T>(_ store: String, _ call: () throws -> T) throws(BerthError) -> T {
        do {
            return try call()
        } catch let error as BerthError {
            throw error
        } catch {
            throw .internalError("\(store): \(error)")
        }
    }

    /// `storing` for an asynchronous call.
    public static func storing<T>(_ store: String, _ call: () async throws -> T) async throws(BerthError) -> T {
        do {
            return try await call()
        } catch let error as BerthError {
            throw error
        } catch {
            throw .internalError("\(store): \(error)")
        }
    }
}

/// Thrown by a plugin's init when it does not apply to this host (btrfs root not on btrfs, no device-mapper).
/// The plugin is then listed as skipped with the reason, not failed.
public struct PluginSkip: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
