import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import Testing

/// berthd runs Swift concurrency on its two NIO event loops. Snapshot lookups read the metadata database on the
/// calling loop thread, waiting for a free reader connection; listings read it asynchronously. A reader that could
/// only be handed back once its task resumed on a loop deadlocked the daemon as soon as every reader was held that
/// way while a loop waited for one: berthd then answered nothing, not even `ctr version` (seen with 20 concurrent
/// `ctr run -d` in the tasks bench).
@Suite(.serialized) struct ExecutorStallTests {
    typealias SnapshotsAPI = Containerd_Services_Snapshots_V1_Snapshots
    typealias ImagesAPI = Containerd_Services_Images_V1_Images

    @Test func concurrentLookupsAndListingsKeepTheDaemonAnswering() async throws {
        try await withDaemonAsync(extra: quietGC) { d in
            try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                var prepare = Containerd_Services_Snapshots_V1_PrepareSnapshotRequest()
                prepare.snapshotter = "overlayfs"
                prepare.key = "stall-probe"
                _ = try await SnapshotsAPI.Client(wrapping: c.client).prepare(prepare, metadata: c.metadata)
            }
            // Several connections (spread over both loops), each with several calls in flight: half take the
            // synchronous lookup path (Stat, Mounts), half the asynchronous one (snapshot and image listings).
            let failures = try await withThrowingTaskGroup(of: [String].self) { group in
                for connection in 0..<8 {
                    group.addTask {
                        try await BerthConnection.with(address: d.socket, namespace: "default") { c in
                            try await withThrowingTaskGroup(of: [String].self) { calls in
                                for worker in 0..<4 {
                                    calls.addTask { await Self.hammer(c, kind: (connection + worker) % 4, rounds: 60) }
                                }
                                return try await calls.reduce(into: []) { $0 += $1 }
                            }
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(failures.count == 0, "first failures: \(failures.prefix(3))")
            let version = try await TaskTestSupport.offPool { try d.ctr(["version"], timeout: 20) }
            #expect(version.succeeded, "berthd stopped answering: \(version.stderr)")
        }
    }

    /// `rounds` calls of one kind, each with a deadline far above its cost; returns the failures.
    static func hammer(_ c: BerthConnection, kind: Int, rounds: Int) async -> [String] {
        var options = CallOptions.defaults
        options.timeout = .seconds(30)
        let snapshots = SnapshotsAPI.Client(wrapping: c.client)
        var failures: [String] = []
        for _ in 0..<rounds {
            do {
                switch kind {
                case 0:
                    var stat = Containerd_Services_Snapshots_V1_StatSnapshotRequest()
                    stat.snapshotter = "overlayfs"
                    stat.key = "stall-probe"
                    _ = try await snapshots.stat(stat, metadata: c.metadata, options: options)
                case 1:
                    var mounts = Containerd_Services_Snapshots_V1_MountsRequest()
                    mounts.snapshotter = "overlayfs"
                    mounts.key = "stall-probe"
                    _ = try await snapshots.mounts(mounts, metadata: c.metadata, options: options)
                case 2:
                    var list = Containerd_Services_Snapshots_V1_ListSnapshotsRequest()
                    list.snapshotter = "overlayfs"
                    try await snapshots.list(list, metadata: c.metadata, options: options) { response in
                        for try await _ in response.messages {}
                    }
                default:
                    _ = try await ImagesAPI.Client(wrapping: c.client).list(
                        Containerd_Services_Images_V1_ListImagesRequest(), metadata: c.metadata, options: options)
                }
            } catch {
                failures.append("kind \(kind): \(error)")
                if (error as? RPCError)?.code == .deadlineExceeded { return failures }
            }
        }
        return failures
    }
}
