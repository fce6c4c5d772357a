import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// What berth-runc remembers about a container: `<root>/<id>/state.json`, written atomically.
struct ContainerRecord: Codable, Sendable {
    var id: String
    var pid: Int32
    /// Start time of `pid` (field 22 of /proc/<pid>/stat), so a reused pid is not mistaken for the container.
    var pidStartTime: UInt64
    var bundle: String
    var rootfs: String
    var created: String
    var owner: String = ""
    var annotations: [String: String]?
    var cgroups: Cgroups
    /// What start and delete need of the spec: its hooks, and whether the container has a pid namespace of its
    /// own. The spec itself is `config.json` beside this record (`spec(root:)`), so state, start, kill and delete
    /// never decode it: in a process that lives a few milliseconds, Codable's first use of the spec's forty-odd
    /// types cost more (about 1 ms) than the command's own work.
    var hooks: Spec.Hooks?
    var ownPidNamespace: Bool?
    /// Records written before the spec moved out of state.json carry it here; new records never do.
    var config: Spec?
    /// Namespace paths of the init process that exec joins (type → /proc/<pid>/ns/...).
    var namespaces: [String: String] = [:]
    /// Created with --no-new-keyring (exec then keeps the caller's session keyring too).
    var noNewKeyring: Bool?

    static func directory(root: String, id: String) -> String { root + "/" + id }
    /// The container's spec, beside its record.
    static func specPath(root: String, id: String) -> String { directory(root: root, id: id) + "/config.json" }

    static func load(root: String, id: String) throws -> ContainerRecord {
        try validate(id: id)
        let path = directory(root: root, id: id) + "/state.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RuncError("container \(id) does not exist")
        }
        var record: ContainerRecord
        do { record = try JSONDecoder().decode(ContainerRecord.self, from: data) } catch {
            throw RuncError("container \(id): state file is unreadable: \(error)")
        }
        if let config = record.config { record.summarize(config) }
        return record
    }

    /// Sets what the record keeps of `spec`: its hooks and whether it gives the container a pid namespace of its own.
    mutating func summarize(_ spec: Spec) {
        hooks = spec.hooks
        ownPidNamespace = (spec.linux?.namespaces ?? []).contains { $0.type == "pid" && ($0.path ?? "").isEmpty }
    }

    /// The spec the container was created with (as updated since).
    func spec(root: String) throws -> Spec {
        if let config { return config }
        let path = Self.specPath(root: root, id: id)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RuncError("container \(id): \(path) is missing")
        }
        do { return try JSONDecoder().decode(Spec.self, from: data) } catch {
            throw RuncError("container \(id): \(path) is unreadable: \(error)")
        }
    }

    /// Records a changed spec (update's resources) in config.json, moving an older record's copy out of state.json.
    mutating func save(spec: Spec, root: String) throws {
        try writeAtomically(Self.specPath(root: root, id: id), JSONEncoder().encode(spec))
        summarize(spec)
        if config != nil {
            config = nil
            try save(root: root)
        }
    }

    func save(root: String) throws {
        let data = try JSONEncoder().encode(self)
        try writeAtomically(ContainerRecord.directory(root: root, id: id) + "/state.json", data)
    }

    static func validate(id: String) throws {
        let ok = !id.isEmpty && id.count <= 1024 && id != "." && id != ".."
            && id.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)))
                || "_+-.".unicodeScalars.contains($0) }
        if !ok { throw RuncError("invalid id format: \(id)") }
    }

    /// created / running / paused / stopped, computed as runc does from the process, exec.fifo and freezer.
    func status(root: String) -> String {
        guard pid > 0, Self.alive(pid: pid, startTime: pidStartTime) else { return "stopped" }
        if access(ContainerRecord.directory(root: root, id: id) + "/exec.fifo", F_OK) == 0 { return "created" }
        if cgroups.freezerState() == "FROZEN" { return "paused" }
        return "running"
    }

    static func startTime(pid: Int32) -> UInt64? {
        guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3); start time is field 22.
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    static func alive(pid: Int32, startTime: UInt64) -> Bool {
        guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19 else { return false }
        if fields[0] == "Z" || fields[0] == "X" { return false }
        return startTime == 0 || UInt64(fields[19]) == startTime
    }

    /// The JSON object runc prints for `state` and `list --format json`.
    func stateJSON(root: String, indent: Bool) -> String {
        let status = status(root: root)
        let shownPid = status == "stopped" ? 0 : pid
        var fields: [(String, String)] = [
            ("ociVersion", jsonString("1.0.2-dev")), ("id", jsonString(id)), ("pid", "\(shownPid)"),
            ("status", jsonString(status)), ("bundle", jsonString(bundle)), ("rootfs", jsonString(rootfs)),
            ("created", jsonString(created)), ("owner", jsonString(owner)),
        ]
        if let annotations, !annotations.isEmpty {
            let items = annotations.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            fields.append(("annotations", "{" + items.joined(separator: ",") + "}"))
        }
        if indent {
            return "{\n" + fields.map { "  \(jsonString($0.0)): \($0.1)" }.joined(separator: ",\n") + "\n}"
        }
        return "{" + fields.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    /// The state handed to hooks on stdin (OCI state: ociVersion, id, status, pid, bundle, annotations).
    func hookState(status: String) -> String {
        var s = "{\"ociVersion\":\"1.2.0\",\"id\":\(jsonString(id)),\"status\":\(jsonString(status)),\"pid\":\(pid),"
        s += "\"bundle\":\(jsonString(bundle))"
        if let annotations, !annotations.isEmpty {
            let items = annotations.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            s += ",\"annotations\":{" + items.joined(separator: ",") + "}"
        }
        return s + "}"
    }
}
