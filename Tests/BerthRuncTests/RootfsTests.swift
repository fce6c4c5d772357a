import Foundation
import Testing

/// Namespaces and the root filesystem, compared with runc.
@Suite(.serialized)
struct RootfsTests {
    @Test func defaultSpecMountsDevicesMaskedAndReadonlyPaths() throws {
        try withBundle(["sh", "-c", "mount; ls -l /dev | sed 's/ [A-Z][a-z][a-z] [ 0-9]* [0-9:]* / /'; cat /proc/kcore | wc -c; echo x > /proc/sys/kernel/domainname; echo x > /bin/x"]) { b in
            let (r, o) = try b.runBoth()
            #expect(r.status != 0)  // the last write fails on the read-only root
            #expect(o.status == r.status, "\(o.stderr)")
            #expect(o.stdout == r.stdout)
            #expect(o.stderr == r.stderr)
        }
    }

    @Test func bindMountsWithOptionsAndTmpfs() throws {
        try withBundle(["sh", "-c", "mount | grep -E ' /(data|ro|opt/t|etc/hostname) '; cat /data/file /etc/hostname; echo y > /ro/f; echo z > /data/w && cat /data/w; ls /opt/t"]) { b in
            let host = b.dir + "/hostdata"
            try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: true)
            try writeCloexec(host + "/file", "hello\n")
            try writeCloexec(b.dir + "/hostname", "boxname\n")
            var mounts = b.config["mounts"] as? [[String: Any]] ?? []
            mounts += [
                ["destination": "/data", "type": "bind", "source": host, "options": ["rbind", "rw"]],
                ["destination": "/ro", "type": "bind", "source": host, "options": ["bind", "ro", "nosuid", "nodev"]],
                ["destination": "/opt/t", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700", "noexec"]],
                ["destination": "/etc/hostname", "type": "bind", "source": "hostname", "options": ["rbind", "ro"]],
            ]
            b.config["mounts"] = mounts
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.status == 0, "\(o.stderr)")
            #expect(o.stdout == r.stdout)
            #expect(o.stderr == r.stderr)
            #expect(o.stdout.contains("hello\nboxname\nz\n"))
        }
    }

    @Test func noPivotRoot() throws {
        try withBundle(["sh", "-c", "ls /; hostname"]) { b in
            let r = try b.run(b.runc, extra: ["--no-pivot"])
            let o = try b.run(b.berth, extra: ["--no-pivot"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
        }
    }

    @Test func namespacesArePrivateAndSysctlApplies() throws {
        try withBundle(["sh", "-c", "echo $$; cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/msgmax; ls /sys/class/net"]) { b in
            var linux = b.linux
            linux["sysctl"] = ["net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"]
            b.linux = linux
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
            #expect(o.stdout == "1\n1\n12345\nlo\n")
        }
    }

    @Test func joinNamespaceByPath() throws {
        try withBundle(["sleep", "60"]) { b in
            // A first container owns the network and UTS namespaces; the second joins them by path.
            let owner = try b.prepare("owner")
            #expect(try b.berth("run", "-d", "--bundle", b.dir, owner).status == 0)
            let state = try b.berth("state", owner).stdout
            guard let obj = try JSONSerialization.jsonObject(with: Data(state.utf8)) as? [String: Any],
                  let pid = obj["pid"] as? Int, pid > 0 else { Issue.record("owner not running: \(state)"); return }
            b.config["hostname"] = nil
            b.process["args"] = ["sh", "-c", "hostname; readlink /proc/self/ns/net"]
            var linux = b.linux
            linux["namespaces"] = [["type": "pid"], ["type": "ipc"], ["type": "mount"],
                                   ["type": "network", "path": "/proc/\(pid)/ns/net"],
                                   ["type": "uts", "path": "/proc/\(pid)/ns/uts"]]
            b.linux = linux
            let (r, o) = try b.runBoth()
            let hostNet = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net")) ?? "?"
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.stdout == r.stdout, "\(o.stderr)")
            #expect(o.stdout == "runc\n\(hostNet)\n")
        }
    }

    @Test func userNamespaceWithMappings() throws {
        try withBundle(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id; ls -ln /dev/null | cut -c1-10"]) { b in
            b.process["args"] = ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id; ls -l /dev/null"]
            var linux = b.linux
            var ns = linux["namespaces"] as? [[String: Any]] ?? []
            ns.append(["type": "user"])
            linux["namespaces"] = ns
            linux["uidMappings"] = [["containerID": 0, "hostID": 100000, "size": 65536]]
            linux["gidMappings"] = [["containerID": 0, "hostID": 100000, "size": 65536]]
            b.linux = linux
            // runc on cgroup v1 cannot mount the cgroup hierarchies for a user namespace root; drop that mount.
            b.config["mounts"] = (b.config["mounts"] as? [[String: Any]] ?? []).filter { ($0["type"] as? String) != "cgroup" }
            chmod(b.dir, 0o755)
            let (r, o) = try b.runBoth()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(o.status == 0, "\(o.stderr)")
            #expect(o.stdout.split(separator: "\n").prefix(3) == r.stdout.split(separator: "\n").prefix(3))
            #expect(o.stdout.contains("100000"))
        }
    }
}
