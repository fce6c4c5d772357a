import BerthSpec
import Foundation
import Testing

/// The busybox test image's config and users (scripts/busybox-image.sh).
let busybox = ImageProcessConfig(
    entrypoint: [], cmd: ["sh"], env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    workingDir: "", user: "")
let busyboxUsers = UserDatabase(
    passwd: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    group: "root:x:0:\nnogroup:x:65534:\n")

/// ctr's way: the command replaces entrypoint and cmd.
func ctrOptions(_ configure: (inout RunOptions) throws -> Void = { _ in }) rethrows -> RunOptions {
    var options = RunOptions()
    options.args = ["sleep", "100"]
    options.replaceEntrypoint = true
    options.seccomp = false
    try configure(&options)
    return options
}

func encoded(_ spec: Spec) throws -> JSONValue {
    try JSONValue.parse(JSONEncoder().encode(spec))
}

/// Asserts that our spec equals containerd's, listing the differing paths.
func expectSame(_ spec: Spec, _ fixture: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let ours = try encoded(spec)
    let theirs = try JSONValue.parse(Data(fixture.utf8))
    let differences = ours.differences(from: theirs)
    #expect(differences.isEmpty, "\(differences.prefix(20).joined(separator: "\n"))", sourceLocation: sourceLocation)
}

let noHost = HostInfo(capabilities: [], devices: [], hostname: "vm")

@Suite struct SpecTests {
    @Test func defaultSpecEqualsContainerds() throws {
        let spec = try SpecBuilder(host: noHost).build(
            id: "c1", namespace: "default", image: busybox, options: ctrOptions(), users: busyboxUsers)
        try expectSame(spec, Fixtures.plain)
    }

    @Test func runFlagsEqualContainerds() throws {
        let options = try ctrOptions { o in
            o.env = ["FOO=bar", "PATH=/x:/bin"]
            o.readOnly = true
            o.capAdd = ["CAP_SYS_ADMIN"]
            o.capDrop = ["CAP_NET_RAW"]
            o.memory = 67_108_864
            o.cpus = 0.5
            o.mounts = [try RunOptions.parseMount("type=bind,src=/tmp,dst=/host,options=rbind:ro")]
            o.cwd = "/tmp"
        }
        let spec = try SpecBuilder(host: noHost).build(
            id: "capflags", namespace: "default", image: busybox, options: options, users: busyboxUsers)
        try expectSame(spec, Fixtures.flags)
    }

    @Test func seccompProfileEqualsContainerds() throws {
        let spec = try SpecBuilder(host: noHost).build(
            id: "capseccomp", namespace: "default", image: busybox, options: ctrOptions { $0.seccomp = true },
            users: busyboxUsers)
        try expectSame(spec, Fixtures.seccomp)
        #expect(spec.linux?.seccomp?.syscalls?.contains { $0.names == ["clone3"] && $0.errnoRet == 38 } == true)
    }

    @Test func seccompFollowsCapabilities() throws {
        let options = ctrOptions { o in
            o.seccomp = true
            o.capAdd = ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"]
        }
        let spec = try SpecBuilder(host: noHost).build(
            id: "capseccompadmin", namespace: "default", image: busybox, options: options, users: busyboxUsers)
        try expectSame(spec, Fixtures.seccompadmin)
        // With CAP_SYS_ADMIN clone is unrestricted and clone3 is allowed.
        #expect(spec.linux?.seccomp?.syscalls?.contains { $0.names == ["clone3"] } == false)
    }

    @Test func ttyAndHostNetworkEqualContainerds() throws {
        let spec = try SpecBuilder(host: noHost).build(
            id: "captty", namespace: "default", image: busybox,
            options: ctrOptions { o in
                o.tty = true
                o.network = .host
            }, users: busyboxUsers)
        try expectSame(spec, Fixtures.tty)
    }

    @Test func privilegedEqualsContainerds() throws {
        let reference = try JSONDecoder().decode(Spec.self, from: Data(Fixtures.privileged.utf8))
        let host = HostInfo(
            capabilities: reference.process?.capabilities?.bounding ?? [], devices: reference.linux?.devices ?? [],
            hostname: "vm")
        #expect((reference.linux?.devices?.count ?? 0) > 10)
        let spec = try SpecBuilder(host: host).build(
            id: "capprivileged", namespace: "default", image: busybox, options: ctrOptions { $0.privileged = true },
            users: busyboxUsers)
        try expectSame(spec, Fixtures.privileged)
    }

    @Test func hostDevicesMatchContainerdsWalk() throws {
        // Every device containerd listed here is found by our walk of /dev with the same numbers and mode.
        let reference = try JSONDecoder().decode(Spec.self, from: Data(Fixtures.privileged.utf8))
        let ours = Dictionary(HostInfo.current.devices.map { ($0.path, $0) }) { a, _ in a }
        for device in reference.linux?.devices ?? [] where device.path == "/dev/null" || device.path == "/dev/zero" {
            #expect(ours[device.path] == device)
        }
        #expect(HostInfo.current.devices.contains { $0.path == "/dev/pts/ptmx" } == false)
    }

    @Test func unknownFieldsSurviveARoundTrip() throws {
        let text = #"""
            {"ociVersion":"1.1.0","future":{"a":[1,2.5,"x",null,true]},"process":{"user":{"uid":5,"gid":6,"extraUser":1},
            "cwd":"/w","args":["a"],"scheduler":{"policy":"SCHED_OTHER"}},"linux":{"intelRdt":{"closID":"g"},
            "resources":{"hugepageLimits":[{"pageSize":"2MB","limit":1}],"pids":{"limit":7}},
            "seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[{"names":["x"],"action":"SCMP_ACT_ALLOW"}]}}}
            """#
        let spec = try JSONDecoder().decode(Spec.self, from: Data(text.utf8))
        #expect(spec.process?.user.uid == 5)
        #expect(spec.linux?.resources?.pids?.limit == 7)
        #expect(spec.extra["future"] != nil)
        #expect(try encoded(spec) == JSONValue.parse(Data(text.utf8)))
        var changed = spec
        changed.process?.args = ["b"]
        let again = try encoded(changed)
        guard case .object(let top) = again, case .object(let process)? = top["process"] else {
            Issue.record("not an object")
            return
        }
        #expect(process["scheduler"] != nil)
        #expect(process["args"] == .array([.string("b")]))
    }

    @Test func goOmitEmptyRulesHold() throws {
        var spec = Spec()
        spec.process = Process()
        spec.process?.terminal = false
        spec.process?.env = []
        spec.linux = Linux()
        spec.linux?.resources = Resources()
        spec.linux?.resources?.devices = [DeviceCgroup(allow: false, access: "rwm")]
        spec.linux?.resources?.memory = Memory()
        spec.linux?.resources?.memory?.limit = 0
        let json = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        #expect(!json.contains("terminal"))
        #expect(!json.contains("env"))
        #expect(json.contains(#""uid":0"#))  // never omitted
        #expect(json.contains(#""cwd":"""#))
        #expect(json.contains(#""allow":false"#))
        #expect(json.contains(#""limit":0"#))  // a pointer to zero is written
    }
}
