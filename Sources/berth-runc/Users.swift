import CBerthRunc
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// `exec --user USER[:GROUP]` resolved through the container's /etc/passwd and /etc/group, as runc's
/// libcontainer/user does: names or numbers; a numeric uid without an entry is used as is. A bare number keeps
/// the process's gid (`defaultGid`, as runc's `exec --user UID` does); a bare name takes the entry's primary gid
/// and, as supplementary groups, the groups that list the user as a member.
struct ExecUser: Equatable {
    var uid: UInt32
    var gid: UInt32
    var sgids: [UInt32] = []
    var home: String = "/"

    /// Reads `/etc/passwd` and `/etc/group` inside `root` (RESOLVE_IN_ROOT: symlinks cannot leave it).
    static func resolve(_ spec: String, defaultGid: UInt32, root: String) throws -> ExecUser {
        try resolve(spec, defaultGid: defaultGid, passwd: readInRoot(root, "/etc/passwd"),
                    group: readInRoot(root, "/etc/group"))
    }

    static func resolve(_ spec: String, defaultGid: UInt32, passwd: String?, group: String?) throws -> ExecUser {
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let userArg = parts[0]
        var groupArg = parts.count > 1 ? parts[1] : ""
        if groupArg.isEmpty && UInt32(userArg) != nil { groupArg = "\(defaultGid)" }
        let users = (passwd ?? "").split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false) }
            .filter { $0.count >= 7 }
        var result = ExecUser(uid: 0, gid: 0)
        var matchedName: String?
        if let entry = users.first(where: { $0[0] == userArg || (UInt32(userArg) != nil && $0[2] == userArg) }),
           let uid = UInt32(entry[2]), let gid = UInt32(entry[3])
        {
            result = ExecUser(uid: uid, gid: gid, home: String(entry[5]))
            matchedName = String(entry[0])
        } else if let uid = UInt32(userArg) {
            result.uid = uid
        } else if !userArg.isEmpty {
            throw RuncError("unable to find user \(userArg): no matching entries in passwd file")
        }
        let groups = (group ?? "").split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false) }
            .filter { $0.count >= 4 }
        if !groupArg.isEmpty {
            if let g = groups.first(where: { $0[0] == groupArg || $0[2] == groupArg }), let gid = UInt32(g[2]) {
                result.gid = gid
            } else if let gid = UInt32(groupArg) {
                result.gid = gid
            } else {
                throw RuncError("unable to find group \(groupArg): no matching entries in group file")
            }
        } else if let name = matchedName {
            for g in groups where g[3].split(separator: ",").contains(Substring(name)) {
                if let gid = UInt32(g[2]) { result.sgids.append(gid) }
            }
        }
        return result
    }

    private static func readInRoot(_ root: String, _ path: String) -> String? {
        let fd = brc_open_in_root(root, path)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }
}
