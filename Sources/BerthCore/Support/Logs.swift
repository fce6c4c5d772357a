import Foundation
import Logging

/// Daemon logging: containerd's level names and text or JSON lines on stderr.
public enum Logs {
    /// Maps containerd's (logrus) level names; nil for an unknown name.
    public static func level(_ name: String) -> Logger.Level? {
        switch name.lowercased() {
        case "", "info": return .info
        case "trace": return .trace
        case "debug": return .debug
        case "warn", "warning": return .warning
        case "error": return .error
        case "fatal", "panic": return .critical
        default: return nil
        }
    }

    /// Installs the process-wide log handler once (swift-log allows one bootstrap per process).
    public static func bootstrap(level: Logger.Level, json: Bool) {
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, json: json)
            handler.logLevel = level
            return handler
        }
    }
}

/// One line per entry on stderr, flushed at once: `time level message key=value` or a JSON object.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let json: Bool

    public init(label: String, json: Bool) {
        self.label = label
        self.json = json
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        let time = RFC3339.format(Date(), fractionDigits: 3, zone: false)
        let line: String
        if json {
            var object: [String: String] = ["time": time, "level": "\(event.level)", "msg": "\(event.message)"]
            for (key, value) in all { object[key] = "\(value)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            line = String(decoding: data, as: UTF8.self)
        } else {
            let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quote("\($0.value)"))" }
            line = ([time, "\(event.level)".uppercased(), "\(event.message)"] + fields).joined(separator: " ")
        }
        // FileHandle.write traps on EPIPE; a closed stderr must not take the daemon down.
        _ = FileSystem.writeAll(2, Array((line + "\n").utf8))
    }

    static func quote(_ value: String) -> String {
        value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) ? "\"\(value.replacingOccurrences(of: "\"", with: "\\\""))\"" : value
    }
}
