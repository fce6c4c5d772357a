import BerthAPI
import BerthTestSupport
import BerthTTRPC
import Foundation
import Glibc
import SwiftProtobuf
import Testing

/// Debian's containerd-shim-runc-v2 (containerd 1.6, Go ttrpc) as the peer: our client calls its task API and our
/// server receives the events it publishes.
@Suite("ttrpc against containerd-shim-runc-v2", .serialized)
struct ShimInteropTests {
    static let shimBinary = "/usr/bin/containerd-shim-runc-v2"
    static let taskService = "containerd.task.v2.Task"
    static let available = FileManager.default.isExecutableFile(atPath: shimBinary)
        && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runc") && getuid() == 0

    /// A shim started the way containerd 1.6 starts one, plus an events server on TTRPC_ADDRESS.
    final class ShimSession: @unchecked Sendable {
        let dir: TempDir
        let namespace = "berth-ttrpc-test"
        let id: String
        let bundle: String
        let events = Box<[(topic: String, namespace: String, header: String?)]>([])
        let eventServer = TTRPCServer()
        var shimAddress = ""
        var shimPid: Int32 = 0
        var client: TTRPCClient?
        private let logFD: Int32
        private let stopLog = Box(false)
        let shimLog = Box("")

        init() throws {
            dir = try TempDir("ttrpc-shim")
            id = "ttrpc-\(getpid())-\(UInt32.random(in: 0..<1_000_000))"
            bundle = dir.file("bundle")
            try FileManager.default.createDirectory(atPath: bundle + "/rootfs/bin", withIntermediateDirectories: true)
            // The shim's `start` reads config.json from its working directory.
            try Self.writeSpec(bundle: bundle, args: ["/bin/echo", "hello from busybox"])
            // containerd creates the shim's log FIFO in the bundle and reads it; the shim opens it for writing.
            guard mkfifo(bundle + "/log", 0o700) == 0 else { throw TTRPCError(.internal, "mkfifo: \(errno)") }
            logFD = open(bundle + "/log", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            let fd = logFD, stop = stopLog, log = shimLog
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 4096)
                while !stop.get {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n > 0 { log.update { $0 += String(decoding: buffer[0..<n], as: UTF8.self) } } else { usleep(20_000) }
                }
            }
            eventServer.register(service: "containerd.services.events.ttrpc.v1.Events", method: "Forward") {
                [events] (request: Containerd_Services_Events_Ttrpc_V1_ForwardRequest, context: TTRPCContext)
                    -> Google_Protobuf_Empty in
                events.update { $0.append((request.envelope.topic, request.envelope.namespace, context.namespace)) }
                return Google_Protobuf_Empty()
            }
            try eventServer.listen(path: dir.file("e.sock"))
        }

        /// The OCI spec from `runc spec`, without a terminal, running `args`.
        static func writeSpec(bundle: String, args: [String]) throws {
            let result = try run("/usr/sbin/runc", ["spec"], cwd: bundle)
            guard result.status == 0 else { throw TTRPCError(.internal, "runc spec: \(result.output)") }
            let path = bundle + "/config.json"
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard var spec = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                var process = spec["process"] as? [String: Any]
            else { throw TTRPCError(.internal, "unreadable config.json") }
            process["terminal"] = false
            process["args"] = args
            spec["process"] = process
            try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path))
        }

        /// Runs a program to completion; output is stdout and stderr together.
        static func run(
            _ path: String, _ arguments: [String], cwd: String? = nil, environment: [String: String] = [:]
        ) throws -> (status: Int32, output: String) {
            let outputPath = "/tmp/ttrpc-run-\(getpid())-\(UInt32.random(in: 0..<1_000_000)).out"
            defer { unlink(outputPath) }
            let status = try spawnAndWait(path, arguments, cwd: cwd, environment: environment, outputPath: outputPath)
            return (status, (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
        }

        /// `containerd-shim-runc-v2 -namespace NS -address A -publish-binary B -id ID start`, cwd = bundle,
        /// TTRPC_ADDRESS = our events socket; it prints the shim's address. Then our client connects to it.
        func start() throws {
            let result = try Self.run(
                ShimInteropTests.shimBinary,
                ["-namespace", namespace, "-address", dir.file("containerd.sock"), "-publish-binary",
                 "/usr/bin/containerd", "-id", id, "start"],
                cwd: bundle, environment: ["TTRPC_ADDRESS": dir.file("e.sock"), "GOMAXPROCS": "2"])
            guard result.status == 0 else { throw TTRPCError(.internal, "shim start failed: \(result.output)") }
            shimAddress = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
            client = try TTRPCClient(path: shimAddress)
        }

        func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
            _ method: String, _ request: Request, _ response: Response.Type
        ) async throws(TTRPCError) -> Response {
            guard let client else { throw TTRPCError.closed }
            return try await client.call(
                service: ShimInteropTests.taskService, method: method, request: request, responseType: response,
                metadata: [ttrpcNamespaceHeader: namespace], timeout: .seconds(30))
        }

        /// Shutdown, as containerd sends it: the shim may exit before it answers (ttrpc closed is fine).
        func shutdown() async throws {
            var request = Containerd_Task_V2_ShutdownRequest()
            request.id = id
            let error = await ShimInteropTests.failure { try await self.call("Shutdown", request, Google_Protobuf_Empty.self) }
            if let error, !error.isConnectionClosed { throw error }
        }

        var shimAlive: Bool { shimPid > 0 && kill(shimPid, 0) == 0 }

        /// Kills whatever is left (only on failure paths), removes runc state, the shim socket and temp files.
        func cleanup() {
            client?.close()
            if shimAlive && !eventuallyBlocking(10, { !shimAlive }) { kill(shimPid, SIGKILL) }
            _ = try? Self.run("/usr/sbin/runc", ["--root", "/run/containerd/runc/\(namespace)", "delete", "--force", id])
            if shimAddress.hasPrefix("unix://") { unlink(String(shimAddress.dropFirst("unix://".count))) }
            rmdir("/run/containerd/runc/\(namespace)")
            eventServer.close()
            stopLog.update { $0 = true }
            usleep(50_000)
            close(logFD)
            dir.cleanup()
        }
    }

    /// The TTRPCError a call fails with, or nil if it succeeds.
    static func failure<T>(_ body: () async throws -> T) async -> TTRPCError? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error as? TTRPCError ?? TTRPCError(.unknown, "\(error)")
        }
    }

    @Test(.enabled(if: available)) func connectStateNotFoundShutdown() async throws {
        let session = try ShimSession()
        defer { session.cleanup() }
        try session.start()
        #expect(session.shimAddress.hasPrefix("unix:///run/containerd/s/"))

        var connect = Containerd_Task_V2_ConnectRequest()
        connect.id = session.id
        let connected = try await session.call("Connect", connect, Containerd_Task_V2_ConnectResponse.self)
        session.shimPid = Int32(connected.shimPid)
        #expect(connected.shimPid > 0)
        #expect(session.shimAlive)
        #expect(connected.taskPid == 0)

        var state = Containerd_Task_V2_StateRequest()
        state.id = "no-such-task"
        let stateError = await ShimInteropTests.failure { try await session.call("State", state, Containerd_Task_V2_StateResponse.self) }
        #expect(stateError?.code == .notFound, "\(String(describing: stateError))")
        #expect(stateError?.message.contains("not found") == true || stateError?.message.contains("not created") == true)
        // A figure for the record (nothing timed is asserted): sequential Connect calls to the Go server.
        let start = ContinuousClock.now
        for _ in 0..<500 { _ = try await session.call("Connect", connect, Containerd_Task_V2_ConnectResponse.self) }
        let elapsed = ContinuousClock.now - start
        print("ttrpc → containerd-shim-runc-v2: 500 sequential Connect calls in \(elapsed), \(elapsed / 500) each")
        // An unknown method answers Unimplemented from Go's ttrpc server.
        let client = try #require(session.client)
        let methodError = await ShimInteropTests.failure {
            try await client.call(service: ShimInteropTests.taskService, method: "NoSuchMethod", payload: [])
        }
        #expect(methodError == TTRPCError(.unimplemented, "method NoSuchMethod"))

        try await session.shutdown()
        let condition1 = await eventually { !session.shimAlive }
        #expect(condition1, "shim \(session.shimPid) still running after Shutdown")
        let condition2 = await eventually { session.client?.isClosed == true }
        #expect(condition2)
    }

    @Test(.enabled(if: available)) func createStartWaitDeleteWithEvents() async throws {
        let session = try ShimSession()
        defer { session.cleanup() }
        let busybox = FileManager.default.fileExists(atPath: "/bin/busybox") ? "/bin/busybox" : "/usr/bin/busybox"
        let bin = session.bundle + "/rootfs/bin"
        try FileManager.default.copyItem(atPath: busybox, toPath: bin + "/busybox")
        for applet in ["sh", "echo", "true"] {
            try FileManager.default.createSymbolicLink(atPath: "\(bin)/\(applet)", withDestinationPath: "busybox")
        }
        try session.start()

        var connect = Containerd_Task_V2_ConnectRequest()
        connect.id = session.id
        session.shimPid = Int32(try await session.call("Connect", connect, Containerd_Task_V2_ConnectResponse.self).shimPid)

        let output = session.dir.file("out.log")
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = session.id
        create.bundle = session.bundle
        // file:// sends both streams to the file; the 1.6 shim dereferences a nil stderr pipe if only stdout is set.
        create.stdout = "file://" + output
        create.stderr = "file://" + output
        let created: Containerd_Task_V2_CreateTaskResponse
        do { created = try await session.call("Create", create, Containerd_Task_V2_CreateTaskResponse.self) } catch {
            try? await Task.sleep(for: .seconds(1))
            Issue.record("Create failed: \(error); shim log: \(session.shimLog.get)")
            throw error
        }
        #expect(created.pid > 0)

        var start = Containerd_Task_V2_StartRequest()
        start.id = session.id
        let started = try await session.call("Start", start, Containerd_Task_V2_StartResponse.self)
        #expect(started.pid == created.pid)

        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = session.id
        let waited = try await session.call("Wait", wait, Containerd_Task_V2_WaitResponse.self)
        #expect(waited.exitStatus == 0)
        #expect(waited.hasExitedAt)
        let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        #expect(printed == "hello from busybox\n")

        var state = Containerd_Task_V2_StateRequest()
        state.id = session.id
        let stopped = try await session.call("State", state, Containerd_Task_V2_StateResponse.self)
        #expect(stopped.status == .stopped)
        #expect(stopped.pid == created.pid)

        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = session.id
        let deleted = try await session.call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        #expect(deleted.exitStatus == 0)
        #expect(deleted.pid == created.pid)

        // The shim published create, start, exit and delete to our ttrpc server, with the namespace header.
        let expected = ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
        let condition3 = await eventually { Set(session.events.get.map(\.topic)).isSuperset(of: expected) }
        #expect(condition3, "\(session.events.get)")
        let events = session.events.get
        #expect(events.map(\.topic).filter(expected.contains) == expected)
        #expect(events.allSatisfy { $0.namespace == session.namespace && $0.header == session.namespace })

        try await session.shutdown()
        let condition4 = await eventually { !session.shimAlive }
        #expect(condition4, "shim \(session.shimPid) still running; log: \(session.shimLog.get)")
        let runcState = try ShimSession.run(
            "/usr/sbin/runc", ["--root", "/run/containerd/runc/\(session.namespace)", "state", session.id])
        #expect(runcState.status != 0, "runc still knows the container: \(runcState.output)")
    }
}
