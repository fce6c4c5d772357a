import BerthTestSupport
import Foundation
import Testing

/// The output of a finished command (BerthTestSupport's runner).
typealias CommandResult = TestCommand.Result

/// Runs a program to completion with a time limit (killed after `timeout` seconds), blocking the calling thread:
/// call it off the cooperative pool. `input` is written to its stdin.
func execute(
    _ path: String, _ arguments: [String], timeout: Double = 30, environment: [String: String]? = nil,
    input: Data? = nil
) throws -> CommandResult {
    try TestCommand.runBlocking(path, arguments, environment: environment, input: input, timeout: timeout)
}

final class Locked<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ value: T) { self.value = value }
    func get() -> T { lock.withLock { value } }
    func set(_ newValue: T) { lock.withLock { value = newValue } }
    func update(_ body: (inout T) -> Void) { lock.withLock { body(&value) } }
}

/// Where `swift build` put berthd and berth: beside the test bundle (override with BERTH_BIN_DIR).
let binDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["BERTH_BIN_DIR"] { return dir }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.path + "/berthd") { return url.path }
    }
    return FileManager.default.currentDirectoryPath + "/.build/debug"
}()

let ctrPath = "/usr/bin/ctr"

/// A berthd on its own scratch root, state and socket, driven by real clients. Stopped with SIGTERM by `stop()`.
final class Daemon: @unchecked Sendable {
    let directory: String
    let socket: String
    let configPath: String
    let process: TestProcess
    let log = Locked(Data())

    /// Writes a config (the `extra` TOML appended) and starts berthd on it; waits until the socket answers.
    init(extra: String = "", arguments: [String] = [], directory: String? = nil, wait: Bool = true) throws {
        let dir = directory ?? "/tmp/berth-it-\(UUID().uuidString.prefix(8))"
        self.directory = dir
        self.socket = dir + "/s/berthd.sock"
        self.configPath = dir + "/config.toml"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: configPath) || !extra.isEmpty || directory == nil {
            try """
                version = 3
                root = "\(dir)/root"
                state = "\(dir)/state"
                \(extra)
                [grpc]
                  address = "\(socket)"
                [debug]
                  level = "debug"
                """.write(toFile: configPath, atomically: true, encoding: .utf8)
        }
        let log = self.log
        process = try TestProcess(binDirectory + "/berthd", ["--config", configPath] + arguments) { data in
            log.update { $0.append(data) }
        }
        if wait { try waitForSocket() }
    }

    var logText: String { String(decoding: log.get(), as: UTF8.self) }

    func waitForSocket(timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if isLive(socket) { return }
            if !process.isRunning { throw DaemonFailed(log: logText) }
            usleep(20_000)
        }
        throw DaemonFailed(log: "socket never appeared\n" + logText)
    }

    /// Waits for berthd to exit by itself; returns its status.
    func waitForExit(timeout: Double = 20) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    func ctr(_ arguments: [String], namespace: String? = nil, timeout: Double = 30) throws -> CommandResult {
        try execute(ctrPath, ["--address", socket] + (namespace.map { ["--namespace", $0] } ?? []) + arguments,
                    timeout: timeout)
    }

    func berth(_ arguments: [String], timeout: Double = 30) throws -> CommandResult {
        try execute(binDirectory + "/berth", ["--address", socket] + arguments, timeout: timeout)
    }

    /// SIGTERM; returns the exit status and how long the daemon took to exit.
    @discardableResult
    func stop() -> (status: Int32?, seconds: Double) {
        let start = Date()
        if process.isRunning { process.terminate() }
        let status = waitForExit(timeout: 10)
        if status == nil { kill(process.processIdentifier, SIGKILL) }
        return (status, Date().timeIntervalSince(start))
    }

    func remove() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

struct DaemonFailed: Error, CustomStringConvertible {
    let log: String
    var description: String { "berthd failed to start:\n\(log)" }
}

/// Runs `body` with a fresh daemon and always cleans it up.
func withDaemon<T>(extra: String = "", _ body: (Daemon) throws -> T) throws -> T {
    let daemon = try Daemon(extra: extra)
    defer { daemon.remove() }
    return try body(daemon)
}

/// Whether something accepts connections on the unix socket at `path` (a stale file does not count).
func isLive(_ path: String) -> Bool { TestContainerd.accepts(socket: path) }

/// A long-running client (an event subscription) whose stdout is collected as it arrives.
final class Capture: @unchecked Sendable {
    let process: TestProcess
    private let output = Locked(Data())

    init(_ path: String, _ arguments: [String]) throws {
        let output = self.output
        process = try TestProcess(path, arguments, mergeStderr: false) { data in output.update { $0.append(data) } }
    }

    var text: String { String(decoding: output.get(), as: UTF8.self) }

    func stop() { if process.isRunning { process.terminate() } }
}
