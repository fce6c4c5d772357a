import Foundation
import Testing

/// Debian's `ctr` (containerd 1.6) drives berthd unchanged.
@Suite(.serialized) struct CtrTests {
    @Test func version() throws {
        try withDaemon { d in
            let r = try d.ctr(["version"])
            #expect(r.succeeded, "\(r.stderr)")
            let server = try #require(r.stdout.components(separatedBy: "Server:").last)
            #expect(server.contains("Version:  0.1.0"))
            #expect(server.range(of: #"UUID: [0-9a-f-]{36}"#, options: .regularExpression) != nil)
        }
    }

    @Test func pluginsListEveryPluginWithStatus() throws {
        try withDaemon(extra: """
            [plugins."io.containerd.internal.v1.greeter"]
              enabled = false
            """) { d in
            let r = try d.ctr(["plugins", "ls"])
            #expect(r.succeeded, "\(r.stderr)")
            let rows = r.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(rows.first == ["TYPE", "ID", "PLATFORMS", "STATUS"])
            let status = Dictionary(rows.dropFirst().map { ("\($0[0]).\($0[1])", $0.last ?? "") }, uniquingKeysWith: { a, _ in a })
            for uri in [
                "io.containerd.event.v1.exchange", "io.containerd.metadata.v1.bolt", "io.containerd.grpc.v1.version",
                "io.containerd.grpc.v1.introspection", "io.containerd.grpc.v1.namespaces",
                "io.containerd.grpc.v1.events", "io.containerd.server.v1.grpc", "io.containerd.transfer.v1.local",
                "io.containerd.streaming.v1.manager", "io.containerd.grpc.v1.transfer", "io.containerd.grpc.v1.streaming",
            ] {
                #expect(status[uri] == "ok", "\(uri): \(r.stdout)")
            }
            #expect(status["io.containerd.internal.v1.greeter"] == "skip")

            let detailed = try d.ctr(["plugins", "ls", "--detailed", "id==greeter"])
            #expect(detailed.stdout.contains("greeter disabled by its config (enabled = false): skip plugin"), "\(detailed.stdout)")

            let filtered = try d.ctr(["plugins", "ls", "type==io.containerd.grpc.v1"])
            let ids = filtered.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: " ")[1] }
            #expect(Set(ids) == ["version", "introspection", "namespaces", "events", "content", "images", "leases", "snapshots", "diff", "containers", "tasks", "streaming", "transfer"])
        }
    }

    @Test func namespacesCreateListLabelRemove() throws {
        try withDaemon { d in
            #expect(try d.ctr(["namespaces", "create", "team-a", "owner=alice", "tier=gold"]).succeeded)
            var ls = try d.ctr(["namespaces", "ls"])
            #expect(ls.stdout.contains("team-a"), "\(ls.stdout)")
            #expect(ls.stdout.contains("owner=alice,tier=gold"), "\(ls.stdout)")

            #expect(try d.ctr(["namespaces", "label", "team-a", "tier=", "zone=eu"]).succeeded)
            ls = try d.ctr(["namespaces", "ls"])
            #expect(ls.stdout.contains("owner=alice,zone=eu"), "\(ls.stdout)")

            let duplicate = try d.ctr(["namespaces", "create", "team-a"])
            #expect(!duplicate.succeeded)
            #expect(duplicate.stderr.contains("already exists"), "\(duplicate.stderr)")

            let invalid = try d.ctr(["namespaces", "create", "bad..name"])
            #expect(!invalid.succeeded)
            #expect(invalid.stderr.contains("must match"), "\(invalid.stderr)")

            #expect(try d.ctr(["namespaces", "rm", "team-a"]).succeeded)
            ls = try d.ctr(["namespaces", "ls", "-q"])
            #expect(!ls.stdout.contains("team-a"))

            // ctr itself ignores NotFound on rm (as against containerd); berth's CLI test checks the code.
        }
    }

    @Test func eventsReceiveNamespaceEvents() throws {
        try withDaemon { d in
            let events = try Capture(ctrPath, ["--address", d.socket, "events", "topic~=/namespaces/"])
            defer { events.stop() }
            // The subscription is live once an event gets through: create namespaces until one shows.
            var created = 0
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline, !events.text.contains("/namespaces/create") {
                created += 1
                #expect(try d.ctr(["namespaces", "create", "ev\(created)", "k=v"]).succeeded)
                usleep(200_000)
            }
            #expect(try d.ctr(["namespaces", "label", "ev1", "k=w"]).succeeded)
            #expect(try d.ctr(["namespaces", "rm", "ev1"]).succeeded)
            let deadline2 = Date().addingTimeInterval(10)
            while Date() < deadline2, !events.text.contains("/namespaces/delete") {
                usleep(50_000)
            }
            let text = events.text
            #expect(text.contains("/namespaces/create"), "\(text)")
            #expect(text.contains("\"name\":\"ev"), "\(text)")
            #expect(text.contains("/namespaces/update {\"name\":\"ev1\",\"labels\":{\"k\":\"w\"}}"), "\(text)")
            #expect(text.contains("/namespaces/delete {\"name\":\"ev1\"}"), "\(text)")
        }
    }
}
