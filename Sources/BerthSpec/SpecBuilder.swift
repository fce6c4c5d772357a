import BerthCore

/// Builds a container's spec the way `ctr run` does with containerd 1.6: the default spec, then the flags' env and
/// mounts, the image config, and the remaining flags in ctr's order.
public struct SpecBuilder: Sendable {
    /// What the builder needs from the host (privileged containers copy its capabilities and devices).
    public var host: HostInfo

    public init(host: HostInfo = .current) { self.host = host }

    public func build(
        id: String, namespace: String, image: ImageProcessConfig?, options: RunOptions,
        users: UserDatabase = UserDatabase(passwd: nil, group: nil)
    ) throws(BerthError) -> Spec {
        var spec = DefaultSpec.make(id: id, namespace: namespace)
        if !options.env.isEmpty {
            let env = Self.mergeEnv(spec.process?.env ?? [], options.env)
            spec.process?.env = env
        }
        if !options.mounts.isEmpty { spec.mounts = (spec.mounts ?? []) + options.mounts }
        if let image { try Self.applyImage(image, options: options, users: users, to: &spec) }
        if let user = options.user {
            try Self.applyUser(user, users: users, to: &spec)
            Self.applyAdditionalGids(String(spec.process?.user.uid ?? 0), users: users, to: &spec)
        }
        if options.readOnly { spec.root?.readonly = true }
        if image == nil || options.replaceEntrypoint, !options.args.isEmpty { spec.process?.args = options.args }
        if let cwd = options.cwd { spec.process?.cwd = cwd }
        if options.tty {
            spec.process?.terminal = true
            let env = (spec.process?.env ?? []) + ["TERM=xterm"]
            spec.process?.env = env
        }
        if options.privileged { applyPrivileged(&spec) }
        if options.network == .host {
            spec.linux?.namespaces?.removeAll { $0.type == "network" }
            spec.mounts = (spec.mounts ?? []) + ["/etc/hosts", "/etc/resolv.conf"].map {
                Mount(destination: $0, type: "bind", source: $0, options: ["rbind", "ro"])
            }
            let env = Self.mergeEnv(spec.process?.env ?? [], ["HOSTNAME=\(host.hostname)"])
            spec.process?.env = env
        }
        if let hostname = options.hostname { spec.hostname = hostname }
        try Self.applyCapabilities(add: options.capAdd, drop: options.capDrop, to: &spec)
        if options.seccomp && !options.privileged {
            spec.linux?.seccomp = SeccompProfile.defaultProfile(bounding: spec.process?.capabilities?.bounding ?? [])
        }
        var resources = spec.linux?.resources ?? Resources()
        if let cpus = options.cpus, cpus > 0 {
            resources.cpu = resources.cpu ?? CPU()
            resources.cpu?.quota = Int64(cpus * 100_000)
            resources.cpu?.period = 100_000
        }
        if let shares = options.cpuShares, shares > 0 {
            resources.cpu = resources.cpu ?? CPU()
            resources.cpu?.shares = shares
        }
        if let memory = options.memory, memory != 0 {
            resources.memory = resources.memory ?? Memory()
            resources.memory?.limit = memory
        }
        if let pids = options.pidsLimit {
            var p = Pids()
            p.limit = pids
            resources.pids = p
        }
        spec.linux?.resources = resources
        spec.annotations = (spec.annotations ?? [:]).merging(options.annotations) { $1 }
        return spec
    }

    /// containerd's `replaceOrAppendEnvValues`: overrides replace by key or append; a bare `KEY` unsets it.
    public static func mergeEnv(_ defaults: [String], _ overrides: [String]) -> [String] {
        var results: [String?] = defaults
        var index: [String: Int] = [:]
        for (i, e) in defaults.enumerated() { index[String(e.split(separator: "=", maxSplits: 1).first ?? "")] = i }
        for value in overrides {
            guard let eq = value.firstIndex(of: "=") else {
                if let i = index[value] { results[i] = nil }
                continue
            }
            let key = String(value[..<eq])
            if let i = index[key] {
                results[i] = value
            } else {
                index[key] = results.count
                results.append(value)
            }
        }
        return results.compactMap { $0 }
    }

    /// `oci.WithImageConfigArgs`: env (image's or the default PATH) under the flags' env, args, cwd, user and groups.
    static func applyImage(_ image: ImageProcessConfig, options: RunOptions, users: UserDatabase, to spec: inout Spec)
        throws(BerthError)
    {
        let defaults = image.env.isEmpty ? [DefaultSpec.defaultPath] : image.env
        let env = mergeEnv(defaults, spec.process?.env ?? [])
        spec.process?.env = env
        let cmd = options.args.isEmpty ? image.cmd : options.args
        spec.process?.args = image.entrypoint + cmd
        spec.process?.cwd = image.workingDir.isEmpty ? "/" : image.workingDir
        if !image.user.isEmpty {
            try applyUser(image.user, users: users, to: &spec)
            applyAdditionalGids(String(spec.process?.user.uid ?? 0), users: users, to: &spec)
        } else {
            applyAdditionalGids("root", users: users, to: &spec)
        }
    }

    /// `oci.WithUser`: `user`, `uid`, `user:group`, `uid:gid`, `uid:group` or `user:gid`.
    public static func applyUser(_ text: String, users: UserDatabase, to spec: inout Spec) throws(BerthError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var user = spec.process?.user ?? User()
        user.additionalGids = nil
        func id(_ s: String) -> UInt32? { UInt32(s).flatMap { $0 <= UInt32(Int32.max) ? $0 : nil } }
        switch parts.count {
        case 1:
            if let uid = id(parts[0]) {
                // A uid missing from /etc/passwd (or no passwd at all) runs with gid 0.
                let entry = users.users?.first { $0.uid == uid }
                (user.uid, user.gid) = (uid, entry?.gid ?? 0)
            } else {
                guard let entry = users.users?.first(where: { $0.name == parts[0] }) else {
                    throw .notFound("no users found matching \"\(parts[0])\" in the image's /etc/passwd")
                }
                (user.uid, user.gid) = (entry.uid, entry.gid)
            }
        case 2:
            if let uid = id(parts[0]) {
                user.uid = uid
            } else {
                guard let entry = users.users?.first(where: { $0.name == parts[0] }) else {
                    throw .notFound("no users found matching \"\(parts[0])\" in the image's /etc/passwd")
                }
                user.uid = entry.uid
            }
            if let gid = id(parts[1]) {
                user.gid = gid
            } else {
                guard let group = users.groups?.first(where: { $0.name == parts[1] }) else {
                    throw .notFound("no groups found matching \"\(parts[1])\" in the image's /etc/group")
                }
                user.gid = group.gid
            }
        default:
            throw .invalidArgument("invalid USER value \(text)")
        }
        user.additionalGids = ensurePrimary(user.gid, in: user.additionalGids)
        spec.process?.user = user
    }

    /// `oci.WithAdditionalGIDs`: the groups in /etc/group that list the user (by name, or uid resolved to a name).
    static func applyAdditionalGids(_ text: String, users: UserDatabase, to spec: inout Spec) {
        guard var user = spec.process?.user else { return }
        user.additionalGids = nil
        defer {
            user.additionalGids = ensurePrimary(user.gid, in: user.additionalGids)
            spec.process?.user = user
        }
        var name = text
        if let uid = Int(text) {
            guard let entry = users.users?.first(where: { Int($0.uid) == uid }) else { return }
            name = entry.name
        }
        guard let groups = users.groups else { return }
        user.additionalGids = groups.filter { $0.name != name && $0.members.contains(name) }.map(\.gid)
    }

    private static func ensurePrimary(_ gid: UInt32, in gids: [UInt32]?) -> [UInt32] {
        let list = gids ?? []
        return list.contains(gid) ? list : [gid] + list
    }

    /// `oci.WithAddedCapabilities` then `WithDroppedCapabilities` on bounding, effective and permitted. `ALL` drops
    /// (or adds) every capability.
    static func applyCapabilities(add: [String], drop: [String], to spec: inout Spec) throws(BerthError) {
        guard !add.isEmpty || !drop.isEmpty else { return }
        for c in add + drop where c != "ALL" && !c.hasPrefix("CAP_") {
            throw .invalidArgument("capabilities must be specified with 'CAP_' prefix")
        }
        var caps = spec.process?.capabilities ?? Capabilities()
        let added = add.contains("ALL") ? HostInfo.knownCapabilities : add
        for path in [\Capabilities.bounding, \Capabilities.effective, \Capabilities.permitted] {
            var list = caps[keyPath: path] ?? []
            for c in added where !list.contains(c) { list.append(c) }
            list.removeAll { drop.contains("ALL") || drop.contains($0) }
            caps[keyPath: path] = list
        }
        spec.process?.capabilities = caps
    }

    /// `oci.WithPrivileged` + `WithAllDevicesAllowed` + `WithHostDevices`: the caller's capabilities, no masked or
    /// read-only paths, writable sysfs and cgroupfs, no seccomp, every device.
    func applyPrivileged(_ spec: inout Spec) {
        var caps = spec.process?.capabilities ?? Capabilities()
        let current = host.capabilities
        (caps.bounding, caps.effective, caps.permitted) = (current, current, current)
        spec.process?.capabilities = caps
        spec.linux?.maskedPaths = nil
        spec.linux?.readonlyPaths = nil
        spec.mounts = spec.mounts?.map { m in
            var m = m
            if m.type == "sysfs" || m.type == "cgroup" { m.options = m.options?.map { $0 == "ro" ? "rw" : $0 } }
            return m
        }
        spec.linux?.seccomp = nil
        spec.linux?.resources?.devices = [DeviceCgroup(allow: true, access: "rwm")]
        let devices = (spec.linux?.devices ?? []) + host.devices
        spec.linux?.devices = devices
    }
}
