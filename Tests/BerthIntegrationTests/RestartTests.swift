import BerthAPI
import BerthCore
import BerthGRPC
import BerthTTRPC
import SwiftProtobuf
import Foundation
import Testing

/// kill -9 berthd with containers running (some exiting while it is down), restart it on the same root and state:
/// tasks come back with the right state, exits are delivered through Wait and events, output written while the
/// daemon was down is kept, and removing everything leaves no shim, runc state or bundle behind.
@Suite(.serialized, .enabled(if: TaskTestSupport.available)) struct RestartTests {
    typealias S = TaskTestSupport

    /// Wait through the Tasks API (ctr has no command that only waits).
    func wait(_ socket: String, namespace: String, id: String) async throws -> UInt32 {
        try await BerthConnection.with(address: socket, namespace: namespace) { c in
            var request = Containerd_Services_Tasks_V1_WaitRequest()
            request.containerID = id
            return try await Containerd_Services_Tasks_V1_Tasks.Client(wrapping: c.client)
                .wait(request, metadata: c.metadata).exitStatus
        }
    }

    @Test(arguments: S.shims) func killNineWithTwentyContainersThenRecover(shim: String) async throws {
        let namespace = "restart-\(UInt32.random(in: 0..<1_000_000))"
        let first = try await S.offPool { try Daemon(extra: S.runtimeConfig(shim: shim)) }
        defer {
            S.cleanup(first, namespace: namespace)
            first.remove()
        }
        let rootfs = try S.makeRootfs(in: first.directory)
        let logs = first.directory + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        // 8 sleepers, 6 that exit (status 5) while the daemon is down, 4 writers that print while it is down and
        // exit 0, 2 that exit after the restart (status 6). Marker files in the shared rootfs say when.
        let waitFor = { (marker: String) in "while [ ! -e /tmp/\(marker) ]; do sleep 0.1; done; " }
        var kinds: [String: (args: [String], exit: UInt32?)] = [:]
        for i in 0..<8 { kinds["sleep\(i)"] = (["/bin/sleep", "1000"], nil) }
        for i in 0..<6 { kinds["down\(i)"] = (["/bin/sh", "-c", waitFor("down") + "exit 5"], 5) }
        for i in 0..<4 {
            kinds["write\(i)"] = (["/bin/sh", "-c", waitFor("down") + "for i in $(seq 1 20); do echo line$i; done"], 0)
        }
        for i in 0..<2 { kinds["late\(i)"] = (["/bin/sh", "-c", waitFor("late") + "exit 6"], 6) }
        for (id, kind) in kinds.sorted(by: { $0.key < $1.key }) {
            let args = ["run", "-d", "--log-uri", "file://\(logs)/\(id).log", "--rootfs", rootfs, id] + kind.args
            let r = try await S.ctr(first, namespace, args)
            #expect(r.succeeded, "\(id): \(r.stderr)")
        }
        let running = try await S.offPool { try S.tasks(first, namespace: namespace) }
        #expect(running.count == 20, "\(running)")
        let shimsBefore = S.shimPids(first)
        #expect(shimsBefore.count == 20)

        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        // Now the "down" and "write" containers finish, while no daemon runs.
        FileManager.default.createFile(atPath: rootfs + "/tmp/down", contents: nil)
        let finished = kinds.keys.filter { $0.hasPrefix("down") || $0.hasPrefix("write") }.compactMap { running[$0]?.pid }
            .compactMap(Int32.init)
        let allExited = try await S.eventually(30) { finished.allSatisfy { kill($0, 0) != 0 } }
        #expect(allExited)

        let second = try await S.offPool { try Daemon(directory: first.directory) }
        defer { second.stop() }
        let events = try Capture(ctrPath, ["--address", second.socket, "events"])
        defer { events.stop() }
        let after = try await S.offPool { try S.tasks(second, namespace: namespace) }
        #expect(after.count == 20, "\(after)\n\(second.logText.suffix(3000))")
        for (id, kind) in kinds {
            let expected = id.hasPrefix("sleep") || id.hasPrefix("late") ? "RUNNING" : "STOPPED"
            #expect(after[id]?.status == expected, "\(id): \(String(describing: after[id]))")
            if let pid = after[id]?.pid { #expect(pid == running[id]?.pid, "\(id) changed pid") }
            if let code = kind.exit, !id.hasPrefix("late") {
                let status = try await wait(second.socket, namespace: namespace, id: id)
                let log = (try? String(contentsOfFile: "\(logs)/\(id).log", encoding: .utf8)) ?? ""
                #expect(status == code, "\(id): output \(log)")
            }
        }
        // Output written while the daemon was down is all there.
        for i in 0..<4 {
            let text = (try? String(contentsOfFile: "\(logs)/write\(i).log", encoding: .utf8)) ?? ""
            #expect(text == (1...20).map { "line\($0)\n" }.joined(), "write\(i): \(text)")
        }
        // Exits after the restart arrive through the reconnected shims: Wait answers and /tasks/exit is published.
        var probes = 0
        while !events.text.contains("/namespaces/create") && probes < 50 {
            probes += 1
            let name = "probe\(probes)"
            _ = try await S.ctr(second, nil, ["namespaces", "create", name])
            try await Task.sleep(for: .milliseconds(100))
        }
        FileManager.default.createFile(atPath: rootfs + "/tmp/late", contents: nil)
        for i in 0..<2 {
            let status = try await wait(second.socket, namespace: namespace, id: "late\(i)")
            #expect(status == 6)
        }
        let lateEvents = try await S.eventually(10) { events.text.contains("\"container_id\":\"late1\"") && events.text.contains("\"container_id\":\"late0\"") }
        #expect(lateEvents, "\(events.text)")

        // Remove everything: no shim, runc state, bundle or cgroup is left.
        for id in kinds.keys {
            _ = try await S.ctr(second, namespace, ["tasks", "kill", "-s", "KILL", id])
        }
        for id in kinds.keys {
            let stopped = try await S.eventually { try S.tasks(second, namespace: namespace)[id]?.status == "STOPPED" }
            #expect(stopped, "\(id)")
            let rm = try await S.ctr(second, namespace, ["tasks", "rm", id])
            #expect(rm.succeeded, "\(id): \(rm.stderr)")
            #expect(try await S.ctr(second, namespace, ["containers", "rm", id]).succeeded)
        }
        let noShims = try await S.eventually { S.shimPids(second).isEmpty }
        #expect(noShims, "\(S.shimPids(second))")
        let bundles = second.directory + "/state/io.containerd.runtime.v2.task/\(namespace)"
        let noBundles = try await S.eventually { ((try? FileManager.default.contentsOfDirectory(atPath: bundles)) ?? []).isEmpty }
        #expect(noBundles)
        let runcState = (try? FileManager.default.contentsOfDirectory(atPath: "/run/containerd/runc/\(namespace)")) ?? []
        #expect(runcState.isEmpty, "\(runcState)")
        // The namespace's cgroup (v1 pids hierarchy) has no container cgroups left below it.
        let parent = "/sys/fs/cgroup/pids/\(namespace)"
        let cgroups = ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [])
            .filter { Mounting.isDirectory("\(parent)/\($0)") }
        #expect(cgroups.isEmpty, "\(cgroups)")
        rmdir(parent)
    }

    /// A shim that outlived the daemon but no longer has a task (the daemon died between starting it and
    /// Tasks.Create reaching it; here the task is deleted straight through the shim while the daemon is down) is
    /// stopped at restart, its bundle removed, as containerd's "cleaning leaked shim process".
    @Test(arguments: S.shims) func leakedShimWithoutTaskIsStoppedOnRestart(shim: String) async throws {
        let namespace = "restart-\(UInt32.random(in: 0..<1_000_000))"
        let first = try await S.offPool { try Daemon(extra: S.runtimeConfig(shim: shim)) }
        defer {
            S.cleanup(first, namespace: namespace)
            first.remove()
        }
        try await runThenKillDaemon(first, namespace: namespace, id: "leaked")
        let bundle = first.directory + "/state/io.containerd.runtime.v2.task/\(namespace)/leaked"
        try await deleteTaskThroughShim(bundle: bundle, namespace: namespace, id: "leaked")
        let shims = S.shimPids(first)
        #expect(shims.count == 1, "\(shims)")

        let second = try await S.offPool { try Daemon(directory: first.directory) }
        defer { second.stop() }
        let stopped = try await S.eventually { S.shimPids(second).isEmpty }
        #expect(stopped, "shim still running: \(S.shimPids(second))")
        let noBundle = try await S.eventually { !FileManager.default.fileExists(atPath: bundle) }
        #expect(noBundle)
        #expect(try S.tasks(second, namespace: namespace).isEmpty)
        #expect(try await S.ctr(second, namespace, ["containers", "rm", "leaked"]).succeeded)
    }

    /// Runs container `id` (a sleep) detached, then kill -9s the daemon.
    func runThenKillDaemon(_ daemon: Daemon, namespace: String, id: String) async throws {
        let rootfs = try S.makeRootfs(in: daemon.directory)
        let r = try await S.ctr(daemon, namespace, ["run", "-d", "--rootfs", rootfs, id, "/bin/sleep", "1000"])
        #expect(r.succeeded, "\(r.stderr)")
        kill(daemon.process.processIdentifier, SIGKILL)
        daemon.process.waitUntilExit()
    }

    /// Kills, waits for and deletes the task `id` over the shim's own ttrpc socket (the address in the bundle),
    /// leaving the shim running with no task.
    func deleteTaskThroughShim(bundle: String, namespace: String, id: String) async throws {
        let text = try String(contentsOfFile: bundle + "/address", encoding: .utf8)
        let address = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let client = try TTRPCClient(path: String(address.dropFirst("unix://".count)))
        defer { client.close() }
        let service = "containerd.task.v2.Task"
        let metadata: TTRPCMetadata = [ttrpcNamespaceHeader: namespace]
        var kill = Containerd_Task_V2_KillRequest()
        kill.id = id
        kill.signal = UInt32(SIGKILL)
        let _: Google_Protobuf_Empty = try await client.call(
            service: service, method: "Kill", request: kill, metadata: metadata)
        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = id
        let _: Containerd_Task_V2_WaitResponse = try await client.call(
            service: service, method: "Wait", request: wait, metadata: metadata)
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = id
        let _: Containerd_Task_V2_DeleteResponse = try await client.call(
            service: service, method: "Delete", request: delete, metadata: metadata)
    }

    @Test(arguments: S.shims) func deadShimIsCleanedUpOnRestart(shim: String) async throws {
        let namespace = "restart-\(UInt32.random(in: 0..<1_000_000))"
        let first = try await S.offPool { try Daemon(extra: S.runtimeConfig(shim: shim)) }
        defer {
            S.cleanup(first, namespace: namespace)
            first.remove()
        }
        try await runThenKillDaemon(first, namespace: namespace, id: "victim")
        // The shim dies too while the daemon is down (its container keeps running until the shim's delete).
        for pid in S.shimPids(first) { kill(pid, SIGKILL) }

        let second = try await S.offPool { try Daemon(directory: first.directory) }
        defer { second.stop() }
        let gone = try await S.eventually { try S.tasks(second, namespace: namespace).isEmpty }
        #expect(gone)
        let bundle = second.directory + "/state/io.containerd.runtime.v2.task/\(namespace)/victim"
        let noBundle = try await S.eventually { !FileManager.default.fileExists(atPath: bundle) }
        #expect(noBundle)
        // The container record stays; a new task can be created for it.
        let start = try await S.ctr(second, namespace, ["tasks", "start", "-d", "victim"])
        #expect(start.succeeded, "\(start.stderr)")
        _ = try await S.ctr(second, namespace, ["tasks", "kill", "-s", "KILL", "victim"])
        _ = try await S.eventually { try S.tasks(second, namespace: namespace)["victim"]?.status == "STOPPED" }
        #expect(try await S.ctr(second, namespace, ["tasks", "rm", "victim"]).succeeded)
        #expect(try await S.ctr(second, namespace, ["containers", "rm", "victim"]).succeeded)
    }
}
