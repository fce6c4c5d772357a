import BerthAPI
import BerthCore
import BerthGRPC
import BerthTestSupport
import Foundation
import GRPCCore
import SwiftProtobuf
import Testing

/// containerd 2's Transfer and Streaming services on berthd, and `berth pull/push/import/export` on them, against
/// Debian's docker-registry, skopeo, umoci and ctr.
@Suite(.serialized) struct TransferTests {
    // MARK: services (no registry)

    @Test func streamingRefusesASecondStreamWithTheSameID() async throws {
        let daemon = try await TaskTestSupport.offPool { try Daemon() }
        defer { daemon.remove() }
        try await BerthConnection.with(address: daemon.socket, namespace: "xfer") { c in
            let first = try await Self.openStream(c, id: "dup-1")
            await #expect { _ = try await Self.openStream(c, id: "dup-1") } throws: {
                ($0 as? RPCError)?.code == .alreadyExists
            }
            // The same id in another namespace is another stream.
            try await BerthConnection.with(address: daemon.socket, namespace: "xfer-other") { o in
                let other = try await Self.openStream(o, id: "dup-1")
                other.cancel()
                _ = await other.result
            }
            // Once its client goes away, the stream is removed and the id is free again.
            first.cancel()
            _ = await first.result
            var reopened: Task<Void, any Error>?
            for _ in 0..<50 where reopened == nil {
                reopened = try? await Self.openStream(c, id: "dup-1")
                if reopened == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(reopened != nil, "stream id still taken after its client left")
            reopened?.cancel()
            _ = await reopened?.result
        }
    }

    @Test func transferAnswersUnknownAndUnsupportedTypesAsContainerd() async throws {
        let daemon = try await TaskTestSupport.offPool { try Daemon() }
        defer { daemon.remove() }
        try await BerthConnection.with(address: daemon.socket, namespace: "xfer") { c in
            let api = Containerd_Services_Transfer_V1_Transfer.Client(wrapping: c.client)
            var bogus = Google_Protobuf_Any()
            bogus.typeURL = "example.com/berth.test.Bogus"
            var request = Containerd_Services_Transfer_V1_TransferRequest()
            request.source = bogus
            request.destination = bogus
            // containerd cannot unmarshal a type it does not know: Unknown, "type with url …: not found".
            await #expect { _ = try await api.transfer(request, metadata: c.metadata) } throws: {
                guard let error = $0 as? RPCError else { return false }
                return error.code == .unknown && error.message.contains("not found")
            }
            // A known message that is no transfer end: no transferrer takes it (Unimplemented).
            var empty = Google_Protobuf_Any()
            empty.typeURL = "google.protobuf.Empty"
            request.source = empty
            request.destination = empty
            await #expect { _ = try await api.transfer(request, metadata: c.metadata) } throws: {
                ($0 as? RPCError)?.code == .unimplemented
            }
            // A progress stream nobody opened.
            request.options.progressStream = "progress-none"
            await #expect { _ = try await api.transfer(request, metadata: c.metadata) } throws: {
                ($0 as? RPCError)?.code == .notFound
            }
            // An import stream nobody opened.
            var importStream = Containerd_Types_Transfer_ImageImportStream()
            importStream.stream = "import-none"
            request.options.progressStream = ""
            request.source = try Google_Protobuf_Any(message: importStream, typePrefix: "")
            request.source.typeURL = Containerd_Types_Transfer_ImageImportStream.protoMessageName
            request.destination.typeURL = Containerd_Types_Transfer_ImageStore.protoMessageName
            request.destination.value = Data()
            await #expect { _ = try await api.transfer(request, metadata: c.metadata) } throws: {
                ($0 as? RPCError)?.code == .notFound
            }
        }
    }

    /// Opens a stream and returns once berthd acknowledged it; the returned task holds it open until cancelled.
    static func openStream(_ c: BerthConnection, id: String) async throws -> Task<Void, any Error> {
        let (acks, ack) = AsyncThrowingStream<Void, any Error>.makeStream()
        var initMessage = Containerd_Services_Streaming_V1_StreamInit()
        initMessage.id = id
        var first = Google_Protobuf_Any()
        first.typeURL = Containerd_Services_Streaming_V1_StreamInit.protoMessageName
        first.value = try initMessage.serializedData()
        let message = first
        // The request side stays open until the response side ends (the call waits for both).
        let (responseEnded, endResponse) = AsyncStream<Void>.makeStream()
        let task = Task {
            do {
                let request = StreamingClientRequest<Google_Protobuf_Any>(metadata: c.metadata) { writer in
                    try await writer.write(message)
                    for await _ in responseEnded {}
                }
                try await Containerd_Services_Streaming_V1_Streaming.Client(wrapping: c.client).stream(request: request) {
                    response in
                    defer { endResponse.finish() }
                    do {
                        for try await reply in response.messages where reply.typeURL.hasSuffix("google.protobuf.Empty") {
                            ack.yield()
                        }
                    } catch {
                        ack.finish(throwing: error)
                        throw error
                    }
                    ack.finish()
                }
            } catch {
                ack.finish(throwing: error)
                throw error
            }
        }
        do {
            for try await _ in acks { return task }
        } catch {
            task.cancel()
            throw error
        }
        task.cancel()
        throw TestRegistryError("stream \(id) ended without an acknowledgement")
    }

    // MARK: berth CLI against the registry

    struct Setup: Sendable {
        let registry: TestRegistry
        let daemon: Daemon
        let scratch: String
        let namespace: String
        let reference: String
        let layout: TestImageLayout

        func berth(_ arguments: [String], timeout: Double = 120) async throws -> CommandResult {
            try await TaskTestSupport.offPool { try daemon.berth(["--namespace", namespace] + arguments, timeout: timeout) }
        }

        func ctr(_ arguments: [String], timeout: Double = 60) async throws -> CommandResult {
            try await TaskTestSupport.offPool { try daemon.ctr(arguments, namespace: namespace, timeout: timeout) }
        }

        func cleanup() {
            TaskTestSupport.cleanup(daemon, namespace: namespace)
            daemon.remove()
            registry.stop()
            try? FileManager.default.removeItem(atPath: scratch)
        }
    }

    /// A registry of `mode` holding a one-layer busybox as `library/busybox:latest`, and a fresh berthd.
    static func setup(_ mode: TestRegistry.Mode) async throws -> Setup {
        let registry = try await TestRegistry.start(mode)
        let scratch = "/tmp/berth-xfer-\(UUID().uuidString.prefix(8))"
        do {
            let layout = try await TestImages.build(.oci, in: scratch + "/layout", name: "library/busybox")
            try await layout.push(to: registry, name: "library/busybox")
            let daemon = try await TaskTestSupport.offPool {
                try Daemon(extra: DiffCtrTests.noBackgroundGC + "\n" + TaskTestSupport.runtimeConfig)
            }
            return Setup(
                registry: registry, daemon: daemon, scratch: scratch, namespace: "xfer-\(UUID().uuidString.prefix(6))",
                reference: "\(registry.host)/library/busybox:latest", layout: layout)
        } catch {
            registry.stop()
            try? FileManager.default.removeItem(atPath: scratch)
            throw error
        }
    }

    @Test(.enabled(if: TaskTestSupport.available)) func pullOverPlainHTTPShowsProgressAndRuns() async throws {
        let s = try await Self.setup(.plain)
        defer { s.cleanup() }
        let pull = try await s.berth(["pull", "--plain-http", s.reference])
        #expect(pull.succeeded, "\(pull.stderr)\n\(s.daemon.logText.suffix(3000))")
        // Not a terminal: plain lines on state changes, then a summary.
        let lines = pull.stdout.split(separator: "\n")
        #expect(lines.contains { $0.contains(": ") && !$0.hasPrefix("done:") }, "\(pull.stdout)")
        #expect(lines.last?.hasPrefix("done:") == true, "\(pull.stdout)")
        #expect(!pull.stdout.contains("\u{1B}["), "escape sequences without a terminal")
        let images = try await s.ctr(["images", "ls", "-q"])
        #expect(images.stdout.split(separator: "\n").contains { $0 == s.reference }, "\(images.stdout)")
        let run = try await s.ctr(["run", "--rm", s.reference, "xfer-run", "/bin/busybox", "echo", "pulled"])
        #expect(run.stdout == "pulled\n", "\(run.stderr)\n\(s.daemon.logText.suffix(2000))")
    }

    @Test(arguments: ["basic", "token"]) func pullWithUserAsksOverTheAuthStream(_ auth: String) async throws {
        let s = try await Self.setup(auth == "basic" ? .basic : .token)
        defer { s.cleanup() }
        let reference = "\(s.registry.host)/library/busybox:latest"
        let wrong = try await s.berth(["pull", "--plain-http", "--user", "\(TestRegistry.username):wrong", reference])
        #expect(!wrong.succeeded)
        #expect(wrong.stderr.hasPrefix("berth: "), "\(wrong.stderr)")
        #expect(wrong.stderr.count < 2000, "error too long: \(wrong.stderr)")
        let right = try await s.berth([
            "pull", "--plain-http", "--user", "\(TestRegistry.username):\(TestRegistry.password)", reference,
        ])
        #expect(right.succeeded, "\(right.stderr)\n\(s.daemon.logText.suffix(3000))")
        let images = try await s.ctr(["images", "ls", "-q"])
        #expect(images.stdout.contains(reference), "\(images.stdout)")
        // Credentials travel over the auth stream, never in the request the daemon logs.
        #expect(!s.daemon.logText.contains(TestRegistry.password))
    }

    /// `ctr images import` of the fixture archive (containerd 1.6's ctr, already supported) as the local image.
    static func importFixture(_ s: Setup) async throws -> String {
        let archive = try await s.layout.archive(to: s.scratch + "/fixture.tar")
        let imported = try await s.ctr(["images", "import", "--no-unpack", archive])
        try #require(imported.succeeded, "\(imported.stderr)")
        let images = try await s.ctr(["images", "ls", "-q"])
        return try #require(images.stdout.split(separator: "\n").first.map(String.init), "\(images.stdout)")
    }

    @Test func pushThenSkopeoReadsIt() async throws {
        let s = try await Self.setup(.plain)
        defer { s.cleanup() }
        let local = try await Self.importFixture(s)
        let remote = "\(s.registry.host)/berth/pushed:v1"
        let push = try await s.berth(["push", "--plain-http", remote, local])
        #expect(push.succeeded, "\(push.stderr)\n\(s.daemon.logText.suffix(3000))")
        #expect(push.stdout.contains("done:"), "\(push.stdout)")
        let inspect = try await TestCommand.run("/usr/bin/skopeo", ["inspect", "--tls-verify=false", "docker://\(remote)"])
        #expect(inspect.succeeded, "\(inspect.stderr)")
        #expect(inspect.stdout.contains(s.layout.layers[0].digest.description), "\(inspect.stdout)")
        let copy = try await TestCommand.run(
            "/usr/bin/skopeo", ["copy", "--quiet", "--src-tls-verify=false", "docker://\(remote)", "oci:\(s.scratch)/copied:v1"])
        #expect(copy.succeeded, "\(copy.stderr)")
    }

    @Test func exportThenImportRoundTripsAndPeersReadTheArchive() async throws {
        let s = try await Self.setup(.plain)
        defer { s.cleanup() }
        let local = try await Self.importFixture(s)
        let archive = s.scratch + "/export.tar"
        let export = try await s.berth(["export", archive, local])
        #expect(export.succeeded, "\(export.stderr)\n\(s.daemon.logText.suffix(3000))")
        let inspect = try await TestCommand.run("/usr/bin/skopeo", ["inspect", "oci-archive:\(archive)"])
        #expect(inspect.succeeded, "\(inspect.stderr)")
        #expect(inspect.stdout.contains(s.layout.layers[0].digest.description), "\(inspect.stdout)")
        let layoutDir = s.scratch + "/exported-layout"
        try FileManager.default.createDirectory(atPath: layoutDir, withIntermediateDirectories: true)
        try await TestCommand.check("/usr/bin/tar", ["-xf", archive, "-C", layoutDir])
        let umoci = try await TestCommand.run("/usr/bin/umoci", ["ls", "--layout", layoutDir])
        #expect(umoci.succeeded && !umoci.stdout.isEmpty, "\(umoci.stderr)")

        // Export to stdout: the archive on stdout, progress on stderr.
        let piped = try await TestCommand.run(
            "/bin/sh", ["-c", "\(binDirectory)/berth --address \(s.daemon.socket) -n \(s.namespace) export - \(local) > \(s.scratch)/piped.tar"])
        #expect(piped.succeeded, "\(piped.stderr)")
        let pipedInspect = try await TestCommand.run("/usr/bin/skopeo", ["inspect", "oci-archive:\(s.scratch)/piped.tar"])
        #expect(pipedInspect.succeeded, "\(pipedInspect.stderr)")

        let docker = s.scratch + "/docker.tar"
        let dockerExport = try await s.berth(["export", "--format", "docker", docker, local])
        #expect(dockerExport.succeeded, "\(dockerExport.stderr)")
        let dockerInspect = try await TestCommand.run("/usr/bin/skopeo", ["inspect", "docker-archive:\(docker)"])
        #expect(dockerInspect.succeeded, "\(dockerInspect.stderr)")

        let removed = try await s.ctr(["images", "rm", local])
        #expect(removed.succeeded, "\(removed.stderr)")
        let imported = try await s.berth(["import", archive])
        #expect(imported.succeeded, "\(imported.stderr)\n\(s.daemon.logText.suffix(3000))")
        let images = try await s.ctr(["images", "ls", "-q"])
        #expect(images.stdout.split(separator: "\n").contains { $0 == local }, "\(images.stdout)")
        // From stdin too, under another index name.
        let stdin = try await TestCommand.run(
            "/bin/sh",
            ["-c", "\(binDirectory)/berth --address \(s.daemon.socket) -n \(s.namespace) import --index-name berth.test/index:v1 - < \(archive)"])
        #expect(stdin.succeeded, "\(stdin.stderr)")
        let after = try await s.ctr(["images", "ls", "-q"])
        #expect(after.stdout.contains("berth.test/index:v1"), "\(after.stdout)")
    }
}
