import BerthSHA256

/// Where shim sockets and runtime records live, one rule for berth-shim's `start` and for berthd, which makes the
/// socket itself when it starts berth-shim detached: `<dir of the daemon socket>/s`, like containerd's
/// /run/containerd/s for /run/containerd/containerd.sock (/run/berth/s when that path would be too long).
public enum ShimPaths {
    /// Spec annotations that name a shim group (containerd's runc group, a CRI sandbox id): tasks of one group
    /// share a shim, which `start` finds by the group's socket.
    public static let groupAnnotations = ["io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"]

    public static func directory(address: String) -> String {
        let socket = address.hasPrefix("unix://") ? String(address.dropFirst(7)) : address
        let dir = parent(socket) + "/s"
        return dir.utf8.count + 66 < 108 ? dir : "/run/berth/s"
    }

    /// The shim socket for a grouping id (containerd's SocketAddress: sha256 of address/namespace/id).
    public static func socket(address: String, namespace: String, group: String) -> String {
        directory(address: address) + "/" + SHA256Small.hex(Array("\(address)/\(namespace)/\(group)".utf8))
    }

    /// `path` without its last component (dirname(3) for the paths used here).
    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
