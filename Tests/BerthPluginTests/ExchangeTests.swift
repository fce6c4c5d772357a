import BerthCore
import Foundation
import Testing

@testable import BerthEventsPlugin

@Suite struct ExchangeTests {
    func event(_ topic: String, _ namespace: String = "default") -> Event {
        Event(namespace: namespace, topic: topic, typeURL: "t", payload: [1, 2], fields: ["name": "n"])
    }

    @Test func subscribersGetMatchingEventsInOrder() async throws {
        let exchange = Exchange()
        let all = await exchange.subscribe(.all)
        let tasks = await exchange.subscribe(try Filter.parse("topic~=^/tasks/"))
        try await exchange.publish(event("/tasks/start"))
        try await exchange.publish(event("/namespaces/create"))
        try await exchange.forward(event("/tasks/exit", "other"))
        try await exchange.close()
        var allTopics: [String] = []
        for await e in all { allTopics.append(e.topic) }
        var taskTopics: [String] = []
        for await e in tasks { taskTopics.append("\(e.namespace)\(e.topic)") }
        #expect(allTopics == ["/tasks/start", "/namespaces/create", "/tasks/exit"])
        #expect(taskTopics == ["default/tasks/start", "other/tasks/exit"])
    }

    @Test func invalidTopicsAndNamespacesAreRejected() async {
        let exchange = Exchange()
        await #expect { try await exchange.publish(event("no-slash")) } throws: { ($0 as? BerthError)?.code == .invalidArgument }
        await #expect { try await exchange.publish(event("/ok", "")) } throws: { ($0 as? BerthError)?.code == .failedPrecondition }
        await #expect { try await exchange.forward(event("/ok", "bad/ns")) } throws: { ($0 as? BerthError)?.code == .invalidArgument }
    }

    @Test func cancelledSubscriberIsRemoved() async throws {
        let exchange = Exchange()
        let consumer = Task {
            for await _ in await exchange.subscribe(.all) {}
        }
        while await exchange.subscriberCount == 0 { await Task.yield() }
        consumer.cancel()
        _ = await consumer.value
        let deadline = ContinuousClock.now + .seconds(5)
        while await exchange.subscriberCount > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(await exchange.subscriberCount == 0)
    }
}
