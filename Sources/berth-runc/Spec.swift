import FoundationEssentials

/// The parts of the OCI runtime specification (config.json, 1.2) that berth-runc reads.
/// Unknown fields are ignored on decode, as runc does.
struct Spec: Codable, Sendable {
    var ociVersion: String = "1.2.0"
    var process: Process?
    var root: Root?
    var hostname: String?
    var domainname: String?
    var mounts: [Mount]?
    var hooks: Hooks?
    var annotations: [String: String]?
    var linux: Linux?

    struct Process: Codable, Sendable {
        var terminal: Bool?
        var consoleSize: ConsoleSize?
        var user: User = User()
        var args: [String]?
        var env: [String]?
        var cwd: String = "/"
        var capabilities: Capabilities?
        var rlimits: [Rlimit]?
        var noNewPrivileges: Bool?
        var apparmorProfile: String?
        var oomScoreAdj: Int?
        var selinuxLabel: String?
        var scheduler: Scheduler?
        var ioPriority: IOPriority?
    }
    /// process.scheduler: sched_setattr(2) fields.
    struct Scheduler: Codable, Sendable {
        var policy: String
        var nice: Int32?
        var priority: Int32?
        var flags: [String]?
        var runtime: UInt64?
        var deadline: UInt64?
        var period: UInt64?
    }
    /// process.ioPriority: class IOPRIO_CLASS_RT/BE/IDLE and a level 0-7.
    struct IOPriority: Codable, Sendable {
        var `class`: String
        var priority: Int
    }
    /// linux.personality: execution domain LINUX or LINUX32.
    struct Personality: Codable, Sendable {
        var domain: String
        var flags: [String]?
    }
    struct ConsoleSize: Codable, Sendable { var height: UInt; var width: UInt }
    struct User: Codable, Sendable {
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var umask: UInt32?
        var additionalGids: [UInt32]?
        var username: String?
    }
    struct Capabilities: Codable, Sendable {
        var bounding: [String]?
        var effective: [String]?
        var inheritable: [String]?
        var permitted: [String]?
        var ambient: [String]?
    }
    struct Rlimit: Codable, Sendable { var type: String; var hard: UInt64; var soft: UInt64 }
    struct Root: Codable, Sendable { var path: String; var readonly: Bool? }
    struct Mount: Codable, Sendable {
        var destination: String
        var type: String?
        var source: String?
        var options: [String]?
        var uidMappings: [IDMapping]?
        var gidMappings: [IDMapping]?
    }
    struct Hook: Codable, Sendable {
        var path: String
        var args: [String]?
        var env: [String]?
        var timeout: Int?
    }
    struct Hooks: Codable, Sendable {
        var prestart: [Hook]?
        var createRuntime: [Hook]?
        var createContainer: [Hook]?
        var startContainer: [Hook]?
        var poststart: [Hook]?
        var poststop: [Hook]?
    }
    struct IDMapping: Codable, Sendable { var containerID: UInt32; var hostID: UInt32; var size: UInt32 }
    struct Namespace: Codable, Sendable { var type: String; var path: String? }
    struct Device: Codable, Sendable {
        var type: String
        var path: String
        var major: Int64?
        var minor: Int64?
        var fileMode: UInt32?
        var uid: UInt32?
        var gid: UInt32?
    }
    struct Linux: Codable, Sendable {
        var namespaces: [Namespace]?
        var uidMappings: [IDMapping]?
        var gidMappings: [IDMapping]?
        var devices: [Device]?
        var cgroupsPath: String?
        var resources: Resources?
        var rootfsPropagation: String?
        var seccomp: Seccomp?
        var sysctl: [String: String]?
        var maskedPaths: [String]?
        var readonlyPaths: [String]?
        var mountLabel: String?
        var timeOffsets: [String: TimeOffset]?
        var personality: Personality?
        var intelRdt: Unsupported?
        var netDevices: Unsupported?
    }
    /// A spec field berth-runc cannot honour: only its presence is kept, so create can refuse it by name instead
    /// of running a container without it.
    struct Unsupported: Codable, Sendable {
        init(from decoder: any Decoder) throws {}
        func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        }
    }
    /// linux.timeOffsets entry ("monotonic", "boottime") for a new time namespace.
    struct TimeOffset: Codable, Sendable { var secs: Int64?; var nanosecs: UInt32? }
    struct Seccomp: Codable, Sendable {
        var defaultAction: String
        var defaultErrnoRet: UInt32?
        var architectures: [String]?
        var flags: [String]?
        var listenerPath: String?
        var listenerMetadata: String?
        var syscalls: [Syscall]?
    }
    struct Syscall: Codable, Sendable {
        var names: [String]
        var action: String
        var errnoRet: UInt32?
        var args: [SyscallArg]?
    }
    struct SyscallArg: Codable, Sendable { var index: UInt32; var value: UInt64; var valueTwo: UInt64?; var op: String }
}

/// linux.resources (also the input of `update --resources`).
struct Resources: Codable, Sendable {
    var devices: [DeviceRule]?
    var memory: Memory?
    var cpu: CPU?
    var pids: Pids?
    var blockIO: BlockIO?
    var hugepageLimits: [Hugepage]?
    var network: Network?
    var unified: [String: String]?
    var rdma: Spec.Unsupported?

    struct DeviceRule: Codable, Sendable {
        var allow: Bool
        var type: String?
        var major: Int64?
        var minor: Int64?
        var access: String?
    }
    struct Memory: Codable, Sendable {
        var limit: Int64?
        var reservation: Int64?
        var swap: Int64?
        var kernel: Int64?
        var kernelTCP: Int64?
        var swappiness: UInt64?
        var disableOOMKiller: Bool?
    }
    struct CPU: Codable, Sendable {
        var shares: UInt64?
        var quota: Int64?
        var period: UInt64?
        var realtimeRuntime: Int64?
        var realtimePeriod: UInt64?
        var cpus: String?
        var mems: String?
        var idle: Int64?
    }
    struct Pids: Codable, Sendable { var limit: Int64 }
    struct WeightDevice: Codable, Sendable { var major: Int64; var minor: Int64; var weight: UInt16?; var leafWeight: UInt16? }
    struct ThrottleDevice: Codable, Sendable { var major: Int64; var minor: Int64; var rate: UInt64 }
    struct BlockIO: Codable, Sendable {
        var weight: UInt16?
        var leafWeight: UInt16?
        var weightDevice: [WeightDevice]?
        var throttleReadBpsDevice: [ThrottleDevice]?
        var throttleWriteBpsDevice: [ThrottleDevice]?
        var throttleReadIOPSDevice: [ThrottleDevice]?
        var throttleWriteIOPSDevice: [ThrottleDevice]?
    }
    struct Hugepage: Codable, Sendable { var pageSize: String; var limit: UInt64 }
    struct Network: Codable, Sendable {
        var classID: UInt32?
        var priorities: [Priority]?
        struct Priority: Codable, Sendable { var name: String; var priority: UInt32 }
    }
}
