import BerthAPI
import BerthTestSupport
import BerthTTRPC
import Foundation
import Glibc
import SwiftProtobuf
import Testing

/// berth-shim driven directly over ttrpc, as containerd drives it, once with berth-runc (the default runtime) and
/// once with Debian's runc (named in the runtime options).
@Suite("berth-shim task API", .serialized, .enabled(if: peersAvailable))
struct ShimTaskTests {
    static let runtimes = ["", "runc"]

    /// An exec's process spec, as containerd packs it.
    static func execSpec(_ args: [String], terminal: Bool = false, consoleSize: (height: Int, width: Int)? = nil)
        throws -> Google_Protobuf_Any
    {
        var process: [String: Any] = [
            "args": args, "cwd": "/", "env": ["PATH=/bin"], "terminal": terminal, "user": ["uid": 0, "gid": 0],
        ]
        if let consoleSize { process["consoleSize"] = ["height": consoleSize.height, "width": consoleSize.width] }
        var any = Google_Protobuf_Any()
        any.typeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
        any.value = try JSONSerialization.data(withJSONObject: process)
        return any
    }

    @Test("start, create, exec, pids, pause, resume, kill, delete, shutdown, delete command", arguments: runtimes)
    func fullLifecycle(runtime: String) async throws {
        let session = try ShimSession(runtime: runtime)
        defer { session.cleanup() }
        try await session.writeSpec(args: ["sh", "-c", "echo out-$0; echo err-$0 >&2; while true; do sleep 1; done", "x"])
        let address = try await session.start()
        #expect(address.hasPrefix("unix://\(session.dir.path)/s/"))
        #expect(address.count == "unix://\(session.dir.path)/s/".count + 64)
        #expect((try? String(contentsOfFile: session.bundle + "/address", encoding: .utf8)) == address)
        #expect(session.shimAlive)
        // A second start for the same container finds the running shim.
        #expect(try await session.start() == address)

        let stdout = try FIFOReader(session.dir.file("out"))
        let stderr = try FIFOReader(session.dir.file("err"))
        defer { stdout.stop(); stderr.stop() }
        let created = try await session.call(
            "Create", try session.createRequest(stdout: session.dir.file("out"), stderr: session.dir.file("err")),
            Containerd_Task_V2_CreateTaskResponse.self)
        #expect(created.pid > 0)
        #expect(session.rootfsMounted)
        #expect(try await session.state().status == .created)

        var start = Containerd_Task_V2_StartRequest()
        start.id = session.id
        #expect(try await session.call("Start", start, Containerd_Task_V2_StartResponse.self).pid == created.pid)
        #expect(try await session.state().status == .running)
        let printed = await eventually { stdout.text == "out-x\n" && stderr.text == "err-x\n" }
        #expect(printed, "stdout \(stdout.text.debugDescription) stderr \(stderr.text.debugDescription)")

        // An exec with its output in a file.
        var exec = Containerd_Task_V2_ExecProcessRequest()
        exec.id = session.id
        exec.execID = "e1"
        exec.stdout = "file://" + session.dir.file("exec.out")
        exec.stderr = "file://" + session.dir.file("exec.out")
        exec.spec = try Self.execSpec(["sh", "-c", "echo exec-out; exit 4"])
        _ = try await session.call("Exec", exec, Google_Protobuf_Empty.self)
        let duplicate = await session.failure("Exec", exec, Google_Protobuf_Empty.self)
        #expect(duplicate?.code == .alreadyExists)
        start.execID = "e1"
        let execPid = try await session.call("Start", start, Containerd_Task_V2_StartResponse.self).pid
        #expect(execPid > 0 && execPid != created.pid)
        let execExit = try await session.wait("e1")
        #expect(execExit.exitStatus == 4)
        #expect(execExit.hasExitedAt)
        #expect((try? String(contentsOfFile: session.dir.file("exec.out"), encoding: .utf8)) == "exec-out\n")
        var deleteExec = Containerd_Task_V2_DeleteRequest()
        deleteExec.id = session.id
        deleteExec.execID = "e1"
        #expect(try await session.call("Delete", deleteExec, Containerd_Task_V2_DeleteResponse.self).exitStatus == 4)
        #expect(try await session.failure("State", { var r = Containerd_Task_V2_StateRequest(); r.id = session.id; r.execID = "e1"; return r }(), Containerd_Task_V2_StateResponse.self)?.code == .notFound)

        var pids = Containerd_Task_V2_PidsRequest()
        pids.id = session.id
        let listed = try await session.call("Pids", pids, Containerd_Task_V2_PidsResponse.self).processes.map(\.pid)
        #expect(listed.contains(created.pid), "\(listed)")

        var pause = Containerd_Task_V2_PauseRequest()
        pause.id = session.id
        _ = try await session.call("Pause", pause, Google_Protobuf_Empty.self)
        #expect(try await session.state().status == .paused)
        var resume = Containerd_Task_V2_ResumeRequest()
        resume.id = session.id
        _ = try await session.call("Resume", resume, Google_Protobuf_Empty.self)
        #expect(try await session.state().status == .running)

        var stats = Containerd_Task_V2_StatsRequest()
        stats.id = session.id
        let metrics = try await session.call("Stats", stats, Containerd_Task_V2_StatsResponse.self)
        #expect(metrics.stats.typeURL == "io.containerd.cgroups.v1.Metrics")
        #expect(!metrics.stats.value.isEmpty)

        var checkpoint = Containerd_Task_V2_CheckpointTaskRequest()
        checkpoint.id = session.id
        #expect(await session.failure("Checkpoint", checkpoint, Google_Protobuf_Empty.self)?.code == .unimplemented)

        // A running task cannot be deleted.
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = session.id
        #expect(await session.failure("Delete", delete, Containerd_Task_V2_DeleteResponse.self)?.code == .failedPrecondition)

        var kill = Containerd_Task_V2_KillRequest()
        kill.id = session.id
        kill.signal = UInt32(SIGKILL)
        kill.all = true
        _ = try await session.call("Kill", kill, Google_Protobuf_Empty.self)
        let exited = try await session.wait()
        #expect(exited.exitStatus == 137)
        #expect(try await session.state().status == .stopped)
        #expect(await session.failure("Kill", kill, Google_Protobuf_Empty.self)?.code == .notFound)

        let deleted = try await session.call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        #expect(deleted.exitStatus == 137)
        #expect(deleted.pid == created.pid)
        #expect(!session.rootfsMounted)
        #expect(await session.failure("State", { var r = Containerd_Task_V2_StateRequest(); r.id = session.id; return r }(), Containerd_Task_V2_StateResponse.self)?.code == .notFound)

        let expected = [
            "/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit", "/tasks/paused",
            "/tasks/resumed", "/tasks/exit", "/tasks/delete",
        ]
        let allEvents = await eventually { session.topics.count >= expected.count }
        #expect(allEvents)
        #expect(session.topics == expected)
        #expect(session.events.get.allSatisfy { $0.header == session.namespace })
        if let exit = session.events.get.last(where: { $0.topic == "/tasks/exit" }) {
            #expect(exit.event.typeURL == "containerd.events.TaskExit")
            let decoded = try Containerd_Events_TaskExit(serializedBytes: [UInt8](exit.event.value))
            #expect(decoded.containerID == session.id && decoded.id == session.id && decoded.exitStatus == 137)
        }

        try await session.shutdown()
        let gone = await eventually { !session.shimAlive }
        #expect(gone, "shim \(session.shimPid) still running after Shutdown")
        let closed = await eventually { session.client?.isClosed == true }
        #expect(closed)

        // The delete command (containerd runs it after a shim is gone) answers a DeleteResponse.
        let cleanup = try await runProgram(
            shimBinary, session.shimArguments + ["-bundle", session.bundle, "delete"], cwd: session.bundle)
        #expect(cleanup.status == 0, "\(cleanup.stderr)")
        let response = try Containerd_Task_V2_DeleteResponse(serializedBytes: [UInt8](cleanup.stdout))
        #expect(response.exitStatus == 137)
        #expect(response.pid == created.pid)
        #expect(response.hasExitedAt)
    }

    @Test("stdin through a FIFO, CloseIO ends it; an early exit comes after the start event", arguments: runtimes)
    func stdinAndCloseIO(runtime: String) async throws {
        let session = try ShimSession(runtime: runtime)
        defer { session.cleanup() }
        try await session.writeSpec(args: ["cat"])
        try await session.start()
        let stdinPath = session.dir.file("in")
        #expect(mkfifo(stdinPath, 0o600) == 0)
        let stdout = try FIFOReader(session.dir.file("out"))
        defer { stdout.stop() }
        _ = try await session.call(
            "Create", try session.createRequest(stdin: stdinPath, stdout: session.dir.file("out"), stderr: session.dir.file("out")),
            Containerd_Task_V2_CreateTaskResponse.self)
        var start = Containerd_Task_V2_StartRequest()
        start.id = session.id
        _ = try await session.call("Start", start, Containerd_Task_V2_StartResponse.self)
        // The client's write end, kept open: only CloseIO can end cat's input.
        let writer = open(stdinPath, O_WRONLY)
        #expect(writer >= 0)
        defer { close(writer) }
        _ = "hello shim\n".withCString { write(writer, $0, strlen($0)) }
        let echoed = await eventually { stdout.text == "hello shim\n" }
        #expect(echoed, "\(stdout.text.debugDescription)")
        var closeIO = Containerd_Task_V2_CloseIORequest()
        closeIO.id = session.id
        closeIO.stdin = true
        _ = try await session.call("CloseIO", closeIO, Google_Protobuf_Empty.self)
        #expect(try await session.wait().exitStatus == 0)

        // A second container in the same shim would need a second id; here: delete, then a process that exits at
        // once, whose exit must still follow its start event.
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = session.id
        _ = try await session.call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        try await session.writeSpec(args: ["true"])
        _ = try await session.call("Create", try session.createRequest(), Containerd_Task_V2_CreateTaskResponse.self)
        let waiter = Task { try await session.wait() }
        _ = try await session.call("Start", start, Containerd_Task_V2_StartResponse.self)
        #expect(try await waiter.value.exitStatus == 0)
        _ = try await session.call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        let done = await eventually { session.topics.filter { $0 == "/tasks/delete" }.count == 2 }
        #expect(done)
        let topics = session.topics
        let second = Array(topics[(topics.firstIndex(of: "/tasks/delete") ?? 0)...].dropFirst())
        #expect(second == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"], "\(topics)")
        try await session.shutdown()
    }

    @Test("terminal: the pty master comes over the console socket; ResizePty sets its size", arguments: runtimes)
    func terminal(runtime: String) async throws {
        let session = try ShimSession(runtime: runtime)
        defer { session.cleanup() }
        try await session.writeSpec(args: ["sh", "-c", "stty size; tty"], terminal: true)
        try await session.start()
        // A file, not a FIFO: when Wait returns, everything the process printed must already be in it.
        let output = session.dir.file("tty.out")
        _ = try await session.call(
            "Create", try session.createRequest(stdout: "file://" + output, terminal: true),
            Containerd_Task_V2_CreateTaskResponse.self)
        var resize = Containerd_Task_V2_ResizePtyRequest()
        resize.id = session.id
        resize.width = 91
        resize.height = 27
        _ = try await session.call("ResizePty", resize, Google_Protobuf_Empty.self)
        var start = Containerd_Task_V2_StartRequest()
        start.id = session.id
        _ = try await session.call("Start", start, Containerd_Task_V2_StartResponse.self)
        #expect(try await session.wait().exitStatus == 0)
        // Output drained before the exit was reported.
        let text = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").replacingOccurrences(of: "\r", with: "")
        #expect(text.hasPrefix("27 91\n/dev/pts/"), "\(text.debugDescription) log: \(session.shimLog)")
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = session.id
        _ = try await session.call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        try await session.shutdown()
    }

    @Test("exec with a terminal: its pty takes the spec's consoleSize, or a ResizePty sent before Start", arguments: runtimes)
    func execTerminalSize(runtime: String) async throws {
        let session = try ShimSession(runtime: runtime)
        defer { session.cleanup() }
        try await session.writeSpec(args: ["sleep", "1000"])
        try await session.start()
        _ = try await session.call("Create", try session.createRequest(), Containerd_Task_V2_CreateTaskResponse.self)
        var start = Containerd_Task_V2_StartRequest()
        start.id = session.id
        _ = try await session.call("Start", start, Containerd_Task_V2_StartResponse.self)
        // Each exec waits until its pty has a size (busybox stty fails on a 0x0 pty; the shim may set the size just
        // after the process started), then prints it; it gives up after about 10 s.
        let script = "i=0; until [ -n \"$(stty size 2>/dev/null)\" ] || [ $i -ge 200 ]; do sleep 0.05; i=$((i+1)); done; stty size"
        let cases: [(id: String, consoleSize: (height: Int, width: Int)?, resize: (width: UInt32, height: UInt32)?, expected: String)] = [
            ("sized", (23, 88), nil, "23 88\n"), ("resized", nil, (101, 31), "31 101\n"),
        ]
        for item in cases {
            let output = session.dir.file(item.id + ".out")
            var exec = Containerd_Task_V2_ExecProcessRequest()
            exec.id = session.id
            exec.execID = item.id
            exec.terminal = true
            exec.stdout = "file://" + output
            exec.spec = try Self.execSpec(["sh", "-c", script], terminal: true, consoleSize: item.consoleSize)
            _ = try await session.call("Exec", exec, Google_Protobuf_Empty.self)
            if let size = item.resize {
                var resize = Containerd_Task_V2_ResizePtyRequest()
                resize.id = session.id
                resize.execID = item.id
                resize.width = size.width
                resize.height = size.height
                _ = try await session.call("ResizePty", resize, Google_Protobuf_Empty.self)
            }
            var startExec = Containerd_Task_V2_StartRequest()
            startExec.id = session.id
            startExec.execID = item.id
            _ = try await session.call("Start", startExec, Containerd_Task_V2_StartResponse.self)
            #expect(try await session.wait(item.id).exitStatus == 0)
            let text = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").replacingOccurrences(of: "\r", with: "")
            #expect(text == item.expected, "\(item.id): \(text.debugDescription) log: \(session.shimLog)")
            var delete = Containerd_Task_V2_DeleteRequest()
            delete.id = session.id
            delete.execID = item.id
            _ = try await session.call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        }
        var kill = Containerd_Task_V2_KillRequest()
        kill.id = session.id
        kill.signal = 9
        _ = try await session.call("Kill", kill, Google_Protobuf_Empty.self)
        #expect(try await session.wait().exitStatus == 137)
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = session.id
        _ = try await session.call("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        try await session.shutdown()
    }

    @Test("a runtime failure reports the runtime's own error", arguments: runtimes)
    func runtimeFailure(runtime: String) async throws {
        let session = try ShimSession(runtime: runtime)
        defer { session.cleanup() }
        try await session.writeSpec(args: ["/no/such/program"])
        try await session.start()
        var failure = await session.failure("Create", try session.createRequest(), Containerd_Task_V2_CreateTaskResponse.self)
        if failure == nil {
            var start = Containerd_Task_V2_StartRequest()
            start.id = session.id
            failure = await session.failure("Start", start, Containerd_Task_V2_StartResponse.self)
        }
        let error = try #require(failure)
        #expect(error.message.hasPrefix("OCI runtime "), "\(error)")
        #expect(error.message.contains("/no/such/program") || error.message.contains("no such file"), "\(error)")
        var state = Containerd_Task_V2_StateRequest()
        state.id = "nope"
        #expect(await session.failure("State", state, Containerd_Task_V2_StateResponse.self)?.code == .notFound)
        // Clean up whatever the runtime left, then the shim can go.
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = session.id
        _ = await session.failure("Delete", delete, Containerd_Task_V2_DeleteResponse.self)
        try await session.shutdown()
    }
}
