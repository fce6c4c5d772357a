import Foundation
import Glibc

/// Runs a program to completion, killing it (SIGKILL) after `timeout` seconds: the one process runner of the tests.
/// `run` waits on a GCD thread, never on the cooperative pool; `runBlocking` is for code already off the pool.
public enum TestCommand {
    public struct Result: Sendable {
        public var status: Int32
        /// Standard output as bytes (binary output such as a tar stream).
        public var output: Data
        public var stderr: String
        public init(status: Int32, output: Data, stderr: String) {
            self.status = status
            self.output = output
            self.stderr = stderr
        }
        /// Standard output as UTF-8 text.
        public var stdout: String { String(decoding: output, as: UTF8.self) }
        public var succeeded: Bool { status == 0 }
    }

    public struct Failed: Error, CustomStringConvertible {
        public var command: String
        public var result: Result
        public var description: String { "\(command) exited \(result.status): \(result.stderr)\(result.stdout)" }
    }

    /// Runs `path arguments…` with `input` (if any) on its stdin, in `cwd`; the result carries the exit status
    /// whatever it is.
    public static func run(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
        cwd: String? = nil, timeout: Double = 120
    ) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Swift.Result {
                    try runBlocking(
                        path, arguments, environment: environment, input: input, cwd: cwd, timeout: timeout)
                })
            }
        }
    }

    /// Runs and throws `Failed` unless the program exits 0; returns its stdout.
    @discardableResult
    public static func check(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
        cwd: String? = nil, timeout: Double = 120
    ) async throws -> String {
        let result = try await run(path, arguments, environment: environment, input: input, cwd: cwd, timeout: timeout)
        guard result.succeeded else {
            throw Failed(command: ([path] + arguments).joined(separator: " "), result: result)
        }
        return result.stdout
    }

    /// `run` on the calling thread, which it blocks: only for threads outside the cooperative pool.
    public static func runBlocking(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
        cwd: String? = nil, timeout: Double = 120
    ) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe()
        let err = Pipe()
        let inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input == nil ? FileHandle.nullDevice : inp
        try process.run()
        let group = DispatchGroup()
        let outData = UncheckedBox(Data())
        let errData = UncheckedBox(Data())
        for (pipe, sink) in [(out, outData), (err, errData)] {
            group.enter()
            DispatchQueue.global().async {
                sink.value = pipe.fileHandleForReading.readDataToEndOfFile()
                group.leave()
            }
        }
        if let input {
            // A program that exits without reading all of its input must not kill the runner with SIGPIPE.
            signal(SIGPIPE, SIG_IGN)
            DispatchQueue.global().async {
                try? inp.fileHandleForWriting.write(contentsOf: input)
                try? inp.fileHandleForWriting.close()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        group.wait()
        return Result(status: process.terminationStatus, output: outData.value, stderr: String(decoding: errData.value, as: UTF8.self))
    }
}

/// A mutable value handed between GCD threads by code that orders the accesses itself.
final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
