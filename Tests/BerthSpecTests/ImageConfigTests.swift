import BerthSpec
import Foundation
import Testing

@Suite struct ImageConfigTests {
    let builder = SpecBuilder(host: HostInfo(capabilities: [], devices: [], hostname: "h"))

    func build(_ image: ImageProcessConfig, _ configure: (inout RunOptions) -> Void = { _ in },
               users: UserDatabase = busyboxUsers) throws -> Spec {
        var options = RunOptions()
        configure(&options)
        return try builder.build(id: "x", namespace: "ns", image: image, options: options, users: users)
    }

    @Test func entrypointCmdAndOverride() throws {
        let image = ImageProcessConfig(
            entrypoint: ["/bin/tini", "--"], cmd: ["serve", "-v"], env: [], workingDir: "/srv", user: "")
        let plain = try build(image)
        #expect(plain.process?.args == ["/bin/tini", "--", "serve", "-v"])
        #expect(plain.process?.cwd == "/srv")
        #expect(plain.process?.env == [DefaultSpec.defaultPath])  // no image env: the default PATH
        #expect(plain.linux?.cgroupsPath == "/ns/x")
        #expect(plain.linux?.seccomp?.defaultAction == "SCMP_ACT_ERRNO")  // berth run applies seccomp by default
        let overridden = try build(image) { $0.args = ["echo", "hi"] }
        #expect(overridden.process?.args == ["/bin/tini", "--", "echo", "hi"])
        let replaced = try build(image) { o in
            o.args = ["echo", "hi"]
            o.replaceEntrypoint = true
        }
        #expect(replaced.process?.args == ["echo", "hi"])
    }

    @Test func envMergeReplacesAppendsAndUnsets() throws {
        let image = ImageProcessConfig(entrypoint: [], cmd: ["sh"], env: ["PATH=/bin", "A=1", "B=2"], workingDir: "", user: "")
        let spec = try build(image) { $0.env = ["B=3", "C=4", "A"] }
        // As with ctr, the flags' env is merged first on its own, where a bare `A` unsets nothing, so the image's A stays.
        #expect(spec.process?.env == ["PATH=/bin", "A=1", "B=3", "C=4"])
        #expect(SpecBuilder.mergeEnv(["X=1"], ["X=2", "X=3", "Y"]) == ["X=3"])
    }

    @Test func usersResolveFromTheImage() throws {
        let users = UserDatabase(
            passwd: "root:x:0:0::/root:/bin/sh\n# comment\nweb:x:1000:1001::/home/web:/bin/sh\nnobody:x:65534:65534:::\n",
            group: "root:x:0:\nwebgrp:x:1001:\nstaff:x:50:web,other\nvideo:x:44: web \nnogroup:x:65534:\n")
        func user(_ text: String) throws -> User? {
            try build(ImageProcessConfig(entrypoint: [], cmd: ["sh"], env: [], workingDir: "", user: text), users: users)
                .process?.user
        }
        let web = try user("web")
        #expect(web?.uid == 1000 && web?.gid == 1001)
        #expect(web?.additionalGids == [1001, 50, 44])
        let numeric = try user("1000")
        #expect(numeric?.uid == 1000 && numeric?.gid == 1001 && numeric?.additionalGids == [1001, 50, 44])
        let unknownUID = try user("4242")
        #expect(unknownUID?.uid == 4242 && unknownUID?.gid == 0 && unknownUID?.additionalGids == [0])
        let pair = try user("nobody:staff")
        #expect(pair?.uid == 65534 && pair?.gid == 50)
        let numericPair = try user("12:34")
        #expect(numericPair?.uid == 12 && numericPair?.gid == 34)
        #expect(throws: (any Error).self) { try user("ghost") }
        #expect(throws: (any Error).self) { try user("web:ghosts") }
        #expect(throws: (any Error).self) { try user("a:b:c") }
        // The --user flag wins over the image's USER.
        let flagged = try build(
            ImageProcessConfig(entrypoint: [], cmd: ["sh"], env: [], workingDir: "", user: "web"), { $0.user = "nobody" },
            users: users)
        #expect(flagged.process?.user.uid == 65534)
        // No passwd at all: root with its own gid only.
        let bare = try build(busybox, users: UserDatabase(passwd: nil, group: nil))
        #expect(bare.process?.user.additionalGids == [0])
    }

    @Test func rootfsFilesAreReadWithoutEscaping() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("spec-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/data", withIntermediateDirectories: true)
        try "app:x:7:8::/:/bin/sh\n".write(toFile: root + "/data/passwd", atomically: true, encoding: .utf8)
        // An absolute link resolves inside the root, not on the host.
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/passwd", withDestinationPath: "/data/passwd")
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/group", withDestinationPath: "../../../../etc/group")
        let db = UserDatabase(rootfs: root)
        #expect(db.users?.first?.name == "app")
        #expect(db.groups == nil)  // the host's /etc/group was not read
    }

    @Test func flagParsing() throws {
        let m = try RunOptions.parseMount("type=bind,source=/a,destination=/b,options=rbind:ro")
        #expect(m.type == "bind" && m.source == "/a" && m.destination == "/b" && m.options == ["rbind", "ro"])
        #expect(throws: (any Error).self) { try RunOptions.parseMount("type=bind,bogus=1,dst=/x") }
        #expect(try RunOptions.parseBytes("64m") == 64 << 20)
        #expect(try RunOptions.parseBytes("1g") == 1 << 30)
        #expect(try RunOptions.parseBytes("512KiB") == 512 << 10)
        #expect(try RunOptions.parseBytes("1000") == 1000)
        #expect(throws: (any Error).self) { try RunOptions.parseBytes("lots") }
    }

    @Test func resourceAndIdentityFlags() throws {
        let spec = try build(busybox) { o in
            o.pidsLimit = 20
            o.hostname = "box"
            o.cpuShares = nil
            o.privileged = false
            o.capDrop = ["ALL"]
            o.capAdd = ["CAP_KILL"]
        }
        #expect(spec.linux?.resources?.pids?.limit == 20)
        #expect(spec.hostname == "box")
        #expect(spec.linux?.resources?.cpu == nil)
        #expect(spec.process?.capabilities?.bounding == nil || spec.process?.capabilities?.bounding == [])
        #expect(throws: (any Error).self) {
            try self.build(busybox) { $0.capAdd = ["SYS_ADMIN"] }
        }
    }
}
