// Task events to the daemon: `containerd.services.events.ttrpc.v1.Events/Forward` on TTRPC_ADDRESS. Events are
// queued and sent in order by one worker, so a slow or restarting daemon never blocks the task service; a failed
// send is retried on a new connection with back-off.
import BerthShimAPI
import BerthTTRPC
import SwiftProtobuf

actor EventPublisher {
    private let address: String
    private let namespace: String
    private var queue: [Containerd_Services_Events_Ttrpc_V1_ForwardRequest] = []
    private var client: TTRPCClient?
    private var worker: Task<Void, Never>?
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    init(address: String, namespace: String) {
        self.address = address
        self.namespace = namespace
    }

    /// Queues `event` under `topic` (e.g. "/tasks/exit"), stamped now; type URL as containerd's typeurl names it.
    func publish(_ topic: String, _ event: some SwiftProtobuf.Message) {
        guard !address.isEmpty else { return }
        var any = Google_Protobuf_Any()
        any.typeURL = type(of: event).protoMessageName
        guard let value = try? event.serializedBytes() as [UInt8] else { return }
        any.value = .init(value)
        let now = WallTime.now()
        var request = Containerd_Services_Events_Ttrpc_V1_ForwardRequest()
        request.envelope.timestamp = Google_Protobuf_Timestamp(seconds: now.seconds, nanos: now.nanos)
        request.envelope.namespace = namespace
        request.envelope.topic = topic
        request.envelope.event = any
        queue.append(request)
        if worker == nil { worker = Task { await self.drain() } }
    }

    /// Waits until the queue is empty, at most `limit` (before the shim exits).
    func flush(limit: Duration) async {
        guard !queue.isEmpty || worker != nil else { return }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: limit)
            await self?.releaseIdleWaiters()
        }
        await withCheckedContinuation { idleWaiters.append($0) }
        timer.cancel()
    }

    private func releaseIdleWaiters() {
        let waiters = idleWaiters
        idleWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    private func drain() async {
        var failures = 0
        while let next = queue.first {
            do {
                let client = try connected()
                let _: Google_Protobuf_Empty = try await client.call(
                    service: "containerd.services.events.ttrpc.v1.Events", method: "Forward", request: next,
                    metadata: [ttrpcNamespaceHeader: namespace], timeout: .seconds(10))
                queue.removeFirst()
                failures = 0
            } catch {
                client?.close()
                client = nil
                failures += 1
                // About two minutes of retries (the daemon restarting), then the event is dropped.
                if failures > 130 {
                    ShimLog.write("dropping event \(next.envelope.topic) after \(failures) attempts: \(error)")
                    queue.removeFirst()
                    failures = 0
                    continue
                }
                try? await Task.sleep(for: .milliseconds(failures < 10 ? 100 : 1000))
            }
        }
        worker = nil
        releaseIdleWaiters()
    }

    private func connected() throws(TTRPCError) -> TTRPCClient {
        if let client, !client.isClosed { return client }
        let made = try TTRPCClient(path: address)
        client = made
        return made
    }
}
