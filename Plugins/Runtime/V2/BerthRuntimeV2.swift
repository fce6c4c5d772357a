import BerthAPI
import BerthCore
import BerthTTRPC
import Foundation
import SwiftProtobuf

/// `[plugins."io.containerd.runtime.v2.task"]`. Per runtime name, the shim binary to start:
///
///     [plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.runc.v2"]
///       shim = "/usr/bin/containerd-shim-runc-v2"
///
/// Without an entry, `io.containerd.runc.v2` uses `berth-shim` next to berthd's executable when it is there, and
/// any other name containerd's lookup: `containerd-shim-<name>-<version>` beside berthd or on `PATH`. An absolute
/// runtime name (a task's `runtime_path`) is used as it is.
public struct RuntimeConfig: PluginConfig, Equatable {
    public struct Runtime: Codable, Sendable, Equatable {
        /// Absolute path of the shim binary for this runtime name.
        public var shim: String?
        public init(shim: String? = nil) { self.shim = shim }
    }

    public var runtimes: [String: Runtime] = [:]

    public init() {}
}

public let registration = Registration(
    type: .runtime, id: "task", requires: [.type(.event), .type(.metadata)],
    summary: "Runtime v2: one shim per task over ttrpc; shim events arrive on the daemon's .ttrpc socket.",
    config: RuntimeConfig.self
) { ic, config in
    let timeouts = ic.properties.config.timeouts
    func timeout(_ key: String, _ fallback: Duration) -> Duration {
        timeouts[key].flatMap(GoDuration.duration) ?? fallback
    }
    let manager = ShimManager(
        root: try ic.makeRoot(), state: try ic.makeState(), properties: ic.properties, config: config,
        exchange: try ic.single(.event, as: (any EventExchange).self), logger: ic.logger,
        timeouts: ShimManager.Timeouts(
            load: timeout("io.containerd.timeout.shim.load", .seconds(5)),
            cleanup: timeout("io.containerd.timeout.shim.cleanup", .seconds(5)),
            shutdown: timeout("io.containerd.timeout.shim.shutdown", .seconds(3)),
            state: timeout("io.containerd.timeout.task.state", .seconds(2))))
    try manager.serveEvents()
    await manager.restore()
    return manager
}

extension ShimManager {
    /// The daemon's ttrpc socket: `containerd.services.events.ttrpc.v1.Events/Forward` from shims, into the
    /// exchange with the shim's timestamp and namespace.
    nonisolated func serveEvents() throws(BerthError) {
        eventServer.register(service: "containerd.services.events.ttrpc.v1.Events", method: "Forward") {
            [self] (request: Containerd_Services_Events_Ttrpc_V1_ForwardRequest, _: TTRPCContext) -> Google_Protobuf_Empty in
            let envelope = request.envelope
            if envelope.topic == "/tasks/exit", await self.isDuplicateExit(envelope) { return Google_Protobuf_Empty() }
            let payload = [UInt8](envelope.event.value)
            let event = Event(
                timestamp: envelope.hasTimestamp ? envelope.timestamp.date : Date(), namespace: envelope.namespace,
                topic: envelope.topic, typeURL: envelope.event.typeURL, payload: payload,
                fields: ShimManager.fields(typeURL: envelope.event.typeURL, payload: payload))
            try await self.exchange.forward(event)
            return Google_Protobuf_Empty()
        }
        let path = properties.ttrpcAddress
        let directory = (path as NSString).deletingLastPathComponent
        try FileSystem.makeDirectories(directory, mode: 0o711)
        do { try eventServer.listen(path: path, mode: 0o660) } catch {
            throw .internalError("ttrpc listen on \(path): \(error.message)")
        }
    }

    /// True for a `/tasks/exit` the daemon already published itself for that process (after a restart).
    func isDuplicateExit(_ envelope: Containerd_Services_Events_Ttrpc_V1_Envelope) -> Bool {
        guard let exit = try? Containerd_Events_TaskExit(serializedBytes: [UInt8](envelope.event.value)) else {
            return false
        }
        return publishedExits.contains("\(envelope.namespace)/\(exit.containerID)/\(exit.pid)")
    }
}

extension ShimManager {
    /// The task event types shims send, by the bare name containerd's `Any`s carry.
    static let taskEventTypes: [String: any SwiftProtobuf.Message.Type] = {
        let types: [any SwiftProtobuf.Message.Type] = [
            Containerd_Events_TaskCreate.self, Containerd_Events_TaskStart.self, Containerd_Events_TaskDelete.self,
            Containerd_Events_TaskIO.self, Containerd_Events_TaskExit.self, Containerd_Events_TaskOOM.self,
            Containerd_Events_TaskExecAdded.self, Containerd_Events_TaskExecStarted.self,
            Containerd_Events_TaskPaused.self, Containerd_Events_TaskResumed.self,
            Containerd_Events_TaskCheckpointed.self,
        ]
        return Dictionary(types.map { ($0.protoMessageName, $0) }, uniquingKeysWith: { a, _ in a })
    }()

    /// Top-level scalar fields of a task event by proto name (`container_id`, `pid`), for `event.*` filters.
    static func fields(typeURL: String, payload: [UInt8]) -> [String: String] {
        let name = typeURL.split(separator: "/").last.map(String.init) ?? typeURL
        guard let type = taskEventTypes[name], let message = try? type.init(serializedBytes: payload) else { return [:] }
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        guard let json = try? message.jsonString(options: options),
            let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        else { return [:] }
        var fields: [String: String] = [:]
        for (key, value) in object {
            if let text = value as? String { fields[key] = text } else if let number = value as? NSNumber { fields[key] = number.stringValue }
        }
        return fields
    }

    /// Encodes a task event for the exchange (type URL: the bare message name, as containerd).
    static func event<M: SwiftProtobuf.Message>(_ topic: String, namespace: String, _ message: M) -> Event? {
        guard let payload: [UInt8] = try? message.serializedBytes() else { return nil }
        return Event(
            namespace: namespace, topic: topic, typeURL: M.protoMessageName, payload: payload,
            fields: fields(typeURL: M.protoMessageName, payload: payload))
    }
}
