import Testing

@testable import BerthCore

@Suite struct FilterTests {
    let event = Event(
        namespace: "default", topic: "/namespaces/create", typeURL: "containerd.events.NamespaceCreate", payload: [],
        fields: ["name": "foo", "labels.a.b": "c"])

    @Test(arguments: [
        ("topic==\"/namespaces/create\"", true),
        ("topic!=\"/namespaces/create\"", false),
        ("topic~=/^\\/namespaces\\//", true),
        ("topic~=|^/namespaces/|", true),
        ("topic~=namespaces", true),
        ("namespace==default,topic==\"/namespaces/create\"", true),
        ("namespace==default,topic==\"/tasks/exit\"", false),
        ("event.name==foo", true),
        ("event.labels.\"a.b\"==c", true),
        ("event.name", true),
        ("event.missing", false),
        ("", true),
    ])
    func matchesEnvelopeFields(filter: String, expected: Bool) throws {
        #expect(try Filter.parse([filter]).matches(event) == expected)
    }

    @Test func separateFiltersAreAlternatives() throws {
        #expect(try Filter.parse(["topic==\"/tasks/exit\"", "namespace==default"]).matches(event))
        #expect(try !Filter.parse(["topic==\"/tasks/exit\"", "namespace==other"]).matches(event))
    }

    @Test(arguments: ["==x", "topic==", "topic==\"unterminated", "a,,b", "topic~=/[/", "1abc==x", "topic~=/namespaces/.*/", "topic==/tasks/exit"])
    func malformedFiltersAreInvalidArgument(filter: String) {
        #expect(throws: BerthError.self) { try Filter.parse([filter]) }
        do {
            _ = try Filter.parse([filter])
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test func fieldMapAdaptorReadsLabels() throws {
        let adaptor = FieldMapAdaptor(fields: ["name": "x"], maps: ["labels": ["k": "v"]])
        #expect(try Filter.parse("labels.k==v,name==x").matches(adaptor))
        #expect(try !Filter.parse("labels.k==w").matches(adaptor))
    }
}

@Suite struct IdentifierTests {
    @Test(arguments: ["default", "k8s.io", "a", "a-b_c.d", "A1", String(repeating: "a", count: 76)])
    func valid(name: String) throws { try Identifiers.validate(name) }

    @Test(arguments: ["", "-a", "a-", "a..b", "a/b", "with space", "ünicode", String(repeating: "a", count: 77)])
    func invalid(name: String) {
        #expect(throws: BerthError.self) {
            try Identifiers.validate(name)
        }
    }

    @Test func labelSizeLimit() {
        #expect(throws: BerthError.self) { try Labels.validate(key: "k", value: String(repeating: "v", count: 4096)) }
        #expect(throws: Never.self) { try Labels.validate(key: "k", value: String(repeating: "v", count: 4095)) }
    }

    @Test func topics() {
        #expect(throws: Never.self) { try Topics.validate("/namespaces/create") }
        for bad in ["", "/", "namespaces", "/a//b", "/a/-b"] {
            #expect(throws: BerthError.self) { try Topics.validate(bad) }
        }
    }

    @Test func goDurations() {
        #expect(GoDuration.seconds("5s") == 5)
        #expect(GoDuration.seconds("100ms") == 0.1)
        #expect(GoDuration.seconds("1h30m") == 5400)
        #expect(GoDuration.seconds("4h0m0s") == 14400)
        #expect(GoDuration.seconds("0") == 0)
        #expect(GoDuration.seconds("1.5m") == 90)
        #expect(GoDuration.seconds("5") == nil)
        #expect(GoDuration.seconds("five") == nil)
        #expect(GoDuration.seconds("") == nil)
    }
}
