import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore
import SwiftProtobuf

public let registration = Registration(
    type: .grpc, id: "events", requires: [.type(.event)],
    summary: "containerd.services.events.v1.Events: publish, forward and subscribe with containerd's filters."
) { ic in
    SingleService(EventsService(exchange: try ic.single(.event, as: (any EventExchange).self)))
}

struct EventsService: Containerd_Services_Events_V1_Events.SimpleServiceProtocol {
    let exchange: any EventExchange

    func publish(request: Containerd_Services_Events_V1_PublishRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        let namespace = try RequestContext.requireNamespace()
        try await exchange.publish(Event(
            namespace: namespace, topic: request.topic, typeURL: request.event.typeURL,
            payload: [UInt8](request.event.value),
            fields: EventCoding.fields(typeURL: request.event.typeURL, payload: request.event.value)))
        return Google_Protobuf_Empty()
    }

    func forward(request: Containerd_Services_Events_V1_ForwardRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        let envelope = request.envelope
        try await exchange.forward(Event(
            timestamp: envelope.hasTimestamp ? envelope.timestamp.date : .now,
            namespace: envelope.namespace, topic: envelope.topic, typeURL: envelope.event.typeURL,
            payload: [UInt8](envelope.event.value),
            fields: EventCoding.fields(typeURL: envelope.event.typeURL, payload: envelope.event.value)))
        return Google_Protobuf_Empty()
    }

    func subscribe(
        request: Containerd_Services_Events_V1_SubscribeRequest,
        response: RPCWriter<Containerd_Services_Events_V1_Envelope>, context: ServerContext
    ) async throws {
        let filter = try Filter.parse(request.filters)
        for await event in await exchange.subscribe(filter) {
            var envelope = Containerd_Services_Events_V1_Envelope()
            envelope.timestamp = Convert.timestamp(event.timestamp)
            envelope.namespace = event.namespace
            envelope.topic = event.topic
            envelope.event = EventCoding.any(event)
            try await response.write(envelope)
        }
    }
}
