// Task Stats: cgroup v1 figures of the init process' cgroups, encoded by hand as containerd's
// `io.containerd.cgroups.v1.Metrics` (pids, cpu usage, memory usage and the main memory.stat counters).
#if canImport(Glibc)
import Glibc
#endif
import BerthTTRPC
import SwiftProtobuf

enum CgroupStats {
    static func metrics(pid: Int32) throws(TTRPCError) -> Google_Protobuf_Any {
        guard pid > 0, let table = readFile("/proc/\(pid)/cgroup") else {
            throw TTRPCError(.notFound, "cgroup of process \(pid) not found (the task is not running)")
        }
        var paths: [String: String] = [:]
        for line in String(decoding: table, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            for controller in parts[1].split(separator: ",") { paths[String(controller)] = String(parts[2]) }
            if parts[1].contains(",") { paths[String(parts[1])] = String(parts[2]) }
        }
        guard paths["memory"] != nil || paths["cpuacct"] != nil || paths["pids"] != nil else {
            throw TTRPCError(.unimplemented, "berth-shim: stats need cgroup v1 controllers (memory, cpuacct, pids)")
        }
        func value(_ controller: String, _ mount: String, _ file: String) -> UInt64? {
            guard let path = paths[controller], let bytes = readFile("/sys/fs/cgroup/\(mount)\(path)/\(file)") else { return nil }
            let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace
            return text == "max" ? 0 : UInt64(text)
        }
        var metrics = ProtoWriter()
        var pids = ProtoWriter()
        pids.uint(1, value("pids", "pids", "pids.current"))
        pids.uint(2, value("pids", "pids", "pids.max"))
        metrics.message(2, pids.bytes)
        let cpuMount = fileExists("/sys/fs/cgroup/cpu,cpuacct") ? "cpu,cpuacct" : "cpuacct"
        var usage = ProtoWriter()
        usage.uint(1, value("cpuacct", cpuMount, "cpuacct.usage"))
        usage.uint(2, value("cpuacct", cpuMount, "cpuacct.usage_sys"))
        usage.uint(3, value("cpuacct", cpuMount, "cpuacct.usage_user"))
        var cpu = ProtoWriter()
        cpu.message(1, usage.bytes)
        metrics.message(3, cpu.bytes)
        var memory = ProtoWriter()
        if let path = paths["memory"], let stat = readFile("/sys/fs/cgroup/memory\(path)/memory.stat") {
            let fields: [String: Int] = [
                "cache": 1, "rss": 2, "rss_huge": 3, "mapped_file": 4, "dirty": 5, "writeback": 6, "pgpgin": 7,
                "pgpgout": 8, "pgfault": 9, "pgmajfault": 10, "inactive_anon": 11, "active_anon": 12,
                "inactive_file": 13, "active_file": 14, "unevictable": 15, "hierarchical_memory_limit": 16,
                "hierarchical_memsw_limit": 17, "total_cache": 18, "total_rss": 19, "total_rss_huge": 20,
                "total_mapped_file": 21, "total_dirty": 22, "total_writeback": 23, "total_pgpgin": 24,
                "total_pgpgout": 25, "total_pgfault": 26, "total_pgmajfault": 27, "total_inactive_anon": 28,
                "total_active_anon": 29, "total_inactive_file": 30, "total_active_file": 31, "total_unevictable": 32,
            ]
            var values: [(Int, UInt64)] = []
            for line in String(decoding: stat, as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: " ")
                if parts.count == 2, let field = fields[String(parts[0])], let number = UInt64(parts[1]) {
                    values.append((field, number))
                }
            }
            for (field, number) in values.sorted(by: { $0.0 < $1.0 }) { memory.uint(field, number) }
        }
        var entry = ProtoWriter()
        entry.uint(1, value("memory", "memory", "memory.limit_in_bytes"))
        entry.uint(2, value("memory", "memory", "memory.usage_in_bytes"))
        entry.uint(3, value("memory", "memory", "memory.max_usage_in_bytes"))
        entry.uint(4, value("memory", "memory", "memory.failcnt"))
        memory.message(33, entry.bytes)
        metrics.message(4, memory.bytes)
        var any = Google_Protobuf_Any()
        any.typeURL = "io.containerd.cgroups.v1.Metrics"
        any.value = .init(metrics.bytes)
        return any
    }
}

/// A minimal protobuf writer (varints and length-delimited fields).
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func uint(_ field: Int, _ value: UInt64?) {
        guard let value, value != 0 else { return }
        varint(UInt64(field) << 3)
        varint(value)
    }

    mutating func message(_ field: Int, _ body: [UInt8]) {
        varint(UInt64(field) << 3 | 2)
        varint(UInt64(body.count))
        bytes += body
    }
}

extension String {
    var trimmingWhitespace: String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
