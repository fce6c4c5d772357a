import BerthAPI
import BerthGRPC
import Foundation
import SwiftProtobuf
import Testing

/// Snapshots and leases through the API (ctr has no lease flag for snapshot commands): the `containerd-lease`
/// header adds what Prepare creates to the lease, and a lease's `snapshots/<name>` resource keeps a snapshot.
@Suite(.serialized) struct SnapshotLeaseTests {
    typealias API = Containerd_Services_Snapshots_V1_Snapshots

    func resources(_ c: BerthConnection, _ lease: String) async throws -> [String] {
        var request = Containerd_Services_Leases_V1_ListResourcesRequest()
        request.id = lease
        return try await Containerd_Services_Leases_V1_Leases.Client(wrapping: c.client)
            .listResources(request, metadata: c.metadata).resources.map { "\($0.type) \($0.id)" }
    }

    @Test(arguments: ["overlayfs", "native"]) func leaseHeaderAndLeaseResourcesProtectSnapshots(snapshotter: String)
        async throws
    {
        let d = try Daemon(extra: quietGC)
        defer { d.remove() }
        #expect(try d.ctr(["leases", "create", "--id", "pull"]).succeeded)
        try await BerthConnection.with(address: d.socket, namespace: "default") { c in
            var leased = c.metadata
            leased.addString("pull", forKey: "containerd-lease")
            var prepare = Containerd_Services_Snapshots_V1_PrepareSnapshotRequest()
            prepare.snapshotter = snapshotter
            prepare.key = "extract"
            _ = try await API.Client(wrapping: c.client).prepare(prepare, metadata: leased)
            var commit = Containerd_Services_Snapshots_V1_CommitSnapshotRequest()
            commit.snapshotter = snapshotter
            commit.name = "layer"
            commit.key = "extract"
            _ = try await API.Client(wrapping: c.client).commit(commit, metadata: leased)
            #expect(try await resources(c, "pull") == ["snapshots/\(snapshotter) layer"])

            // Empty snapshotter and unknown snapshotter: InvalidArgument with containerd's words.
            prepare.key = "other"
            prepare.snapshotter = ""
            await #expect { _ = try await API.Client(wrapping: c.client).prepare(prepare, metadata: c.metadata) }
                throws: { error in
                    "\(error)".contains("snapshotter argument missing")
                }
        }
        // Kept by the lease through a collection; gone once the lease is.
        #expect(try d.ctr(["leases", "create", "--id", "t"]).succeeded)
        #expect(try d.ctr(["leases", "rm", "--sync", "t"]).succeeded)
        #expect(try d.ctr(["snapshots", "--snapshotter", snapshotter, "ls"]).stdout.contains("layer"))
        #expect(try d.ctr(["leases", "rm", "--sync", "pull"]).succeeded)
        #expect(!(try d.ctr(["snapshots", "--snapshotter", snapshotter, "ls"]).stdout.contains("layer")))

        // A lease resource added afterwards protects an unrooted snapshot too.
        #expect(try d.ctr(["snapshots", "--snapshotter", snapshotter, "prepare", "kept"]).succeeded)
        #expect(try d.ctr(["snapshots", "--snapshotter", snapshotter, "label", "kept", "containerd.io/gc.root="]).succeeded)
        #expect(try d.ctr(["leases", "create", "--id", "hold"]).succeeded)
        try await addLeaseResource(d, lease: "hold", type: "snapshots/\(snapshotter)", id: "kept")
        #expect(try d.ctr(["leases", "create", "--id", "t2"]).succeeded)
        #expect(try d.ctr(["leases", "rm", "--sync", "t2"]).succeeded)
        #expect(try d.ctr(["snapshots", "--snapshotter", snapshotter, "ls"]).stdout.contains("kept"))
        #expect(try d.ctr(["leases", "rm", "--sync", "hold"]).succeeded)
        #expect(!(try d.ctr(["snapshots", "--snapshotter", snapshotter, "ls"]).stdout.contains("kept")))
    }
}
