#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthTestSupport
import Foundation

/// A directory under /var/tmp removed (after detaching any mount below it) when the test ends.
final class SnapshotScratch {
    let path: String

    init(_ prefix: String = "berth-snap-") throws {
        var template = Array(("/var/tmp/" + prefix + "XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard let made else { throw BerthError.internalError("mkdtemp: \(FileSystem.errnoMessage())") }
        path = String(cString: made)
    }

    deinit {
        for point in SnapshotterSuite.mountPoints(under: path).reversed() {
            try? Mounting.unmountAll(point, detach: true)
        }
        try? FileManager.default.removeItem(atPath: path)
    }

    func dir(_ name: String) throws -> String {
        let full = path + "/" + name
        try FileSystem.makeDirectories(full)
        return full
    }
}

func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw BerthError.internalError("create \(path): \(FileSystem.errnoMessage())") }
    defer { close(fd) }
    guard FileSystem.writeAll(fd, Array(text.utf8)) else { throw BerthError.internalError("write \(path)") }
}

func readFile(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

/// Runs a program and returns its standard output (throws on a non-zero exit).
func runTool(_ program: String, _ arguments: [String]) throws -> String {
    let result = try TestCommand.runBlocking(program, arguments)
    guard result.succeeded else {
        throw BerthError.internalError("\(program) \(arguments) exited \(result.status): \(result.stderr)")
    }
    return result.stdout
}
