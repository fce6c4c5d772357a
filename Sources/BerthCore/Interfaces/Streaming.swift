/// One message on a stream: a protobuf `Any` as type URL and serialized value (BerthCore does not link
/// SwiftProtobuf; the gRPC side converts).
public struct StreamMessage: Sendable, Equatable {
    /// containerd sends bare message names (`containerd.types.transfer.Data`); a prefix up to the last `/` is
    /// allowed and ignored by `typeName`.
    public var typeURL: String
    public var value: [UInt8]

    public init(typeURL: String, value: [UInt8]) {
        self.typeURL = typeURL
        self.value = value
    }

    /// The message's full name: the type URL after its last `/`.
    public var typeName: String {
        guard let slash = typeURL.lastIndex(of: "/") else { return typeURL }
        return String(typeURL[typeURL.index(after: slash)...])
    }
}

/// A named bidirectional stream between a client and the daemon (containerd's `streaming.Stream`): a client opens
/// it through the Streaming service, and a later request (a transfer) finds it by name to send progress, ask for
/// credentials, or move archive bytes.
public protocol ManagedStream: Sendable {
    /// Sends one message to the client.
    func send(_ message: StreamMessage) async throws(BerthError)
    /// The client's next message; nil once the client has closed its side (or the stream is closed).
    func receive() async throws(BerthError) -> StreamMessage?
    /// Ends the stream (the client's receive sees the end) and removes it from its manager. Idempotent.
    func close() async
}

/// `io.containerd.streaming.v1.manager`: the registry of open streams, per namespace.
public protocol StreamManager: Sendable {
    /// Registers `stream` as `name` in `namespace`; AlreadyExists when that name is taken.
    func register(namespace: String, name: String, stream: any ManagedStream) async throws(BerthError)
    /// The stream registered as `name`, wrapped so that closing it also unregisters it; NotFound when absent.
    func get(namespace: String, name: String) async throws(BerthError) -> any ManagedStream
    /// Forgets `name` without closing it (the stream's own RPC ended).
    func unregister(namespace: String, name: String) async
}

extension PluginType {
    /// containerd 2's stream manager type (`io.containerd.streaming.v1.manager`).
    public static let streaming: PluginType = "io.containerd.streaming.v1"
}
