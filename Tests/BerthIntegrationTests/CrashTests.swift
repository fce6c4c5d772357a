import BerthAPI
import BerthGRPC
import Foundation
import SwiftProtobuf
import Testing

/// Real processes, real kill -9: the store must come back consistent and lose nothing that was acknowledged.
@Suite(.serialized) struct CrashTests {
    func ingestDataSize(_ d: Daemon) -> Int64 {
        let ingests = d.directory + "/root/io.containerd.content.v1.content/ingest"
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: ingests)) ?? []
        return dirs.compactMap { dir -> Int64? in
            (try? FileManager.default.attributesOfItem(atPath: "\(ingests)/\(dir)/data"))?[.size] as? Int64
        }.max() ?? 0
    }

    @Test func killDuringOneGiBIngestThenResume() throws {
        let first = try Daemon(extra: quietGC)
        defer { first.remove() }
        let file = first.directory + "/big"
        let digest = try randomFile(file, megabytes: 1024)
        let size = "\(1 << 30)"
        let ingest = Process()
        ingest.executableURL = URL(fileURLWithPath: "/bin/sh")
        ingest.arguments = ["-c", "exec \(ctrPath) --address \(first.socket) content ingest --expected-size \(size) --expected-digest \(digest) big < \(file)"]
        ingest.standardError = FileHandle.nullDevice
        try ingest.run()
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, ingestDataSize(first) < 200 << 20, ingest.isRunning { usleep(5_000) }
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        ingest.waitUntilExit()
        let written = ingestDataSize(first)
        #expect(written >= 200 << 20 && written < 1 << 30, "killed at \(written) bytes")

        let second = try Daemon(directory: first.directory)
        defer { second.stop() }
        let active = try second.ctr(["content", "active"]).stdout
        #expect(active.contains("big"), "\(active)")
        #expect(try second.ctr(["content", "ls", "-q"]).stdout.isEmpty, "nothing committed by the crash")
        let resume = try ctrWithInput(second, ["content", "ingest", "--expected-size", size, "--expected-digest", digest, "big"], input: file)
        #expect(resume.succeeded, "\(resume.stderr)")
        #expect(try second.ctr(["content", "ls", "-q"]).stdout == digest + "\n")
        let check = try execute("/bin/sh", ["-c", "\(ctrPath) --address \(second.socket) content get \(digest) | sha256sum"], timeout: 120)
        #expect("sha256:" + (check.stdout.split(separator: " ").first ?? "") == digest)
        #expect(try second.ctr(["content", "active"]).stdout.split(separator: "\n").count <= 1)
    }

    @Test func killDuringImageBurstKeepsEveryAcknowledgedChange() async throws {
        let first = try Daemon(extra: quietGC)
        defer { first.remove() }
        // What the daemon acknowledged, and which deletes were sent (an unacknowledged one may have happened).
        let acknowledged = Locked((created: Set<Int>(), deleted: Set<Int>(), deleting: Set<Int>()))
        let digest = "sha256:" + String(repeating: "a", count: 64)
        let socket = first.socket
        let burst = Task {
            try? await BerthConnection.with(address: socket, namespace: "default") { c in
                let api = Containerd_Services_Images_V1_Images.Client(wrapping: c.client)
                for i in 0..<100_000 {
                    var create = Containerd_Services_Images_V1_CreateImageRequest()
                    create.image.name = "burst/\(i)"
                    create.image.labels = ["a": "\(i)", "b": "\(i)", "c": "\(i)"]
                    create.image.target.mediaType = "application/vnd.oci.image.index.v1+json"
                    create.image.target.digest = digest
                    create.image.target.size = Int64(i)
                    _ = try await api.create(create, metadata: c.metadata)
                    acknowledged.update { _ = $0.created.insert(i) }
                    if i % 2 == 1 {
                        var delete = Containerd_Services_Images_V1_DeleteImageRequest()
                        delete.name = "burst/\(i - 1)"
                        acknowledged.update { _ = $0.deleting.insert(i - 1) }
                        _ = try await api.delete(delete, metadata: c.metadata)
                        acknowledged.update { _ = $0.deleted.insert(i - 1) }
                    }
                }
            }
        }
        while acknowledged.get().created.count < 200 { try await Task.sleep(for: .milliseconds(5)) }
        kill(first.process.processIdentifier, SIGKILL)
        _ = await burst.value
        first.process.waitUntilExit()

        let second = try Daemon(directory: first.directory)
        defer { second.stop() }
        let images = try await BerthConnection.with(address: second.socket, namespace: "default") { c in
            try await Containerd_Services_Images_V1_Images.Client(wrapping: c.client)
                .list(Containerd_Services_Images_V1_ListImagesRequest(), metadata: c.metadata).images
        }
        let (created, deleted, deleting) = acknowledged.get()
        let present = Set(images.compactMap { Int($0.name.dropFirst("burst/".count)) })
        let mustExist = created.subtracting(deleting)
        #expect(mustExist.isSubset(of: present), "acknowledged creates lost: \(mustExist.subtracting(present).sorted().prefix(20))")
        #expect(present.isDisjoint(with: deleted), "an acknowledged delete came back")
        for image in images {
            let n = String(image.name.dropFirst("burst/".count))
            #expect(image.labels == ["a": n, "b": n, "c": n], "half-applied image \(image.name)")
            #expect(image.target.size == Int64(n) && image.target.digest == digest)
        }
    }
}
