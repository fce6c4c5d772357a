import BerthAPI
import BerthGRPC
import Foundation
import SwiftProtobuf
import Testing

/// Adds a resource to a lease through the Leases API (ctr has no command for it).
func addLeaseResource(_ d: Daemon, lease: String, type: String, id: String) async throws {
    try await BerthConnection.with(address: d.socket, namespace: "default") { c in
        var request = Containerd_Services_Leases_V1_AddResourceRequest()
        request.id = lease
        request.resource.id = id
        request.resource.type = type
        _ = try await Containerd_Services_Leases_V1_Leases.Client(wrapping: c.client).addResource(request, metadata: c.metadata)
    }
}

/// GC only when a test asks (a --sync delete), so unreferenced content stays put until then. With the default
/// settings, as in containerd, the lease `ctr content ingest` deletes triggers a collection of what it ingested.
let quietGC = """
    [plugins."io.containerd.gc.v1.scheduler"]
      deletion_threshold = 1000000
      mutation_threshold = 0
      startup_delay = "1h"
    """

@Suite(.serialized) struct GCTests {
    func blobPath(_ d: Daemon, _ digest: String) -> String {
        d.directory + "/root/io.containerd.content.v1.content/blobs/sha256/" + digest.dropFirst("sha256:".count)
    }

    func ingest(_ d: Daemon, _ name: String, megabytes: Int = 1, namespace: String = "default") throws -> String {
        let file = d.directory + "/" + name
        let digest = try randomFile(file, megabytes: megabytes)
        let r = try ctrWithInput(d, ["content", "ingest", name], input: file, namespace: namespace)
        guard r.succeeded else { throw DaemonFailed(log: r.stderr) }
        return digest
    }

    /// Deleting a throwaway image with --sync runs a collection and waits for it.
    func collect(_ d: Daemon) async throws {
        try await createImage(d, name: "gc-trigger", digest: "sha256:" + String(repeating: "1", count: 64), size: 1)
        #expect(try d.ctr(["images", "rm", "--sync", "gc-trigger"]).succeeded)
    }

    @Test func keepsWhatIsReferencedSweepsTheRest() async throws {
        let d = try Daemon(extra: quietGC)
        defer { d.remove() }
        let child = try ingest(d, "child")
        let parent = try ingest(d, "parent")
        let loose = try ingest(d, "loose")
        let leased = try ingest(d, "leased")
        let rooted = try ingest(d, "rooted")
        #expect(try d.ctr(["content", "label", parent, "containerd.io/gc.ref.content.m.0=\(child)"]).succeeded)
        #expect(try d.ctr(["content", "label", rooted, "containerd.io/gc.root=\(Date())"]).succeeded)
        try await createImage(d, name: "app:1", digest: parent, size: 1 << 20)
        #expect(try d.ctr(["leases", "create", "--id", "keep"]).succeeded)
        try await addLeaseResource(d, lease: "keep", type: "content", id: leased)

        try await collect(d)
        let listed = try d.ctr(["content", "ls", "-q"]).stdout
        for kept in [child, parent, leased, rooted] {
            #expect(listed.contains(kept), "\(kept) should be kept")
            #expect(FileManager.default.fileExists(atPath: blobPath(d, kept)))
        }
        #expect(!listed.contains(loose))
        #expect(!FileManager.default.fileExists(atPath: blobPath(d, loose)), "unreferenced blob stays on disk")

        #expect(try d.ctr(["images", "rm", "--sync", "app:1"]).succeeded)
        for gone in [child, parent] { #expect(!FileManager.default.fileExists(atPath: blobPath(d, gone))) }
        #expect(FileManager.default.fileExists(atPath: blobPath(d, leased)))
        #expect(try d.berth(["leases", "rm", "--sync", "keep"]).succeeded)
        #expect(!FileManager.default.fileExists(atPath: blobPath(d, leased)))
        #expect(FileManager.default.fileExists(atPath: blobPath(d, rooted)))
    }

    @Test func expiredLeasesAreRemoved() async throws {
        let d = try Daemon(extra: quietGC)
        defer { d.remove() }
        let blob = try ingest(d, "short")
        let past = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-60))
        #expect(try d.ctr(["leases", "create", "--id", "old", "--expires", "0s", "containerd.io/gc.expire=\(past)"]).succeeded)
        try await addLeaseResource(d, lease: "old", type: "content", id: blob)
        try await collect(d)
        #expect(!(try d.ctr(["leases", "ls", "-q"]).stdout.contains("old")))
        #expect(!FileManager.default.fileExists(atPath: blobPath(d, blob)))
    }

    @Test func namespacesAreIsolatedAndSharedContentIsClaimed() throws {
        try withDaemon(extra: quietGC) { d in
            let file = d.directory + "/shared"
            let digest = try randomFile(file, megabytes: 1)
            #expect(try ctrWithInput(d, ["content", "ingest", "a"], input: file, namespace: "team-a").succeeded)
            #expect(try d.ctr(["content", "ls", "-q"], namespace: "team-a").stdout.contains(digest))
            #expect(try d.ctr(["content", "ls", "-q"], namespace: "team-b").stdout.isEmpty)
            let get = try d.ctr(["content", "get", digest], namespace: "team-b")
            #expect(!get.succeeded)
            #expect(get.stderr.contains("not found"), "\(get.stderr)")
            // Shared policy: naming the digest claims the existing blob for the namespace without rewriting it.
            let claim = try ctrWithInput(d, ["content", "ingest", "--expected-digest", digest, "b"], input: "/dev/null", namespace: "team-b")
            #expect(claim.succeeded, "\(claim.stderr)")
            #expect(try d.ctr(["content", "ls", "-q"], namespace: "team-b").stdout.contains(digest))
            // A namespace that still holds content cannot be deleted.
            let rm = try d.berth(["--namespace", "team-a", "namespaces", "rm", "team-a"])
            #expect(!rm.succeeded)
            #expect(rm.stderr.contains("must be empty, but it still has blobs"), "\(rm.stderr)")
        }
    }
}
