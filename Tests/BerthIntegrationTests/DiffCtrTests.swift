import Foundation
import Testing

/// The walking differ and the Diff service through Debian's `ctr` (containerd 1.6): `ctr images import` unpacks
/// a two-layer image with whiteouts through Diff/Apply into overlayfs and native snapshots keyed by chain ID, and
/// `ctr snapshots diff` writes a layer through Diff/Diff.
@Suite(.serialized) struct DiffCtrTests {
    static let snapshotters = ["overlayfs", "native"]

    /// Builds an OCI archive of two gzip layers: busybox plus files, then a layer that whites out a file, makes a
    /// directory opaque and adds files. Prints the chain IDs of both layers, one per line.
    static func buildImage(_ dir: String, name: String, bombBytes: Int = 0) throws -> [String] {
        let script = """
            set -eu
            w='\(dir)'; mkdir -p "$w/l1/bin" "$w/l1/etc" "$w/l1/data/dir" "$w/l2/etc" "$w/l2/data/dir" "$w/layout/blobs/sha256"
            cp /bin/busybox "$w/l1/bin/busybox"; ln -s busybox "$w/l1/bin/sh"
            printf old > "$w/l1/etc/removed"; printf keep > "$w/l1/etc/kept"; printf x > "$w/l1/data/dir/old"
            : > "$w/l2/etc/.wh.removed"; : > "$w/l2/data/dir/.wh..wh..opq"; printf n > "$w/l2/data/dir/new"
            printf added > "$w/l2/etc/added"
            if [ \(bombBytes) -gt 0 ]; then head -c \(bombBytes) /dev/zero > "$w/l2/zeros"; fi
            blob() { s=$(sha256sum "$1" | cut -d' ' -f1); z=$(stat -c %s "$1"); mv "$1" "$w/layout/blobs/sha256/$s"; echo "sha256:$s $z"; }
            layers=""; diffs=""; chain=""; chains=""
            for l in l1 l2; do
              tar -C "$w/$l" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$w/$l.tar" .
              d=sha256:$(sha256sum "$w/$l.tar" | cut -d' ' -f1)
              if [ -z "$chain" ]; then chain=$d; else chain=sha256:$(printf '%s %s' "$chain" "$d" | sha256sum | cut -d' ' -f1); fi
              chains="$chains$chain\n"
              gzip -n "$w/$l.tar"; read -r ld ls <<EOT
            $(blob "$w/$l.tar.gz")
            EOT
              layers="$layers${layers:+,}{\\"mediaType\\":\\"application/vnd.oci.image.layer.v1.tar+gzip\\",\\"digest\\":\\"$ld\\",\\"size\\":$ls}"
              diffs="$diffs${diffs:+,}\\"$d\\""
            done
            arch=$(dpkg --print-architecture)
            printf '{"architecture":"%s","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$arch" "$diffs" > "$w/config.json"
            read -r cd cs <<EOT
            $(blob "$w/config.json")
            EOT
            printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' "$cd" "$cs" "$layers" > "$w/manifest.json"
            read -r md ms <<EOT
            $(blob "$w/manifest.json")
            EOT
            printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"\(name)","org.opencontainers.image.ref.name":"latest"}}]}' "$md" "$ms" "$arch" > "$w/layout/index.json"
            printf '{"imageLayoutVersion":"1.0.0"}' > "$w/layout/oci-layout"
            tar -C "$w/layout" -cf "$w/image.tar" oci-layout index.json blobs
            printf "$chains"
            """
        let out = try execute("/bin/bash", ["-c", script])
        guard out.succeeded else { throw DaemonFailed(log: "image script: \(out.stderr)") }
        return out.stdout.split(separator: "\n").map(String.init)
    }

    /// Mounts what `ctr snapshots mounts` prints for `key` on a fresh directory, runs `body`, unmounts.
    func withMounted<T>(_ d: Daemon, _ snapshotter: String, _ key: String, _ body: (String) throws -> T) throws -> T {
        let target = d.directory + "/mnt-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        defer {
            _ = try? execute("/bin/umount", [target])
            try? FileManager.default.removeItem(atPath: target)
        }
        let mounts = try d.ctr(["snapshots", "--snapshotter", snapshotter, "mounts", target, key])
        guard mounts.succeeded else { throw DaemonFailed(log: "mounts: \(mounts.stderr)") }
        let mounted = try execute("/bin/sh", ["-c", mounts.stdout])
        guard mounted.succeeded else { throw DaemonFailed(log: "\(mounts.stdout): \(mounted.stderr)") }
        return try body(target)
    }

    /// The snapshots these tests prepare after an import carry no lease or root label, as `ctr snapshots` makes
    /// them; the collection that the import's lease deletion schedules would remove them mid-test, so it is off.
    static let noBackgroundGC = """
        [plugins."io.containerd.gc.v1.scheduler"]
          deletion_threshold = 1000000
          mutation_threshold = 0
        """

    @Test(arguments: snapshotters) func importUnpacksLayersWithWhiteouts(snapshotter: String) throws {
        try withDaemon(extra: Self.noBackgroundGC) { d in
            let chains = try Self.buildImage(d.directory + "/img", name: "example.com/berth/whiteouts:latest")
            #expect(chains.count == 2)
            let imported = try d.ctr(["images", "import", "--snapshotter", snapshotter, d.directory + "/img/image.tar"],
                                     timeout: 120)
            #expect(imported.succeeded, "\(imported.stderr)\n\(d.logText.suffix(3000))")
            let ls = try d.ctr(["snapshots", "--snapshotter", snapshotter, "ls"])
            for chain in chains { #expect(ls.stdout.contains(chain), "\(ls.stdout)") }
            let check = try d.ctr(["images", "check"])
            #expect(check.stdout.contains("complete"), "\(check.stdout)")

            #expect(try d.ctr(["snapshots", "--snapshotter", snapshotter, "view", "v1", chains[1]]).succeeded)
            try withMounted(d, snapshotter, "v1") { root in
                #expect(FileManager.default.isExecutableFile(atPath: root + "/bin/busybox"))
                #expect(!FileManager.default.fileExists(atPath: root + "/etc/removed"))
                #expect(!FileManager.default.fileExists(atPath: root + "/data/dir/old"))
                #expect(FileManager.default.contents(atPath: root + "/etc/kept") == Data("keep".utf8))
                #expect(FileManager.default.contents(atPath: root + "/data/dir/new") == Data("n".utf8))
                let echo = try execute("/usr/sbin/chroot", [root, "/bin/sh", "-c", "echo unpacked"])
                #expect(echo.stdout == "unpacked\n", "\(echo.stderr)")
            }
        }
    }

    @Test(arguments: snapshotters) func snapshotsDiffWritesALayer(snapshotter: String) throws {
        try withDaemon(extra: Self.noBackgroundGC) { d in
            let chains = try Self.buildImage(d.directory + "/img", name: "example.com/berth/diff:latest")
            #expect(try d.ctr(["images", "import", "--snapshotter", snapshotter, d.directory + "/img/image.tar"],
                              timeout: 120).succeeded)
            #expect(try d.ctr(["snapshots", "--snapshotter", snapshotter, "prepare", "work", chains[1]]).succeeded)
            try withMounted(d, snapshotter, "work") { root in
                try Data("fresh".utf8).write(to: URL(fileURLWithPath: root + "/etc/fresh"))
                try FileManager.default.removeItem(atPath: root + "/etc/kept")
            }
            // `ctr snapshots diff` prints the layer blob itself; --keep roots it so it can be listed afterwards.
            let blob = d.directory + "/layer.tgz"
            let diff = try execute("/bin/sh", ["-c", "'\(ctrPath)' --address '\(d.socket)' snapshots --snapshotter "
                + "\(snapshotter) diff --keep work > '\(blob)'"], timeout: 60)
            #expect(diff.succeeded, "\(diff.stderr)\n\(d.logText.suffix(2000))")
            let listing = try execute("/bin/tar", ["-tzf", blob])
            #expect(listing.stdout.split(separator: "\n").sorted() == ["etc/", "etc/.wh.kept", "etc/fresh"], "\(listing.stdout)")
            let sum = try execute("/bin/sh", ["-c", "sha256sum '\(blob)' | cut -d' ' -f1"])
            let digest = "sha256:" + sum.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let content = try d.ctr(["content", "ls"])
            let line = content.stdout.split(separator: "\n").first { $0.hasPrefix(digest) } ?? ""
            #expect(line.contains("containerd.io/uncompressed=sha256:"), "\(content.stdout)")
        }
    }

    @Test func snapshotsDiffAsZstdAndUncompressed() throws {
        try withDaemon(extra: Self.noBackgroundGC) { d in
            let chains = try Self.buildImage(d.directory + "/img", name: "example.com/berth/zstd:latest")
            #expect(try d.ctr(["images", "import", "--snapshotter", "native", d.directory + "/img/image.tar"],
                              timeout: 120).succeeded)
            #expect(try d.ctr(["snapshots", "--snapshotter", "native", "prepare", "work", chains[1]]).succeeded)
            try withMounted(d, "native", "work") { root in
                try Data("z".utf8).write(to: URL(fileURLWithPath: root + "/data/zfile"))
            }
            for (mediaType, unpack) in [("application/vnd.oci.image.layer.v1.tar+zstd", "zstd -dc"),
                                        ("application/vnd.oci.image.layer.v1.tar", "cat")] {
                let blob = d.directory + "/layer.blob"
                let diff = try execute("/bin/sh", ["-c", "'\(ctrPath)' --address '\(d.socket)' snapshots --snapshotter "
                    + "native diff --media-type '\(mediaType)' work > '\(blob)'"], timeout: 60)
                #expect(diff.succeeded, "\(diff.stderr)")
                let listing = try execute("/bin/sh", ["-c", "\(unpack) < '\(blob)' | tar -tf -"])
                #expect(listing.stdout == "data/\ndata/zfile\n", "\(mediaType): \(listing.stdout)\(listing.stderr)")
            }
        }
    }

    @Test func decompressionBoundFailsTheUnpack() throws {
        let extra = """
            [plugins."io.containerd.differ.v1.walking"]
              max_uncompressed_bytes = 4194304
            """
        try withDaemon(extra: extra) { d in
            _ = try Self.buildImage(d.directory + "/img", name: "example.com/berth/bomb:latest", bombBytes: 16 << 20)
            let imported = try d.ctr(["images", "import", d.directory + "/img/image.tar"], timeout: 120)
            #expect(!imported.succeeded)
            #expect(imported.stderr.contains("exceeds the limit of 4194304 bytes"), "\(imported.stderr)")
        }
    }

    @Test func pluginsAreListedWithContainerdURIs() throws {
        try withDaemon { d in
            let plugins = try d.ctr(["plugins", "ls"])
            let lines = plugins.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
            func status(_ type: String, _ id: String) -> String? {
                lines.first { $0.count >= 4 && $0[0] == type && $0[1] == id }.map { String($0[3]) }
            }
            #expect(status("io.containerd.differ.v1", "walking") == "ok", "\(plugins.stdout)")
            #expect(status("io.containerd.service.v1", "diff-service") == "ok")
            #expect(status("io.containerd.grpc.v1", "diff") == "ok")
        }
    }
}
