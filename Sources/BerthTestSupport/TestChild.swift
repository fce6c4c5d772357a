import Foundation
import Glibc

/// A crash test's child: this test binary run again with only `test` selected and `variable=value` in its
/// environment, which makes that test act as the child instead of the parent. Output goes to `log`.
public struct TestChild {
    public let process: Process
    public let log: String

    public static func launch(test: String, variable: String, value: String, log: String) throws -> TestChild {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["--testing-library", "swift-testing", "--filter", test]
        var environment = ProcessInfo.processInfo.environment
        environment[variable] = value
        process.environment = environment
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = output
        process.standardError = output
        try process.run()
        return TestChild(process: process, log: log)
    }

    /// SIGKILLs the child and reaps it; says whether it was still running then.
    public func kill() -> Bool {
        let wasRunning = process.isRunning
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return wasRunning
    }

    /// What the child printed.
    public var output: String {
        FileManager.default.contents(atPath: log).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// One kill round: waits until the child has written a count of at least `target` to `progress` (or it exits,
    /// or 180 s pass), waits a random 0…`jitterMicroseconds` more, SIGKILLs it. Returns the count it had reached
    /// and whether it was still running when killed.
    public func killAfterProgress(_ progress: String, target: Int, jitterMicroseconds: Int) async throws
        -> (done: Int, wasRunning: Bool)
    {
        let deadline = Date().addingTimeInterval(180)
        var done = 0
        while Date() < deadline && process.isRunning {
            done = FileManager.default.contents(atPath: progress).flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
            if done >= target { break }
            try await Task.sleep(for: .milliseconds(2))
        }
        try await Task.sleep(for: .microseconds(Int.random(in: 0...jitterMicroseconds)))
        return (done, kill())
    }
}
