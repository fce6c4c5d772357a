import BerthCore
import Foundation

public let registration = Registration(
    type: .event, id: "exchange",
    summary: "Event exchange: fans events out to subscribers (containerd's io.containerd.event.v1.exchange)."
) { _ in Exchange() }

/// Broadcasts events to subscribers whose filter matches. A slow subscriber gets a bounded buffer (the newest
/// 1024 events); it never blocks publishers.
public actor Exchange: EventExchange, Closable {
    private var subscribers: [UInt64: (filter: Filter, continuation: AsyncStream<Event>.Continuation)] = [:]
    private var nextID: UInt64 = 0

    public init() {}

    public func publish(_ event: Event) async throws(BerthError) {
        try validate(event)
        broadcast(event)
    }

    public func forward(_ event: Event) async throws(BerthError) {
        try validate(event)
        broadcast(event)
    }

    public func subscribe(_ filter: Filter) async -> AsyncStream<Event> {
        let id = nextID
        nextID += 1
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        continuation.onTermination = { [weak self] _ in
            Task { await self?.remove(id) }
        }
        subscribers[id] = (filter, continuation)
        return stream
    }

    public func close() async throws {
        for (_, subscriber) in subscribers { subscriber.continuation.finish() }
        subscribers = [:]
    }

    var subscriberCount: Int { subscribers.count }

    private func remove(_ id: UInt64) { subscribers[id] = nil }

    private func validate(_ event: Event) throws(BerthError) {
        try Topics.validate(event.topic)
        guard !event.namespace.isEmpty else { throw .failedPrecondition("namespace is required") }
        try Identifiers.validate(event.namespace)
    }

    private func broadcast(_ event: Event) {
        for (_, subscriber) in subscribers where subscriber.filter.matches(event) {
            subscriber.continuation.yield(event)
        }
    }
}
