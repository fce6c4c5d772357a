#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// The snapshotter conformance suite, in the spirit of containerd's `snapshots/testsuite`: every backend runs the
/// same scenarios against the real kernel. Files are written through the mounts a snapshotter returns (mounted
/// with `Mounting`) and read back through children and views. A scenario throws `ConformanceFailure` naming
/// the first failed check; test targets run one `@Test` per scenario
/// (`@Test(arguments: SnapshotterSuite.Scenario.allCases)`). Needs root (mounts).
public struct SnapshotterSuite: Sendable {
    /// Opens a snapshotter rooted at a directory: once per scenario on a fresh directory, and again on the same
    /// directory where a scenario simulates a restart.
    public typealias Factory = @Sendable (_ root: String) async throws -> any Snapshotter

    public enum Scenario: String, CaseIterable, Sendable, CustomStringConvertible {
        case basic
        case statActive
        case statCommitted
        case transitivity
        case prepareViewFailing
        case update
        case remove
        case walk
        case layerFileUpdate
        case removeDirectoryInLowerLayer
        case chown
        case directoryPermissionOnCommit
        case removeIntermediateSnapshot
        case deletedFilesInChildSnapshot
        case moveFileFromLowerLayer
        case viewReadonly
        case multiParentView
        case statInWalk
        case closeTwice
        case rootPermission
        case layers128
        case commitNonActive
        case notFound
        case alreadyExists
        case usage
        case labels
        case concurrentPrepares
        case reopen
        case viewOnViewParent
        case cleanupKeepsSnapshots

        public var description: String { rawValue }
    }

    let factory: Factory
    /// Parent of the per-scenario directories; it must be on a file system the backend works on
    /// (overlay upper directories cannot live on overlay).
    let scratch: String

    public init(scratch: String = "/var/tmp", factory: @escaping Factory) {
        self.factory = factory
        self.scratch = scratch
    }

    /// Runs one scenario in a fresh directory (`root/` for the snapshotter, `work/` for mount points); whatever
    /// happens, mounts left under it are detached, the snapshotter closed and the directory removed.
    public func run(_ scenario: Scenario) async throws {
        let directory = try ConformanceFailure.makeTemporaryDirectory(
            in: scratch, prefix: "snap-\(scenario)-", suite: "snapshotter")
        let context = SnapshotterScenario(
            scenario: scenario, root: directory + "/root", work: directory + "/work", factory: factory)
        var opened: (any Snapshotter)?
        do {
            try FileSystem.makeDirectories(context.root, mode: 0o755)
            try FileSystem.makeDirectories(context.work, mode: 0o755)
            let snapshotter = try await factory(context.root)
            opened = snapshotter
            try await context.run(snapshotter)
        } catch {
            await Self.tearDown(directory, opened)
            if error is ConformanceFailure { throw error }
            throw context.fail("unexpected error: \(error)")
        }
        await Self.tearDown(directory, opened)
    }

    /// Runs every scenario, stopping at the first failure.
    public func runAll() async throws {
        for scenario in Scenario.allCases { try await run(scenario) }
    }

    static func tearDown(_ directory: String, _ snapshotter: (any Snapshotter)?) async {
        for point in mountPoints(under: directory).reversed() { try? Mounting.unmountAll(point, detach: true) }
        await snapshotter?.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Mount points at or below `directory`, from /proc/self/mountinfo (field 5), in mount order.
    public static func mountPoints(under directory: String) -> [String] {
        guard let text = try? FileSystem.read("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = String(fields[4]).replacingOccurrences(of: "\\040", with: " ")
            return point == directory || point.hasPrefix(directory + "/") ? point : nil
        }
    }
}

/// One scenario's directories and helpers: checks that throw `ConformanceFailure`, mounting, file access.
struct SnapshotterScenario: ConformanceChecks, Sendable {
    let scenario: SnapshotterSuite.Scenario
    let root: String
    let work: String
    let factory: SnapshotterSuite.Factory

    var suiteName: String { "snapshotter" }
    var scenarioName: String { scenario.rawValue }

    /// Mounts `mounts` at `work/<name>` (created), runs `body` with that path, always unmounts.
    func mounted<T>(_ mounts: [Mount], _ name: String, line: UInt = #line, _ body: (String) async throws -> T)
        async throws -> T
    {
        let target = work + "/" + name
        try FileSystem.makeDirectories(target)
        try check(!mounts.isEmpty, "no mounts returned for \(name)", line: line)
        return try await Mounting.withMounts(mounts, at: target) { try await body(target) }
    }

    /// Mounts the snapshot `key` (its current mounts) and runs `body`.
    func mounted<T>(_ snapshotter: any Snapshotter, _ key: String, line: UInt = #line,
                    _ body: (String) async throws -> T) async throws -> T
    {
        let mounts = try await snapshotter.mounts(key)
        return try await mounted(mounts, Self.safeName(key), line: line, body)
    }

    /// Prepares `key` on `parent`, mounts it, runs `body` on the mounted tree, unmounts and commits as `name`.
    func layer(_ snapshotter: any Snapshotter, _ name: String, parent: String = "", labels: [String: String] = [:],
               line: UInt = #line, _ body: (String) async throws -> Void) async throws
    {
        let key = name + "-active"
        let mounts = try await snapshotter.prepare(key, parent: parent, labels: labels)
        try await mounted(mounts, Self.safeName(key), line: line, body)
        try await snapshotter.commit(name, key: key, labels: labels)
    }

    static func safeName(_ key: String) -> String {
        String(key.map { $0 == "/" ? "_" : $0 })
    }

    // File helpers: plain syscalls so the suite sees exactly what the kernel does.

    /// Creates or truncates `path` with `text` and `mode`.
    func write(_ path: String, _ text: String, mode: mode_t = 0o644, line: UInt = #line) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw fail("create \(path): \(FileSystem.errnoMessage())", line: line) }
        defer { close(fd) }
        try check(FileSystem.writeAll(fd, Array(text.utf8)), "write \(path): \(FileSystem.errnoMessage())", line: line)
        try check(fchmod(fd, mode) == 0, "chmod \(path): \(FileSystem.errnoMessage())", line: line)
    }

    /// The file's text, or nil when it cannot be read (absent).
    func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    func expectFile(_ path: String, _ text: String, line: UInt = #line) throws {
        try equal(read(path), text, "content of \(path)", line: line)
    }

    func expectAbsent(_ path: String, line: UInt = #line) throws {
        var st = stat()
        try check(lstat(path, &st) != 0 && errno == ENOENT, "\(path) should not exist", line: line)
    }

    func makeDirectory(_ path: String, mode: mode_t = 0o755, line: UInt = #line) throws {
        try check(mkdir(path, mode) == 0, "mkdir \(path): \(FileSystem.errnoMessage())", line: line)
        try check(chmod(path, mode) == 0, "chmod \(path): \(FileSystem.errnoMessage())", line: line)
    }

    func removeAll(_ path: String, line: UInt = #line) throws {
        do { try FileManager.default.removeItem(atPath: path) } catch {
            throw fail("remove \(path): \(error)", line: line)
        }
    }

    func status(_ path: String, line: UInt = #line) throws -> stat {
        var st = stat()
        try check(lstat(path, &st) == 0, "lstat \(path): \(FileSystem.errnoMessage())", line: line)
        return st
    }

    func names(_ directory: String, line: UInt = #line) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: directory).sorted() } catch {
            throw fail("list \(directory): \(error)", line: line)
        }
    }
}
