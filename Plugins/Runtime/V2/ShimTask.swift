import BerthAPI
import BerthCore
import BerthTTRPC
import Foundation
import Logging
import SwiftProtobuf
import Synchronization

/// One task's shim: its bundle, the shim binary (for `delete`), and the ttrpc connection to its task service
/// (`containerd.task.v2.Task`). Calls carry the namespace header the shim expects.
final class ShimTask: Sendable {
    static let service = "containerd.task.v2.Task"

    let bundle: Bundle
    let binary: String
    let client: TTRPCClient
    /// Identifies this connection, so a late close of an old shim never touches a newer task of the same id.
    let token: UInt64
    let logger: Logger
    /// Set once the daemon itself ends the connection (task delete, shutdown): a close is then not a dead shim.
    let released = Mutex(false)

    init(bundle: Bundle, binary: String, client: TTRPCClient, token: UInt64, logger: Logger) {
        self.logger = logger
        self.bundle = bundle
        self.binary = binary
        self.client = client
        self.token = token
    }

    var id: String { bundle.id }
    var namespace: String { bundle.namespace }

    /// A unary call; ttrpc statuses become BerthErrors with containerd's codes, a closed connection NotFound
    /// ("ttrpc: closed"), as containerd treats a gone shim.
    func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String, _ request: Request, _: Response.Type = Response.self, timeout: Duration? = nil
    ) async throws(BerthError) -> Response {
        logger.debug("shim call", metadata: ["method": "\(method)", "id": "\(id)"])
        do {
            return try await client.call(
                service: Self.service, method: method, request: request, responseType: Response.self,
                metadata: [ttrpcNamespaceHeader: namespace], timeout: timeout)
        } catch {
            throw Self.berthError(error)
        }
    }

    static func berthError(_ error: TTRPCError) -> BerthError {
        if error.isConnectionClosed { return .notFound("ttrpc: closed") }
        let pairs: [(TTRPCError.Code, BerthError.Code)] = [
            (.notFound, .notFound), (.alreadyExists, .alreadyExists), (.invalidArgument, .invalidArgument),
            (.failedPrecondition, .failedPrecondition), (.unavailable, .unavailable),
            (.unimplemented, .notImplemented), (.deadlineExceeded, .deadlineExceeded), (.canceled, .canceled),
            (.aborted, .aborted), (.internal, .internalError),
        ]
        let code = pairs.first { $0.0 == error.code }?.1 ?? .unknown
        return BerthError(code, error.message)
    }

    static func any(_ value: TypedValue) -> Google_Protobuf_Any {
        var any = Google_Protobuf_Any()
        any.typeURL = value.typeURL
        any.value = Data(value.value)
        return any
    }

    static func typed(_ any: Google_Protobuf_Any) -> TypedValue {
        TypedValue(typeURL: any.typeURL, value: [UInt8](any.value))
    }

    static func status(_ status: Containerd_V1_Types_Status) -> TaskStatus {
        TaskStatus(rawValue: status.rawValue) ?? .unknown
    }

    /// The shim's pid and its task's (Connect), which also proves the shim answers.
    func connect(timeout: Duration?) async throws(BerthError) -> Containerd_Task_V2_ConnectResponse {
        var request = Containerd_Task_V2_ConnectRequest()
        request.id = id
        return try await call("Connect", request, timeout: timeout)
    }

    func state(execID: String, timeout: Duration?) async throws(BerthError) -> ProcessState {
        var request = Containerd_Task_V2_StateRequest()
        request.id = id
        request.execID = execID
        let r: Containerd_Task_V2_StateResponse = try await call("State", request, timeout: timeout)
        return ProcessState(
            containerID: id, id: execID.isEmpty ? id : execID, pid: r.pid, status: Self.status(r.status),
            stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal, exitStatus: r.exitStatus,
            exitedAt: r.hasExitedAt ? r.exitedAt.date : nil)
    }

    func delete(execID: String) async throws(BerthError) -> TaskExit {
        var request = Containerd_Task_V2_DeleteRequest()
        request.id = id
        request.execID = execID
        let r: Containerd_Task_V2_DeleteResponse = try await call("Delete", request)
        return TaskExit(pid: r.pid, status: r.exitStatus, exitedAt: r.hasExitedAt ? r.exitedAt.date : Date())
    }

    /// Asks the shim to exit; false when no answer came (also when the connection closed first: the shim may have
    /// died before cleaning up, so the caller runs its `delete`).
    @discardableResult
    func shutdown(timeout: Duration) async -> Bool {
        var request = Containerd_Task_V2_ShutdownRequest()
        request.id = id
        return (try? await call("Shutdown", request, Google_Protobuf_Empty.self, timeout: timeout)) != nil
    }

    /// Ends the connection without treating it as a dead shim.
    func release() {
        released.withLock { $0 = true }
        client.close()
    }
}
