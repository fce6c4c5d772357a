import Foundation

/// One event as it travels through the exchange: containerd's Envelope, with the payload kept as the encoded
/// protobuf `Any` (type URL and bytes) so the exchange needs no knowledge of event types.
public struct Event: Sendable, Equatable {
    public var timestamp: Date
    public var namespace: String
    public var topic: String
    public var typeURL: String
    public var payload: [UInt8]
    /// The event's own fields by dotted path (`name`, `labels.foo`), for `event.*` subscription filters.
    public var fields: [String: String]

    public init(
        timestamp: Date = Date(), namespace: String, topic: String, typeURL: String, payload: [UInt8],
        fields: [String: String] = [:]
    ) {
        self.timestamp = timestamp
        self.namespace = namespace
        self.topic = topic
        self.typeURL = typeURL
        self.payload = payload
        self.fields = fields
    }
}

extension Event: Filter.Adaptor {
    /// containerd's envelope adaptor: `namespace`, `topic`, and `event.<field>`.
    public func field(_ path: [String]) -> String? {
        guard let first = path.first else { return nil }
        switch first {
        case "namespace": return path.count == 1 ? namespace : nil
        case "topic": return path.count == 1 ? topic : nil
        case "event": return path.count > 1 ? fields[path.dropFirst().joined(separator: ".")] : nil
        default: return nil
        }
    }
}

/// The event exchange (containerd's `io.containerd.event.v1.exchange`): publish, forward, subscribe.
public protocol EventExchange: Sendable {
    /// Publishes an event of this daemon; validates the topic and namespace.
    func publish(_ event: Event) async throws(BerthError)
    /// Forwards an event produced elsewhere (a shim), keeping its timestamp.
    func forward(_ event: Event) async throws(BerthError)
    /// A stream of events matching `filter`, from now on, until the consumer stops iterating.
    func subscribe(_ filter: Filter) async -> AsyncStream<Event>
}

public enum Topics {
    /// containerd's topic rule: "/" followed by identifier components.
    public static func validate(_ topic: String) throws(BerthError) {
        guard topic.hasPrefix("/"), topic.count > 1 else {
            throw .invalidArgument("must start with '/': invalid topic \"\(topic)\"")
        }
        for component in topic.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            do {
                try Identifiers.validate(String(component))
            } catch {
                throw .invalidArgument("failed validation on component \"\(component)\": \(error.message)")
            }
        }
    }
}
