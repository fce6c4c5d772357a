import BerthCore
import Logging
import SwiftProtobuf

/// How services publish their events: in the request's namespace, after the change is committed. A failed
/// publish is logged, not returned, because the change it reports has already happened.
public struct EventPublisher: Sendable {
    let exchange: any EventExchange
    let logger: Logger

    public init(exchange: any EventExchange, logger: Logger) {
        self.exchange = exchange
        self.logger = logger
    }

    /// `fields` feed `event.*` filters; `namespace` is used when the request carries none.
    public func publish<M: SwiftProtobuf.Message>(
        _ topic: String, _ message: M, fields: [String: String] = [:], namespace: String? = nil
    ) async {
        guard let namespace = RequestContext.namespace ?? namespace else {
            logger.warning("event without namespace dropped", metadata: ["topic": "\(topic)"])
            return
        }
        do {
            try await exchange.publish(try EventCoding.event(topic: topic, namespace: namespace, message, fields: fields))
        } catch {
            logger.warning("publishing event failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }

    /// `name` and `labels.KEY` fields, the shape of most containerd events.
    public static func fields(name: String, labels: [String: String]) -> [String: String] {
        var fields = ["name": name]
        for (key, value) in labels { fields["labels.\(key)"] = value }
        return fields
    }
}
