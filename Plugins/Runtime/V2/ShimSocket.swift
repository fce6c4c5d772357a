import Crypto
import Foundation

/// berth-shim's socket, named as containerd names shim sockets (and as berth-shim's `start` does): `<directory of
/// the daemon socket>/s/<sha256 of address/namespace/group>`, under /run/berth/s when that would be too long.
enum ShimSocket {
    static func path(address: String, namespace: String, group: String) -> String {
        let socket = address.hasPrefix("unix://") ? String(address.dropFirst(7)) : address
        let directory = (socket as NSString).deletingLastPathComponent + "/s"
        let base = directory.utf8.count + 66 < 108 ? directory : "/run/berth/s"
        let digest = SHA256.hash(data: Array("\(address)/\(namespace)/\(group)".utf8))
        return base + "/" + digest.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// Whether a spec names a shim group (containerd's runc group annotation or a CRI sandbox id): tasks of one
    /// group share a shim, which only the shim's `start` command finds.
    static func namesGroup(_ spec: [UInt8]) -> Bool {
        let text = String(decoding: spec, as: UTF8.self)
        return text.contains("io.containerd.runc.v2.group") || text.contains("io.kubernetes.cri.sandbox-id")
    }
}
