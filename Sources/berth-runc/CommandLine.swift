import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// An error that ends a command: one line on stderr (and in the --log file), exit status `code`.
struct RuncError: Error, CustomStringConvertible {
    var message: String
    var code: Int32 = 1
    init(_ message: String, code: Int32 = 1) { self.message = message; self.code = code }
    var description: String { message }

    /// An error from a failed system call (errno in `err`).
    static func sys(_ what: String, _ err: Int32) -> RuncError { RuncError("\(what): \(String(cString: strerror(err)))") }
}

/// Flags parsed the way runc's CLI (Go flag package) does: `--name value`, `--name=value`, `-name value`,
/// flags stop at the first positional argument or `--`.
struct ParsedFlags {
    var values: [String: [String]] = [:]
    var bools: Set<String> = []
    var positional: [String] = []

    func value(_ name: String) -> String? { values[name]?.last }
    func all(_ name: String) -> [String] { values[name] ?? [] }
    func has(_ name: String) -> Bool { bools.contains(name) }

    /// `boolNames` and `valueNames` list canonical names with aliases, e.g. "bundle,b".
    static func parse(_ args: [String], bools boolNames: [String], values valueNames: [String]) throws -> ParsedFlags {
        var canonical: [String: (String, Bool)] = [:]
        for spec in boolNames {
            let names = spec.split(separator: ",").map(String.init)
            for n in names { canonical[n] = (names[0], true) }
        }
        for spec in valueNames {
            let names = spec.split(separator: ",").map(String.init)
            for n in names { canonical[n] = (names[0], false) }
        }
        canonical["help"] = ("help", true)
        canonical["h"] = ("help", true)
        var result = ParsedFlags()
        var i = 0
        while i < args.count {
            let arg = args[i]
            if arg == "--" { result.positional += args[(i + 1)...]; break }
            guard arg.hasPrefix("-"), arg.count > 1 else { result.positional += args[i...]; break }
            var name = String(arg.drop(while: { $0 == "-" }))
            var inline: String?
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let (canon, isBool) = canonical[name] else {
                throw RuncError("flag provided but not defined: -\(name)")
            }
            if isBool {
                if let inline, inline == "false" { result.bools.remove(canon) } else { result.bools.insert(canon) }
            } else if let inline {
                result.values[canon, default: []].append(inline)
            } else {
                guard i + 1 < args.count else { throw RuncError("flag needs an argument: -\(name)") }
                i += 1
                result.values[canon, default: []].append(args[i])
            }
            i += 1
        }
        return result
    }
}

/// Global options (before the command name).
struct Globals: Sendable {
    var root = "/run/berth-runc"
    var logPath: String?
    var logFormat = "text"
    var debug = false
    var systemdCgroup = false
}

/// Writes runc-style log lines to the --log file (text or json).
enum Log {
    nonisolated(unsafe) static var path: String?
    nonisolated(unsafe) static var json = false
    nonisolated(unsafe) static var debugEnabled = false

    static func write(level: String, _ message: String) {
        guard let path else { return }
        let time = rfc3339(Date())
        let line: String
        if json {
            line = "{\"level\":\"\(level)\",\"msg\":\(jsonString(message)),\"time\":\"\(time)\"}\n"
        } else {
            line = "time=\"\(time)\" level=\(level) msg=\(jsonString(message))\n"
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        _ = line.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
    }
    static func error(_ message: String) { write(level: "error", message) }
    static func warn(_ message: String) {
        write(level: "warning", message)
        if path == nil { printErr("WARN: \(message)") }
    }
    static func debug(_ message: String) { if debugEnabled { write(level: "debug", message) } }
}

func printErr(_ s: String) {
    let line = s + "\n"
    _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
}

func printOut(_ s: String) {
    let line = s + "\n"
    line.utf8CString.withUnsafeBufferPointer { buf in
        var off = 0
        let n = buf.count - 1
        while off < n {
            let w = Glibc.write(1, buf.baseAddress.map { $0 + off }, n - off)
            if w <= 0 { break }
            off += w
        }
    }
}

/// A JSON string literal for `s`.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// RFC 3339 with nanoseconds in UTC, the format of runc's `created` field.
func rfc3339(_ date: Date) -> String {
    let t = date.timeIntervalSince1970
    var secs = time_t(t.rounded(.down))
    let nanos = Int((t - Double(secs)) * 1e9)
    var tmv = tm()
    gmtime_r(&secs, &tmv)
    func pad(_ v: Int32, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
    let ns = String(nanos)
    let nsPadded = String(repeating: "0", count: max(0, 9 - ns.count)) + ns
    return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2)).\(nsPadded)Z"
}

/// Reads a whole file; nil if it cannot be read.
/// The whole file, read with read(2) to its end (Foundation stops after 4 KiB of a /proc file such as mountinfo).
func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return n == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
        bytes.append(contentsOf: buffer[0..<n])
    }
}

/// Writes `contents` to `path` (no create), returning errno on failure.
func writeFile(_ path: String, _ contents: String) -> Int32 {
    let fd = open(path, O_WRONLY | O_CLOEXEC | O_TRUNC)
    guard fd >= 0 else { return errno }
    defer { close(fd) }
    let r = contents.withCString { Glibc.write(fd, $0, strlen($0)) }
    return r < 0 ? errno : 0
}

/// Writes a file atomically (temp file in the same directory + rename).
func writeAtomically(_ path: String, _ data: Data, mode: mode_t = 0o600) throws {
    let tmp = path + ".tmp\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw RuncError.sys("open \(tmp)", errno) }
    let ok = data.withUnsafeBytes { raw -> Bool in
        guard let base = raw.baseAddress else { return true }
        var off = 0
        while off < raw.count {
            let w = Glibc.write(fd, base + off, raw.count - off)
            if w <= 0 { return false }
            off += w
        }
        return true
    }
    close(fd)
    guard ok, rename(tmp, path) == 0 else {
        let e = errno
        unlink(tmp)
        throw RuncError.sys("write \(path)", e)
    }
}

extension String {
    /// The string without leading and trailing whitespace and newlines.
    var trimmed: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        return String(self.drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
