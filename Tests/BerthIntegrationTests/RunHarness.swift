import BerthTestSupport
import Foundation
import Testing

/// A one-layer busybox OCI archive (busybox-static with a few applet links, root and nobody users), built once per
/// test process with tar, gzip and sha256sum; `ctr images import` reads it as docker.io/library/busybox:latest.
let runTestImage: Result<String, any Error> = Result {
    // Shared by test processes: built in a directory of this process, then renamed into place atomically.
    let shared = "/tmp/berth-run-image"
    let archive = shared + "/busybox-v1.tar"
    if FileManager.default.fileExists(atPath: archive) { return archive }
    try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
    let dir = "/tmp/berth-run-image-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let built = dir + "/busybox.tar"
    let script = #"""
        set -eu
        work=$1; out=$2
        root=$work/rootfs; layout=$work/layout
        mkdir -p "$root"/bin "$root"/etc "$root"/tmp "$root"/proc "$root"/sys "$root"/dev "$root"/root "$layout/blobs/sha256"
        chmod 1777 "$root/tmp"
        cp /bin/busybox "$root/bin/busybox"
        for a in sh echo true false sleep cat id ls env pwd hostname printf wc head mkdir rm touch ps kill tty grep unshare stat; do
          ln -s busybox "$root/bin/$a"
        done
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
        printf 'root:x:0:\nnogroup:x:65534:\nstaff:x:50:nobody\n' >"$root/etc/group"
        blob() { s=$(sha256sum "$1" | cut -d' ' -f1); z=$(stat -c %s "$1"); mv "$1" "$layout/blobs/sha256/$s"; echo "sha256:$s $z"; }
        tar -C "$root" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$work/layer.tar" .
        diff=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
        gzip -n "$work/layer.tar"
        read -r ld ls < <(blob "$work/layer.tar.gz")
        arch=$(dpkg --print-architecture)
        printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/root"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' "$arch" "$diff" >"$work/config.json"
        read -r cd cs < <(blob "$work/config.json")
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' "$cd" "$cs" "$ld" "$ls" >"$work/manifest.json"
        read -r md ms < <(blob "$work/manifest.json")
        printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"docker.io/library/busybox:latest","org.opencontainers.image.ref.name":"latest"}}]}' "$md" "$ms" "$arch" >"$layout/index.json"
        printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
        tar -C "$layout" -cf "$out" oci-layout index.json blobs
        rm -rf "$root" "$layout"
        """#
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let result = try execute("/bin/bash", ["-c", script, "build", dir, built])
    guard result.succeeded else { throw RunTestFailure("building the busybox image failed: \(result.stderr)") }
    guard rename(built, archive) == 0 else { throw RunTestFailure("rename \(built): errno \(errno)") }
    return archive
}

struct RunTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Debian's containerd 1.6 (CRI disabled), the reference daemon for `berth run`: BerthTestSupport's fixture.
typealias ReferenceContainerd = TestContainerd

/// One daemon (containerd or berthd) and a namespace of its own, with the busybox image imported.
struct RunTarget: Sendable {
    let socket: String
    let namespace: String
    /// Whether the daemon runs berth-shim (some checks name its known gaps).
    var berthShim = false

    init(socket: String) throws {
        self.socket = socket
        namespace = "run-\(UUID().uuidString.prefix(8).lowercased())"
        let imported = try ctrBlocking(["images", "import", try runTestImage.get()], timeout: 60)
        guard imported.succeeded else { throw RunTestFailure("import failed: \(imported.stderr)") }
    }

    /// `berth` against this daemon and namespace, run off the concurrency pool.
    func berth(_ arguments: [String], stdin: String? = nil, timeout: Double = 60) async throws -> CommandResult {
        let (socket, namespace) = (self.socket, self.namespace)
        return try await TaskTestSupport.offPool {
            try executeWithInput(
                binDirectory + "/berth", ["--address", socket, "--namespace", namespace] + arguments, stdin: stdin,
                timeout: timeout)
        }
    }

    func ctr(_ arguments: [String], timeout: Double = 30) async throws -> CommandResult {
        let target = self
        return try await TaskTestSupport.offPool { try target.ctrBlocking(arguments, timeout: timeout) }
    }

    func ctrBlocking(_ arguments: [String], timeout: Double = 30) throws -> CommandResult {
        try execute(ctrPath, ["--address", socket, "--namespace", namespace] + arguments, timeout: timeout)
    }

    /// Polls `ctr tasks ls` until the task shows `status` (or the deadline passes).
    func waitForTask(_ id: String, _ status: String, timeout: Double = 15) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let line = try await ctr(["tasks", "ls"]).stdout.split(separator: "\n").first { $0.hasPrefix(id + " ") }
            if line?.hasSuffix(status) == true { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// Removes everything the test left in its namespace, and the namespace's remains on the host.
    func cleanUp() {
        for id in (try? ctrBlocking(["containers", "ls", "-q"]).stdout.split(separator: "\n").map(String.init)) ?? [] {
            _ = try? ctrBlocking(["tasks", "kill", "-s", "KILL", id])
            usleep(100_000)
            _ = try? ctrBlocking(["tasks", "rm", "-f", id])
            _ = try? ctrBlocking(["containers", "rm", id])
        }
        TaskTestSupport.removeNamespaceRemains(namespace)
    }
}

/// Like `execute`, with `stdin` written to the program (closed after it).
func executeWithInput(_ path: String, _ arguments: [String], stdin: String?, timeout: Double) throws -> CommandResult {
    try execute(path, arguments, timeout: timeout, input: stdin.map { Data($0.utf8) })
}
