#if canImport(Glibc)
    import Glibc
#endif
@testable import BerthArchive
import BerthCore
import BerthTestSupport
import Foundation
import Testing

/// Runs a shell script; fails the test with its stderr when it fails.
@discardableResult
func sh(_ script: String, input: Data? = nil) async throws -> String {
    let out = try await TestCommand.run("/bin/sh", ["-ec", script], input: input)
    guard out.status == 0 else { throw ScriptFailed(script: script, stderr: out.stderr) }
    return out.stdout
}

struct ScriptFailed: Error, CustomStringConvertible {
    let script: String
    let stderr: String
    var description: String { "script failed: \(script)\n\(stderr)" }
}

/// A scratch directory removed (after unmounting anything under it) when the test ends.
final class Scratch {
    let path: String

    init() throws {
        var template = Array("/tmp/berth-archive-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, let p = mkdtemp(base) else { return nil }
            return String(cString: p)
        }
        guard let made else { throw BerthError.internalError("mkdtemp failed") }
        path = made
    }

    func dir(_ name: String) throws -> String {
        let p = path + "/" + name
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    deinit {
        // Unmount anything a failed test left mounted below the scratch directory, deepest first.
        if let mounts = try? FileSystem.read("/proc/self/mountinfo") {
            let points = mounts.split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: " ")
                return fields.count > 4 && fields[4].hasPrefix(path + "/") ? String(fields[4]) : nil
            }
            for point in points.sorted(by: { $0.count > $1.count }) { umount2(point, 2) }
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Builds a tar in memory with Berth's writer.
func makeTar(_ entries: [(TarEntry, [UInt8])]) async throws -> [UInt8] {
    let sink = BufferSink()
    let writer = TarWriter(sink)
    for (entry, data) in entries {
        var entry = entry
        if entry.type == .regular { entry.size = Int64(data.count) }
        try await writer.writeHeader(entry)
        if !data.isEmpty { try await writer.write(data) }
    }
    try await writer.finish()
    return sink.bytes
}

func file(_ name: String, _ text: String, mode: UInt32 = 0o644) -> (TarEntry, [UInt8]) {
    (TarEntry(name: name, type: .regular, mode: mode, mtime: 1_600_000_000), Array(text.utf8))
}

func dir(_ name: String, mode: UInt32 = 0o755) -> (TarEntry, [UInt8]) {
    (TarEntry(name: name, type: .directory, mode: mode, mtime: 1_600_000_000), [])
}

func symlink(_ name: String, _ target: String) -> (TarEntry, [UInt8]) {
    (TarEntry(name: name, type: .symlink, mode: 0o777, mtime: 1_600_000_000, linkname: target), [])
}

func hardlink(_ name: String, _ target: String) -> (TarEntry, [UInt8]) {
    (TarEntry(name: name, type: .hardlink, mode: 0o644, mtime: 1_600_000_000, linkname: target), [])
}

/// gzip of `bytes` with Berth's compressor.
func gzip(_ bytes: [UInt8]) async throws -> [UInt8] {
    let sink = BufferSink()
    let compressor = try Compression.gzip.compressing(sink)
    try await compressor.write(bytes)
    try await compressor.finish()
    return sink.bytes
}

func lstatOf(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

func readText(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

/// A listing of every path under `root` with type, mode, owner, size, link target and content hash, for
/// comparing trees.
func manifest(_ root: String) async throws -> String {
    try await sh("cd '\(root)' && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do "
        + "s=$(stat -c '%F %a %u:%g %s %t:%T' \"$p\"); "
        + "if [ -L \"$p\" ]; then s=\"$s -> $(readlink \"$p\")\"; elif [ -f \"$p\" ]; then s=\"$s $(sha256sum < \"$p\" | cut -c1-16)\"; fi; "
        + "echo \"$p $s\"; done")
}
