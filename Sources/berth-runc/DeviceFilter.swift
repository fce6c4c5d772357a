#if canImport(Glibc)
import Glibc
#endif
import CBerthRunc

/// Device rules on cgroup v2, where there is no devices.allow/devices.deny: the rules are replayed through an
/// emulation of the v1 devices controller (so a rule list means the same on v1 and v2, as in runc), and the
/// resulting state is compiled into a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the container's cgroup.
struct DeviceFilter {
    /// One v1 exception entry: type 'c' or 'b', major/minor (nil: any), access bits (m=1, r=2, w=4 as the kernel's
    /// BPF_DEVCG_ACC_*).
    struct Entry: Equatable {
        var type: Character
        var major: Int64?
        var minor: Int64?
        var access: UInt32

        func rule(allow: Bool) -> Resources.DeviceRule {
            let bits = [("r", DeviceFilter.read), ("w", DeviceFilter.write), ("m", DeviceFilter.mknod)]
            return Resources.DeviceRule(allow: allow, type: String(type), major: major, minor: minor,
                                        access: bits.filter { access & $0.1 != 0 }.map(\.0).joined())
        }
    }

    /// Allow-by-default (v1 "blacklist" mode: the entries are denied) or deny-by-default (the entries are allowed).
    var defaultAllow = false
    var entries: [Entry] = []

    static let mknod: UInt32 = 1, read: UInt32 = 2, write: UInt32 = 4

    /// Parses "rwm" (any order, no repeats) into access bits; nil or "" means rwm.
    static func accessBits(_ text: String?) throws -> UInt32 {
        guard let text, !text.isEmpty else { return 7 }
        var bits: UInt32 = 0
        for ch in text {
            let bit: UInt32
            switch ch {
            case "m": bit = mknod
            case "r": bit = read
            case "w": bit = write
            default: throw RuncError("invalid device access \"\(text)\"")
            }
            guard bits & bit == 0 else { throw RuncError("invalid device access \"\(text)\"") }
            bits |= bit
        }
        return bits
    }

    /// The rules a container gets, in order: linux.resources.devices, then the devices of linux.devices, then the
    /// default allow list (runc 1.1's). FIFOs ('p') need no cgroup permission and are left out.
    static func containerRules(_ rules: [Resources.DeviceRule], extra: [Spec.Device]) -> [Resources.DeviceRule] {
        var all = rules
        for d in extra where d.type != "p" {
            all.append(Resources.DeviceRule(allow: true, type: d.type == "u" ? "c" : d.type, major: d.major, minor: d.minor,
                                            access: "rwm"))
        }
        let defaults: [(String, Int64?, Int64?, String)] = [
            ("c", nil, nil, "m"), ("b", nil, nil, "m"), ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"),
            ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 136, nil, "rwm"), ("c", 5, 2, "rwm"),
            ("c", 10, 200, "rwm"),
        ]
        for (t, major, minor, access) in defaults {
            all.append(Resources.DeviceRule(allow: true, type: t, major: major, minor: minor, access: access))
        }
        return all
    }

    /// The v1 text of a rule ("a", or "c 1:3 rwm"), as written to devices.allow/devices.deny.
    static func v1Text(_ r: Resources.DeviceRule) -> String {
        let t = r.type ?? "a"
        if t == "a" { return "a" }
        return "\(t) \(r.major.map { String($0) } ?? "*"):\(r.minor.map { String($0) } ?? "*") \(r.access ?? "rwm")"
    }

    /// Replays `rules` from deny-all, as the kernel's v1 controller treats writes to devices.allow/deny: type "a"
    /// switches the default and clears the entries; a rule against the default adds (or widens) an entry; a rule
    /// agreeing with the default takes its access bits away from the entry of exactly that type, major and minor.
    init(rules: [Resources.DeviceRule]) throws {
        for r in rules {
            let type = r.type ?? "a"
            switch type {
            case "a":
                defaultAllow = r.allow
                entries = []
                continue
            case "c", "b": break
            default: throw RuncError("invalid device rule type \"\(type)\"")
            }
            let access = try Self.accessBits(r.access)
            let e = Entry(type: type == "c" ? "c" : "b", major: r.major, minor: r.minor, access: access)
            let same = entries.firstIndex { $0.type == e.type && $0.major == e.major && $0.minor == e.minor }
            if r.allow != defaultAllow {
                if let i = same { entries[i].access |= access } else { entries.append(e) }
            } else {
                // v1 ignores a rule that would narrow a wildcard entry; runc refuses it rather than let the user
                // believe the device is covered, and so does berth-runc.
                let partials = [(nil, e.minor), (e.major, nil), (nil, nil)] as [(Int64?, Int64?)]
                for (major, minor) in partials where major != e.major || minor != e.minor {
                    if let w = entries.first(where: { $0.type == e.type && $0.major == major && $0.minor == minor }),
                       w.access & access != 0 {
                        let kind = defaultAllow ? "deny" : "allow"
                        throw RuncError("unable to remove '\(kind)' exception: device rule \"\(Self.v1Text(r))\" cannot punch "
                                        + "hole in existing wildcard rule \"\(Self.v1Text(w.rule(allow: !defaultAllow)))\"")
                    }
                }
                if let i = same {
                    entries[i].access &= ~access
                    if entries[i].access == 0 { entries.remove(at: i) }
                }
            }
        }
    }

    /// What the v1 controller answers for one access (`access` one or more bits), evaluated on the state: the
    /// model the tests hold against the kernel's v1 answers and the BPF program's.
    func allows(type: Character, major: UInt32, minor: UInt32, access: UInt32) -> Bool {
        func matches(_ e: Entry) -> Bool {
            e.type == type && (e.major.map { UInt32(truncatingIfNeeded: $0) == major } ?? true)
                && (e.minor.map { UInt32(truncatingIfNeeded: $0) == minor } ?? true)
        }
        if defaultAllow {
            // Denied if any entry matches even part of the access.
            return !entries.contains { matches($0) && $0.access & access != 0 }
        }
        // Allowed only if one entry covers all of it.
        return entries.contains { matches($0) && access & ~$0.access == 0 }
    }

    /// The eBPF program (struct bpf_insn, 8 bytes each, little-endian host order) for the state. The context is
    /// struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }.
    func program() -> [UInt64] {
        var insns: [UInt64] = []
        func insn(_ code: UInt8, dst: UInt8 = 0, src: UInt8 = 0, off: Int16 = 0, imm: Int32 = 0) {
            insns.append(UInt64(code) | UInt64(dst & 0xf) << 8 | UInt64(src & 0xf) << 12
                         | UInt64(UInt16(bitPattern: off)) << 16 | UInt64(UInt32(bitPattern: imm)) << 32)
        }
        let ldxw: UInt8 = 0x61, and32k: UInt8 = 0x54, rsh32k: UInt8 = 0x74, mov32x: UInt8 = 0xbc
        let jnek: UInt8 = 0x55, jeqk: UInt8 = 0x15, mov64k: UInt8 = 0xb7, exit: UInt8 = 0x95
        // r2 = type, r3 = access, r4 = major, r5 = minor
        insn(ldxw, dst: 2, src: 1, off: 0)
        insn(and32k, dst: 2, imm: 0xffff)
        insn(ldxw, dst: 3, src: 1, off: 0)
        insn(rsh32k, dst: 3, imm: 16)
        insn(ldxw, dst: 4, src: 1, off: 4)
        insn(ldxw, dst: 5, src: 1, off: 8)
        let verdict: Int32 = defaultAllow ? 0 : 1
        for e in entries {
            // Each test jumps past the rest of this entry's block (to the next entry) on a mismatch.
            var block: [(code: UInt8, dst: UInt8, src: UInt8, imm: Int32, isJump: Bool)] = []
            block.append((jnek, 2, 0, e.type == "b" ? 1 : 2, true))  // BPF_DEVCG_DEV_BLOCK = 1, _CHAR = 2
            if defaultAllow {
                if e.access != 7 {  // denied if the access shares a bit with the entry
                    block.append((mov32x, 6, 3, 0, false))
                    block.append((and32k, 6, 0, Int32(e.access), false))
                    block.append((jeqk, 6, 0, 0, true))
                }
            } else if e.access != 7 {  // allowed if the entry covers every requested bit
                block.append((mov32x, 6, 3, 0, false))
                block.append((and32k, 6, 0, Int32(~e.access & 7), false))
                block.append((jnek, 6, 0, 0, true))
            }
            if let major = e.major { block.append((jnek, 4, 0, Int32(truncatingIfNeeded: major), true)) }
            if let minor = e.minor { block.append((jnek, 5, 0, Int32(truncatingIfNeeded: minor), true)) }
            let end = block.count + 2  // the verdict's mov and exit
            for (i, b) in block.enumerated() {
                insn(b.code, dst: b.dst, src: b.src, off: b.isJump ? Int16(end - i - 1) : 0, imm: b.imm)
            }
            insn(mov64k, dst: 0, imm: verdict)
            insn(exit)
        }
        insn(mov64k, dst: 0, imm: defaultAllow ? 1 : 0)
        insn(exit)
        return insns
    }

    /// Loads the program and attaches it to the cgroup v2 directory `dir`, replacing berth-runc's earlier one
    /// (update) without a gap: the new program is attached before the old ones are detached.
    func attach(cgroup dir: String) throws {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw RuncError.sys("open \(dir)", errno) }
        defer { close(fd) }
        let insns = program()
        var log = [CChar](repeating: 0, count: 4096)
        let r = insns.withUnsafeBytes { p in
            brc_devices_filter_attach(fd, p.baseAddress, UInt32(insns.count), &log, UInt32(log.count))
        }
        if r < 0 {
            let detail = String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw RuncError.sys("attach the device filter to \(dir)" + (detail.isEmpty ? "" : " (\(detail))"), -r)
        }
    }
}
