import BerthCore
import BerthOCI
import Foundation

/// The parts of an image's config (OCI `config` object) that shape the process.
public struct ImageProcessConfig: Sendable, Equatable {
    public var entrypoint: [String] = []
    public var cmd: [String] = []
    public var env: [String] = []
    public var workingDir = ""
    public var user = ""
    public var stopSignal = ""
    public init() {}
    public init(entrypoint: [String], cmd: [String], env: [String], workingDir: String, user: String) {
        (self.entrypoint, self.cmd, self.env, self.workingDir, self.user) = (entrypoint, cmd, env, workingDir, user)
    }

    /// The process parts of an image config's `config` object (absent fields empty).
    public init(_ config: ContainerConfig?) {
        self.init(
            entrypoint: config?.entrypoint ?? [], cmd: config?.cmd ?? [], env: config?.env ?? [],
            workingDir: config?.workingDir ?? "", user: config?.user ?? "")
        stopSignal = config?.stopSignal ?? ""
    }
}

/// Network set-up: a private network namespace (default, also `none`) or the host's.
public enum NetworkMode: String, Sendable, CaseIterable {
    case none, host
}

/// What `berth run` / `ctr run` flags ask of the spec.
public struct RunOptions: Sendable, Equatable {
    /// Replaces the image's CMD (the ENTRYPOINT stays), as `docker run IMAGE CMD...` does.
    public var args: [String] = []
    /// Replaces ENTRYPOINT and CMD altogether, as `ctr run IMAGE ID CMD...` does.
    public var replaceEntrypoint = false
    public var env: [String] = []
    public var mounts: [Mount] = []
    public var readOnly = false
    public var user: String?
    public var cwd: String?
    public var capAdd: [String] = []
    public var capDrop: [String] = []
    public var privileged = false
    /// Memory limit in bytes.
    public var memory: Int64?
    public var cpus: Double?
    /// ctr always sets shares (its `--cpu-shares` defaults to 1024).
    public var cpuShares: UInt64? = 1024
    public var pidsLimit: Int64?
    public var network: NetworkMode = .none
    public var hostname: String?
    public var tty = false
    public var seccomp = true
    public var annotations: [String: String] = [:]
    public init() {}

    /// Parses `type=bind,src=/a,dst=/b,options=rbind:ro` (ctr's `--mount`; `source`/`destination` also accepted).
    public static func parseMount(_ text: String) throws(BerthError) -> Mount {
        var mount = Mount()
        for field in text.split(separator: ",") {
            let kv = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw .invalidArgument("invalid mount specification \(text): expected key=val") }
            switch kv[0] {
            case "type": mount.type = kv[1]
            case "source", "src": mount.source = kv[1]
            case "destination", "dst", "target": mount.destination = kv[1]
            case "options": mount.options = kv[1].split(separator: ":").map(String.init)
            default: throw .invalidArgument("mount option \"\(kv[0])\" not supported")
            }
        }
        guard !mount.destination.isEmpty else { throw .invalidArgument("mount \(text): no destination") }
        return mount
    }

    /// Parses a size such as `512m`, `1g`, `1048576` or `64KiB` into bytes.
    public static func parseBytes(_ text: String) throws(BerthError) -> Int64 {
        let lower = text.lowercased().replacingOccurrences(of: "ib", with: "").replacingOccurrences(of: "b", with: "")
        let units: [Character: Int64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40]
        var digits = Substring(lower)
        var scale: Int64 = 1
        if let last = digits.last, let unit = units[last] { scale = unit; digits = digits.dropLast() }
        guard let value = Double(digits), value >= 0 else { throw .invalidArgument("invalid size \"\(text)\"") }
        return Int64(value * Double(scale))
    }
}
