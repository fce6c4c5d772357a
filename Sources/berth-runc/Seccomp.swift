import CBerthRunc
import CSeccomp
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Compiles linux.seccomp into classic BPF with libseccomp (in the parent), so the container process only
/// has to call seccomp(2) before exec. Uses the `_array` rule API (the variadic one does not import).
enum SeccompCompiler {
    /// Filter flags understood by seccomp(2).
    static let flagBits: [String: UInt32] = [
        "SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    ]

    static func action(_ name: String, errnoRet: UInt32?, defaultErrno: UInt32 = UInt32(EPERM)) throws -> UInt32 {
        switch name {
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return 0
        case "SCMP_ACT_KILL_PROCESS": return 0x8000_0000
        case "SCMP_ACT_TRAP": return 0x0003_0000
        case "SCMP_ACT_ERRNO": return 0x0005_0000 | ((errnoRet ?? defaultErrno) & 0xffff)
        case "SCMP_ACT_TRACE": return 0x7ff0_0000 | ((errnoRet ?? defaultErrno) & 0xffff)
        case "SCMP_ACT_LOG": return 0x7ffc_0000
        case "SCMP_ACT_ALLOW": return 0x7fff_0000
        case "SCMP_ACT_NOTIFY": return 0x7fc0_0000
        default: throw RuncError("seccomp: unknown action \(name)")
        }
    }

    static func op(_ name: String) throws -> UInt32 {
        let ops = ["SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
                   "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7]
        guard let v = ops[name] else { throw RuncError("seccomp: unknown operator \(name)") }
        return UInt32(v)
    }

    /// Returns the BPF program bytes (an array of struct sock_filter), the seccomp(2) flags, and whether a rule
    /// notifies (then the container process hands a listener fd to listenerPath, see `sendListener`).
    static func compile(_ s: Spec.Seccomp) throws -> (bpf: [UInt8], flags: UInt32, notify: Bool) {
        let defaultAction = try action(s.defaultAction, errnoRet: s.defaultErrnoRet)
        let notify = s.defaultAction == "SCMP_ACT_NOTIFY" || (s.syscalls ?? []).contains { $0.action == "SCMP_ACT_NOTIFY" }
        if notify && (s.listenerPath ?? "").isEmpty {
            throw RuncError("seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
        }
        guard let ctx = seccomp_init(defaultAction) else { throw RuncError("seccomp: seccomp_init failed") }
        defer { seccomp_release(ctx) }
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)
        for arch in s.architectures ?? [] {
            let name = arch.hasPrefix("SCMP_ARCH_") ? String(arch.dropFirst(10)).lowercased() : arch.lowercased()
            let token = seccomp_arch_resolve_name(name)
            if token == 0 { Log.warn("seccomp: unknown architecture \(arch)"); continue }
            let r = seccomp_arch_add(ctx, token)
            if r < 0 && r != -EEXIST { throw RuncError.sys("seccomp: add architecture \(arch)", -r) }
        }
        var flags: UInt32 = 0
        for f in s.flags ?? [] {
            guard let bit = flagBits[f] else { throw RuncError("seccomp: unsupported flag \(f)") }
            flags |= bit
        }
        for rule in s.syscalls ?? [] {
            let act = try action(rule.action, errnoRet: rule.errnoRet)
            if act == defaultAction { continue }
            let conds = try (rule.args ?? []).map { a in
                scmp_arg_cmp(arg: a.index, op: scmp_compare(rawValue: try op(a.op)), datum_a: a.value, datum_b: a.valueTwo ?? 0)
            }
            // Conditions on the same argument are alternatives: one rule each (as runc does).
            let indices = Set(conds.map(\.arg))
            let groups: [[scmp_arg_cmp]] = indices.count == conds.count ? [conds] : conds.map { [$0] }
            for name in rule.names {
                let nr = seccomp_syscall_resolve_name(name)
                if nr == __NR_SCMP_ERROR { continue }  // not on this architecture: ignored like runc
                for g in groups {
                    let r = g.withUnsafeBufferPointer { buf in
                        seccomp_rule_add_array(ctx, act, nr, UInt32(buf.count), buf.baseAddress)
                    }
                    if r < 0 { throw RuncError.sys("seccomp: add rule for \(name)", -r) }
                }
            }
        }
        let fd = brc_memfd("berth-runc-seccomp")
        guard fd >= 0 else { throw RuncError.sys("seccomp: memfd_create", -fd) }
        defer { close(fd) }
        let r = seccomp_export_bpf(ctx, fd)
        if r < 0 { throw RuncError.sys("seccomp: export BPF", -r) }
        let size = lseek(fd, 0, SEEK_END)
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(size), 0) }
        guard n == Int(size) else { throw RuncError("seccomp: short read of BPF") }
        return (bytes, flags, notify)
    }

    /// Passes a seccomp listener fd to the agent at listenerPath as runc does: one message holding the
    /// container process state JSON (`fds: ["seccompFd"]`) with the fd attached (SCM_RIGHTS).
    static func sendListener(_ fd: Int32, _ s: Spec.Seccomp?, state record: ContainerRecord) throws {
        guard let path = s?.listenerPath, !path.isEmpty else { throw RuncError("seccomp: no listenerPath") }
        let sock = brc_connect_unix(path)
        if sock < 0 { throw RuncError.sys("seccomp: connect to listenerPath \(path)", -sock) }
        defer { close(sock) }
        let json = "{\"ociVersion\":\"1.2.0\",\"fds\":[\"seccompFd\"],\"pid\":\(record.pid),"
            + "\"metadata\":\(jsonString(s?.listenerMetadata ?? "")),\"state\":\(record.hookState(status: "creating"))}"
        let r = json.withCString { brc_send_text_fd(sock, $0, strlen($0), fd) }
        if r < 0 { throw RuncError.sys("seccomp: send listener fd to \(path)", -r) }
    }
}
