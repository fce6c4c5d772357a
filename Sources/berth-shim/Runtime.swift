// The OCI runtime, driven through runc's command line: berth-runc by default, runc or any binary the runtime
// options name. Every invocation logs JSON to <bundle>/log.json; a failure is reported with the last error logged
// there, as containerd does ("OCI runtime create failed: …").
#if canImport(Glibc)
import Glibc
#endif
import BerthTTRPC

struct OCIRuntime: Sendable {
    /// The runtime executable (absolute).
    var binary: String
    /// The state root, namespace included (`<root>/<ns>`).
    var root: String
    var bundle: String
    var systemdCgroup: Bool

    var logPath: String { bundle + "/log.json" }

    /// The default runtime root when the options name none (containerd's runc root).
    static let defaultRoot = "/run/containerd/runc"

    /// Resolves the runtime for a task: `binaryName` (default berth-runc, next to this shim, then PATH).
    static func resolve(binaryName: String, root: String, namespace: String, bundle: String, systemdCgroup: Bool)
        throws(TTRPCError) -> OCIRuntime
    {
        let name = binaryName.isEmpty ? "berth-runc" : binaryName
        guard let binary = findExecutable(name) else {
            throw TTRPCError(.notFound, "runtime binary \(name) not found next to \(selfExecutable()) or in PATH")
        }
        return OCIRuntime(
            binary: binary, root: (root.isEmpty ? defaultRoot : root) + "/" + namespace, bundle: bundle,
            systemdCgroup: systemdCgroup)
    }

    private func argv(_ command: [String]) -> [String] {
        [binary, "--root", root, "--log", logPath, "--log-format", "json"]
            + (systemdCgroup ? ["--systemd-cgroup"] : []) + command
    }

    /// Runs one command; `fds` are its stdin/stdout/stderr (-1: /dev/null). Throws the runtime's error on failure.
    func run(_ command: [String], fds: [Int32] = [-1, -1, -1]) async throws(TTRPCError) {
        let exit = try await Reaper.shared.run(argv(command), fds: fds, cwd: bundle)
        if exit.status != 0 { throw failure(command.first ?? "command", exit.status) }
    }

    /// Runs a command and returns what it printed on stdout; `input` is written to its stdin.
    func output(_ command: [String], input: [UInt8]? = nil) async throws(TTRPCError) -> [UInt8] {
        let out = try makePipe()
        var inRead: Int32 = -1
        if let input {
            let pipe: (read: Int32, write: Int32)
            do { pipe = try makePipe() } catch {
                close(out.read)
                close(out.write)
                throw error
            }
            inRead = pipe.read
            // Runtime inputs are small JSON documents that fit in the pipe buffer, so this write never blocks.
            writeAll(pipe.write, input)
            close(pipe.write)
        }
        let reader = Task { await onThread { readAll(out.read) } }
        let exit: ExitRecord
        do {
            exit = try await Reaper.shared.run(argv(command), fds: [inRead, out.write, -1], cwd: bundle)
        } catch {
            close(out.write)
            if inRead >= 0 { close(inRead) }
            _ = await reader.value
            close(out.read)
            throw error
        }
        close(out.write)
        if inRead >= 0 { close(inRead) }
        let bytes = await reader.value
        close(out.read)
        if exit.status != 0 { throw failure(command.first ?? "command", exit.status) }
        return bytes
    }

    /// containerd's wording: "OCI runtime <cmd> failed: <last error in log.json>: unknown".
    func failure(_ command: String, _ status: Int32) -> TTRPCError {
        let message = Self.lastError(logPath) ?? "\(binary) \(command) exited with status \(status)"
        return TTRPCError(.unknown, "OCI runtime \(command) failed: \(message): unknown")
    }

    /// The `msg` of the last error-level line of a JSON runtime log.
    static func lastError(_ path: String) -> String? {
        guard let bytes = readFile(path) else { return nil }
        var last: String?
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let text = String(decoding: line, as: UTF8.self)
            guard JSONText.stringValue(text, key: "level") == "error" else { continue }
            if let message = JSONText.stringValue(text, key: "msg") { last = message }
        }
        return last
    }
}

/// Just enough JSON reading for runtime logs, `ps` output and spec annotations.
enum JSONText {
    /// The string value of the first `"key":` in `text`, unescaped.
    static func stringValue(_ text: String, key: String) -> String? {
        let chars = Array(text.utf8)
        let needle = Array("\"\(key)\"".utf8)
        var i = 0
        while i + needle.count <= chars.count {
            if Array(chars[i..<(i + needle.count)]) == needle {
                var j = i + needle.count
                while j < chars.count && (chars[j] == 0x20 || chars[j] == 0x09 || chars[j] == 0x0a || chars[j] == 0x0d) { j += 1 }
                if j < chars.count && chars[j] == UInt8(ascii: ":") {
                    j += 1
                    while j < chars.count && (chars[j] == 0x20 || chars[j] == 0x09 || chars[j] == 0x0a || chars[j] == 0x0d) { j += 1 }
                    if j < chars.count && chars[j] == UInt8(ascii: "\"") { return parseString(chars, from: j + 1) }
                }
            }
            i += 1
        }
        return nil
    }

    /// Parses a JSON string body starting after its opening quote.
    private static func parseString(_ chars: [UInt8], from start: Int) -> String? {
        var out: [UInt8] = []
        var i = start
        while i < chars.count {
            let c = chars[i]
            if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
            if c == UInt8(ascii: "\\") && i + 1 < chars.count {
                i += 1
                switch chars[i] {
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "u") where i + 4 < chars.count:
                    let hex = String(decoding: chars[(i + 1)...(i + 4)], as: UTF8.self)
                    if let value = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(value) {
                        out.append(contentsOf: Array(String(Character(scalar)).utf8))
                    }
                    i += 4
                default: out.append(chars[i])
                }
            } else {
                out.append(c)
            }
            i += 1
        }
        return nil
    }

    /// `process.consoleSize` of an OCI process spec (`"consoleSize":{"height":30,"width":90}`), if both are set.
    static func consoleSize(_ spec: [UInt8]) -> (width: UInt32, height: UInt32)? {
        let text = String(decoding: spec, as: UTF8.self)
        guard let key = text.firstRange(of: "\"consoleSize\""),
              let open = text[key.upperBound...].firstIndex(of: "{"),
              let close = text[open...].firstIndex(of: "}")
        else { return nil }
        let body = String(text[open...close])
        guard let width = integerValue(body, key: "width"), let height = integerValue(body, key: "height"),
              width > 0, height > 0
        else { return nil }
        return (width, height)
    }

    /// The unsigned integer value of `"key":` in a flat JSON object.
    static func integerValue(_ text: String, key: String) -> UInt32? {
        guard let range = text.firstRange(of: "\"\(key)\"") else { return nil }
        let rest = text[range.upperBound...].drop { $0 == " " || $0 == ":" || $0 == "\n" || $0 == "\t" }
        return UInt32(String(rest.prefix { $0.isNumber }))
    }

    /// The integers of a flat JSON array such as `[1,2,3]` (runc ps --format json).
    static func integers(_ bytes: [UInt8]) -> [Int32] {
        var result: [Int32] = []
        var current: Int32?
        for byte in bytes {
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                current = (current ?? 0) &* 10 &+ Int32(byte - UInt8(ascii: "0"))
            } else if let value = current {
                result.append(value)
                current = nil
            }
        }
        if let current { result.append(current) }
        return result
    }
}
