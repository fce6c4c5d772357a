import BerthCore
import Foundation

/// The first failed check of a conformance scenario (content store or snapshotter): what was expected and what
/// happened, with the suite's own line.
public struct ConformanceFailure: Error, CustomStringConvertible, Sendable {
    /// "content store", "snapshotter".
    public var suite: String
    /// nil for a failure before any scenario ran (setup).
    public var scenario: String?
    public var message: String
    public var line: UInt

    public init(suite: String, scenario: String?, message: String, line: UInt = #line) {
        self.suite = suite
        self.scenario = scenario
        self.message = message
        self.line = line
    }

    public var description: String {
        "\(suite) conformance \(scenario ?? "setup"), check at line \(line): \(message)"
    }

    /// A fresh directory `<parent>/<prefix>XXXXXX` for one scenario.
    static func makeTemporaryDirectory(in parent: String, prefix: String, suite: String) throws -> String {
        var template = Array((parent.hasSuffix("/") ? parent : parent + "/").utf8CString.dropLast())
        template += Array((prefix + "XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard let made else {
            throw ConformanceFailure(
                suite: suite, scenario: nil, message: "mkdtemp in \(parent): \(FileSystem.errnoMessage())")
        }
        return String(cString: made)
    }
}

/// The checks every conformance scenario uses; each throws a `ConformanceFailure` naming the suite and scenario.
protocol ConformanceChecks {
    var suiteName: String { get }
    var scenarioName: String { get }
}

extension ConformanceChecks {
    func fail(_ message: String, line: UInt = #line) -> ConformanceFailure {
        ConformanceFailure(suite: suiteName, scenario: scenarioName, message: message, line: line)
    }

    func check(_ condition: Bool, _ message: @autoclosure () -> String, line: UInt = #line) throws {
        if !condition { throw fail(message(), line: line) }
    }

    func equal<T: Equatable>(_ actual: T, _ expected: T, _ what: String, line: UInt = #line) throws {
        if actual != expected { throw fail("\(what): got \(actual), expected \(expected)", line: line) }
    }

    /// Runs `body`, which must throw a `BerthError` with `code` whose description contains `text` (when given).
    @discardableResult
    func expectError<T>(
        _ code: BerthError.Code, containing text: String? = nil, _ what: String, line: UInt = #line,
        _ body: () async throws -> T
    ) async throws -> BerthError {
        let outcome: BerthError
        do {
            let value = try await body()
            throw fail("\(what): succeeded with \(value), expected a \(code) error", line: line)
        } catch let failure as ConformanceFailure {
            throw failure
        } catch let error as BerthError {
            outcome = error
        } catch {
            throw fail("\(what): threw \(error), expected a BerthError \(code)", line: line)
        }
        try check(outcome.code == code, "\(what): got \(outcome.code) (\(outcome)), expected \(code)", line: line)
        if let text {
            try check(
                outcome.description.contains(text), "\(what): error \"\(outcome)\" lacks \"\(text)\"", line: line)
        }
        return outcome
    }
}
