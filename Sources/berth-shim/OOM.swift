// OOM notices for `/tasks/oom`, as containerd's shim sends them. cgroup v1 (also the memory controller of a hybrid
// layout): an eventfd registered for the container's `memory.oom_control` through `cgroup.event_control`; the
// kernel signals it when the cgroup hits its limit and once more when the cgroup is removed (then the watch
// ends). cgroup v2 (unified): inotify on `memory.events`, reporting each rise of its `oom_kill` counter.
#if canImport(Glibc)
import Glibc
#endif
import CBerthShim

enum OOMWatch {
    /// Watches the memory cgroup of `pid` on a thread of its own until that cgroup is removed; `notify` runs once
    /// per OOM. Returns false (and logs why) when there is no memory cgroup to watch.
    @discardableResult
    static func start(pid: Int32, notify: @escaping @Sendable () -> Void) -> Bool {
        guard pid > 0, let table = readFile("/proc/\(pid)/cgroup") else { return false }
        var v1Path: String?
        var v2Path: String?
        for line in String(decoding: table, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            if parts[1].split(separator: ",").contains("memory") { v1Path = String(parts[2]) }
            if parts[0] == "0" && parts[1].isEmpty { v2Path = String(parts[2]) }
        }
        if let v1Path, fileExists("/sys/fs/cgroup/memory\(v1Path)/memory.oom_control") {
            return watchV1("/sys/fs/cgroup/memory\(v1Path)", notify: notify)
        }
        if let v2Path, fileExists("/sys/fs/cgroup\(v2Path)/memory.events") {
            return watchV2("/sys/fs/cgroup\(v2Path)/memory.events", notify: notify)
        }
        ShimLog.write("no memory cgroup to watch for OOM (pid \(pid))")
        return false
    }

    private static func watchV1(_ directory: String, notify: @escaping @Sendable () -> Void) -> Bool {
        let event = berth_shim_eventfd()
        guard event >= 0 else {
            ShimLog.write("oom watch: eventfd: \(errnoText(-event))")
            return false
        }
        let control = open(directory + "/memory.oom_control", O_RDONLY | O_CLOEXEC)
        let register = open(directory + "/cgroup.event_control", O_WRONLY | O_CLOEXEC)
        defer { if register >= 0 { close(register) } }
        guard control >= 0, register >= 0, writeAll(register, Array("\(event) \(control)".utf8)) else {
            ShimLog.write("oom watch: register on \(directory): \(errnoText(errno))")
            close(event)
            if control >= 0 { close(control) }
            return false
        }
        let cgroup = inode(directory)
        startThread {
            var count: UInt64 = 0
            while true {
                let n = read(event, &count, 8)
                if n < 0 && errno == EINTR { continue }
                if n != 8 { break }
                // The last signal comes from the cgroup's removal, not from an OOM (a new task of the same id may
                // already have made a cgroup at the same path: the inode tells them apart).
                if cgroup == nil || inode(directory) != cgroup { break }
                notify()
            }
            close(control)
            close(event)
        }
        return true
    }

    private static func watchV2(_ eventsPath: String, notify: @escaping @Sendable () -> Void) -> Bool {
        let watch = berth_shim_inotify_modify(eventsPath)
        guard watch >= 0 else {
            ShimLog.write("oom watch: inotify on \(eventsPath): \(errnoText(-watch))")
            return false
        }
        let directory = dirname(eventsPath)
        let cgroup = inode(directory)
        startThread {
            var seen = oomKills(eventsPath) ?? 0
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(watch, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0, cgroup != nil, inode(directory) == cgroup, let now = oomKills(eventsPath) else { break }
                if now > seen { notify() }
                seen = now
            }
            close(watch)
        }
        return true
    }

    /// The inode of a cgroup directory, nil when it is gone.
    static func inode(_ path: String) -> UInt64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt64(info.st_ino)
    }

    /// The `oom_kill` counter of a cgroup v2 `memory.events` file; nil once the file is gone.
    static func oomKills(_ path: String) -> UInt64? {
        guard let bytes = readFile(path) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2 && parts[0] == "oom_kill" { return UInt64(parts[1]) }
        }
        return 0
    }
}
