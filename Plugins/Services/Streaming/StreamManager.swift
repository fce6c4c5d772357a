import BerthCore

/// `io.containerd.streaming.v1.manager`: the open named streams of every namespace, in memory. A stream is
/// removed when it is closed (by the transfer that used it) or when its client goes away.
public let managerRegistration = Registration(
    type: .streaming, id: "manager",
    summary: "Named client streams (progress, credentials, archive bytes) that transfers look up by name."
) { _ in
    LocalStreamManager() as any StreamManager
}

/// The stream registry: namespace → name → stream. Names are unique per namespace while open.
actor LocalStreamManager: StreamManager {
    private var streams: [String: [String: any ManagedStream]] = [:]

    func register(namespace: String, name: String, stream: any ManagedStream) throws(BerthError) {
        guard !name.isEmpty else { throw .invalidArgument("stream id must not be empty") }
        if streams[namespace]?[name] != nil { throw .alreadyExists("stream \(name)") }
        streams[namespace, default: [:]][name] = stream
    }

    func get(namespace: String, name: String) throws(BerthError) -> any ManagedStream {
        guard let stream = streams[namespace]?[name] else { throw .notFound("stream \(name)") }
        return ClosingStream(stream: stream, manager: self, namespace: namespace, name: name)
    }

    func unregister(namespace: String, name: String) {
        streams[namespace]?[name] = nil
        if streams[namespace]?.isEmpty == true { streams[namespace] = nil }
    }
}

/// What `get` hands out: the stream, unregistered from its manager when closed.
struct ClosingStream: ManagedStream {
    let stream: any ManagedStream
    let manager: LocalStreamManager
    let namespace: String
    let name: String

    func send(_ message: StreamMessage) async throws(BerthError) { try await stream.send(message) }
    func receive() async throws(BerthError) -> StreamMessage? { try await stream.receive() }
    func close() async {
        await manager.unregister(namespace: namespace, name: name)
        await stream.close()
    }
}
