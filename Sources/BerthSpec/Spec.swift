/// The OCI runtime spec (config.json) as containerd 1.6 writes it (runtime-spec 1.0.2-dev), Linux parts.
/// Fields are optional where Go's JSON leaves them out; anything not modelled is kept in `extra`.
public struct Spec: OCIObject {
    /// The version containerd 1.6.20 stamps (its vendored runtime-spec).
    public static let version = "1.0.2-dev"
    /// The `Any` type URL a container's spec travels under.
    public static let typeURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

    public var ociVersion = Spec.version
    public var process: Process?
    public var root: Root?
    public var hostname: String?
    public var mounts: [Mount]?
    public var annotations: [String: String]?
    public var linux: Linux?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Spec>] {
        [.always("ociVersion", \.ociVersion), .optional("process", \.process), .optional("root", \.root),
         .omitEmpty("hostname", \.hostname), .omitEmpty("mounts", \.mounts),
         .omitEmpty("annotations", \.annotations), .optional("linux", \.linux)]
    }
}

public struct Process: OCIObject {
    public var terminal: Bool?
    public var consoleSize: Box?
    public var user = User()
    public var args: [String]?
    public var commandLine: String?
    public var env: [String]?
    public var cwd = ""
    public var capabilities: Capabilities?
    public var rlimits: [Rlimit]?
    public var noNewPrivileges: Bool?
    public var apparmorProfile: String?
    public var oomScoreAdj: Int?
    public var selinuxLabel: String?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Process>] {
        [.omitEmpty("terminal", \.terminal), .optional("consoleSize", \.consoleSize), .always("user", \.user),
         .omitEmpty("args", \.args), .omitEmpty("commandLine", \.commandLine), .omitEmpty("env", \.env),
         .always("cwd", \.cwd), .optional("capabilities", \.capabilities), .omitEmpty("rlimits", \.rlimits),
         .omitEmpty("noNewPrivileges", \.noNewPrivileges), .omitEmpty("apparmorProfile", \.apparmorProfile),
         .optional("oomScoreAdj", \.oomScoreAdj), .omitEmpty("selinuxLabel", \.selinuxLabel)]
    }
}

public struct Box: OCIObject {
    public var height: UInt = 0
    public var width: UInt = 0
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public init(width: UInt, height: UInt) { (self.width, self.height) = (width, height) }
    public static var fields: [OCIField<Box>] { [.always("height", \.height), .always("width", \.width)] }
}

public struct User: OCIObject {
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var umask: UInt32?
    public var additionalGids: [UInt32]?
    public var username: String?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<User>] {
        [.always("uid", \.uid), .always("gid", \.gid), .optional("umask", \.umask),
         .omitEmpty("additionalGids", \.additionalGids), .omitEmpty("username", \.username)]
    }
}

public struct Capabilities: OCIObject {
    public var bounding: [String]?
    public var effective: [String]?
    public var inheritable: [String]?
    public var permitted: [String]?
    public var ambient: [String]?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Capabilities>] {
        [.omitEmpty("bounding", \.bounding), .omitEmpty("effective", \.effective),
         .omitEmpty("inheritable", \.inheritable), .omitEmpty("permitted", \.permitted),
         .omitEmpty("ambient", \.ambient)]
    }
}

public struct Rlimit: OCIObject {
    public var type = ""
    public var hard: UInt64 = 0
    public var soft: UInt64 = 0
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public init(type: String, hard: UInt64, soft: UInt64) { (self.type, self.hard, self.soft) = (type, hard, soft) }
    public static var fields: [OCIField<Rlimit>] {
        [.always("type", \.type), .always("hard", \.hard), .always("soft", \.soft)]
    }
}

public struct Root: OCIObject {
    public var path = ""
    public var readonly: Bool?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Root>] { [.always("path", \.path), .omitEmpty("readonly", \.readonly)] }
}

public struct Mount: OCIObject {
    public var destination = ""
    public var type: String?
    public var source: String?
    public var options: [String]?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public init(destination: String, type: String?, source: String?, options: [String]?) {
        (self.destination, self.type, self.source, self.options) = (destination, type, source, options)
    }
    public static var fields: [OCIField<Mount>] {
        [.always("destination", \.destination), .omitEmpty("type", \.type), .omitEmpty("source", \.source),
         .omitEmpty("options", \.options)]
    }
}

public struct Linux: OCIObject {
    public var uidMappings: [IDMapping]?
    public var gidMappings: [IDMapping]?
    public var sysctl: [String: String]?
    public var resources: Resources?
    public var cgroupsPath: String?
    public var namespaces: [Namespace]?
    public var devices: [Device]?
    public var seccomp: Seccomp?
    public var rootfsPropagation: String?
    public var maskedPaths: [String]?
    public var readonlyPaths: [String]?
    public var mountLabel: String?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Linux>] {
        [.omitEmpty("uidMappings", \.uidMappings), .omitEmpty("gidMappings", \.gidMappings),
         .omitEmpty("sysctl", \.sysctl), .optional("resources", \.resources),
         .omitEmpty("cgroupsPath", \.cgroupsPath), .omitEmpty("namespaces", \.namespaces),
         .omitEmpty("devices", \.devices), .optional("seccomp", \.seccomp),
         .omitEmpty("rootfsPropagation", \.rootfsPropagation), .omitEmpty("maskedPaths", \.maskedPaths),
         .omitEmpty("readonlyPaths", \.readonlyPaths), .omitEmpty("mountLabel", \.mountLabel)]
    }
}

public struct IDMapping: OCIObject {
    public var containerID: UInt32 = 0
    public var hostID: UInt32 = 0
    public var size: UInt32 = 0
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<IDMapping>] {
        [.always("containerID", \.containerID), .always("hostID", \.hostID), .always("size", \.size)]
    }
}

public struct Namespace: OCIObject {
    public var type = ""
    public var path: String?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public init(_ type: String, path: String? = nil) { (self.type, self.path) = (type, path) }
    public static var fields: [OCIField<Namespace>] { [.always("type", \.type), .omitEmpty("path", \.path)] }
}

public struct Device: OCIObject {
    public var path = ""
    public var type = ""
    public var major: Int64 = 0
    public var minor: Int64 = 0
    public var fileMode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Device>] {
        [.always("path", \.path), .always("type", \.type), .always("major", \.major), .always("minor", \.minor),
         .optional("fileMode", \.fileMode), .optional("uid", \.uid), .optional("gid", \.gid)]
    }
}

public struct Resources: OCIObject {
    public var devices: [DeviceCgroup]?
    public var memory: Memory?
    public var cpu: CPU?
    public var pids: Pids?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Resources>] {
        [.omitEmpty("devices", \.devices), .optional("memory", \.memory), .optional("cpu", \.cpu),
         .optional("pids", \.pids)]
    }
}

public struct DeviceCgroup: OCIObject {
    public var allow = false
    public var type: String?
    public var major: Int64?
    public var minor: Int64?
    public var access: String?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public init(allow: Bool, type: String? = nil, major: Int64? = nil, minor: Int64? = nil, access: String?) {
        (self.allow, self.type, self.major, self.minor, self.access) = (allow, type, major, minor, access)
    }
    public static var fields: [OCIField<DeviceCgroup>] {
        [.always("allow", \.allow), .omitEmpty("type", \.type), .optional("major", \.major),
         .optional("minor", \.minor), .omitEmpty("access", \.access)]
    }
}

public struct Memory: OCIObject {
    public var limit: Int64?
    public var reservation: Int64?
    public var swap: Int64?
    public var swappiness: UInt64?
    public var disableOOMKiller: Bool?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Memory>] {
        [.optional("limit", \.limit), .optional("reservation", \.reservation), .optional("swap", \.swap),
         .optional("swappiness", \.swappiness), .optional("disableOOMKiller", \.disableOOMKiller)]
    }
}

public struct CPU: OCIObject {
    public var shares: UInt64?
    public var quota: Int64?
    public var period: UInt64?
    public var realtimeRuntime: Int64?
    public var realtimePeriod: UInt64?
    public var cpus: String?
    public var mems: String?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<CPU>] {
        [.optional("shares", \.shares), .optional("quota", \.quota), .optional("period", \.period),
         .optional("realtimeRuntime", \.realtimeRuntime), .optional("realtimePeriod", \.realtimePeriod),
         .omitEmpty("cpus", \.cpus), .omitEmpty("mems", \.mems)]
    }
}

public struct Pids: OCIObject {
    public var limit: Int64 = 0
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Pids>] { [.always("limit", \.limit)] }
}

public struct Seccomp: OCIObject {
    public var defaultAction = ""
    public var architectures: [String]?
    public var flags: [String]?
    public var syscalls: [Syscall]?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public static var fields: [OCIField<Seccomp>] {
        [.always("defaultAction", \.defaultAction), .omitEmpty("architectures", \.architectures),
         .omitEmpty("flags", \.flags), .omitEmpty("syscalls", \.syscalls)]
    }
}

public struct Syscall: OCIObject {
    public var names: [String] = []
    public var action = ""
    public var errnoRet: UInt?
    public var args: [SeccompArg]?
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public init(_ names: [String], _ action: String, errnoRet: UInt? = nil, args: [SeccompArg]? = nil) {
        (self.names, self.action, self.errnoRet, self.args) = (names, action, errnoRet, args)
    }
    public static var fields: [OCIField<Syscall>] {
        [.always("names", \.names), .always("action", \.action), .optional("errnoRet", \.errnoRet),
         .omitEmpty("args", \.args)]
    }
}

public struct SeccompArg: OCIObject {
    public var index: UInt = 0
    public var value: UInt64 = 0
    public var valueTwo: UInt64?
    public var op = ""
    public var extra: [String: JSONValue] = [:]
    public init() {}
    public init(index: UInt, value: UInt64, valueTwo: UInt64? = nil, op: String) {
        (self.index, self.value, self.valueTwo, self.op) = (index, value, valueTwo, op)
    }
    public static var fields: [OCIField<SeccompArg>] {
        [.always("index", \.index), .always("value", \.value), .omitEmpty("valueTwo", \.valueTwo),
         .always("op", \.op)]
    }
}
