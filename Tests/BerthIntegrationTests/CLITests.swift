import Foundation
import Testing

/// The `berth` CLI against berthd.
@Suite(.serialized) struct CLITests {
    @Test func versionAndPlugins() throws {
        try withDaemon { d in
            let version = try d.berth(["version"])
            #expect(version.succeeded, "\(version.stderr)")
            #expect(version.stdout.contains("Server:\n  Version:  0.1.0"))
            let json = try d.berth(["version", "--format", "json"])
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: [String: String]]
            #expect(object?["server"]?["uuid"]?.count == 36)

            let plugins = try d.berth(["plugins", "ls"])
            #expect(plugins.stdout.contains("io.containerd.metadata.v1"))
            #expect(plugins.stdout.split(separator: "\n").allSatisfy { !$0.hasSuffix("error") }, "\(plugins.stdout)")
            let detailed = try d.berth(["plugins", "ls", "--detailed", "id==bolt"])
            #expect(detailed.stdout.contains("Exports:       path=\(d.directory)/root/io.containerd.metadata.v1.bolt/meta.db"), "\(detailed.stdout)")
        }
    }

    @Test func namespacesLifecycle() throws {
        try withDaemon { d in
            #expect(try d.berth(["namespaces", "create", "blue", "color=blue"]).succeeded)
            #expect(try d.berth(["namespaces", "label", "blue", "size=xl"]).succeeded)
            let labels = try d.berth(["namespaces", "label", "blue"])
            #expect(labels.stdout == "color=blue\nsize=xl\n")
            let json = try d.berth(["namespaces", "ls", "--format", "json"])
            let list = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
            #expect(list?.first?["name"] as? String == "blue")
            // ctr sees what berth did, and the other way round.
            #expect(try d.ctr(["namespaces", "ls"]).stdout.contains("color=blue,size=xl"))
            #expect(try d.berth(["namespaces", "rm", "blue"]).succeeded)
            #expect(try d.berth(["namespaces", "ls", "-q"]).stdout.isEmpty)
        }
    }

    @Test func errorsAreOneLineAndNonZero() throws {
        try withDaemon { d in
            let missing = try d.berth(["namespaces", "rm", "nope"])
            #expect(missing.status != 0)
            #expect(missing.stderr == "berth: namespace \"nope\": not found\n", "\(missing.stderr)")
            let invalid = try d.berth(["namespaces", "create", "a/b"])
            #expect(invalid.status != 0)
            #expect(invalid.stderr.hasPrefix("berth: identifier \"a/b\" must match"), "\(invalid.stderr)")
        }
        let noDaemon = try execute(binDirectory + "/berth", ["--address", "/tmp/no-such-berthd.sock", "version"])
        #expect(noDaemon.status != 0)
        #expect(noDaemon.stderr.contains("no such socket"))
    }

    @Test func eventsStreamAndHelp() throws {
        try withDaemon { d in
            let events = try Capture(
                binDirectory + "/berth", ["--address", d.socket, "events", "--format", "json", "topic==\"/namespaces/create\""])
            defer { events.stop() }
            var n = 0
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline, !events.text.contains("\"topic\"") {
                n += 1
                _ = try d.berth(["namespaces", "create", "e\(n)"])
                usleep(200_000)
            }
            let line = try #require(events.text.split(separator: "\n").first)
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["topic"] as? String == "/namespaces/create")
            #expect((object?["event"] as? [String: Any])?["name"] as? String != nil)
        }
        for command in [[], ["namespaces"], ["plugins", "ls"], ["events"]] {
            let help = try execute(binDirectory + "/berth", command + ["--help"])
            #expect(help.succeeded)
            #expect(help.stdout.contains("USAGE"))
        }
    }
}
