import BerthTestSupport
import Foundation
import Testing

/// berthd's life: start, config handling, required plugins, sockets, persistence, shutdown.
@Suite(.serialized) struct DaemonTests {
    @Test func sigtermClosesAndRemovesTheSocketWithinFiveSeconds() throws {
        let d = try Daemon()
        defer { d.remove() }
        #expect(try d.ctr(["version"]).succeeded)
        // An open event subscription must not hold shutdown up.
        let events = try TestProcess(ctrPath, ["--address", d.socket, "events"], outputPath: nil)
        defer {
            events.terminate()
            events.waitUntilExit()
        }
        usleep(300_000)
        let (status, seconds) = d.stop()
        // The daemon's log says which step a slow or failed shutdown was in.
        #expect(status == 0, "\(d.logText)")
        #expect(seconds < 5, "\(d.logText)")
        #expect(!FileManager.default.fileExists(atPath: d.socket))
        #expect(d.logText.contains("stopping"))
    }

    @Test func socketIsMode0660() throws {
        try withDaemon { d in
            let attributes = try FileManager.default.attributesOfItem(atPath: d.socket)
            #expect((attributes[.posixPermissions] as? Int) == 0o660)
        }
    }

    @Test func staleSocketIsReplacedLiveOneIsAnError() throws {
        let dir = "/tmp/berth-it-sock-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/s", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A stale socket: bound, then its owner went away.
        let stale = try execute("/usr/bin/python3", ["-c", "import socket; s=socket.socket(socket.AF_UNIX); s.bind('\(dir)/s/berthd.sock')"])
        #expect(stale.succeeded, "\(stale.stderr)")
        let first = try Daemon(directory: dir)
        defer { first.remove() }
        #expect(try first.ctr(["version"]).succeeded)

        let second = try Daemon(directory: dir, wait: false)
        defer { second.stop() }
        let status = second.waitForExit()
        #expect(status != nil && status != 0)
        #expect(second.logText.contains("another daemon is already serving"), "\(second.logText)")
        #expect(try first.ctr(["version"]).succeeded)
    }

    @Test func namespacesAndServerUUIDSurviveRestart() throws {
        let first = try Daemon()
        defer { first.remove() }
        #expect(try first.ctr(["namespaces", "create", "keep", "a=1"]).succeeded)
        let uuid = try first.ctr(["version"]).stdout.components(separatedBy: "UUID: ").last
        #expect(first.stop().status == 0)

        let second = try Daemon(directory: first.directory)
        defer { second.stop() }
        #expect(try second.ctr(["namespaces", "ls"]).stdout.contains("keep"))
        #expect(try second.ctr(["version"]).stdout.components(separatedBy: "UUID: ").last == uuid)
    }

    @Test func syntaxErrorExitsWithFileLineAndColumn() throws {
        let d = try Daemon(extra: "[grpc\n", wait: false)
        defer { d.remove() }
        #expect(d.waitForExit() == 1)
        #expect(d.logText.contains("\(d.configPath): line 4, column"), "\(d.logText)")
    }

    @Test func wrongTypeExitsNamingKeyAndType() throws {
        let d = try Daemon(extra: "oom_score = \"low\"\n", wait: false)
        defer { d.remove() }
        #expect(d.waitForExit() == 1)
        #expect(d.logText.contains("key \"oom_score\": expected integer, found string"), "\(d.logText)")
    }

    @Test func unknownKeyIsAWarningNotAFailure() throws {
        try withDaemon(extra: "[plugins.\"io.containerd.metadata.v1.bolt\"]\n  colour = \"blue\"\n") { d throws in
            #expect(try d.ctr(["version"]).succeeded)
            #expect(d.logText.contains("unknown key \"plugins.\"io.containerd.metadata.v1.bolt\".colour\""), "\(d.logText)")
            #expect(d.logText.contains("config.toml:5"), "\(d.logText)")
        }
    }

    @Test func requiredPluginThatDoesNotLoadStopsTheDaemon() throws {
        let d = try Daemon(extra: """
            disabled_plugins = ["io.containerd.event.v1.exchange"]
            required_plugins = ["io.containerd.grpc.v1.namespaces", "io.containerd.internal.v1.greeter"]
            [plugins."io.containerd.internal.v1.greeter"]
              enabled = false
            """, wait: false)
        defer { d.remove() }
        #expect(d.waitForExit() == 1)
        let log = d.logText
        #expect(log.contains("required plugins did not load"), "\(log)")
        #expect(log.contains("io.containerd.grpc.v1.namespaces: failed"), "\(log)")
        #expect(log.contains("io.containerd.internal.v1.greeter: skipped: greeter disabled"), "\(log)")
        #expect(!FileManager.default.fileExists(atPath: d.socket))
    }

    @Test func disabledPluginsAreNotLoaded() throws {
        try withDaemon(extra: "disabled_plugins = [\"io.containerd.grpc.v1.events\"]") { d in
            let plugins = try d.ctr(["plugins", "ls"]).stdout
            #expect(!plugins.contains("events "), "\(plugins)")
            let events = try d.ctr(["events"], timeout: 5)
            #expect(!events.succeeded)
        }
    }

    @Test func containerdDefaultConfigLoadsWithWarningsOnly() throws {
        let dir = "/tmp/berth-it-ctrd-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let generated = try execute("/usr/bin/containerd", ["config", "default"])
        #expect(generated.succeeded)
        try generated.stdout.write(toFile: dir + "/config.toml", atomically: true, encoding: .utf8)
        let d = try Daemon(
            arguments: ["--root", dir + "/root", "--state", dir + "/state", "--address", dir + "/s/berthd.sock"],
            directory: dir)
        defer { d.remove() }
        #expect(try d.ctr(["version"]).succeeded)
        let log = d.logText
        #expect(log.contains("section [plugins.\"io.containerd.grpc.v1.cri\"] is for a plugin Berth does not have"), "\(log)")
        #expect(!log.contains("ERROR"), "\(log)")
    }

    @Test func configDefaultLoadsCleanAndDumpReflectsImports() throws {
        let defaults = try execute(binDirectory + "/berthd", ["config", "default"])
        #expect(defaults.succeeded)
        #expect(defaults.stdout.contains("[plugins.\"io.containerd.metadata.v1.bolt\"]"))
        #expect(defaults.stdout.contains("[plugins.\"io.containerd.internal.v1.greeter\"]"))
        let dir = "/tmp/berth-it-cfg-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/conf.d", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (defaults.stdout + "").write(toFile: dir + "/default.toml", atomically: true, encoding: .utf8)
        let clean = try execute(binDirectory + "/berthd", ["config", "dump", "--config", dir + "/default.toml"])
        #expect(clean.succeeded)
        #expect(clean.stderr.isEmpty, "\(clean.stderr)")

        try "version = 3\nimports = [\"conf.d/*.toml\"]\n".write(toFile: dir + "/main.toml", atomically: true, encoding: .utf8)
        try "version = 3\n[plugins.\"io.containerd.internal.v1.greeter\"]\n  greeting = \"Moin\"\n"
            .write(toFile: dir + "/conf.d/greet.toml", atomically: true, encoding: .utf8)
        let dump = try execute(binDirectory + "/berthd", ["config", "dump", "--config", dir + "/main.toml"])
        #expect(dump.stdout.contains("greeting = \"Moin\""), "\(dump.stdout)")
    }
}
