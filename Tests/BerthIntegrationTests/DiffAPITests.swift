import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import SwiftProtobuf
import Testing

/// Diff/Apply and Diff/Diff called through the gRPC API as any client would: a zstd layer onto a bind mount, the
/// overlay fast path (whiteouts written as overlay char devices into the upperdir), and containerd's error codes.
@Suite(.serialized) struct DiffAPITests {
    typealias DiffAPI = Containerd_Services_Diff_V1_Diff
    typealias ContentAPI = Containerd_Services_Content_V1_Content

    /// Builds a layer with GNU tar from a shell script run in an empty directory, compressed by `compress`
    /// (`cat`, `gzip -n`, `zstd -q`); returns the blob and the uncompressed tar's digest.
    static func layer(_ dir: String, _ script: String, compress: String) throws -> (blob: Data, diffID: String) {
        let out = try execute("/bin/sh", ["-ec", """
            mkdir -p '\(dir)/tree'; cd '\(dir)/tree'; \(script)
            tar --numeric-owner -cf ../layer.tar .; cd ..; sha256sum layer.tar | cut -d' ' -f1; \(compress) < layer.tar > layer.blob
            """])
        guard out.succeeded else { throw DaemonFailed(log: out.stderr) }
        return (try Data(contentsOf: URL(fileURLWithPath: dir + "/layer.blob")),
                "sha256:" + out.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Commits `data` to content in one Write stream; returns its digest.
    static func put(_ c: BerthConnection, _ data: Data, dir: String) async throws -> String {
        try data.write(to: URL(fileURLWithPath: dir + "/put.blob"))
        let sum = try execute("/bin/sh", ["-c", "sha256sum '\(dir)/put.blob' | cut -d' ' -f1"])
        let digest = "sha256:" + sum.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try await ContentAPI.Client(wrapping: c.client).write(metadata: c.metadata) { writer in
            var message = Containerd_Services_Content_V1_WriteContentRequest()
            message.ref = "put-" + digest
            message.action = .commit
            message.data = data
            message.total = Int64(data.count)
            message.expected = digest
            try await writer.write(message)
        } onResponse: { response in
            for try await _ in response.messages {}
        }
        return digest
    }

    static func descriptor(_ mediaType: String, _ digest: String, _ size: Int) -> Containerd_Types_Descriptor {
        var d = Containerd_Types_Descriptor()
        d.mediaType = mediaType
        d.digest = digest
        d.size = Int64(size)
        return d
    }

    static func mount(_ type: String, _ source: String, _ options: [String]) -> Containerd_Types_Mount {
        var m = Containerd_Types_Mount()
        m.type = type
        m.source = source
        m.options = options
        return m
    }

    @Test func zstdLayerOntoABindMount() async throws {
        try await withDaemonAsync { d in
            let target = d.directory + "/target"
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            let (blob, diffID) = try Self.layer(d.directory + "/l", "mkdir -p a/b; printf zstd > a/b/f; ln -s b a/s",
                                                compress: "zstd -q")
            try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                let digest = try await Self.put(c, blob, dir: d.directory)
                var request = Containerd_Services_Diff_V1_ApplyRequest()
                request.diff = Self.descriptor("application/vnd.oci.image.layer.v1.tar+zstd", digest, blob.count)
                request.mounts = [Self.mount("bind", target, ["rbind", "rw"])]
                let applied = try await DiffAPI.Client(wrapping: c.client).apply(request, metadata: c.metadata).applied
                #expect(applied.digest == diffID)
                #expect(applied.mediaType == "application/vnd.oci.image.layer.v1.tar")
            }
            #expect(FileManager.default.contents(atPath: target + "/a/b/f") == Data("zstd".utf8))
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: target + "/a/s") == "b")
            // The temporary mount is gone again.
            #expect(!((try? FileSystem.read("/proc/self/mountinfo")) ?? "").contains(" \(target) "))
        }
    }

    @Test func overlayMountIsWrittenIntoItsUpperdir() async throws {
        try await withDaemonAsync { d in
            let lower = d.directory + "/lower", upper = d.directory + "/upper", work = d.directory + "/work"
            _ = try execute("/bin/sh", ["-ec", "mkdir -p '\(lower)/etc/cache' '\(upper)' '\(work)'; printf o > '\(lower)/etc/old';"
                + " printf c > '\(lower)/etc/cache/x'; chmod 750 '\(lower)/etc'"])
            let (blob, _) = try Self.layer(d.directory + "/l", "mkdir -p etc/cache; : > etc/.wh.old; : > etc/cache/.wh..wh..opq; printf n > etc/new",
                                           compress: "gzip -n")
            try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                let digest = try await Self.put(c, blob, dir: d.directory)
                var request = Containerd_Services_Diff_V1_ApplyRequest()
                request.diff = Self.descriptor("application/vnd.oci.image.layer.v1.tar+gzip", digest, blob.count)
                request.mounts = [Self.mount("overlay", "overlay", ["lowerdir=\(lower)", "upperdir=\(upper)", "workdir=\(work)"])]
                _ = try await DiffAPI.Client(wrapping: c.client).apply(request, metadata: c.metadata)
            }
            let old = try execute("/usr/bin/stat", ["-c", "%F %t:%T", upper + "/etc/old"])
            #expect(old.stdout == "character special file 0:0\n", "\(old.stdout)\(old.stderr)")
            let opaque = try execute("/usr/bin/python3", ["-c", "import os; print(os.getxattr('\(upper)/etc/cache', 'trusted.overlay.opaque'))"])
            #expect(opaque.stdout == "b'y'\n", "\(opaque.stderr)")
            #expect(FileManager.default.contents(atPath: upper + "/etc/new") == Data("n".utf8))
        }
    }

    @Test func errorsAreContainerds() async throws {
        try await withDaemonAsync { d in
            let (blob, _) = try Self.layer(d.directory + "/l", "printf x > f", compress: "gzip -n")
            try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                let api = DiffAPI.Client(wrapping: c.client)
                let digest = try await Self.put(c, blob, dir: d.directory)
                var request = Containerd_Services_Diff_V1_ApplyRequest()
                request.mounts = [Self.mount("bind", d.directory, ["rbind", "ro"])]

                request.diff = Self.descriptor("application/vnd.example.unknown", digest, blob.count)
                await #expect { _ = try await api.apply(request, metadata: c.metadata) } throws: {
                    let e = $0 as? RPCError
                    return e?.code == .unimplemented && e?.message.contains("unsupported diff media type") == true
                }
                request.diff = Self.descriptor("application/vnd.oci.image.layer.v1.tar+gzip",
                                               "sha256:" + String(repeating: "1", count: 64), blob.count)
                await #expect { _ = try await api.apply(request, metadata: c.metadata) } throws: {
                    ($0 as? RPCError)?.code == .notFound
                }
                var diff = Containerd_Services_Diff_V1_DiffRequest()
                diff.mediaType = "application/vnd.example.unknown"
                await #expect { _ = try await api.diff(diff, metadata: c.metadata) } throws: {
                    let e = $0 as? RPCError
                    return e?.code == .unimplemented && e?.message.contains("unsupported diff media type") == true
                }
            }
        }
    }
}
